"""Memory cross-attention shared by every Memoria model, and the lifespan-delta rule.

One :class:`MemoryCrossAttention` module serves two passes in each block: first over the working memories
(the abstractor's summary of the previous segment), then over the memories that ``Memoria.remind`` returned.
Each pass has its own layer norm. The attention weights of the reminded pass are returned so that the
caller can turn them into lifespan gains with :func:`lifespan_delta`.
"""

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from memoria import Abstractor

MEMORY_INIT_SCHEMES = ("scaled", "paper")


class MemoryCrossAttention(nn.Module):
    """Multi-head attention from hidden states (queries) to memories (keys and values).

    Args:
        hidden_dim: width of both the hidden states and the memories.
        num_heads: number of attention heads; must divide ``hidden_dim``.
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
            hidden: queries, [Batch, Length, Dim].
            memories: keys and values, [Batch, MemoryLength, Dim].
            memory_mask: True where a memory is real, [Batch, MemoryLength]; None means all are real.
                A row with no real memory receives a zero output.
        Returns:
            output [Batch, Length, Dim] and attention weights [Batch, Heads, Length, MemoryLength].
        """
        batch, length, dim = hidden.shape
        if memories.dim() != 3 or memories.size(0) != batch or memories.size(2) != dim:
            raise ValueError(f"memories must be [{batch}, MemoryLength, {dim}], got {list(memories.shape)}")
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
        return self.output_dropout(self.output(context)), weights


def abstractor_init_stds(abstractor: Abstractor, memory_init: str, std: float) -> list[tuple[torch.Tensor, float]]:
    """The standard deviation each of the abstractor's parameters starts from (0.0: zeros).

    ``"paper"``: every weight and the query embeddings N(0, ``std``), as in the authors' models (GPT-2 / BERT
    initialisation). Its stacked linear layers then shrink the memories with the width: at width 64 they come out
    with a norm of ~0.01 against hidden states of ~8, and every learned query averages the segment alike, so the
    memories are near copies of each other and the attention over them cannot tell them apart.
    ``"scaled"``: each linear layer N(0, 1 / fan_in), which keeps the norm of what passes through it, and query
    embeddings N(0, 1 / hidden): with keys of unit-size entries their scores are O(1) at every width, so each query
    picks its own positions. Biases start at zero in both.
    """
    if memory_init not in MEMORY_INIT_SCHEMES:
        raise ValueError(f"memory_init must be one of {MEMORY_INIT_SCHEMES}, got {memory_init!r}")
    layers = (abstractor.key_transform, abstractor.value_transform, abstractor.feedforward, abstractor.output)
    hidden = abstractor.query_embeddings.size(-1)
    query_std = std if memory_init == "paper" else hidden**-0.5
    stds = [(abstractor.query_embeddings, query_std)]
    for layer in layers:
        stds.append((layer.weight, std if memory_init == "paper" else layer.in_features**-0.5))
        stds.append((layer.bias, 0.0))
    return stds


@dataclass
class MemoryBlockOutput:
    """What :class:`MemoryBlock` returns: the updated hidden states [Batch, Length, Dim] and the attention the
    reminded memories received [Batch, Heads, Length, NumReminded] (None when no reminded pass ran)."""

    hidden_states: torch.Tensor
    reminded_attention: Optional[torch.Tensor]


class MemoryBlock(nn.Module):
    """Working-memory pass then reminded-memory pass, residual, through one shared cross-attention.

    ``post_norm=False`` (the Memoria Transformer, GPT-2 style): ``h + attention(norm(h))`` per pass.
    ``post_norm=True`` (Memoria BERT / RoBERTa, BERT style): ``norm(h + attention(h))`` per pass. Each pass has its
    own layer norm.
    """

    def __init__(
        self,
        hidden_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
        post_norm: bool = False,
    ) -> None:
        super().__init__()
        self.cross_attention = MemoryCrossAttention(hidden_dim, num_heads, dropout)
        self.ln_working = nn.LayerNorm(hidden_dim, eps=layer_norm_eps)
        self.ln_reminded = nn.LayerNorm(hidden_dim, eps=layer_norm_eps)
        self.post_norm = post_norm

    def _pass(
        self, hidden: torch.Tensor, norm: nn.LayerNorm, memories: torch.Tensor, mask: Optional[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.post_norm:
            attended, weights = self.cross_attention(hidden, memories, mask)
            return norm(hidden + attended), weights
        attended, weights = self.cross_attention(norm(hidden), memories, mask)
        return hidden + attended, weights

    def forward(
        self,
        hidden: torch.Tensor,
        working_memories: Optional[torch.Tensor] = None,
        reminded_memories: Optional[torch.Tensor] = None,
        reminded_mask: Optional[torch.Tensor] = None,
    ) -> MemoryBlockOutput:
        """Args:
        hidden: [Batch, Length, Dim].
        working_memories: [Batch, NumWorking, Dim] or None to skip that pass.
        reminded_memories: [Batch, NumReminded, Dim] or None (or zero-width) to skip that pass.
        reminded_mask: [Batch, NumReminded], True where the reminded index is not -1.
        """
        if working_memories is not None and working_memories.size(1) > 0:
            hidden, _ = self._pass(hidden, self.ln_working, working_memories, None)
        reminded_attention = None
        if reminded_memories is not None and reminded_memories.size(1) > 0:
            hidden, reminded_attention = self._pass(hidden, self.ln_reminded, reminded_memories, reminded_mask)
        return MemoryBlockOutput(hidden, reminded_attention)


def lifespan_delta(
    reminded_attentions: Sequence[torch.Tensor],
    lifespan_extend_scale: float,
    query_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Lifespan gain of each reminded memory from the attention it received.

    The attention is averaged over layers, heads and real query positions, then multiplied by the number of
    reminded memories (so that uniform attention gives a gain of ``lifespan_extend_scale``) and by the scale.

    Args:
        reminded_attentions: one [Batch, Heads, Length, NumReminded] tensor per layer.
        lifespan_extend_scale: the paper's configs use 8.
        query_mask: [Batch, Length], True (or 1) at real tokens; padding positions then add nothing to the mean.
            None means every position is real. A row with no real position gets zero deltas.
    Returns:
        [Batch, NumReminded] lifespan deltas, detached.
    """
    if len(reminded_attentions) == 0:
        raise ValueError("lifespan_delta needs the attention weights of at least one layer")
    stacked = torch.stack([attention.detach().float() for attention in reminded_attentions])  # (Ly, B, H, L, R)
    if query_mask is None:
        mean_attention = stacked.mean(dim=(0, 2, 3))  # (B, R)
    else:
        batch, length = stacked.shape[1], stacked.shape[3]
        if query_mask.shape != (batch, length):
            raise ValueError(f"query_mask must be [{batch}, {length}], got {list(query_mask.shape)}")
        real = query_mask.to(device=stacked.device, dtype=torch.bool)[..., None]  # (B, L, 1)
        per_query = torch.where(real, stacked.mean(dim=(0, 2)), 0.0)  # (B, L, R)
        mean_attention = per_query.sum(dim=1) / real.sum(dim=1).clamp(min=1)  # (B, R)
    return mean_attention * mean_attention.size(1) * lifespan_extend_scale
