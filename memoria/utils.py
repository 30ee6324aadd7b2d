"""Index utilities shared by the engram container and the algorithm (shapes: B batch rows, M memory length, K
indices)."""

from typing import Optional

import torch

from . import ops
from .ops import MAX_OCCUPANCY, gather_slots, indices_with_mask, local_mask, mask_with_indices  # noqa: F401
from .validation import IndexRangeError, all_finite  # noqa: F401


def super_unique(t: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Distinct values of every slice of ``t`` along ``dim``, padded with ``-1``.

    Args:
        t: integer tensor, e.g. indices shaped [B, Length]; ``-1`` counts as an ordinary value.
        dim: the axis whose slices are made unique.
    Returns:
        int64 tensor whose ``dim`` axis has width ``min(t.size(dim), largest distinct count over slices)``. Its order
        is the one ``torch.topk`` gives for the ``k`` largest entries of a 0/1 occupancy mask over the value range
        ``min(t)..max(t)``. That order is observable (the published package and its tutorial print it), so it is kept
        on purpose instead of sorting.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be an integer torch.Tensor, got {type(t).__name__}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integers, got dtype {t.dtype}")
    if isinstance(dim, bool) or not isinstance(dim, int) or not -max(t.dim(), 1) <= dim < max(t.dim(), 1):
        raise IndexRangeError(f"dim must be an int in {-max(t.dim(), 1)}..{max(t.dim(), 1) - 1}, got {dim!r}")
    if t.numel() == 0:
        return t
    return ops.super_unique(t, dim % t.dim())


def local_indices(
    partial_mask: torch.Tensor, global_indices: torch.Tensor, width: Optional[int] = None
) -> torch.Tensor:
    """Where ``global_indices`` [B, K] sit in the compacted, left-padded list of ``partial_mask`` slots.

    Args:
        partial_mask: bool [B, M] choosing the sub-list.
        global_indices: [B, K] positions; -1 and positions outside the sub-list are ignored.
        width: the sub-list's width (the largest true count of a row), when the caller knows it already.
    Returns:
        local positions [B, K'], ascending, left-padded with -1.
    """
    if width is None:
        width = int(partial_mask.sum(dim=1).max()) if partial_mask.numel() else 0
    return indices_with_mask(local_mask(partial_mask, global_indices, width))


def add_at(values: torch.Tensor, indices: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
    """``values`` [B, M] plus ``amounts[b, k]`` at ``indices[b, k]`` (negative skipped, repeats add up), in place."""
    return values.add_(_gain(values, indices, amounts))


def added_at(
    values: torch.Tensor, indices: torch.Tensor, amounts: torch.Tensor, highest: Optional[int] = None
) -> torch.Tensor:
    """``add_at`` into a new tensor (``values`` unchanged); indices above ``highest`` count as ``highest`` (for a caller
    that refuses them before it uses the result)."""
    return values + _gain(values, indices, amounts, highest)


def _gain(
    values: torch.Tensor, indices: torch.Tensor, amounts: torch.Tensor, highest: Optional[int] = None
) -> torch.Tensor:
    """[B, M] the sum of ``amounts`` landing on each position (negative indices skipped)."""
    length = values.size(1)
    gain = torch.zeros(values.size(0), length + 1, dtype=values.dtype, device=values.device)
    # any negative index goes to the spare last column: -1 % (M + 1) is M
    spread = indices.clamp(min=-1, max=highest).remainder(length + 1).long()
    gain.scatter_add_(1, spread, amounts.to(values.dtype))
    return gain[:, :length]
