"""Index utilities shared by the engram container and the memory stages."""

import os
from typing import Optional, Union

import torch

from . import native
from .validation import IndexRangeError

#: Most entries ``super_unique``'s occupancy mask may have (int32, 8 GiB): value ranges beyond it are refused.
MAX_OCCUPANCY = 2**31


def gpu_forms_forced() -> bool:
    """Whether ``MEMORIA_FORCE_GPU_BRANCHES=1`` is set: CPU tensors then take the GPU forms (for tests and counting)."""
    return os.environ.get("MEMORIA_FORCE_GPU_BRANCHES", "0") == "1"


def on_cpu(where: Union[torch.Tensor, torch.device]) -> bool:
    """Whether a tensor (or device) takes the CPU forms: host reads are free there and per-row loops beat big index
    tensors. False on a GPU, and for CPU tensors too under ``MEMORIA_FORCE_GPU_BRANCHES=1``."""
    return (where.device if isinstance(where, torch.Tensor) else where).type == "cpu" and not gpu_forms_forced()


def super_unique(t: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Distinct values of every slice of ``t`` along ``dim``, padded with ``-1``.

    Args:
        t: integer tensor, e.g. indices shaped [BatchSize, Length]; ``-1`` counts as an ordinary value.
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
    dim = dim % t.dim()
    low, high = (int(v) for v in torch.stack(torch.aminmax(t)).tolist())
    shape = list(t.shape)
    shape[dim] = high - low + 1
    if t.numel() // t.size(dim) * shape[dim] > MAX_OCCUPANCY:
        raise ValueError(
            f"t's values span {low}..{high}: the occupancy mask of {t.numel() // t.size(dim)} slices by that range "
            f"exceeds {MAX_OCCUPANCY} entries"
        )
    # [..., ValueRange, ...]: 1 where the (shifted) value occurs in the slice
    occupancy = torch.zeros(shape, dtype=torch.int32, device=t.device)
    occupancy.scatter_(dim, (t - low).long(), 1)
    width = min(t.size(dim), int(occupancy.sum(dim).max()))
    present, values = occupancy.topk(width, dim=dim)
    return (values + low).masked_fill_(present == 0, -1)


def indices_with_mask(mask: torch.Tensor) -> torch.Tensor:
    """Positions of the true entries of every row, ascending, left-padded with ``-1``.

    Args:
        mask: bool tensor shaped [BatchSize, MemoryLength].
    Returns:
        int64 tensor shaped [BatchSize, K], K being the largest true count over rows.
    """
    batch_size, length = mask.shape
    if on_cpu(mask) and mask.dtype == torch.bool and native.active(native.index):
        # one pass in C instead of eight small ops (memoria/_index.c)
        mask = mask.contiguous()
        out = torch.empty(batch_size * length, dtype=torch.long)
        width = native.index.indices_with_mask(mask.data_ptr(), batch_size, length, out.data_ptr())
        return out[: batch_size * width].view(batch_size, width)
    counts = mask.sum(dim=1)
    width = int(counts.max()) if counts.numel() else 0
    # a true entry of rank r in a row with n trues lands in column width - n + r; false entries go to a spare column
    column = mask.cumsum(dim=1) - 1 + (width - counts).unsqueeze(1)
    column = torch.where(mask, column, width)
    positions = torch.arange(length, device=mask.device).expand(batch_size, length)
    out = torch.full((batch_size, width + 1), -1, dtype=torch.long, device=mask.device)
    out.scatter_(1, column, positions)
    return out[:, :width].contiguous()


def mask_with_indices(indices: torch.Tensor, length: int) -> torch.Tensor:
    """Bool mask shaped [BatchSize, length] that is true at ``indices`` [BatchSize, K]; negative entries ignored."""
    mask = torch.zeros(indices.size(0), length + 1, dtype=torch.bool, device=indices.device)
    mask.scatter_(1, torch.where(indices < 0, length, indices).long(), True)
    return mask[:, :length]


def gather_slots(values: torch.Tensor, indices: torch.Tensor, fill_value: float = 0) -> torch.Tensor:
    """Per-row gather along axis 1 with ``-1`` meaning "null".

    Args:
        values: tensor shaped [BatchSize, MemoryLength, *Rest].
        indices: tensor shaped [BatchSize, K] with entries in ``-1..MemoryLength-1``.
        fill_value: value of the null entries.
    Returns:
        tensor shaped [BatchSize, K, *Rest].
    """
    null = indices < 0
    shape = (*indices.shape, *values.shape[2:])
    if values.size(1) == 0:
        return values.new_full(shape, fill_value)
    batch_offset = torch.arange(indices.size(0), device=indices.device).unsqueeze(1) * values.size(1)
    flat_rows = indices.clamp(min=0) + batch_offset
    picked = values.flatten(0, 1).index_select(0, flat_rows.flatten()).view(shape)
    if on_cpu(picked):
        # only the null entries are written (a full masked_fill_ pass costs as much as the gather on wide rows); on
        # a GPU that would need a synchronising nonzero()
        if bool(null.any()):
            picked[null] = fill_value
        return picked
    return picked.masked_fill_(null.view(*null.shape, *([1] * (values.dim() - 2))), fill_value)


def local_indices(
    partial_mask: torch.Tensor, global_indices: torch.Tensor, width: Optional[int] = None
) -> torch.Tensor:
    """Where ``global_indices`` [BatchSize, K] sit in the compacted, left-padded list of ``partial_mask`` slots.

    Args:
        partial_mask: bool [BatchSize, MemoryLength] choosing the sub-list.
        global_indices: [BatchSize, K] positions; -1 and positions outside the sub-list are ignored.
        width: the sub-list's width (the largest true count of a row), when the caller knows it already.
    Returns:
        local positions [BatchSize, K'], ascending, left-padded with -1.
    """
    counts = partial_mask.sum(dim=1, keepdim=True)
    if width is None:
        width = int(counts.max()) if counts.numel() else 0
    local_position = partial_mask.cumsum(dim=1) - 1 + (width - counts)
    chosen = mask_with_indices(global_indices, partial_mask.size(1)) & partial_mask
    local_mask = torch.zeros(partial_mask.size(0), width + 1, dtype=torch.bool, device=partial_mask.device)
    local_mask.scatter_(1, torch.where(chosen, local_position, width), True)
    return indices_with_mask(local_mask[:, :width])


def add_at(values: torch.Tensor, indices: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
    """``values`` [BatchSize, M] plus ``amounts[b, k]`` at ``indices[b, k]`` (-1 skipped, repeats add up), in place."""
    length = values.size(1)
    gain = torch.zeros(values.size(0), length + 1, dtype=values.dtype, device=values.device)
    gain.scatter_add_(1, torch.where(indices < 0, length, indices).long(), amounts.to(values.dtype))
    return values.add_(gain[:, :length])


def all_finite(values: torch.Tensor) -> bool:
    """Whether every element of the floating tensor ``values`` is finite.

    NaN and infinity reach the sum, so a finite sum settles it in one reduction; only a sum that is not finite (a
    NaN or infinity, or an overflow of large finite values) needs the element-wise check.
    """
    return bool(torch.isfinite(values.sum())) or bool(torch.isfinite(values).all())
