"""The segment being read: the memory it reads, and what its tokens have produced so far.

A segment may be read in one call (training, evaluation) or a few tokens at a time through the base model's key/value
cache (generation); either way, when it ends, the wrapper takes from it the reminded attention of all its tokens per
reading layer (for the lifespans), its final hidden states and its padding mask (for the next write).

Shapes: B batch, T tokens of one call, L tokens of the segment so far, D hidden, H heads, R reminded memories.
"""

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from memoria.nn import MemoryRead


@dataclass
class SegmentReading:
    """One segment in progress.

    Attributes:
        read: what every reading layer reads during this segment (fixed at its start).
        cache: the base model's key/value cache of the segment's tokens (generation), None otherwise.
        filled: tokens of the segment read so far.
        hidden: [B, T, D] final hidden states of each call so far (detached).
        masks: [B, T] padding mask of each call so far (True: real token), or None where no mask was given.
        attentions: per reading layer, [B, H, T, R] reminded attention of each call so far.
        last_hidden: the current call's final hidden states [B, T, D], set by the hook on the base model.
    """

    read: MemoryRead
    num_readers: int
    cache: Optional[Any] = None
    filled: int = 0
    hidden: list[torch.Tensor] = field(default_factory=list)
    masks: list[Optional[torch.Tensor]] = field(default_factory=list)
    attentions: list[list[torch.Tensor]] = field(default_factory=list)
    last_hidden: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        self.attentions = [[] for _ in range(self.num_readers)]

    def mask_with(self, mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """[B, L + T] the mask of the segment's earlier tokens and of ``mask`` [B, T] (None where none was given)."""
        if mask is None:
            return None
        return torch.cat([*self.masks, mask], dim=1) if self.masks else mask

    def record(self, mask: Optional[torch.Tensor], length: int) -> None:
        """Keep the call's final hidden states and mask (``length`` T tokens); the reminded attention was kept by
        the reading layers as they ran."""
        if self.last_hidden is None:
            raise RuntimeError("the base model did not report its final hidden states (was its forward hook removed?)")
        self.hidden.append(self.last_hidden.detach())
        self.masks.append(mask)
        self.last_hidden = None
        self.filled += length

    def segment_mask(self) -> Optional[torch.Tensor]:
        """[B, L] the whole segment's padding mask, None where no call gave one."""
        if all(mask is None for mask in self.masks):
            return None
        return torch.cat(
            [torch.ones_like(h[..., 0], dtype=torch.bool) if m is None else m for h, m in zip(self.hidden, self.masks)],
            dim=1,
        )

    def reminded_attentions(self) -> list[torch.Tensor]:
        """Per reading layer that attended, [B, H, L, R] the reminded attention of the whole segment."""
        return [torch.cat(pieces, dim=2) for pieces in self.attentions if pieces]
