"""Abstractor: turns a segment's hidden states into a fixed number of working memories."""

from typing import Optional

import torch
import torch.nn as nn

from .validation import check_count


class Abstractor(nn.Module):
    """Learned queries attend over a segment, then a linear feed-forward maps the result.

    ``[B, L, D] -> [B, NumMemories, D]``. Parameter names match the published package, so
    state dicts load in either direction.
    """

    def __init__(self, num_memories: int, hidden_dim: int, feedforward_dim: int) -> None:
        """
        Args:
            num_memories: working memories produced per segment.
            hidden_dim: hidden size of the input and of the memories.
            feedforward_dim: inner size of the feed-forward.
        """
        super().__init__()
        for name, value in (
            ("num_memories", num_memories),
            ("hidden_dim", hidden_dim),
            ("feedforward_dim", feedforward_dim),
        ):
            check_count(value, name)
        self.query_embeddings = nn.Parameter(torch.empty(1, num_memories, hidden_dim).normal_(std=0.02))
        self.key_transform = nn.Linear(hidden_dim, hidden_dim)
        self.value_transform = nn.Linear(hidden_dim, hidden_dim)
        # No activation between the two layers: the published model uses none, and checkpoints depend on it.
        self.feedforward = nn.Linear(hidden_dim, feedforward_dim)
        self.output = nn.Linear(feedforward_dim, hidden_dim)

    def forward(self, hidden_states: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            hidden_states: segment states shaped [B, L, D]
            mask: [B, L], True (or 1) at real positions; padding then takes no attention. None (the published
                form): every position is real. A row without a real position attends to nothing (its memories are
                what the feed-forward makes of zeros).
        Returns:
            memories shaped [B, NumMemories, D]
        """
        if not isinstance(hidden_states, torch.Tensor):
            raise TypeError(f"hidden_states must be a torch.Tensor, got {type(hidden_states).__name__}")
        if hidden_states.dim() != 3 or hidden_states.size(-1) != self.query_embeddings.size(-1):
            raise ValueError(
                f"hidden_states must be [Batch, N, {self.query_embeddings.size(-1)}], got {list(hidden_states.shape)}"
            )
        dtype = self.query_embeddings.dtype
        # under autocast the layers cast their inputs; otherwise a dtype other than the parameters' fails inside them
        if hidden_states.dtype != dtype and not _autocast_enabled(hidden_states.device.type):
            raise TypeError(
                f"hidden_states has dtype {hidden_states.dtype}, the Abstractor's parameters {dtype}: convert one of "
                "them (hidden_states.to(dtype) or abstractor.to(dtype))"
            )
        if mask is not None and not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
        if mask is not None and mask.shape != hidden_states.shape[:2]:
            raise ValueError(f"mask must be [Batch, N] = {list(hidden_states.shape[:2])}, got {list(mask.shape)}")
        keys = self.key_transform(hidden_states)  # [B, N, D]
        values = self.value_transform(hidden_states)  # [B, N, D]
        scores = self.query_embeddings @ keys.transpose(-2, -1)  # [B, NumMemories, L]
        if mask is None:
            weights = scores.softmax(dim=-1)
        else:
            real = mask[:, None, :].to(torch.bool)  # [B, 1, N]
            # times the mask: a row of padding only would otherwise spread its attention evenly over the padding
            weights = scores.masked_fill(~real, torch.finfo(scores.dtype).min).softmax(dim=-1) * real
        attended = weights @ values  # [B, NumMemories, D]
        return self.output(self.feedforward(attended))


def _autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (torch < 2.4 has no device argument)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
