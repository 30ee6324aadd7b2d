"""``torch.arange`` tensors and constants made once per length and device: on a GPU each new one is a kernel launch.

The tensors are shared, so they are read-only: index with them, broadcast them, take views; never write into them.
"""

import functools

import torch


@functools.lru_cache(maxsize=256)
def arange(length: int, device: torch.device) -> torch.Tensor:
    """[length] int64 ``0 .. length - 1`` on ``device`` (shared: read-only)."""
    return torch.arange(length, device=device)


def batch_index(size: int, device: torch.device, dims: int = 2) -> torch.Tensor:
    """``arange(size)`` shaped [size, 1, ...] with ``dims`` dimensions, to index the batch axis (shared: read-only)."""
    return arange(size, device).view(size, *([1] * (dims - 1)))


@functools.lru_cache(maxsize=64)
def constant(value: int, device: torch.device, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """A 0-dim tensor holding ``value`` on ``device`` (shared: read-only). ``torch.where(mask, x, -1)`` makes its
    scalar into a new tensor on ``x``'s device at every call, a kernel launch of its own on a GPU; this one is made
    once."""
    return torch.full((), value, dtype=dtype, device=device)
