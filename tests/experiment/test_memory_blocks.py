import pytest
import torch

from experiment.models.memory_blocks import MemoryBlock, MemoryCrossAttention, lifespan_delta


def test_cross_attention_weights_are_a_distribution_over_real_memories():
    attention = MemoryCrossAttention(hidden_dim=8, num_heads=2)
    hidden, memories = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, False, True, False], [False] * 5])
    output, weights = attention(hidden, memories, mask)
    assert output.shape == (2, 3, 8) and weights.shape == (2, 2, 3, 5)
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(2, 3))
    assert weights[0][..., ~mask[0]].abs().max() == 0
    # A row with no real memory attends to nothing: zero weights, output is the projection bias only.
    assert weights[1].abs().max() == 0
    torch.testing.assert_close(output[1], attention.output.bias.expand(3, 8))


def test_cross_attention_rejects_mismatched_memories():
    attention = MemoryCrossAttention(hidden_dim=8, num_heads=2)
    with pytest.raises(ValueError, match="memories must be"):
        attention(torch.randn(2, 3, 8), torch.randn(2, 5, 4))


def test_memory_block_shares_one_attention_between_passes_and_skips_missing_memories():
    block = MemoryBlock(hidden_dim=8, num_heads=2)
    names = [name for name, _ in block.named_parameters()]
    assert sum(name.startswith("cross_attention.") for name in names) == 6  # one module: 3 linears
    assert {"ln_working.weight", "ln_reminded.weight"} <= set(names)
    hidden = torch.randn(1, 3, 8)
    untouched = block(hidden)
    assert torch.equal(untouched.hidden_states, hidden) and untouched.reminded_attention is None
    out = block(hidden, torch.randn(1, 2, 8), torch.randn(1, 4, 8), torch.ones(1, 4, dtype=torch.bool))
    assert out.reminded_attention.shape == (1, 2, 3, 4)
    assert not torch.allclose(out.hidden_states, hidden)


def test_lifespan_delta_is_mean_attention_times_count_times_scale():
    uniform = torch.full((2, 2, 3, 4), 0.25)  # [B, H, L, R]
    torch.testing.assert_close(lifespan_delta([uniform, uniform], 8.0), torch.full((2, 4), 8.0))
    focused = torch.zeros(1, 1, 2, 4)
    focused[..., 1] = 1.0
    layer_two = torch.zeros(1, 1, 2, 4)
    layer_two[..., 3] = 1.0
    torch.testing.assert_close(lifespan_delta([focused, layer_two], 2.0), torch.tensor([[0.0, 4.0, 0.0, 4.0]]))
    with pytest.raises(ValueError):
        lifespan_delta([], 8.0)


def test_lifespan_delta_ignores_masked_query_positions():
    attention = torch.rand(2, 2, 5, 3).softmax(dim=-1)  # [B, H, L, R]
    query_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    delta = lifespan_delta([attention], 8.0, query_mask)
    # Whatever the padding positions attend to, the deltas stay those of the real positions alone.
    changed = attention.clone()
    changed[0, :, 3:] = torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(lifespan_delta([changed], 8.0, query_mask), delta)
    torch.testing.assert_close(delta[0], lifespan_delta([attention[:1, :, :3]], 8.0)[0])
    torch.testing.assert_close(delta[1], lifespan_delta([attention[1:]], 8.0)[0])
    torch.testing.assert_close(delta.sum(dim=1), torch.full((2,), 3 * 8.0))  # each real query spreads 1 over R
    torch.testing.assert_close(lifespan_delta([attention], 8.0, torch.ones(2, 5)), lifespan_delta([attention], 8.0))
    nothing_real = lifespan_delta([attention], 8.0, torch.zeros(2, 5, dtype=torch.bool))
    assert (nothing_real == 0).all()
    with pytest.raises(ValueError, match=r"query_mask must be \[2, 5\]"):
        lifespan_delta([attention], 8.0, torch.ones(2, 4))
