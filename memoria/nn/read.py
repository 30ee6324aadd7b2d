"""What one segment reads from memory: the working memories written for it and the memories reminded for it.

Shapes: B batch, W working memories, R reminded memories, D hidden.
"""

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class MemoryRead:
    """The memories one segment reads, fixed for all of its tokens (every field None: nothing to read, e.g. the first
    segment of a document). Made by :class:`~memoria.nn.MemoriaMemory`; every :class:`~memoria.nn.MemoryReader` of
    the model reads the same one; :meth:`~memoria.nn.MemoriaMemory.adjust` takes it back with the attention.

    Attributes:
        working: [B, W, D] the abstractor's summary of the written hidden states, in their dtype (with its gradient).
        reminded: [B, R, D] the engrams ``Memoria.remind`` returned, in the hidden states' dtype (zeros at -1; no
            gradient, except through the engrams of recent writes with ``write_gradient_segments``).
        reminded_mask: [B, R] True where a reminded memory is real (its index is not -1).
        reminded_indices: [B, R] their indices in the memory (-1: none), for the lifespan adjustment.
    """

    working: Optional[torch.Tensor] = None
    reminded: Optional[torch.Tensor] = None
    reminded_mask: Optional[torch.Tensor] = None
    reminded_indices: Optional[torch.Tensor] = None
