"""Recording a row's history: one step per adjust as a few small tensors, and the model of its co-firing counts.

A step is recorded as the live engrams' ids, types, lifespans, ages and fire counts, and the ids that fired together
at that step; its ``EngramsInfo`` is built only when it is read (``queries``). The co-firing counts (the memory's
``induce_counts``) are not copied at every step: between two adjusts they change only by the remind's fire-together,
so the counts of a step are those of a stored step (a keyframe) with the co-firing op replayed on the fire sets
recorded since. ``CountModel`` checks at every step that this still holds (it does not when a step reminds twice, or
engrams were assigned or loaded) and a keyframe is stored where it does not, so that what is read back is always what
``status_summary`` gave at that step.

The co-firing rule is nowhere copied here: counts are rebuilt with ``memoria.ops.fire_together`` itself (``cofire``),
and the running check learns what one fire-together adds by calling that op (``cofiring_gains``).

Shapes: Live the live engrams of one row at one step, K the engrams that fired at one step, B batch, M memory length.
"""

from functools import lru_cache
from typing import Any, NamedTuple, Optional

import torch

from ..ops import fire_together  # the one co-firing implementation: the history's only tie to memoria.ops
from ..summary import TYPE_NAMES
from ..types import EngramsInfo

TYPE_VALUES = {name: value for value, name in TYPE_NAMES.items()}
#: A keyframe is stored once the count model holds more fire events than this per live engram (and 4096), so that
#: its check costs O(Live) per step however long the history runs.
EVENTS_PER_ENGRAM = 16


def cofire(counts: torch.Tensor, fired: torch.Tensor) -> None:
    """Co-fire the positions ``fired`` [K] (-1: none) in ``counts`` [Live, Live], in place, as the memory does."""
    fire_together(counts.unsqueeze(0), fired.unsqueeze(0))


@lru_cache(maxsize=1)
def cofiring_gains() -> Optional[tuple[int, int]]:
    """What one fire-together adds, as the co-firing op gives it: (to a fired engram's own count, to the count of each
    pair of distinct fired engrams); None where the op's effect is not of that form (every step then keeps a keyframe,
    which is always right, only larger)."""
    counts = torch.zeros(5, 5, dtype=torch.int32)
    cofire(counts, torch.tensor([3, 0, -1, 3, 1]))  # positions 0, 1 and 3 fire (a repeat and a none among them)
    fired = torch.tensor([True, True, False, True, False])
    own, pair = int(counts[0, 0]), int(counts[0, 1])
    expected = torch.where(fired.unsqueeze(1) & fired.unsqueeze(0), pair, 0).int()
    expected.diagonal()[fired] = own
    return (own, pair) if own > 0 and torch.equal(counts, expected) else None


class IdLookup:
    """Positions of ids inside one step's id list."""

    def __init__(self, ids: torch.Tensor) -> None:
        self.sorted_ids, self.order = ids.long().sort()

    def positions(self, query: torch.Tensor) -> torch.Tensor:
        """[N] ids -> [N] positions, -1 where the id is absent."""
        if self.sorted_ids.numel() == 0:
            return torch.full_like(query, -1, dtype=torch.long)
        query = query.long()
        found = torch.searchsorted(self.sorted_ids, query).clamp(max=self.sorted_ids.numel() - 1)
        return torch.where(self.sorted_ids[found] == query, self.order[found], -1)


class Record:
    """One step: the live engrams (every tensor [Live], memory-slot order), its fire set and its counts' base. What
    the step changed is derived from it and the previous step when asked (``changes``), not kept."""

    __slots__ = (
        "ids",
        "types",
        "lifespan",
        "age",
        "fire_counts",
        "summary",
        "cofired_ids",
        "keyframe",
        "base_step",
        "events_from",
    )

    def __init__(self) -> None:
        self.summary: Optional[EngramsInfo] = None  # kept only for summaries given to ``add_summary``
        self.cofired_ids: Optional[torch.Tensor] = None  # [K] ids in this step's fire set (recorded steps)
        self.keyframe: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None  # co-firing counts, COO
        self.base_step: Optional[int] = None  # index (in the kept records) of the step whose keyframe counts start
        self.events_from = 0  # index of the first step whose fire set adds to the counts


class Changes(NamedTuple):
    """What a step changed against the step before it."""

    #: [Live] each engram's position in the previous step, -1 for engrams new at this step.
    previous_positions: torch.Tensor
    #: bool [Live], true for engrams new at this step.
    created: torch.Tensor
    #: [F] positions of the engrams whose fire count rose (a ``Firing``: they were reminded).
    fired_positions: torch.Tensor
    #: [F] float64 lifespan each of them gained, not counting the decrement of 1 every step applies.
    gains: torch.Tensor
    #: [X] ids alive at the previous step and gone at this one.
    deleted_ids: torch.Tensor


def changes(previous: Optional[Record], record: Record, lookup: Optional[IdLookup] = None) -> Changes:
    """``record`` against ``previous`` (None: the first step, where every engram is new and nothing fired before);
    ``lookup``: ``IdLookup(previous.ids)`` where the caller has it."""
    ids = record.ids
    if previous is None:
        nothing = torch.zeros(0, dtype=torch.long)
        everything_new = torch.ones(ids.shape, dtype=torch.bool)
        return Changes(torch.full(ids.shape, -1, dtype=torch.long), everything_new, nothing, nothing.double(), nothing)
    previous_positions = (lookup or IdLookup(previous.ids)).positions(ids)  # [Live]
    created = previous_positions < 0
    survived = torch.zeros(previous.ids.numel(), dtype=torch.bool)
    survived[previous_positions[~created]] = True
    # only survivors are compared (a previous step without engrams has nothing to compare with)
    survivors = (~created).nonzero(as_tuple=True)[0]
    rose = record.fire_counts.long()[survivors] > previous.fire_counts.long()[previous_positions[survivors]]
    fired = survivors[rose]
    # Float64 like the published package's Python floats: new - old + 1 undoes the step's decrement.
    gains = record.lifespan[fired].double() - previous.lifespan[previous_positions[fired]].double() + 1.0
    return Changes(previous_positions, created, fired, gains, previous.ids[~survived].long())


class CountModel:
    """A row's co-firing counts among its live engrams, as a keyframe's entries plus the fire events since then.

    Attributes:
        base_step: index of the keyframe's record; ``events_from`` (base_step + 1) the first step of the events.
        base_i, base_j, base_values: [E] the keyframe's non-zero entries (engram ids, counts), live engrams only.
        event_steps, event_ids: [V] per live engram that fired after the keyframe: the step's index, its id.
    """

    def __init__(self, base_step: int, base_ids: tuple[torch.Tensor, torch.Tensor], base_values: torch.Tensor) -> None:
        self.base_step = base_step
        self.events_from = base_step + 1
        self.base_i, self.base_j = base_ids
        self.base_values = base_values.long()
        self.event_steps = torch.zeros(0, dtype=torch.long)
        self.event_ids = torch.zeros(0, dtype=torch.long)

    def forget(self, deleted_ids: torch.Tensor) -> None:
        """Drop every event and base entry of deleted engrams."""
        if deleted_ids.numel() == 0:
            return
        keep = ~torch.isin(self.event_ids, deleted_ids)
        self.event_steps, self.event_ids = self.event_steps[keep], self.event_ids[keep]
        keep = ~(torch.isin(self.base_i, deleted_ids) | torch.isin(self.base_j, deleted_ids))
        self.base_i, self.base_j, self.base_values = self.base_i[keep], self.base_j[keep], self.base_values[keep]

    def add(self, step: int, fired_ids: torch.Tensor) -> None:
        """The engrams ``fired_ids`` [K] fired together at step index ``step``."""
        self.event_steps = torch.cat([self.event_steps, torch.full_like(fired_ids, step)])
        self.event_ids = torch.cat([self.event_ids, fired_ids])

    def row_sums(self, lookup: IdLookup, length: int, gains: tuple[int, int]) -> torch.Tensor:
        """[Live] predicted sum of each live engram's co-firing count row over the live engrams (diagonal included)."""
        own, pair = gains
        sums = torch.zeros(length, dtype=torch.long)
        if self.event_ids.numel():
            fired_at = torch.bincount(self.event_steps - self.events_from)  # live engrams fired at each step
            # an engram that fired with n live engrams gained ``own`` and ``pair`` for each of the n - 1 others
            gained = fired_at[self.event_steps - self.events_from] * pair + (own - pair)
            sums.index_add_(0, lookup.positions(self.event_ids), gained)
        if self.base_values.numel():
            sums.index_add_(0, lookup.positions(self.base_i), self.base_values)
        return sums

    def shift(self, dropped: int) -> None:
        """The first ``dropped`` records were dropped: step indices move down by that much."""
        self.base_step -= dropped
        self.events_from -= dropped
        self.event_steps = self.event_steps - dropped


def check_max_steps(max_steps: Any) -> Optional[int]:
    """``max_steps``: None (keep every step) or an int >= 1."""
    if max_steps is None:
        return None
    if isinstance(max_steps, bool) or not isinstance(max_steps, int):
        raise TypeError(f"max_steps must be None or an int (the steps to keep), got {type(max_steps).__name__}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    return max_steps


def check_keep_history(keep_history: Any) -> Any:
    """``Memoria(keep_history=...)``: False or 0 (no history), True or 1 (every step), or an int N >= 2 (each row keeps
    its last N steps); returned as given."""
    if isinstance(keep_history, bool) or keep_history is None:
        return bool(keep_history)
    if not isinstance(keep_history, int):
        raise TypeError(f"keep_history must be a bool or an int (the steps to keep), got {type(keep_history).__name__}")
    if keep_history < 0:
        raise ValueError(f"keep_history must be True, False or a number of steps >= 2, got {keep_history}")
    return keep_history


def steps_kept(keep_history: Any) -> Optional[int]:
    """The ``max_steps`` of the histories ``keep_history`` asks for (None: every step)."""
    return keep_history if not isinstance(keep_history, bool) and keep_history > 1 else None


def check_history_rows(history: Optional[list], batch_size: int) -> None:
    """Refuse a batch of ``batch_size`` rows where ``memoria.history`` holds histories of another number of rows.

    A memory whose rows are all empty accepts a new batch size; its history cannot follow, since no recorded row
    continues as a new one. Raised before anything changes."""
    if history is not None and len(history) != batch_size:
        raise ValueError(
            f"expected one history per batch row ({batch_size}), got {len(history)}: the memory's history was kept "
            "for another batch size; to change it, keep what you need of memoria.history, then set "
            "memoria.history = None (or call reset_memory())"
        )


def record_history(histories: list, engrams: Any) -> None:
    """Append the current state of every batch row to that row's history (the fast path of ``keep_history``).

    Args:
        histories: one ``HistoryManager`` per batch row
        engrams: an ``Engrams`` (ids tracked) with ``engrams_types`` [B, M], ``engram_ids`` [B, M], ``lifespan``
            [B, M], ``age`` [B, M] or None, ``induce_counts`` [B, M, M]
    """
    if not engrams.track_engram_id or engrams.engram_ids is None:
        raise ValueError("record_history needs engram ids: build the memory with track_id=True or keep_history=True")
    check_history_rows(histories, engrams.engrams_types.size(0))
    types = engrams.engrams_types.cpu()  # [B, M]
    ids = engrams.engram_ids.cpu()  # [B, M]
    lifespan = engrams.lifespan.cpu()  # [B, M]
    age = engrams.age.cpu() if engrams.track_age else None  # [B, M]
    counts = engrams.induce_counts  # [B, M, M], read on its own device and only where needed
    fire_counts = counts.diagonal(dim1=1, dim2=2).cpu()  # [B, M]
    for row, history in enumerate(histories):
        slots = (types[row] != 0).nonzero(as_tuple=True)[0]  # [Live]
        history._record_row(
            ids[row, slots],
            types[row, slots],
            lifespan[row, slots],
            None if age is None else age[row, slots],
            fire_counts[row, slots],
            counts[row],
            slots,
        )


class Recorder:
    """The recording half of ``HistoryManager``: its records, count model and window.

    Attributes:
        max_steps: steps kept (None: all); older ones are dropped as new ones come, the history then reading as if
            it had started at its first kept step.
        _records: the kept records; the first ``_hidden`` are older than the window, kept only because the counts of
            later steps start from their keyframe (at most ``max_steps`` of them: a keyframe is forced that often).
        _dropped: records dropped from the front since the history began.
    """

    def _start_recording(self, max_steps: Optional[int]) -> None:
        self.max_steps = check_max_steps(max_steps)
        self._records: list[Record] = []
        self._lookup: Optional[IdLookup] = None  # ids of the latest step
        self._model: Optional[CountModel] = None
        self._hidden = 0
        self._dropped = 0

    def add_summary(self, summary: EngramsInfo) -> None:
        """Append one step given as an ``EngramsInfo`` (kept as is and returned when the step is read)."""
        # duck-typed: the published package's records (another class of the same fields) are summaries too
        if not isinstance(getattr(summary, "engrams", None), dict):
            raise TypeError(f"summary must be an EngramsInfo (Engrams.status_summary()), got {type(summary).__name__}")
        for info in summary.engrams.values():
            if getattr(info, "type", None) not in TYPE_VALUES or not hasattr(info, "fire_count"):
                raise ValueError("summary.engrams must hold EngramInfo records of type WORKING, SHORTTERM or LONGTERM")
        infos = list(summary.engrams.values())
        ages = [info.age for info in infos]
        record, _ = self._append(
            ids=torch.tensor(list(summary.engrams.keys()), dtype=torch.long),
            types=torch.tensor([TYPE_VALUES[info.type] for info in infos], dtype=torch.uint8),
            lifespan=torch.tensor([float(info.lifespan) for info in infos], dtype=torch.float64),
            age=None if any(a is None for a in ages) else torch.tensor(ages, dtype=torch.long),
            fire_counts=torch.tensor([info.fire_count for info in infos], dtype=torch.long),
        )
        record.summary = summary
        self._model = None  # a hand-made summary says nothing about how the counts evolve
        self._slide()

    def _append(
        self,
        ids: torch.Tensor,
        types: torch.Tensor,
        lifespan: torch.Tensor,
        age: Optional[torch.Tensor],
        fire_counts: torch.Tensor,
    ) -> tuple[Record, Changes]:
        """Store one step; returns its record and what it changed against the previous step."""
        previous = self._records[-1] if self._records else None
        record = Record()
        record.ids, record.types, record.lifespan, record.age = ids, types, lifespan, age
        record.fire_counts = fire_counts
        changed = changes(previous, record, self._lookup)
        self._records.append(record)
        self._lookup = IdLookup(ids)
        return record, changed

    def _record_row(
        self,
        ids: torch.Tensor,
        types: torch.Tensor,
        lifespan: torch.Tensor,
        age: Optional[torch.Tensor],
        fire_counts: torch.Tensor,
        counts: torch.Tensor,
        slots: torch.Tensor,
    ) -> None:
        """Append a step read from a live memory row: its live engrams [Live], the row's co-firing counts [M, M]
        (on their own device) and the live engrams' ``slots`` [Live] in them (see ``record_history``)."""
        previous = self._records[-1] if self._records else None
        previous_fire_counts = previous.fire_counts.long() if previous is not None else None
        record, changed = self._append(ids, types, lifespan, age, fire_counts)  # ids as the memory has them
        step = len(self._records) - 1
        fire_counts = fire_counts.long()
        model, gains = self._model, cofiring_gains()

        # A keyframe is forced once the model holds many events (its check would cost O(steps)) and, with a window,
        # once the last keyframe is max_steps old (so that few records are kept beyond the window).
        consistent = model is not None and gains is not None
        consistent = consistent and model.event_ids.numel() <= EVENTS_PER_ENGRAM * max(ids.numel(), 256)
        consistent = consistent and (self.max_steps is None or step - model.base_step < self.max_steps)
        if consistent:
            # one fire-together per adjust: every fire count rose by 0 or by what one firing adds
            rise = fire_counts.clone()
            survived = ~changed.created
            rise[survived] -= previous_fire_counts[changed.previous_positions[survived]]
            consistent = bool(((rise == 0) | (rise == gains[0])).all())
        if consistent:
            fired = (rise == gains[0]).nonzero(as_tuple=True)[0]
            model.forget(changed.deleted_ids)
            record.cofired_ids = ids[fired].long()
            model.add(step, record.cofired_ids)
            if fired.numel():
                predicted = model.row_sums(self._lookup, ids.numel(), gains)[fired]
                actual = counts[slots[fired].to(counts.device)][:, slots.to(counts.device)].sum(-1).cpu()
                consistent = bool((predicted == actual).all())
        if consistent:
            record.base_step, record.events_from = model.base_step, model.events_from
        else:
            self._store_keyframe(record, counts, slots, step)
        self._slide()

    def _store_keyframe(self, record: Record, counts: torch.Tensor, slots: torch.Tensor, step: int) -> None:
        """Keep this step's co-firing counts [Live, Live] among live engrams and restart the running model there."""
        device_slots = slots.to(counts.device)
        live_counts = counts[device_slots][:, device_slots].cpu()  # [Live, Live]
        rows, cols = live_counts.nonzero(as_tuple=True)
        record.keyframe = (rows.int(), cols.int(), live_counts[rows, cols].int())
        record.cofired_ids = None
        record.base_step, record.events_from = step, step + 1
        ids = record.ids.long()
        self._model = CountModel(step, (ids[rows], ids[cols]), record.keyframe[2])

    def _slide(self) -> None:
        """Keep the last ``max_steps`` steps in view (the oldest of them reads as a first step: ``queries``), and
        drop the records that no step in view counts from."""
        if self.max_steps is None or len(self._records) - self._hidden <= self.max_steps:
            return
        self._hidden = len(self._records) - self.max_steps
        # bases only grow with the step, so the first kept step with a base has the oldest one
        bases = (r.base_step for r in self._records[self._hidden :] if r.base_step is not None)
        oldest = min(next(bases, self._hidden), self._hidden)
        if oldest > 0:
            del self._records[:oldest]
            for record in self._records:
                if record.base_step is not None:
                    record.base_step -= oldest
                    record.events_from -= oldest
            if self._model is not None:
                self._model.shift(oldest)
            self._hidden -= oldest
            self._dropped += oldest
        self._reset_derived()  # (``queries``): what was built from the steps in view is stale
