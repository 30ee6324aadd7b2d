"""GPU forms: torch ops that never make the host wait for the device (no host reads, no data-dependent shapes)."""

from typing import List, Optional

import torch

from . import plain
from .plain import LongtermGraph


def fire_together(counts: torch.Tensor, indices: torch.Tensor) -> None:
    """``plain.fire_together`` as whole rows: each fired engram's row gains a [N] row of 1s at the fired columns.

    A GPU adds up repeated targets of an accumulating ``index_put_`` one after another, so element pairs (the -1
    entries all land on index 0) would run serially. Here each batch row has K distinct targets, and a -1 entry, sent
    to its own position, adds a row of 0s there.
    """
    fired = plain.distinct(indices)
    length = counts.size(2)
    valid = fired >= 0
    position = torch.arange(fired.size(1), device=fired.device) % length
    safe = torch.where(valid, fired, position)
    ones = valid.to(counts.dtype)
    # [BatchSize, N] 1 at every fired column (fired entries are distinct, the 0s may land anywhere)
    columns = torch.zeros(fired.size(0), length, dtype=counts.dtype, device=fired.device)
    columns.scatter_add_(1, safe, ones)
    batch = torch.arange(fired.size(0), device=fired.device).unsqueeze(1)
    counts.index_put_((batch, safe), ones.unsqueeze(2) * columns.unsqueeze(1), accumulate=True)


def fill_slots(counts: torch.Tensor, slots: torch.Tensor, value: int, all_valid: bool = False) -> None:
    """``plain.fill_slots`` touching only the chosen rows and columns, without picking the valid entries out.

    A -1 entry of a row that fills some slot fills that slot once more; in a row that fills none, every entry
    rewrites index 0 as it is. ``all_valid``: the caller knows there is no -1 entry (new slots), so none is looked for.
    """
    if slots.size(1) == 0:
        return
    if all_valid:
        batch = torch.arange(slots.size(0), device=slots.device).unsqueeze(1)
        counts.index_put_((batch, slots), counts.new_full((), value))
        counts.scatter_(2, slots.unsqueeze(1).expand(-1, counts.size(1), -1), value)
        return
    valid = slots >= 0
    first = slots.max(dim=1, keepdim=True).values
    target = torch.where(valid, slots, first.clamp(min=0))
    fill = (first >= 0).unsqueeze(2)
    batch = torch.arange(slots.size(0), device=slots.device).unsqueeze(1)
    counts[batch, target] = torch.where(fill, value, counts[batch, target])
    # columns along the last axis with the targets innermost, so that neighbouring threads touch neighbouring slots
    columns = target.unsqueeze(1).expand(-1, counts.size(1), -1)
    counts.scatter_(2, columns, torch.where(fill, value, counts.gather(2, columns)))


def walk(graph: LongtermGraph, start: torch.Tensor, depth: int) -> torch.Tensor:
    """``plain.walk`` reading each walker's row straight from the counts (no [BatchSize, NumLTM, NumLTM] copy).

    Walkers on the same node read its row twice: finding the distinct ones would make the host wait every depth.
    """
    counts, ltm_slots = graph.counts, graph.nodes
    batch_size, num_ltm = ltm_slots.shape
    capacity = counts.size(1)
    last = num_ltm - 1
    # [BatchSize, NumLTM] the row of each long-term engram in the counts seen as [BatchSize * Capacity, Capacity]
    count_rows = ltm_slots + torch.arange(batch_size, device=start.device).unsqueeze(1) * capacity
    flat_counts = counts.view(-1, capacity)
    columns = ltm_slots.unsqueeze(1).expand(-1, start.size(1), -1)
    visited = graph.padding.clone()
    node = start.masked_fill(start < 0, last)
    visited.scatter_(1, node, True)
    found = torch.empty(batch_size, depth, start.size(1), dtype=torch.long, device=start.device)
    none = start.new_full((), -1)
    for step_index in range(depth):
        # [BatchSize, K, NumLTM] the walkers' rows at the long-term columns
        rows = flat_counts.index_select(0, count_rows.gather(1, node).flatten()).view(batch_size, -1, capacity)
        step = rows.gather(2, columns).masked_fill_(visited.unsqueeze(1), -1).argmax(dim=2)
        dead_end = visited.gather(1, step)
        torch.where(dead_end, none, step, out=found[:, step_index])
        node = step.masked_fill_(dead_end, last)
        visited.scatter_(1, node, True)
    return found.view(batch_size, -1)


def indices_with_mask(mask: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
    """``plain.indices_with_mask`` by one sort: false entries as -1, true ones as their position; the last ``width``
    columns of the sorted rows are the left-padded positions."""
    if width is None:
        width = int(mask.sum(dim=1).max()) if mask.numel() else 0
    length = mask.size(1)
    keys = torch.where(mask, torch.arange(length, device=mask.device), -1)
    if width > length:  # more columns than the mask has: the extra ones are padding
        keys = torch.cat([keys.new_full((mask.size(0), width - length), -1), keys], dim=1)
        length = width
    return keys.sort(dim=1).values[:, length - width :]


def indices_with_masks(masks: List[torch.Tensor]) -> List[torch.Tensor]:
    """``plain.indices_with_masks`` by sorts, the widths read at once."""
    return plain.indices_with_masks(masks, indices_with_mask)


def gather_slots(values: torch.Tensor, indices: torch.Tensor, fill_value: float = 0) -> torch.Tensor:
    """``plain.gather_slots``; a [BatchSize, M] field gains a column of ``fill_value`` that -1 picks."""
    if values.dim() != 2 or values.size(1) == 0:
        return plain.gather_slots(values, indices, fill_value)
    padded = torch.cat([values, values.new_full((values.size(0), 1), fill_value)], dim=1)
    return padded.gather(1, indices.remainder(values.size(1) + 1))


def super_unique(t: torch.Tensor, dim: int, ignore: Optional[int] = None) -> torch.Tensor:
    """``plain.super_unique`` with one host read: the value range and the width (the most distinct values in a slice,
    counted on a sorted copy) come back together."""
    if t.numel() == 0:
        return t.new_empty(*t.shape[:dim], 0, *t.shape[dim + 1 :])
    ordered = t.sort(dim=dim).values
    changes = ordered.diff(dim=dim) != 0
    if ignore is None:
        distinct = changes.sum(dim=dim) + 1
        low, high, width = torch.stack([*torch.aminmax(t), distinct.max()]).tolist()
        return plain._top_of_occupancy(plain._occupancy(t, dim, low, high), min(t.size(dim), width), dim, low)
    # ``ignore`` sorts first (it is below every index): a slice's distinct values are the changes after it
    present = t != ignore
    distinct = (changes & (ordered[..., 1:] != ignore)).sum(dim=dim) + (ordered[..., 0] != ignore)
    big = torch.iinfo(t.dtype).max
    low, high, width = torch.stack(
        [t.masked_fill(~present, big).min(), t.masked_fill(~present, -big).max(), distinct.max()]
    ).tolist()
    if width == 0:
        return t.new_empty(*t.shape[:-1], 0)
    occupancy = plain._occupancy(t, dim, low, high, present)
    return plain._top_of_occupancy(occupancy, width, dim, low)


def walk_from(graph: LongtermGraph, ltm_mask: torch.Tensor, initial: torch.Tensor, depth: int) -> torch.Tensor:
    """``plain.walk_from`` without reading how many starts the widest row has: every row gets as many walkers as the
    most it can have.

    What the extra walkers must not change: a row whose starts the published list pads has -1 walkers, which stand on
    the last long-term engram (quirk R3); any number of them walks as one, so more change nothing. A row that is not
    padded there must get no -1 walker: its extra walkers copy one of its own starts, and walk as that one does (the
    repeats vanish in ``super_unique``). Where no row has a start, nothing was walked: the result is ``ABSENT``.
    """
    marked = plain.local_mask(ltm_mask, initial, graph.nodes.size(1))
    # a row has at most as many starts as entries, and as long-term engrams: both widths are known on the host
    start = indices_with_mask(marked, min(initial.size(1), marked.size(1)))
    count = marked.sum(dim=1, keepdim=True)
    widest = count.max()
    # left-padded: the last column is a start wherever a row has any
    start = torch.where((start < 0) & (count == widest), start[:, -1:], start)
    walked = torch.cat([start, walk(graph, start, depth)], dim=1)
    return walked.masked_fill(widest == 0, plain.ABSENT)


def may_hold_any(mask: torch.Tensor) -> bool:
    """Always true: the answer would cost a host round trip, and the work it could skip is a no-op anyway."""
    return True
