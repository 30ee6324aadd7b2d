"""CPU forms: torch ops that may read values on the host (free on a CPU) to do less work.

Shapes as in ``plain.py``: B batch rows, M memory length, D hidden size, N slots, T long-term entries, K entries.
"""

from typing import List, Optional, Union

import torch

from . import plain
from .plain import LongtermGraph
from .registry import dispatch, form

# the operations the forms below are made of, each in the form a CPU tensor takes
_pair_gather = dispatch("pair_gather")
_indices_with_mask = dispatch("indices_with_mask")
_first_max_at_columns = dispatch("first_max_at_columns")
_advance = dispatch("advance")
_walk = dispatch("walk")


@form("cpu")
def gather_slots(values: torch.Tensor, indices: torch.Tensor, fill_value: float = 0) -> torch.Tensor:
    """``plain.gather_slots`` writing only the -1 entries: a full fill pass costs as much as the gather on wide rows."""
    shape = (*indices.shape, *values.shape[2:])
    if values.size(1) == 0:
        return values.new_full(shape, fill_value)
    batch_offset = torch.arange(indices.size(0)).unsqueeze(1) * values.size(1)
    picked = values.flatten(0, 1).index_select(0, (indices.clamp(min=0) + batch_offset).flatten()).view(shape)
    null = indices < 0
    if bool(null.any()):
        picked[null] = fill_value
    return picked


@form("cpu")
def indices_with_mask(mask: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
    """``plain.indices_with_mask``; where every row has as many true entries (no padding: the working memories, the
    free slots), they are the row-major ``nonzero`` positions as they come."""
    counts = mask.sum(dim=1)
    if mask.numel() and mask.size(0):
        low, high = torch.stack(torch.aminmax(counts)).tolist()
        if low == high:
            return mask.nonzero()[:, 1].view(mask.size(0), high)
        width = high
    return plain.indices_with_mask(mask, width)


@form("cpu")
def indices_with_masks(
    masks: Union[List[torch.Tensor], torch.Tensor], widths: Optional[List[int]] = None
) -> List[torch.Tensor]:
    """``plain.indices_with_masks`` by the form above (host reads are free here: each mask reads its own width)."""
    return [
        indices_with_mask(mask, width) for mask, width in zip(masks, [None] * len(masks) if widths is None else widths)
    ]


@form("cpu")
def super_unique(t: torch.Tensor, dim: int, ignore: Optional[int] = None) -> torch.Tensor:
    """``plain.super_unique``, asking first whether any entry is to be ignored (the CPU walks never pad)."""
    if ignore is not None and not bool((t == ignore).any()):
        ignore = None
    return plain.super_unique(t, dim, ignore)


@form("cpu")
def zero_vectors(data: torch.Tensor, slots: torch.Tensor, offsets: Optional[torch.Tensor] = None) -> None:
    """``plain.zero_vectors`` writing only the valid entries (most entries of a compaction are -1)."""
    rows = slots + (torch.arange(slots.size(0)).unsqueeze(1) * data.size(1) if offsets is None else offsets)
    data.view(-1, data.size(2)).index_fill_(0, rows[slots >= 0], 0)


@form("cpu")
def fill_slots(
    counts: torch.Tensor, slots: torch.Tensor, value: int, all_valid: bool = False, spare: bool = False
) -> None:
    """``plain.fill_slots`` row by row: ``index_fill_`` writes each count row's few columns in place."""
    for row, chosen in zip(counts, slots):
        chosen = chosen[chosen >= 0]
        if chosen.numel():
            row.index_fill_(0, chosen, value).index_fill_(1, chosen, value)


# slots per 64-byte line of an int32 count row
SLOT_GROUP = 16


@form("cpu")
def free_slots(slots: torch.Tensor, capacity: int, width: int) -> torch.Tensor:
    """``plain.free_slots`` from the freest groups of ``SLOT_GROUP`` neighbours first (any free slots will do): zeroing
    the new engrams' columns then touches few cache lines of each count row, which is what an append costs on a large
    memory."""
    batch_size = slots.size(0)
    num_groups = -(-capacity // SLOT_GROUP)
    free = torch.zeros(batch_size, num_groups * SLOT_GROUP, dtype=torch.bool)
    free[:, :capacity].fill_(True)
    free.scatter_(1, slots, False)
    groups = free.view(batch_size, num_groups, SLOT_GROUP)
    order = groups.sum(dim=2).argsort(dim=1, descending=True, stable=True)
    # [B, NumGroups * Group] every slot, freest group first
    candidates = (order.unsqueeze(2) * SLOT_GROUP + torch.arange(SLOT_GROUP)).flatten(1)
    # every row has the same number of free slots (capacity - memory length), so no row is padded
    chosen = indices_with_mask(free.gather(1, candidates), capacity - slots.size(1))[:, :width]
    return candidates.gather(1, chosen).sort(dim=1).values


@form("cpu")
def padding_slots(slots: torch.Tensor, padding: torch.Tensor, capacity: int) -> torch.Tensor:
    """``plain.padding_slots`` taking the lowest free slots: the padding's counts rows and columns are cleared next, and
    the C fill writes neighbouring columns of a row as one run."""
    if not bool(padding.any()):
        return slots
    used = torch.zeros(slots.size(0), capacity + 1, dtype=torch.bool)
    used.scatter_(1, torch.where(padding, capacity, slots), True)
    free = (~used[:, :capacity]).to(torch.uint8)
    # padding comes first in a row, so the j-th padding position takes the j-th free slot
    lowest_free = free.sort(dim=1, descending=True, stable=True).indices[:, : slots.size(1)]
    return torch.where(padding, lowest_free, slots)


@form("cpu")
def strongest_longterm(
    counts: torch.Tensor,
    slots: torch.Tensor,
    rows: torch.Tensor,
    ltm_mask: torch.Tensor,
    ltm_indices: torch.Tensor,
    generator: Optional[torch.Generator],
) -> torch.Tensor:
    """``plain.strongest_longterm`` reading each distinct row's counts once, at the long-term columns only.

    Entries that read the same row share a table row, and the draw is read only at the long-term columns
    (``first_max_at_columns``), so neither the [B, K, M] counts nor the draw is ever held.
    """
    batch_size, num_entries = rows.shape
    length = slots.size(1)
    if ltm_indices.size(1) == 0 or num_entries == 0:
        _advance((batch_size, num_entries, length), rows.device, generator)
        return torch.full_like(rows, -1)
    # every entry below the last row reads a row of its own; those at the last row (all -1 entries, R1) share one
    own = rows < length - 1
    table = _indices_with_mask(own)
    table_rows = torch.where(table >= 0, rows.gather(1, table.clamp(min=0)), length - 1)
    table_rows = torch.cat([table_rows, torch.full((batch_size, 1), length - 1, dtype=torch.long)], dim=1)
    # [B, Distinct, T]; padding columns read -1
    table_counts = _pair_gather(counts, slots.gather(1, table_rows), plain.slots_at(slots, ltm_indices))
    top = table_counts.max(dim=2, keepdim=True).values
    has_ltm = (ltm_indices >= 0).any(dim=1).view(-1, 1, 1)
    if bool((has_ltm & (top < 0)).any()):
        # a row whose best count is -1 picks among every column: the plain form decides
        return plain.strongest_longterm(counts, slots, rows, ltm_mask, ltm_indices, generator)
    # the plain form scores non-LTM columns -1, so with a non-negative best only LTM columns can tie for it
    best = (table_counts == top) & (ltm_indices >= 0).unsqueeze(1)
    rank = own.cumsum(dim=1) - 1 + (table.size(1) - own.sum(dim=1, keepdim=True))
    slot = torch.where(own, rank, table.size(1))
    position, drew = _first_max_at_columns(length, ltm_indices, best, slot, generator)
    # LTM columns ascend, so the first maximum among them is the first in the whole row; an entry whose candidates
    # all drew 0 takes column 0, as the plain argmax over an all-zero row does
    choice = torch.where(drew, ltm_indices.gather(1, position), 0)
    return choice.masked_fill((choice < 0) | ~ltm_mask.gather(1, choice.clamp(min=0)), -1)


@form("cpu")
def walk_from(graph: LongtermGraph, ltm_mask: torch.Tensor, initial: torch.Tensor, depth: int) -> torch.Tensor:
    """``plain.walk_from`` with the start list and the walk in the forms a CPU tensor takes (the C walk where built)."""
    return plain.walk_from(graph, ltm_mask, initial, depth, _walk, _indices_with_mask)


# above this many [Distinct, T] elements a walk step reads its rows one batch row at a time
WALK_SPLIT_ELEMENTS = 1 << 18


@form("cpu")
def walk(graph: LongtermGraph, start: torch.Tensor, depth: int) -> torch.Tensor:
    """``plain.walk`` reading each distinct node's row once per depth (all dead-end walkers share the last node),
    straight from the counts instead of a [B, T, T] copy."""
    batch_size, num_ltm = graph.nodes.shape
    last = num_ltm - 1
    # nodes are numbered flat, batch row * T + local position, so one index reaches any row's engram
    offset = torch.arange(batch_size).unsqueeze(1) * num_ltm
    visited = graph.padding.flatten().clone()
    node = (torch.where(start < 0, last, start) + offset).flatten()
    visited.scatter_(0, node, True)
    found = []
    for _ in range(depth):
        unique_nodes, which = torch.unique(node, return_inverse=True)
        row_start = unique_nodes - unique_nodes % num_ltm
        step = strongest_unvisited(graph, unique_nodes, row_start // num_ltm, visited) + row_start
        dead_end = visited[step]
        current = (step - row_start).masked_fill_(dead_end, -1)[which]
        node = torch.where(dead_end, row_start + last, step)[which]
        visited.scatter_(0, node, True)
        found.append(current.view(batch_size, -1))
    return torch.cat(found, dim=1) if found else start.new_zeros(batch_size, 0)


def strongest_unvisited(
    graph: LongtermGraph, nodes: torch.Tensor, rows_batch: torch.Tensor, visited: torch.Tensor
) -> torch.Tensor:
    """For each flat node [Unique] (ascending), the first local position with the largest count among the unvisited
    ones of its batch row ``rows_batch`` [Unique] (all visited: 0); ``visited`` is bool [B * T]."""
    counts, ltm_slots = graph.counts, graph.nodes
    batch_size, capacity = counts.shape[:2]
    num_ltm = ltm_slots.size(1)
    visited = visited.view(batch_size, num_ltm)
    if nodes.numel() * num_ltm <= WALK_SPLIT_ELEMENTS:
        # whole count rows are contiguous: copy them first, then pick the long-term columns from the copies
        physical_rows = ltm_slots.flatten().index_select(0, nodes) + rows_batch * capacity
        rows = counts.view(-1, capacity).index_select(0, physical_rows).gather(1, ltm_slots.index_select(0, rows_batch))
        return rows.masked_fill_(visited.index_select(0, rows_batch), -1).argmax(dim=1)
    # Large steps (the first one reads a row per start) go one batch row at a time, where the column index broadcasts
    # instead of being a [Unique, T] int64 tensor that costs more than the counts it picks.
    steps = []
    sizes = torch.bincount(rows_batch, minlength=batch_size).tolist()
    for batch, batch_nodes in enumerate(nodes.split(sizes)):
        if batch_nodes.numel():
            rows = counts[batch].index_select(0, ltm_slots.flatten().index_select(0, batch_nodes))
            rows = rows.gather(1, ltm_slots[batch].expand(batch_nodes.numel(), -1))
            steps.append(rows.masked_fill_(visited[batch], -1).argmax(dim=1))
    return torch.cat(steps)
