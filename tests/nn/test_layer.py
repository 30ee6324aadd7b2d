"""MemoriaLayer: one memory read for a model of one's own; it keeps the previous segment and the memory itself."""

import pytest
import torch
from torch import nn

from memoria.nn import MemoriaLayer

SMALL = dict(num_reminded_stm=8, stm_capacity=16, ltm_search_depth=2, initial_lifespan=4, num_final_ltms=4)


def small_layer(**options) -> MemoriaLayer:
    return MemoriaLayer(16, 2, 4, **{**SMALL, **options})


class TinyModel(nn.Module):
    """Embedding, a memory layer, a head: the smallest model that reads memory."""

    def __init__(self, **options) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 16)
        self.memory = small_layer(**options)
        self.head = nn.Linear(16, 11)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.memory(self.embed(tokens)))


def test_the_first_segment_reads_nothing_and_later_ones_read_the_earlier():
    layer = small_layer(output_init="default")  # the default read starts silent: test_unrolled.py
    segments = torch.randn(4, 2, 6, 16)
    outputs = [layer(hidden) for hidden in segments]
    assert torch.equal(outputs[0], segments[0])
    assert not torch.allclose(outputs[2], segments[2])
    assert layer.memory.memoria.timestep == 3
    layer.reset()
    torch.manual_seed(5)
    again = [layer(hidden) for hidden in segments]
    torch.testing.assert_close(again[0], segments[0])


def test_training_reaches_every_memory_parameter_and_a_zero_gate_starts_as_the_identity():
    torch.manual_seed(0)
    model = TinyModel(output_init="default")  # the default (a zero output projection) reaches them after one step
    tokens = torch.randint(0, 11, (3, 2, 6))
    loss = sum(nn.functional.cross_entropy(model(t).flatten(0, 1), t.flatten()) for t in tokens)
    loss.backward()
    missing = [name for name, p in model.memory.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not missing, missing

    gated = TinyModel(gate=0.0)
    hidden = [gated.embed(t) for t in tokens]
    for h in hidden:
        assert torch.equal(gated.memory(h), h)
    assert gated.memory.reader.gate is not None


def test_padding_is_masked_in_the_write_and_in_the_lifespan_gain():
    layer = small_layer()
    hidden = torch.randn(3, 2, 6, 16)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    changed = hidden.clone()
    changed[:, 1, 4:] = 30.0
    torch.manual_seed(0)
    first = [layer(h, mask) for h in hidden]
    engrams = layer.memory.memoria.engrams
    layer.reset()
    torch.manual_seed(0)
    second = [layer(h, mask) for h in changed]
    assert layer.memory.memoria.engrams == engrams  # the padding never entered the memory
    torch.testing.assert_close(second[-1][:, :4], first[-1][:, :4])


def test_reset_rows_forgets_those_rows_only_and_their_kept_segment():
    layer = small_layer()
    for hidden in torch.randn(3, 3, 6, 16):
        layer(hidden)
    before = layer.memory.memoria.engrams
    layer.reset_rows(torch.tensor([False, True, False]))
    after = layer.memory.memoria.engrams
    assert (after.engrams_types[1] == 0).all() and torch.equal(after.data[[0, 2]], before.data[[0, 2]])
    assert layer.previous_mask[1].sum() == 0 and layer.previous_mask[[0, 2]].all()
    layer(torch.randn(3, 6, 16))  # the next write abstracts nothing of row 1's old document
    with pytest.raises(ValueError, match="reset"):
        layer(torch.randn(2, 6, 16))


def test_the_memory_travels_apart_from_the_weights(tmp_path):
    from memoria.nn import load_memory, memory_modules, reset_memory, save_memory

    torch.manual_seed(0)
    model = TinyModel()
    tokens = torch.randint(0, 11, (4, 2, 6))
    with torch.no_grad():
        for t in tokens[:3]:
            model(t)
    assert list(memory_modules(model)) == ["memory"]  # the layer, not its MemoriaMemory inside
    save_memory(model, tmp_path / "memory.pt")
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    assert not any("memoria" in key or "previous" in key for key in model.state_dict())

    other = TinyModel()
    other.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    load_memory(other, tmp_path / "memory.pt")
    torch.manual_seed(1)
    with torch.no_grad():
        expected = model(tokens[3])
    torch.manual_seed(1)
    with torch.no_grad():
        torch.testing.assert_close(other(tokens[3]), expected)
    reset_memory(other)
    assert other.memory.previous_hidden is None and other.memory.memory.memoria.memory_length == 0
