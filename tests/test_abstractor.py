"""Abstractor: shapes, attention over input positions, init, and interchangeable state dicts with 1.1.0."""

import pytest
import torch

from benchmarks.reference import load_reference
from memoria.abstractor import Abstractor


def test_shapes_and_parameter_names():
    abstractor = Abstractor(num_memories=5, hidden_dim=16, feedforward_dim=24)
    assert abstractor(torch.randn(3, 11, 16)).shape == (3, 5, 16)
    assert abstractor.query_embeddings.shape == (1, 5, 16)
    assert abstractor.feedforward.weight.shape == (24, 16) and abstractor.output.weight.shape == (16, 24)


def test_query_init_std():
    torch.manual_seed(0)
    queries = Abstractor(num_memories=200, hidden_dim=100, feedforward_dim=4).query_embeddings
    assert abs(queries.std().item() - 0.02) < 0.001 and abs(queries.mean().item()) < 0.001


def test_softmax_is_over_input_positions():
    abstractor = Abstractor(num_memories=2, hidden_dim=4, feedforward_dim=4)
    with torch.no_grad():
        # Identity feed-forward and values: the output is the attention-weighted mean of the inputs.
        for layer in (abstractor.value_transform, abstractor.feedforward, abstractor.output):
            layer.weight.copy_(torch.eye(4))
            layer.bias.zero_()
        abstractor.key_transform.weight.zero_()  # equal scores: a plain mean over positions
        abstractor.key_transform.bias.zero_()
    inputs = torch.tensor([[[1.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0, 6.0]]])
    expected = inputs.mean(dim=1, keepdim=True).expand(1, 2, 4)
    torch.testing.assert_close(abstractor(inputs), expected)


def test_a_mask_keeps_padding_out_of_the_memories():
    torch.manual_seed(0)
    abstractor = Abstractor(num_memories=3, hidden_dim=8, feedforward_dim=8)
    hidden = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    changed = hidden.clone()
    changed[0, 4:] = 100.0
    masked = abstractor(hidden, mask)
    torch.testing.assert_close(abstractor(changed, mask), masked)
    torch.testing.assert_close(masked[0], abstractor(hidden[:1, :4])[0])  # as if the padding were not there
    torch.testing.assert_close(masked[1], abstractor(hidden[1:])[0])
    torch.testing.assert_close(abstractor(hidden, torch.ones(2, 6)), abstractor(hidden))  # 1/0 masks too
    # a row of padding only attends to nothing: the feed-forward of zeros, its biases
    nothing = abstractor(hidden, torch.zeros(2, 6, dtype=torch.bool))
    torch.testing.assert_close(nothing[0], abstractor.output(abstractor.feedforward.bias).expand(3, 8))


def test_bad_input_is_rejected():
    abstractor = Abstractor(num_memories=2, hidden_dim=4, feedforward_dim=4)
    with pytest.raises(ValueError, match="hidden_states"):
        abstractor(torch.randn(3, 5))
    with pytest.raises(ValueError, match="hidden_states"):
        abstractor(torch.randn(1, 3, 5))
    # another dtype than the parameters' (outside autocast): a TypeError naming it, not the layers' RuntimeError
    for dtype in (torch.float64, torch.int64, torch.bool, torch.complex64):
        with pytest.raises(TypeError, match="hidden_states has dtype"):
            abstractor(torch.ones(1, 3, 4, dtype=dtype))
    assert abstractor.double()(torch.randn(1, 3, 4, dtype=torch.float64)).dtype == torch.float64
    with torch.autocast("cpu", torch.bfloat16):  # autocast casts inside the layers: accepted
        assert abstractor.float()(torch.randn(1, 3, 4)).shape == (1, 2, 4)
    with pytest.raises(ValueError, match="mask"):
        abstractor(torch.randn(1, 3, 4), torch.ones(1, 4))
    with pytest.raises(TypeError, match="mask"):
        abstractor(torch.randn(1, 3, 4), [1, 1, 1])


@pytest.mark.parametrize("direction", ["theirs_to_ours", "ours_to_theirs"])
def test_same_outputs_as_reference_with_same_state_dict(direction):
    ref = load_reference("1.1.0")
    torch.manual_seed(1)
    theirs = ref.Abstractor(num_memories=4, hidden_dim=12, feedforward_dim=20)
    torch.manual_seed(1)
    ours = Abstractor(num_memories=4, hidden_dim=12, feedforward_dim=20)
    # Same seed, same draws: initial parameters are equal too.
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    source, target = (theirs, ours) if direction == "theirs_to_ours" else (ours, theirs)
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.normal_()
    target.load_state_dict(source.state_dict())
    inputs = torch.randn(2, 7, 12)
    assert torch.equal(ours(inputs), theirs(inputs))
