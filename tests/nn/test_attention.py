"""MemoryCrossAttention: a distribution over the real memories; a row with nothing to read gets zero."""

import pytest
import torch

from memoria.nn import MemoryCrossAttention


def test_cross_attention_weights_are_a_distribution_over_real_memories():
    attention = MemoryCrossAttention(hidden_dim=8, num_heads=2)
    hidden, memories = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, False, True, False], [False] * 5])
    output, weights = attention(hidden, memories, mask)
    assert output.shape == (2, 3, 8) and weights.shape == (2, 2, 3, 5)
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(2, 3))
    assert weights[0][..., ~mask[0]].abs().max() == 0
    # A row with no real memory attends to nothing and receives nothing, not even the projection's bias.
    assert weights[1].abs().max() == 0 and output[1].abs().max() == 0
    assert attention.output.bias.abs().max() > 0


def test_masked_memories_do_not_change_the_output():
    attention = MemoryCrossAttention(hidden_dim=8, num_heads=2)
    hidden, memories = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    mask = torch.tensor([[True, False, True, False]])
    changed = memories.clone()
    changed[:, ~mask[0]] = 100.0
    torch.testing.assert_close(attention(hidden, memories, mask)[0], attention(hidden, changed, mask)[0])
    torch.testing.assert_close(attention(hidden, memories[:, mask[0]])[0], attention(hidden, memories, mask)[0])


def test_cross_attention_rejects_mismatched_memories_and_heads():
    attention = MemoryCrossAttention(hidden_dim=8, num_heads=2)
    with pytest.raises(ValueError, match="memories must be"):
        attention(torch.randn(2, 3, 8), torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="divisible"):
        MemoryCrossAttention(hidden_dim=8, num_heads=3)
