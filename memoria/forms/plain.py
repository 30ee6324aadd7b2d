"""The plain torch form of every operation: the executable spec, on any device.

Counts are indexed ``counts[b, i, j]``; an index of -1 means "none" everywhere (it reads as padding and is never
written). Every fast form in this package is tested equal to the form here (``tests/test_forms.py``).

Shapes (the legend of ``docs/algorithm.md``): B batch rows, M memory length, D hidden size, N the count matrix's side
(the store's physical slots), T long-term entries, K entries of an index list.
"""

from typing import Callable, List, NamedTuple, Optional, Tuple, Union

import torch

from .registry import operation

#: What a walk's result holds where there is nothing (the GPU form's padding): ``super_unique(..., ignore=ABSENT)``
#: leaves it out.
ABSENT = -(2**62)
#: Most entries ``super_unique``'s occupancy mask may have (int32, 8 GiB): value ranges beyond it are refused.
MAX_OCCUPANCY = 2**31


class LongtermGraph(NamedTuple):
    """The co-firing graph among the long-term engrams of every row, read in place from the counts.

    Attributes:
        counts: [B, N, N] co-firing counts (the store's physical slots, or an ``Engrams``' positions).
        nodes: [B, T] where each long-term position's counts lie in ``counts`` (padding: any valid one).
        padding: bool [B, T], true where a row has fewer long-term engrams than the widest row.
        positions: [B, T] where each long-term engram sits in the memory (global index), -1 at padding.

    Counts between two long-term engrams are never negative (new engrams start at 0 against everything, co-firing
    only adds, and only NULL padding holds -1; states assigned or loaded are checked for it, ``memoria.checkpoint``):
    the GPU walk relies on it.
    """

    counts: torch.Tensor
    nodes: torch.Tensor
    padding: torch.Tensor
    positions: torch.Tensor


def mask_with_indices(indices: torch.Tensor, length: int) -> torch.Tensor:
    """Bool mask shaped [B, length] that is true at ``indices`` [B, K]; negative entries ignored."""
    mask = torch.zeros(indices.size(0), length + 1, dtype=torch.bool, device=indices.device)
    mask.scatter_(1, torch.where(indices < 0, length, indices).long(), True)
    return mask[:, :length]


@operation("mask")
def indices_with_mask(mask: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
    """Positions of the true entries of every row, ascending, left-padded with ``-1``.

    Args:
        mask: bool [B, M].
        width: the largest true count over rows, where the caller knows it (else it is read from ``mask``).
    Returns:
        int64 [B, K], K being the largest true count over rows.
    """
    batch_size, length = mask.shape
    counts = mask.sum(dim=1)
    if width is None:
        width = int(counts.max()) if counts.numel() else 0
    # a true entry of rank r (counted from 1) in a row with n trues lands in column width - n + r - 1; false entries
    # go to a spare column
    column = torch.where(mask, mask.cumsum(dim=1).add_((width - 1 - counts).unsqueeze(1)), width)
    positions = torch.arange(length, device=mask.device).expand(batch_size, length)
    out = torch.full((batch_size, width + 1), -1, dtype=torch.long, device=mask.device)
    out.scatter_(1, column, positions)
    return out[:, :width].contiguous()


@operation("masks")
def indices_with_masks(
    masks: Union[List[torch.Tensor], torch.Tensor],
    widths: Optional[List[int]] = None,
    indices_with_mask: Callable = indices_with_mask,
) -> List[torch.Tensor]:
    """``indices_with_mask`` (that form, by default this module's) of several [B, M] masks (a list,
    or stacked [NumMasks, B, M]), their ``widths`` read from the device at once where the caller
    does not know them."""
    if widths is None and (len(masks) == 0 or masks[0].numel() == 0):
        return [indices_with_mask(mask) for mask in masks]
    return [indices_with_mask(mask, width) for mask, width in zip(masks, widest(masks) if widths is None else widths)]


def widest(masks: Union[List[torch.Tensor], torch.Tensor]) -> List[int]:
    """The largest true count over rows of each [B, M] mask, read from the device at once."""
    return torch.stack([mask.sum(dim=1).max() for mask in masks]).tolist()


@operation("t")
def super_unique(t: torch.Tensor, dim: int, ignore: Optional[int] = None) -> torch.Tensor:
    """Distinct values of every slice of ``t`` along ``dim``, padded with -1, in the order ``torch.topk`` gives for
    the largest entries of a 0/1 occupancy mask over the value range (observable, so kept): see ``utils.super_unique``.

    ``ignore``: a value that stands for "not there" (``ABSENT``; along the last dim only): left out of the value range
    and of the widths, so the result is that of ``t`` without those entries.
    """
    if ignore is None:
        low, high = (int(v) for v in torch.stack(torch.aminmax(t)).tolist())
        occupancy = _occupancy(t, dim, low, high)
        return _top_of_occupancy(occupancy, min(t.size(dim), int(occupancy.sum(dim).max())), dim, low)
    present = t != ignore
    if not bool(present.any()):
        return t.new_empty(*t.shape[:-1], 0)
    low = int(t.masked_fill(~present, torch.iinfo(t.dtype).max).min())
    high = int(t.masked_fill(~present, torch.iinfo(t.dtype).min).max())
    occupancy = _occupancy(t, dim, low, high, present)
    width = min(int(present.sum(dim).max()), int(occupancy.sum(dim).max()))
    return _top_of_occupancy(occupancy, width, dim, low)


def _occupancy(t: torch.Tensor, dim: int, low: int, high: int, present: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[..., high - low + 1, ...] int32: 1 where the value (shifted by ``low``) occurs in the slice along ``dim``
    (among the ``present`` entries, where given: the others go to a spare column, cut off)."""
    shape = list(t.shape)
    shape[dim] = high - low + 1
    if t.numel() // t.size(dim) * shape[dim] > MAX_OCCUPANCY:
        raise ValueError(
            f"t's values span {low}..{high}: the occupancy mask of {t.numel() // t.size(dim)} slices by that range "
            f"exceeds {MAX_OCCUPANCY} entries"
        )
    if present is None:
        occupancy = torch.zeros(shape, dtype=torch.int32, device=t.device)
        return occupancy.scatter_(dim, (t - low).long(), 1)
    shape[dim] += 1
    occupancy = torch.zeros(shape, dtype=torch.int32, device=t.device)
    occupancy.scatter_(dim, (t - low).masked_fill_(~present, high - low + 1).long(), 1)
    return occupancy.narrow(dim, 0, high - low + 1)


def _top_of_occupancy(occupancy: torch.Tensor, width: int, dim: int, low: int) -> torch.Tensor:
    present, values = occupancy.topk(width, dim=dim)
    return (values + low).masked_fill_(present == 0, -1)


@operation("values")
def gather_slots(values: torch.Tensor, indices: torch.Tensor, fill_value: float = 0) -> torch.Tensor:
    """Per-row gather along axis 1 with -1 meaning "none".

    Args:
        values: [B, M, *Rest].
        indices: [B, K] entries in -1..M-1.
        fill_value: value of the -1 entries.
    Returns:
        [B, K, *Rest].
    """
    shape = (*indices.shape, *values.shape[2:])
    if values.size(1) == 0:
        return values.new_full(shape, fill_value)
    batch_offset = torch.arange(indices.size(0), device=indices.device).unsqueeze(1) * values.size(1)
    picked = values.flatten(0, 1).index_select(0, (indices.clamp(min=0) + batch_offset).flatten()).view(shape)
    null = (indices < 0).view(*indices.shape, *([1] * (values.dim() - 2)))
    return picked.masked_fill_(null, fill_value)


@operation("counts")
def pair_gather(counts: torch.Tensor, rows: torch.Tensor, columns: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``counts[b, rows[b, i], columns[b, j]]`` [B, R, C], -1 wherever a row or column index is -1.

    Args:
        counts: [B, N, N].
        rows: [B, R]; columns: [B, C] (defaults to ``rows``).
    """
    columns = rows if columns is None else columns
    # whole rows are contiguous, so take them first; the column pick then runs over R rows instead of N
    picked = gather_slots(counts, rows, fill_value=-1)
    picked = picked.gather(2, columns.clamp(min=0).unsqueeze(1).expand(-1, rows.size(1), -1))
    return picked.masked_fill_((columns < 0).unsqueeze(1), -1)


def distinct(indices: torch.Tensor) -> torch.Tensor:
    """Every value of each row of ``indices`` [B, K] once, ascending; repeats become -1 (shape kept)."""
    ordered = indices.sort(dim=1).values
    ordered[:, 1:].masked_fill_(ordered[:, 1:] == ordered[:, :-1], -1)
    return ordered


@operation("counts")
def fire_together(counts: torch.Tensor, indices: torch.Tensor, spare: bool = False) -> None:
    """Add 1 to ``counts[b, i, j]`` for every pair i, j of the distinct non-negative ``indices[b]``, in place.

    Args:
        counts: [B, N, N].
        indices: [B, K] in -1..N-1 (any negative is none), repeats allowed (each engram fires once).
        spare: row and column N - 1 are read by nobody, so a form may write there for a -1 entry (none is then -1
            only, no other negative).
    """
    fired = distinct(indices)
    valid = fired >= 0
    safe = fired.clamp(min=0)
    batch = torch.arange(fired.size(0), device=fired.device).view(-1, 1, 1)
    # [B, K, K]: 1 for each pair of fired engrams, 0 for pairs with a -1 (they all land on index 0)
    pair_valid = (valid.unsqueeze(2) & valid.unsqueeze(1)).to(counts.dtype)
    counts.index_put_((batch, safe.unsqueeze(2), safe.unsqueeze(1)), pair_valid, accumulate=True)


@operation("counts")
def fill_slots(
    counts: torch.Tensor, slots: torch.Tensor, value: int, all_valid: bool = False, spare: bool = False
) -> None:
    """Set the rows and columns of ``slots`` [B, K] (-1 skipped) in ``counts`` [B, N, N] to ``value``
    (``all_valid``: the caller knows no entry is -1; ``spare``: row and column N - 1 are read by nobody, so a form
    may write there for a -1 entry; the forms that need neither hint ignore it)."""
    chosen = mask_with_indices(slots, counts.size(1))
    counts.masked_fill_(chosen.unsqueeze(2) | chosen.unsqueeze(1), value)


@operation("slots")
def free_slots(slots: torch.Tensor, capacity: int, width: int) -> torch.Tensor:
    """[B, width] slots in 0..capacity-1 that no entry of ``slots`` [B, M] names, ascending (every row
    has capacity - M >= width of them)."""
    free = torch.ones(slots.size(0), capacity, dtype=torch.uint8, device=slots.device)
    free.scatter_(1, slots, 0)
    # a stable sort keeps the free slots (1s, first) in ascending order
    return free.sort(dim=1, descending=True, stable=True).indices[:, :width]


@operation("slots")
def padding_slots(slots: torch.Tensor, padding: torch.Tensor, capacity: int) -> torch.Tensor:
    """The slots [B, Width] of a compaction, where ``padding`` (bool, the first columns of a row) holds slots of
    dead engrams that may be given to the padding: any slots in 0..capacity-1 that no survivor uses will do, distinct.
    Here the dead engrams' own."""
    return slots


@operation("data")
def zero_vectors(data: torch.Tensor, slots: torch.Tensor, offsets: Optional[torch.Tensor] = None) -> None:
    """Zero the vectors of ``slots`` [B, K] (-1 skipped) in ``data`` [B, N + 1, D], whose last
    slot is zero for ever: a -1 entry writes 0 there (``offsets``: each batch row's first row in ``data`` seen as
    [B * (N + 1), D], where the caller has them)."""
    if offsets is None:
        offsets = torch.arange(slots.size(0), device=slots.device).unsqueeze(1) * data.size(1)
    # -1 % (N + 1) is the zero slot
    rows = slots.remainder(data.size(1)) + offsets
    data.view(-1, data.size(2)).index_fill_(0, rows.flatten(), 0)


def slots_at(slots: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Physical slots [B, K] of logical ``indices`` [B, K] in the map ``slots`` [B, M]; -1 stays
    -1."""
    return torch.where(indices >= 0, slots.gather(1, indices.clamp(min=0)), -1)


@operation("rows")
def strongest_longterm(
    counts: torch.Tensor,
    slots: torch.Tensor,
    rows: torch.Tensor,
    ltm_mask: torch.Tensor,
    ltm_indices: torch.Tensor,
    generator: Optional[torch.Generator],
) -> torch.Tensor:
    """For each entry, the long-term engram its row co-fired with most, ties broken by one random draw.

    Args:
        counts: [B, N, N] co-firing counts by physical slot.
        slots: [B, M] the physical slot of every logical position (M: the memory length).
        rows: [B, K] the engram whose counts each entry reads (0..M-1).
        ltm_mask: bool [B, M]; ltm_indices: its ``indices_with_mask``.
        generator: the draw's source (None: the global RNG of the rows' device).
    Returns:
        [B, K] global indices, -1 where the pick is not long-term.
    """
    batch_size, num_entries = rows.shape
    # one float16 draw of this shape per step, used or not: the RNG stream it advances is observable
    noise = torch.rand(
        (batch_size, num_entries, slots.size(1)), dtype=torch.float16, device=rows.device, generator=generator
    )
    if ltm_indices.size(1) == 0 or num_entries == 0:
        return torch.full_like(rows, -1)
    # [B, K, M] the counts of each entry's row against every position
    counts = pair_gather(counts, slots.gather(1, rows), slots).masked_fill_(~ltm_mask.unsqueeze(1), -1)
    best = counts == counts.max(dim=2, keepdim=True).values
    choice = noise.masked_fill_(~best, 0).argmax(dim=2)
    return choice.masked_fill(~ltm_mask.gather(1, choice), -1)


@operation("start")
def walk(graph: LongtermGraph, start: torch.Tensor, depth: int) -> torch.Tensor:
    """The long-term graph walk: from each start, ``depth`` steps to the strongest unvisited neighbour.

    All walkers of a row share one visited set and step together. A walker at a dead end (every neighbour visited)
    reports -1 and stands on the last long-term position from then on, as does a start of -1 (quirk R3).

    Args:
        graph: the long-term co-firing graph.
        start: [B, K] local positions of long-term engrams (never padding), -1 for none.
    Returns:
        [B, depth * K] the local position each walker reached at each depth (depth-major), -1 at dead ends.
    """
    batch_size, num_ltm = graph.nodes.shape
    last = num_ltm - 1
    # [B, T, T] counts among the long-term engrams
    dense = pair_gather(graph.counts, graph.nodes)
    visited = graph.padding.clone()
    node = torch.where(start < 0, last, start)
    visited.scatter_(1, node, True)
    found = []
    for _ in range(depth):
        neighbours = dense.gather(1, node.unsqueeze(2).expand(-1, -1, num_ltm))
        step = neighbours.masked_fill_(visited.unsqueeze(1), -1).argmax(dim=2)
        dead_end = visited.gather(1, step)
        found.append(step.masked_fill(dead_end, -1))
        node = torch.where(dead_end, last, step)
        visited.scatter_(1, node, True)
    return torch.cat(found, dim=1) if found else start.new_zeros(batch_size, 0)


def local_mask(partial_mask: torch.Tensor, global_indices: torch.Tensor, width: int) -> torch.Tensor:
    """bool [B, width]: true at the local positions (in the compacted, left-padded list of ``partial_mask``
    [B, M], ``width`` its widest row) of the ``global_indices`` [B, K] in that list."""
    counts = partial_mask.sum(dim=1, keepdim=True)
    local_position = partial_mask.cumsum(dim=1) - 1 + (width - counts)
    chosen = mask_with_indices(global_indices, partial_mask.size(1)) & partial_mask
    marked = torch.zeros(partial_mask.size(0), width + 1, dtype=torch.bool, device=partial_mask.device)
    marked.scatter_(1, torch.where(chosen, local_position, width), True)
    return marked[:, :width]


@operation("initial")
def walk_from(
    graph: LongtermGraph,
    ltm_mask: torch.Tensor,
    initial: torch.Tensor,
    depth: int,
    walk: Callable = walk,
    indices_with_mask: Callable = indices_with_mask,
) -> torch.Tensor:
    """The walk from the long-term engrams among ``initial`` [B, K] (global indices, read as a set).

    Returns:
        [B, (depth + 1) * Starts]: the starts (local positions, left-padded with -1) and, depth-major, what
        the walk found (``walk``).
    """
    start = indices_with_mask(local_mask(ltm_mask, initial, graph.nodes.size(1)))
    return torch.cat([start, walk(graph, start, depth)], dim=1)


@operation("columns")
def first_max_at_columns(
    length: int,
    columns: torch.Tensor,
    candidates: torch.Tensor,
    candidate_of_entry: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw ``rand([B, Entries, length], float16)`` and, per entry, take the first maximum over its candidates.

    Args:
        length: the draw's last dimension (the memory length).
        columns: [B, Columns] ascending positions in 0..length-1 where the draw is read; -1 padding.
        candidates: bool [B, Rows, Columns], the columns each candidate row may pick (never a -1 column).
        candidate_of_entry: [B, Entries] which candidate row each entry uses.
        generator: the draw's source (None: the global RNG of ``columns``' device).
    Returns:
        position: [B, Entries] index into ``columns`` of the first column holding the entry's largest draw
            among its candidates.
        drew: bool [B, Entries], false where every candidate drew 0 (the published argmax then takes column 0
            of the whole row).
    """
    batch_size, num_entries = candidate_of_entry.shape
    noise = torch.rand(
        (batch_size, num_entries, length), dtype=torch.float16, device=columns.device, generator=generator
    )
    read = noise.gather(2, columns.clamp(min=0).unsqueeze(1).expand(-1, num_entries, -1))
    allowed = candidates.gather(1, candidate_of_entry.unsqueeze(2).expand(-1, -1, columns.size(1)))
    # non-negative halves order like their int16 bit patterns: the argmax runs on integers, with the same first max
    masked = read.view(torch.int16) * allowed
    position = masked.argmax(dim=2)
    drew = masked.gather(2, position.unsqueeze(2)).squeeze(2) > 0
    return position, drew


@operation("device")
def advance(shape: Tuple[int, ...], device: torch.device, generator: Optional[torch.Generator] = None) -> None:
    """Spend the RNG as ``torch.rand(shape, dtype=float16)`` does, the values unkept."""
    torch.rand(shape, dtype=torch.float16, device=device, generator=generator)


@operation("mask")
def may_hold_any(mask: torch.Tensor) -> bool:
    """Whether ``mask`` has a true entry (callers skip work that would change nothing)."""
    return bool(mask.any())
