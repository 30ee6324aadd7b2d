"""Multi-head cross-attention from hidden states to memories, with the padding (-1) memories masked.

Shapes: B batch, L queries (segment length), M memories, D hidden, H heads.
"""

from typing import Optional

import torch
from torch import nn


class MemoryCrossAttention(nn.Module):
    """Multi-head attention from hidden states (queries) to memories (keys and values).

    Args:
        hidden_dim: width D of both the hidden states and the memories.
        num_heads: number of attention heads H; must divide ``hidden_dim``.
        dropout: dropout on the attention weights and on the output.
    """

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden_dim % num_heads != 0:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = hidden_dim // num_heads
        self.query = nn.Linear(hidden_dim, hidden_dim)
        self.key_value = nn.Linear(hidden_dim, 2 * hidden_dim)
        self.output = nn.Linear(hidden_dim, hidden_dim)
        self.attention_dropout = nn.Dropout(dropout)
        self.output_dropout = nn.Dropout(dropout)

    def forward(
        self, hidden: torch.Tensor, memories: torch.Tensor, memory_mask: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from ``hidden`` to ``memories``.

        Args:
            hidden: queries, [B, L, D].
            memories: keys and values, [B, M, D].
            memory_mask: [B, M], True where a memory is real; None means all are real. A row with no real memory
                receives a zero output: it has nothing to read.
        Returns:
            output [B, L, D] and attention weights [B, H, L, M].
        """
        batch, length, dim = hidden.shape
        if memories.dim() != 3 or memories.size(0) != batch or memories.size(2) != dim:
            raise ValueError(f"memories must be [{batch}, M, {dim}], got {list(memories.shape)}")
        q = self.query(hidden).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, L, hd)
        k, v = self.key_value(memories).split(dim, dim=-1)
        k = k.view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, M, hd)
        v = v.view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, M, hd)

        scores = q @ k.transpose(-1, -2) / self.head_dim**0.5  # (B, H, L, M)
        if memory_mask is not None:
            mask = memory_mask[:, None, None, :].to(torch.bool)  # (B, 1, 1, M)
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            # Multiplying by the mask zeroes rows whose memories are all padding (softmax would spread evenly).
            weights = scores.softmax(dim=-1) * mask
        else:
            weights = scores.softmax(dim=-1)
        context = self.attention_dropout(weights) @ v  # (B, H, L, hd)
        context = context.transpose(1, 2).reshape(batch, length, dim)  # (B, L, D)
        output = self.output_dropout(self.output(context))
        if memory_mask is not None:
            output = output * memory_mask.any(dim=1).to(output.dtype)[:, None, None]  # not even the output's bias
        return output, weights
