"""C forms: the optional extensions (``memoria/native.py``) on CPU tensors, each equal to its plain form.

The extensions read and write tensors through raw pointers, so every argument is made contiguous (and of the dtype
the C code expects) here, and held in a name while the C code runs.
"""

from typing import Optional

import torch

from .. import native
from . import cpu, plain
from .plain import LongtermGraph
from .registry import form


def _built(extension: str):
    """Whether the extension ``native.<extension>`` is built and allowed (``MEMORIA_NATIVE``), at every call."""
    return lambda: native.active(getattr(native, extension))


@form("c", usable=_built("counts"))
def pair_gather(counts: torch.Tensor, rows: torch.Tensor, columns: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``plain.pair_gather`` reading the counts where they lie (the torch form copies whole rows first)."""
    columns = rows if columns is None else columns
    if counts.dtype != torch.int32 or not counts.is_contiguous():
        return plain.pair_gather(counts, rows, columns)
    batch_size, capacity = counts.shape[:2]
    rows, columns = rows.to(torch.long).contiguous(), columns.to(torch.long).contiguous()
    out = torch.empty(batch_size, rows.size(1), columns.size(1), dtype=torch.int32)
    native.counts.pair_gather(
        counts.data_ptr(), batch_size, capacity, rows.data_ptr(), rows.size(1), columns.data_ptr(), columns.size(1),
        out.data_ptr(), *native.threads(),
    )  # fmt: skip
    return out


@form("c", usable=_built("counts"))
def fire_together(counts: torch.Tensor, indices: torch.Tensor, spare: bool = False) -> None:
    """``plain.fire_together`` with the counts incremented in place, row by row (no [B, K, K] temporary)."""
    if counts.dtype != torch.int32 or not counts.is_contiguous():
        return plain.fire_together(counts, indices)
    # each engram once, ascending, after the -1s (repeats and every negative index), which are cut to the fewest the
    # C code must skip: it visits width x width pairs, and most entries of a remind are -1
    fired = plain.distinct(indices.clamp(min=-1)).sort(dim=1).values
    width = int((fired >= 0).sum(dim=1).max()) if fired.numel() else 0
    fired = fired[:, fired.size(1) - width :].contiguous()
    if fired.numel() == 0:
        return
    native.counts.fire_together(
        counts.data_ptr(), fired.size(0), counts.size(1), fired.data_ptr(), fired.size(1), *native.threads()
    )


@form("c", usable=_built("counts"))
def fill_slots(
    counts: torch.Tensor, slots: torch.Tensor, value: int, all_valid: bool = False, spare: bool = False
) -> None:
    """``plain.fill_slots`` writing each count row's chosen columns as runs, one visit per row."""
    if counts.dtype != torch.int32 or not counts.is_contiguous():
        return cpu.fill_slots(counts, slots, value, all_valid)
    slots = slots.to(torch.long).contiguous()
    native.counts.fill_slots(
        counts.data_ptr(), counts.size(0), counts.size(1), slots.data_ptr(), slots.size(1), value, *native.threads()
    )


@form("c", usable=_built("walk"))
def walk(graph: LongtermGraph, start: torch.Tensor, depth: int) -> torch.Tensor:
    """``plain.walk`` with each depth one pass over the distinct nodes' long-term columns."""
    counts = graph.counts
    if counts.dtype != torch.int32 or not counts.is_contiguous():
        return cpu.walk(graph, start, depth)
    batch_size, num_ltm = graph.nodes.shape
    last = num_ltm - 1
    # flat nodes (batch row * T + local position) and the visited set by flat node, as the C code reads them
    node = (torch.where(start < 0, last, start) + torch.arange(batch_size).unsqueeze(1) * num_ltm).flatten()
    visited = graph.padding.flatten().clone()
    visited.scatter_(0, node, True)
    ltm_slots = graph.nodes.to(torch.long).contiguous()
    depths = torch.empty(depth, node.numel(), dtype=torch.long)
    native.walk.walk(
        counts.data_ptr(), batch_size, counts.size(1), node.data_ptr(), start.size(1), ltm_slots.data_ptr(), num_ltm,
        visited.data_ptr(), depth, last, depths.data_ptr(), *native.threads(),
    )  # fmt: skip
    # [Depth, B * K] -> [B, Depth * K], depth-major like the plain form
    return depths.view(depth, batch_size, start.size(1)).transpose(0, 1).reshape(batch_size, -1)
