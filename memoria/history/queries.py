"""What a row's history answers: its steps, their summaries, and every engram's creation, deletion and firings.

Steps are numbered from the first step in view (0) on; with ``max_steps`` the history reads as if it had started at
its first kept step, and ``first_step`` says how many steps came before it. Per-engram data is folded from the steps
when first asked for and kept until the window moves; a step's ``EngramsInfo`` is built when it is read.

Shapes: Live the live engrams of one step, S steps.
"""

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union

import torch

from ..summary import engrams_info_from_arrays
from ..types import EngramHistory, EngramInfo, EngramsInfo, Firing
from .record import Changes, IdLookup, Record, changes, cofire


@dataclass(frozen=True)
class HistoryStep:
    """Columnar view of one step of a row's history; every tensor is [Live] in memory-slot order."""

    #: Step index.
    timestep: int
    #: Engram ids.
    ids: torch.Tensor
    #: ``EngramType`` values (1 WORKING, 2 SHORTTERM, 3 LONGTERM).
    types: torch.Tensor
    #: Lifespans.
    lifespan: torch.Tensor
    #: Ages, or None when not tracked.
    age: Optional[torch.Tensor]
    #: Fire counts.
    fire_counts: torch.Tensor
    #: True for engrams alive for the first time at this step.
    created: torch.Tensor
    #: True for engrams whose fire count rose since the previous step (a ``Firing``: they were reminded).
    reminded: torch.Tensor


class SummaryList(Sequence):
    """Read-only, list-like view of a history's summaries; each ``EngramsInfo`` is built when it is read."""

    def __init__(self, history: "Queries", start: int = 0, stop: Optional[int] = None) -> None:
        self._history = history
        self._start = start
        self._stop = stop

    def _bounds(self) -> tuple[int, int]:
        stop = len(self._history) if self._stop is None else min(self._stop, len(self._history))
        return self._start, max(stop, self._start)

    def __len__(self) -> int:
        start, stop = self._bounds()
        return stop - start

    def __getitem__(self, index: Union[int, slice]) -> Union[EngramsInfo, "SummaryList", list]:
        start, stop = self._bounds()
        if isinstance(index, slice):
            first, last, stride = index.indices(stop - start)
            if stride != 1:
                return [self[i] for i in range(first, last, stride)]
            return SummaryList(self._history, start + first, start + max(last, first))
        if index < 0:
            index += stop - start
        if not 0 <= index < stop - start:
            raise IndexError(f"summary index {index} out of range for {stop - start} steps")
        return self._history._summary_at(start + index)

    def __iter__(self) -> Iterator[EngramsInfo]:
        start, stop = self._bounds()
        return (self._history._summary_at(t) for t in range(start, stop))

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        start, stop = self._bounds()
        return f"SummaryList(steps {start}..{stop - 1})"


class Queries:
    """The reading half of ``HistoryManager``, over the records of ``record.Recorder`` (``_records``, ``_hidden``:
    the records before the first step in view, ``_dropped``)."""

    _records: list[Record]
    _hidden: int
    _dropped: int

    def _record(self, timestep: int) -> Record:
        """The record of step ``timestep`` (0 the first step in view)."""
        return self._records[self._hidden + timestep]

    def _changes(self, timestep: int) -> Changes:
        """What step ``timestep`` changed; the first step in view changed everything (as a history's first step)."""
        return changes(self._record(timestep - 1) if timestep > 0 else None, self._record(timestep))

    def __len__(self) -> int:
        return len(self._records) - self._hidden

    def __getitem__(self, index: int) -> EngramsInfo:
        return self.summaries[index]

    @property
    def timestep(self) -> int:
        """Number of steps in view (the index the next step will get)."""
        return len(self)

    @property
    def first_step(self) -> int:
        """How many recorded steps came before the first step in view (0 unless ``max_steps`` dropped some)."""
        return self._dropped + self._hidden

    def step(self, timestep: int) -> HistoryStep:
        """Columnar view of one step (cheap: no ``EngramsInfo`` is built)."""
        if not -len(self) <= timestep < len(self):
            raise IndexError(f"step {timestep} out of range for {len(self)} steps")
        timestep = timestep if timestep >= 0 else len(self) + timestep
        record, changed = self._record(timestep), self._changes(timestep)
        reminded = torch.zeros(record.ids.numel(), dtype=torch.bool)
        reminded[changed.fired_positions] = True
        return HistoryStep(
            timestep=timestep,
            ids=record.ids.long(),
            types=record.types,
            lifespan=record.lifespan,
            age=record.age,
            fire_counts=record.fire_counts.long(),
            created=changed.created,
            reminded=reminded,
        )

    def _counts_at(self, timestep: int) -> torch.Tensor:
        """[Live, Live] co-firing counts among the engrams alive at a recorded step: its keyframe's, with the
        co-firing op replayed on every fire set since (engrams gone by this step are left out, -1)."""
        index = self._hidden + timestep
        record = self._records[index]
        length = record.ids.numel()
        lookup = IdLookup(record.ids)
        counts = torch.zeros(length, length, dtype=torch.int32)
        base = self._records[record.base_step]
        rows, cols, values = base.keyframe
        base_ids = base.ids.long()
        rows, cols = lookup.positions(base_ids[rows.long()]), lookup.positions(base_ids[cols.long()])
        keep = (rows >= 0) & (cols >= 0)
        counts[rows[keep], cols[keep]] = values[keep].int()
        fire_sets = [self._records[step].cofired_ids for step in range(record.events_from, index + 1)]
        if fire_sets:
            alive = lookup.positions(torch.cat(fire_sets))  # -1 for engrams gone by this step
            for fired in alive.split([fire_set.numel() for fire_set in fire_sets]):
                if fired.numel() and bool((fired >= 0).any()):
                    cofire(counts, fired)
        return counts

    def _summary_at(self, timestep: int) -> EngramsInfo:
        record = self._record(timestep)
        if record.summary is not None:
            return record.summary
        cached = self._summary_cache.get(timestep)
        if cached is None:
            counts = self._counts_at(timestep)
            cached = engrams_info_from_arrays(record.ids, record.types, record.lifespan, record.age, counts)
            if len(self._summary_cache) >= 4:
                self._summary_cache.pop(next(iter(self._summary_cache)))
            self._summary_cache[timestep] = cached
        return cached

    @property
    def summaries(self) -> SummaryList:
        """Every step's ``EngramsInfo`` (built when read)."""
        return SummaryList(self)

    # ----------------------------------------------------------------- per-engram data, folded from the steps
    def _reset_derived(self) -> None:
        self._folded = 0
        self._creation: dict[int, int] = {}
        self._deletion: dict[int, int] = {}
        self._firing_times: dict[int, list[int]] = defaultdict(list)
        self._firings: dict[int, list[Firing]] = defaultdict(list)
        self._firings_per_time: list[list[Firing]] = []
        self._deleted: list[int] = []
        self._summary_cache: dict[int, EngramsInfo] = {}

    def _fold(self) -> None:
        """Bring the per-engram dictionaries up to the latest step."""
        for timestep in range(self._folded, len(self)):
            record, changed = self._record(timestep), self._changes(timestep)
            ids = record.ids.tolist()
            for position in changed.created.nonzero(as_tuple=True)[0].tolist():
                self._creation[ids[position]] = timestep
            firings = [
                Firing(timestep=timestep, engram_id=ids[position], lifespan_gain=gain)
                for position, gain in zip(changed.fired_positions.tolist(), changed.gains.tolist())
            ]
            for firing in firings:
                self._firing_times[firing.engram_id].append(timestep)
                self._firings[firing.engram_id].append(firing)
            self._firings_per_time.append(firings)
            for engram_id in changed.deleted_ids.tolist():
                self._deletion[engram_id] = timestep
                self._deleted.append(engram_id)
        self._folded = len(self)

    @property
    def engram_creation_times(self) -> dict[int, int]:
        """Engram id -> first step at which it was alive."""
        self._fold()
        return self._creation

    @property
    def engram_deletion_times(self) -> dict[int, int]:
        """Engram id -> first step at which it was gone (deleted engrams only)."""
        self._fold()
        return self._deletion

    @property
    def engram_firing_times(self) -> dict[int, list[int]]:
        """Engram id -> steps at which its fire count rose."""
        self._fold()
        return self._firing_times

    @property
    def engram_firings(self) -> dict[int, list[Firing]]:
        """Engram id -> its firings."""
        self._fold()
        return self._firings

    @property
    def firings_per_time(self) -> list[list[Firing]]:
        """Per step, the firings of that step in memory-slot order."""
        self._fold()
        return self._firings_per_time

    @property
    def deleted_engram_ids(self) -> list[int]:
        """Ids deleted so far, in deletion order."""
        self._fold()
        return self._deleted

    @property
    def alive_engram_ids(self) -> list[int]:
        """Ids alive at the latest step, in memory-slot order."""
        return self._records[-1].ids.tolist() if len(self) else []

    @property
    def engram_durations(self) -> dict[int, int]:
        """Engram id -> number of steps it has been alive (until its deletion, or up to now)."""
        self._fold()
        alive = set(self.alive_engram_ids)
        latest = len(self) - 1
        return {
            engram_id: (latest if engram_id in alive else self._deletion[engram_id] - 1) - created + 1
            for engram_id, created in self._creation.items()
        }

    @property
    def engram_ids(self) -> list[int]:
        """Every engram id seen, in creation order."""
        return list(self.engram_creation_times.keys())

    @property
    def engram_fire_counts(self) -> dict[int, int]:
        """Engram id -> number of firings, for engrams that fired at least once."""
        return {engram_id: len(firings) for engram_id, firings in self.engram_firings.items()}

    @property
    def engram_lastest_alive_timestep(self) -> dict[int, int]:
        """Engram id -> last step at which it was alive (the published name, typo included)."""
        durations = self.engram_durations
        return {engram_id: created + durations[engram_id] - 1 for engram_id, created in self._creation.items()}

    @property
    def latest_engram_infos(self) -> dict[int, EngramInfo]:
        """Engram id -> its ``EngramInfo`` at the last step it was alive."""
        last_alive = self.engram_lastest_alive_timestep
        by_step: dict[int, list[int]] = defaultdict(list)
        for engram_id, timestep in last_alive.items():
            by_step[timestep].append(engram_id)
        found = {}
        for timestep, engram_ids in by_step.items():  # each step's summary is built once
            summary = self._summary_at(timestep)
            found.update((engram_id, summary.engrams[engram_id]) for engram_id in engram_ids)
        return {engram_id: found[engram_id] for engram_id in last_alive}

    def inspect(self, engram_id: int) -> EngramHistory:
        """Everything recorded about one engram; its ``summaries`` are a lazy ``SummaryList``."""
        created = self.engram_creation_times[engram_id]
        deleted = self.engram_deletion_times.get(engram_id)
        return EngramHistory(
            id=engram_id,
            creation_timestep=created,
            deletion_timestep=deleted,
            duration=self.engram_durations.get(engram_id),
            firing_times=self.engram_firing_times.get(engram_id, []),
            firings=self.engram_firings.get(engram_id, []),
            summaries=self.summaries[created:deleted],
        )
