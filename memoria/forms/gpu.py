"""GPU forms: torch ops that never make the host wait for the device (no host reads, no data-dependent shapes).

Shapes as in ``plain.py``: B batch rows, M memory length, D hidden size, N slots, T long-term entries, K entries.
"""

from typing import List, Optional, Union

import torch

from . import plain
from .plain import LongtermGraph
from .ranges import arange, batch_index, constant
from .registry import form


@form("gpu")
def fire_together(counts: torch.Tensor, indices: torch.Tensor, spare: bool = False) -> None:
    """``plain.fire_together`` as whole rows: each fired engram's row gains a [N] row of 1s at the fired columns.

    With a ``spare`` last row and column, the -1 entries fire there and repeats need not be found: every copy of a
    row writes the same new row (its old one plus the fired columns).

    Without one: a GPU adds up repeated targets of an accumulating ``index_put_`` one after another, so element pairs
    (the -1 entries all land on index 0) would run serially. Here each batch row has K distinct targets, and a -1
    entry, sent to its own position, adds a row of 0s there.
    """
    length = counts.size(2)
    if spare:
        # (-1 % N is the spare)
        fired = indices.remainder(length)
        columns = torch.zeros(fired.size(0), length, dtype=counts.dtype, device=fired.device).scatter_(1, fired, 1)
        batch = batch_index(fired.size(0), fired.device)
        counts[batch, fired] = counts[batch, fired] + columns.unsqueeze(1)
        return
    fired = plain.distinct(indices)
    valid = fired >= 0
    position = arange(fired.size(1), fired.device) % length
    safe = torch.where(valid, fired, position)
    ones = valid.to(counts.dtype)
    # [B, N] 1 at every fired column (fired entries are distinct, the 0s may land anywhere)
    columns = torch.zeros(fired.size(0), length, dtype=counts.dtype, device=fired.device)
    columns.scatter_add_(1, safe, ones)
    batch = batch_index(fired.size(0), fired.device)
    counts.index_put_((batch, safe), ones.unsqueeze(2) * columns.unsqueeze(1), accumulate=True)


@form("gpu")
def fill_slots(
    counts: torch.Tensor, slots: torch.Tensor, value: int, all_valid: bool = False, spare: bool = False
) -> None:
    """``plain.fill_slots`` touching only the chosen rows and columns, without picking the valid entries out.

    With a ``spare`` last row and column, a -1 entry fills that one. Otherwise a -1 entry of a row that fills some slot
    fills that slot once more; in a row that fills none, every entry rewrites index 0 as it is. ``all_valid``: the
    caller knows there is no -1 entry (new slots), so none is looked for.
    """
    if slots.size(1) == 0:
        return
    if spare:
        slots, all_valid = slots.remainder(counts.size(1)), True
    if all_valid:
        batch = batch_index(slots.size(0), slots.device)
        counts.index_put_((batch, slots), constant(value, counts.device, counts.dtype))
        counts.scatter_(2, slots.unsqueeze(1).expand(-1, counts.size(1), -1), value)
        return
    valid = slots >= 0
    first = slots.max(dim=1, keepdim=True).values
    target = torch.where(valid, slots, first.clamp(min=0))
    fill = (first >= 0).unsqueeze(2)
    batch = batch_index(slots.size(0), slots.device)
    counts[batch, target] = torch.where(fill, value, counts[batch, target])
    # columns along the last axis with the targets innermost, so that neighbouring threads touch neighbouring slots
    columns = target.unsqueeze(1).expand(-1, counts.size(1), -1)
    counts.scatter_(2, columns, torch.where(fill, value, counts.gather(2, columns)))


@form("gpu")
def strongest_longterm(
    counts: torch.Tensor,
    slots: torch.Tensor,
    rows: torch.Tensor,
    ltm_mask: torch.Tensor,
    ltm_indices: torch.Tensor,
    generator: Optional[torch.Generator],
) -> torch.Tensor:
    """``plain.strongest_longterm`` with the counts read by one index (the rows name engrams, never -1)."""
    batch_size, num_entries = rows.shape
    noise = torch.rand(
        (batch_size, num_entries, slots.size(1)), dtype=torch.float16, device=rows.device, generator=generator
    )
    if ltm_indices.size(1) == 0 or num_entries == 0:
        return torch.full_like(rows, -1)
    none = constant(-1, rows.device)
    # [B, K, M] the counts of each entry's row against every position
    batch = batch_index(batch_size, rows.device, 3)
    row_counts = counts[batch, slots.gather(1, rows).unsqueeze(2), slots.unsqueeze(1)]
    row_counts = torch.where(ltm_mask.unsqueeze(1), row_counts, none)
    # the draws are non-negative: times 0 where not best is the plain form's fill with 0
    choice = (noise * (row_counts == row_counts.amax(dim=2, keepdim=True))).argmax(dim=2)
    return torch.where(ltm_mask.gather(1, choice), choice, none)


# Entries of the walk's copy of the long-term counts (int32) above which it reads rows from the counts instead: 1 GiB
WALK_COPY_ELEMENTS = 1 << 28


@form("gpu")
def walk(graph: LongtermGraph, start: torch.Tensor, depth: int) -> torch.Tensor:
    """``plain.walk`` in three ops a depth, on a copy of the long-term counts with a sentinel node in front.

    Index 0 of the [B, T + 1, T + 1] copy is the sentinel: its row is the last node's and its column
    -1; node j is index j + 1. A visited node's column is set to -1 in every row. Counts between long-term engrams are
    never negative (``LongtermGraph``) and walkers stand on long-term engrams, so a walker sees only -1s exactly when
    every node is visited (a dead end): the first maximum is then the sentinel, which reports -1 and walks on as the
    last node, where the plain walk's dead ends stand (quirk R3; it is visited already). Otherwise the first maximum
    is the plain walk's step. So there is no visited mask and no dead-end test.

    The copy is at most the size of the counts; above ``WALK_COPY_ELEMENTS`` entries the walk reads the walkers' rows
    from the counts at every depth instead (``walk_reading_rows``: 9 ops a depth, no copy).
    """
    counts, nodes = graph.counts, graph.nodes
    batch_size, num_ltm = nodes.shape
    if depth == 0 or start.size(1) == 0:
        return start.new_zeros(batch_size, 0)
    if batch_size * (num_ltm + 1) ** 2 > WALK_COPY_ELEMENTS:
        return walk_reading_rows(graph, start, depth)
    with_sentinel = torch.cat([nodes[:, -1:], nodes], dim=1)
    batch = batch_index(batch_size, start.device, 3)
    dense = counts[batch, with_sentinel.unsqueeze(2), with_sentinel.unsqueeze(1)]
    dense.select(2, 0).fill_(-1)
    dense[:, :, 1:].masked_fill_(graph.padding.unsqueeze(1), -1)
    width = num_ltm + 1
    # a start of -1 stands on the last node (R3), whose index is -1 % T + 1
    node = start.remainder(num_ltm).add_(1)
    found = torch.empty(batch_size, depth, start.size(1), dtype=torch.long, device=start.device)
    for step_index in range(depth):
        dense.scatter_(2, node.unsqueeze(1).expand(-1, width, -1), -1)
        rows = dense.gather(1, node.unsqueeze(2).expand(-1, -1, width))
        node = found[:, step_index]
        torch.argmax(rows, dim=2, out=node)
    return found.sub_(1).view(batch_size, -1)


def walk_reading_rows(graph: LongtermGraph, start: torch.Tensor, depth: int) -> torch.Tensor:
    """``plain.walk`` reading each walker's row straight from the counts at every depth (no copy of them).

    Walkers on the same node read its row twice: finding the distinct ones would make the host wait every depth.
    """
    counts, ltm_slots = graph.counts, graph.nodes
    batch_size, num_ltm = ltm_slots.shape
    capacity = counts.size(1)
    last = num_ltm - 1
    # [B, T] the row of each long-term engram in the counts seen as [B * N, N]
    count_rows = ltm_slots + batch_index(batch_size, start.device) * capacity
    flat_counts = counts.view(-1, capacity)
    columns = ltm_slots.unsqueeze(1).expand(-1, start.size(1), -1)
    visited = graph.padding.clone()
    node = start.masked_fill(start < 0, last)
    visited.scatter_(1, node, True)
    found = torch.empty(batch_size, depth, start.size(1), dtype=torch.long, device=start.device)
    none = constant(-1, start.device)
    for step_index in range(depth):
        # [B, K, T] the walkers' rows at the long-term columns
        rows = flat_counts.index_select(0, count_rows.gather(1, node).flatten()).view(batch_size, -1, capacity)
        step = rows.gather(2, columns).masked_fill_(visited.unsqueeze(1), -1).argmax(dim=2)
        dead_end = visited.gather(1, step)
        torch.where(dead_end, none, step, out=found[:, step_index])
        node = step.masked_fill_(dead_end, last)
        visited.scatter_(1, node, True)
    return found.view(batch_size, -1)


@form("gpu")
def indices_with_mask(mask: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
    """``plain.indices_with_mask`` by one sort: false entries as -1, true ones as their position; the last ``width``
    columns of the sorted rows are the left-padded positions."""
    if width is None:
        width = int(mask.sum(dim=1).max()) if mask.numel() else 0
    length = mask.size(1)
    keys = torch.where(mask, arange(length, mask.device), constant(-1, mask.device))
    if width > length:  # more columns than the mask has: the extra ones are padding
        keys = torch.cat([keys.new_full((mask.size(0), width - length), -1), keys], dim=1)
        length = width
    return keys.sort(dim=1).values[:, length - width :]


@form("gpu")
def indices_with_masks(
    masks: Union[List[torch.Tensor], torch.Tensor], widths: Optional[List[int]] = None
) -> List[torch.Tensor]:
    """``plain.indices_with_masks`` by one sort of the stacked masks, the widths (where not known) read at once."""
    if len(masks) == 0 or masks[0].numel() == 0:
        return plain.indices_with_masks(masks, widths, indices_with_mask)
    stacked = masks if isinstance(masks, torch.Tensor) else torch.stack(masks)
    length = stacked.size(2)
    keys = torch.where(stacked, arange(length, stacked.device), constant(-1, stacked.device)).sort(dim=2).values
    # the last `width` columns of the sorted keys are the left-padded positions (a width never exceeds the length)
    return [keys[k, :, length - width :] for k, width in enumerate(plain.widest(masks) if widths is None else widths)]


@form("gpu")
def gather_slots(values: torch.Tensor, indices: torch.Tensor, fill_value: float = 0) -> torch.Tensor:
    """``plain.gather_slots``; a [B, M] field gains a column of ``fill_value`` that -1 picks."""
    if values.dim() != 2 or values.size(1) == 0:
        return plain.gather_slots(values, indices, fill_value)
    padded = torch.cat([values, values.new_full((values.size(0), 1), fill_value)], dim=1)
    return padded.gather(1, indices.remainder(values.size(1) + 1))


@form("gpu")
def super_unique(t: torch.Tensor, dim: int, ignore: Optional[int] = None) -> torch.Tensor:
    """``plain.super_unique`` with one host read: the value range and the width (the most distinct values in a slice,
    counted on a sorted copy) come back together.

    ``ignore`` sorts below every index, so the range read as it is tells apart the cases: no entry ignored (the
    smallest is not ``ignore``), all of them (the largest is), or some, which the fixed-width walk never makes: that
    case reads again.
    """
    if t.numel() == 0:
        return t.new_empty(*t.shape[:dim], 0, *t.shape[dim + 1 :])
    ordered = t.sort(dim=dim).values
    length = t.size(dim)
    distinct = (ordered.narrow(dim, 1, length - 1) != ordered.narrow(dim, 0, length - 1)).sum(dim=dim)
    low, high, width = torch.stack([*torch.aminmax(t), distinct.max()]).tolist()
    if ignore is not None and high == ignore:
        return t.new_empty(*t.shape[:-1], 0)
    if ignore is not None and low == ignore:
        return plain.super_unique(t, dim, ignore)
    if t.numel() // length * (high - low + 1) > plain.MAX_OCCUPANCY:
        return plain.super_unique(t, dim, ignore)  # which refuses the range
    occupancy = torch.zeros(*t.shape[:dim], high - low + 1, *t.shape[dim + 1 :], dtype=torch.int32, device=t.device)
    occupancy.scatter_(dim, (t - low).long(), 1)
    return plain._top_of_occupancy(occupancy, min(length, width + 1), dim, low)


@form("gpu")
def walk_from(graph: LongtermGraph, ltm_mask: torch.Tensor, initial: torch.Tensor, depth: int) -> torch.Tensor:
    """``plain.walk_from`` without reading how many starts the widest row has: every row gets as many walkers as the
    most it can have.

    What the extra walkers must not change: a row whose starts the published list pads has -1 walkers, which stand on
    the last long-term engram (quirk R3); any number of them walks as one, so more change nothing. A row that is not
    padded there must get no -1 walker. The extra columns are those that are -1 in every row (the list is left-padded,
    so they come first); each copies its row's last column, a start wherever the row has one, and walks as that one
    does (the repeats vanish in ``super_unique``). Where no row has a start, nothing was walked: the result is
    ``ABSENT``.
    """
    batch_size, num_ltm = graph.positions.shape
    # a row has at most as many starts as entries, and as long-term engrams: both widths are known on the host
    width = min(initial.size(1), num_ltm)
    if width == 0:
        return initial.new_empty(batch_size, 0)
    # [B, T] the long-term engrams among the initial ones (padding -1 must not match a -1 entry)
    marked = (graph.positions.unsqueeze(2) == initial.unsqueeze(1)).any(dim=2).masked_fill_(graph.padding, False)
    start = indices_with_mask(marked, width)
    extra = (start < 0).all(dim=0)
    start = torch.where(extra, start[:, -1:], start)
    walked = torch.cat([start, walk(graph, start, depth)], dim=1)
    return walked.masked_fill_(extra[-1], plain.ABSENT)


@form("gpu")
def may_hold_any(mask: torch.Tensor) -> bool:
    """Always true: the answer would cost a host round trip, and the work it could skip is a no-op anyway."""
    return True
