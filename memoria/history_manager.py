"""History of a memory row: one summary per adjust step, and what happened to every engram.

The published package keeps a full ``EngramsInfo`` (a Python object per engram and per edge) for every step, which
costs far more than the step itself once the graph grows. Here a step is recorded as a few small tensors (the live
engrams' ids, types, lifespans, ages and fire counts, and the ids that fired together), and the ``EngramsInfo`` of a
step is built only when it is read. The induce counts are not copied: in Memoria they only change by one
fire-together step per adjust, so the counts of any step are the co-firing counts of the recorded fire sets (plus a
stored base matrix where the history starts). Each step checks that this still holds and stores the full matrix of
that step when it does not, so what is read back is always what ``status_summary`` gave at that step.
"""

import gzip
import io
import os
import pickle
import warnings
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union

import torch

from .summary import TYPE_NAMES, engrams_info_from_arrays
from .types import EngramConnection, EngramHistory, EngramInfo, EngramsInfo, Firing

TYPE_VALUES = {name: value for value, name in TYPE_NAMES.items()}
STATE_VERSION = 1
#: Marks a file written by ``HistoryManager.save``.
FILE_FORMAT = "memoria-history-1"


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


class _IdLookup:
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


class _Record:
    """One step: the live engrams plus what the step changed."""

    __slots__ = (
        "ids",
        "types",
        "lifespan",
        "age",
        "fire_counts",
        "created",
        "fired_positions",
        "gains",
        "deleted_ids",
        "summary",
        "cofired_ids",
        "keyframe",
        "base_step",
        "events_from",
    )

    def __init__(self) -> None:
        self.summary: Optional[EngramsInfo] = None  # kept only for summaries given to ``add_summary``
        self.cofired_ids: Optional[torch.Tensor] = None  # ids in this step's fire-together set (recorded steps)
        self.keyframe: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None  # full counts, COO
        self.base_step: Optional[int] = None  # step whose keyframe the counts start from
        self.events_from = 0  # first step whose fire set adds to the counts


class _CountModel:
    """Running check that a row's induce counts equal base + co-firing counts of the recorded fire sets."""

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

    def row_sums(self, lookup: _IdLookup, length: int) -> torch.Tensor:
        """[Live] predicted sum of each live engram's induce-count row over live engrams (diagonal included)."""
        sums = torch.zeros(length, dtype=torch.long)
        if self.event_ids.numel():
            per_step = torch.bincount(self.event_steps - self.events_from)  # live engrams fired at each step
            sums.index_add_(0, lookup.positions(self.event_ids), per_step[self.event_steps - self.events_from])
        if self.base_values.numel():
            sums.index_add_(0, lookup.positions(self.base_i), self.base_values)
        return sums


def _align(previous: Optional[_Record], lookup: Optional[_IdLookup], ids: torch.Tensor) -> torch.Tensor:
    """[Live] position of each id in the previous step, -1 for new engrams."""
    if previous is None:
        return torch.full(ids.shape, -1, dtype=torch.long)
    return lookup.positions(ids)


class SummaryList(Sequence):
    """Read-only, list-like view of a history's summaries; each ``EngramsInfo`` is built when it is read."""

    def __init__(self, history: "HistoryManager", start: int = 0, stop: Optional[int] = None) -> None:
        self._history = history
        self._start = start
        self._stop = stop

    def _bounds(self) -> tuple[int, int]:
        stop = len(self._history._records) if self._stop is None else min(self._stop, len(self._history._records))
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


class HistoryManager:
    """History of one batch row's memory: one summary per adjust step.

    Attributes (all derived from the recorded steps, built when read):
        summaries: the ``EngramsInfo`` of every step (a list-like ``SummaryList``).
        engram_creation_times: engram id -> first step it was alive.
        engram_deletion_times: engram id -> first step it was gone again.
        engram_durations: engram id -> number of steps it was (or has been) alive.
        engram_firing_times: engram id -> steps at which its fire count rose.
        engram_firings: engram id -> its ``Firing`` records.
        firings_per_time: per step, the ``Firing`` records of that step.
        alive_engram_ids: ids alive at the latest step.
        deleted_engram_ids: ids deleted so far, in deletion order.
    """

    def __init__(self) -> None:
        self._records: list[_Record] = []
        self._lookup: Optional[_IdLookup] = None  # ids of the latest step
        self._model: Optional[_CountModel] = None
        self._reset_derived()

    # ----------------------------------------------------------------- recording
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

    def _append(
        self,
        ids: torch.Tensor,
        types: torch.Tensor,
        lifespan: torch.Tensor,
        age: Optional[torch.Tensor],
        fire_counts: torch.Tensor,
    ) -> tuple[_Record, torch.Tensor]:
        """Store one step and derive creations, deletions and firings against the previous step.

        Returns:
            the record and each engram's position in the previous step shaped [Live] (-1 for new engrams)
        """
        previous = self._records[-1] if self._records else None
        record = _Record()
        record.ids, record.types, record.lifespan, record.age = ids, types, lifespan, age
        record.fire_counts = fire_counts
        previous_positions = _align(previous, self._lookup, ids)  # [Live]
        record.created = previous_positions < 0
        if previous is None:
            record.deleted_ids = torch.zeros(0, dtype=torch.long)
            record.fired_positions = torch.zeros(0, dtype=torch.long)
            record.gains = torch.zeros(0, dtype=torch.float64)
        else:
            survived = torch.zeros(previous.ids.numel(), dtype=torch.bool)
            survived[previous_positions[~record.created]] = True
            record.deleted_ids = previous.ids[~survived].long()
            # only survivors are compared (a previous step without engrams has nothing to compare with)
            survivors = (~record.created).nonzero(as_tuple=True)[0]
            matched = previous_positions.clamp(min=0)
            rose = fire_counts.long()[survivors] > previous.fire_counts.long()[previous_positions[survivors]]
            record.fired_positions = survivors[rose]
            # Float64 like the published package's Python floats: new - old + 1 undoes the step's decrement.
            now = lifespan[record.fired_positions].double()
            before = previous.lifespan[matched[record.fired_positions]].double()
            record.gains = now - before + 1.0
        self._records.append(record)
        self._lookup = _IdLookup(ids)
        return record, previous_positions

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
        """Append a step read from a live memory row (see ``record_history``)."""
        previous = self._records[-1] if self._records else None
        previous_fire_counts = previous.fire_counts.long() if previous is not None else None
        record, previous_positions = self._append(ids.long(), types, lifespan, age, fire_counts)
        timestep = len(self._records) - 1
        fire_counts = fire_counts.long()

        consistent = self._model is not None
        if consistent:
            # Under one fire-together step per adjust every fire count rises by 0 or 1 (new engrams start at 0).
            rise = fire_counts.clone()
            survived = ~record.created
            rise[survived] -= previous_fire_counts[previous_positions[survived]]
            consistent = bool(((rise == 0) | (rise == 1)).all())
        if consistent:
            fired = (rise == 1).nonzero(as_tuple=True)[0]
            model = self._model
            model.forget(record.deleted_ids)
            record.cofired_ids = ids[fired].long()
            model.event_steps = torch.cat([model.event_steps, torch.full_like(record.cofired_ids, timestep)])
            model.event_ids = torch.cat([model.event_ids, record.cofired_ids])
            if fired.numel():
                predicted = model.row_sums(self._lookup, ids.numel())[fired]
                actual = counts[slots[fired].to(counts.device)][:, slots.to(counts.device)].sum(-1).cpu()
                consistent = bool((predicted == actual).all())
        if consistent:
            record.base_step, record.events_from = model.base_step, model.events_from
        else:
            self._store_keyframe(record, counts, slots, timestep)

    def _store_keyframe(self, record: _Record, counts: torch.Tensor, slots: torch.Tensor, timestep: int) -> None:
        """Keep this step's full live count matrix and restart the running model from it."""
        device_slots = slots.to(counts.device)
        live_counts = counts[device_slots][:, device_slots].cpu()  # [Live, Live]
        rows, cols = live_counts.nonzero(as_tuple=True)
        record.keyframe = (rows.int(), cols.int(), live_counts[rows, cols].int())
        record.cofired_ids = None
        record.base_step, record.events_from = timestep, timestep + 1
        ids = record.ids.long()
        self._model = _CountModel(timestep, (ids[rows], ids[cols]), record.keyframe[2])

    # ----------------------------------------------------------------- reading steps
    def step(self, timestep: int) -> HistoryStep:
        """Columnar view of one step (cheap: no ``EngramsInfo`` is built)."""
        record = self._records[timestep]
        reminded = torch.zeros(record.ids.numel(), dtype=torch.bool)
        reminded[record.fired_positions] = True
        return HistoryStep(
            timestep=timestep if timestep >= 0 else len(self._records) + timestep,
            ids=record.ids.long(),
            types=record.types,
            lifespan=record.lifespan,
            age=record.age,
            fire_counts=record.fire_counts.long(),
            created=record.created,
            reminded=reminded,
        )

    def _counts_at(self, timestep: int) -> torch.Tensor:
        """[Live, Live] induce counts among the engrams alive at a recorded step."""
        record = self._records[timestep]
        length = record.ids.numel()
        lookup = _IdLookup(record.ids)
        counts = torch.zeros(length, length, dtype=torch.long)
        base = self._records[record.base_step]
        rows, cols, values = base.keyframe
        base_ids = base.ids.long()
        rows, cols = lookup.positions(base_ids[rows.long()]), lookup.positions(base_ids[cols.long()])
        keep = (rows >= 0) & (cols >= 0)
        counts[rows[keep], cols[keep]] = values[keep].long()

        steps = range(record.events_from, timestep + 1)
        if len(steps):
            event_ids = torch.cat([self._records[s].cofired_ids for s in steps])
            event_steps = torch.cat([torch.full_like(self._records[s].cofired_ids, i) for i, s in enumerate(steps)])
            positions = lookup.positions(event_ids)
            keep = positions >= 0
            incidence = torch.zeros(len(steps), length)  # [Steps, Live]: who fired at each step
            incidence[event_steps[keep], positions[keep]] = 1.0
            # Float32 sums of 0/1 products are exact far beyond any realistic count (2**24).
            counts += (incidence.t() @ incidence).round().long()
        return counts

    def _summary_at(self, timestep: int) -> EngramsInfo:
        record = self._records[timestep]
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

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> EngramsInfo:
        return self.summaries[index]

    @property
    def timestep(self) -> int:
        """Number of recorded steps (the index the next step will get)."""
        return len(self._records)

    # ----------------------------------------------------------------- derived per-engram data
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
        for timestep in range(self._folded, len(self._records)):
            record = self._records[timestep]
            ids = record.ids.tolist()
            for position in record.created.nonzero(as_tuple=True)[0].tolist():
                self._creation[ids[position]] = timestep
            firings = [
                Firing(timestep=timestep, engram_id=ids[position], lifespan_gain=gain)
                for position, gain in zip(record.fired_positions.tolist(), record.gains.tolist())
            ]
            for firing in firings:
                self._firing_times[firing.engram_id].append(timestep)
                self._firings[firing.engram_id].append(firing)
            self._firings_per_time.append(firings)
            for engram_id in record.deleted_ids.tolist():
                self._deletion[engram_id] = timestep
                self._deleted.append(engram_id)
        self._folded = len(self._records)

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
        return self._records[-1].ids.tolist() if self._records else []

    @property
    def engram_durations(self) -> dict[int, int]:
        """Engram id -> number of steps it has been alive (until its deletion, or up to now)."""
        self._fold()
        alive = set(self.alive_engram_ids)
        latest = len(self._records) - 1
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

    # ----------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """Plain tensors, numbers and lists (safe for ``torch.load(weights_only=True)``)."""
        records = []
        for record in self._records:
            records.append(
                {
                    "ids": record.ids,
                    "types": record.types,
                    "lifespan": record.lifespan,
                    "age": record.age,
                    "fire_counts": record.fire_counts,
                    "summary": None if record.summary is None else _encode_summary(record.summary),
                    "cofired_ids": record.cofired_ids,
                    "keyframe": None if record.keyframe is None else list(record.keyframe),
                    "base_step": record.base_step,
                    "events_from": record.events_from,
                }
            )
        model = None
        if self._model is not None:
            model = {
                name: getattr(self._model, name)
                for name in ("base_step", "events_from", "base_i", "base_j", "base_values", "event_steps", "event_ids")
            }
        return {"version": STATE_VERSION, "records": records, "model": model}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace this history with one saved by ``state_dict`` (checked before anything changes)."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION or "records" not in state:
            raise ValueError(f"not a HistoryManager state (expected a dict with version {STATE_VERSION})")
        fresh = HistoryManager()
        try:
            for entry in state["records"]:
                record, _ = fresh._append(
                    entry["ids"], entry["types"], entry["lifespan"], entry["age"], entry["fire_counts"]
                )
                record.summary = None if entry["summary"] is None else _decode_summary(entry["summary"])
                record.cofired_ids = entry["cofired_ids"]
                record.keyframe = None if entry["keyframe"] is None else tuple(entry["keyframe"])
                record.base_step, record.events_from = entry["base_step"], entry["events_from"]
            if state["model"] is not None:
                saved = state["model"]
                model = _CountModel(saved["base_step"], (saved["base_i"], saved["base_j"]), saved["base_values"])
                model.events_from = saved["events_from"]
                model.event_steps, model.event_ids = saved["event_steps"], saved["event_ids"]
                fresh._model = model
        except (KeyError, TypeError, IndexError, RuntimeError) as error:
            raise ValueError(f"malformed HistoryManager state: {error!r}") from error
        self.__dict__.update(fresh.__dict__)

    def __getstate__(self) -> dict[str, Any]:
        return self.state_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()
        if "records" in state:
            self.load_state_dict(state)
        else:  # a pickle of the published 1.1.0 HistoryManager: replay its summaries
            for summary in state["summaries"]:
                self.add_summary(summary)

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Save to a gzip-compressed ``torch.save`` of ``state_dict()``: tensors, numbers, strings and lists only, so
        that ``load`` reads it with ``torch.load(weights_only=True)`` and a history file can never run code."""
        buffer = io.BytesIO()
        torch.save({"format": FILE_FORMAT, "state": self.state_dict()}, buffer)
        with gzip.open(path, "wb") as file:
            file.write(buffer.getvalue())

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"], allow_pickle: bool = False) -> "HistoryManager":
        """Load a history written by ``save``.

        Args:
            path: the gzip file.
            allow_pickle: also read a gzip-compressed pickle (what the published package and earlier versions of this
                one wrote). Unpickling runs whatever code the file names, so pass it only for a file you trust; it
                warns. Without it such a file is refused with a ``ValueError``.
        """
        try:
            with gzip.open(path, "rb") as file:
                content = file.read()
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise ValueError(f"{path} is not a gzip-compressed history file: {error}") from None
        if not content:
            raise ValueError(f"{path} is empty")
        if content[:2] == b"PK":  # torch.save's zip container
            try:
                saved = torch.load(io.BytesIO(content), weights_only=True, map_location="cpu")
            except Exception as error:  # the unpickler refuses anything but data with pickle.UnpicklingError and kin
                raise ValueError(f"{path} is not a readable history file: {error}") from None
            if not isinstance(saved, dict) or saved.get("format") != FILE_FORMAT:
                raise ValueError(f"{path} is not a history file (expected format {FILE_FORMAT!r})")
            history = cls()
            history.load_state_dict(saved.get("state"))
            return history
        if not allow_pickle:
            raise ValueError(
                f"{path} is a pickle (written by memoria-pytorch 1.x or an older version of this package). Unpickling "
                "can run any code the file names: pass allow_pickle=True only for a file you trust, then save() it "
                "again to get a data-only file"
            )
        warnings.warn(f"unpickling {path}: this runs whatever code the file names; save() it again to stop needing it")
        loaded = pickle.loads(content)
        if not isinstance(loaded, HistoryManager):
            raise ValueError(f"{path} holds a {type(loaded).__name__}, not a HistoryManager")
        return loaded


def _encode_connection(edge: EngramConnection) -> tuple:
    return (edge.source_id, edge.target_id, edge.weight, edge.cofire_count)


def _encode_summary(summary: EngramsInfo) -> dict[str, Any]:
    """A hand-made ``EngramsInfo`` as plain lists and tuples."""
    engrams = [
        (
            info.id,
            info.type,
            info.lifespan,
            info.age,
            info.fire_count,
            [_encode_connection(e) for e in info.outgoings],
            [_encode_connection(e) for e in info.incoming],
        )
        for info in summary.engrams.values()
    ]
    return {
        "engrams": engrams,
        "edges": [_encode_connection(edge) for edge in summary.edges.values()],
        "edge_keys": [tuple(key) for key in summary.edges.keys()],
        "working": list(summary.working),
        "shortterm": list(summary.shortterm),
        "longterm": list(summary.longterm),
    }


def _decode_summary(encoded: dict[str, Any]) -> EngramsInfo:
    engrams = {}
    for engram_id, type_name, lifespan, age, fire_count, outgoings, incoming in encoded["engrams"]:
        engrams[engram_id] = EngramInfo(
            id=engram_id,
            type=type_name,
            lifespan=lifespan,
            age=age,
            fire_count=fire_count,
            outgoings=tuple(EngramConnection(*edge) for edge in outgoings),
            incoming=tuple(EngramConnection(*edge) for edge in incoming),
        )
    edges = {tuple(key): EngramConnection(*edge) for key, edge in zip(encoded["edge_keys"], encoded["edges"])}
    return EngramsInfo(
        engrams=engrams,
        edges=edges,
        working=tuple(encoded["working"]),
        shortterm=tuple(encoded["shortterm"]),
        longterm=tuple(encoded["longterm"]),
    )


def record_history(histories: list[HistoryManager], engrams: Any) -> None:
    """Append the current state of every batch row to that row's history (the fast path of ``keep_history``).

    Args:
        histories: one ``HistoryManager`` per batch row
        engrams: an ``Engrams`` (ids tracked) with ``engrams_types`` [B, M], ``engram_ids`` [B, M], ``lifespan``
            [B, M], ``age`` [B, M] or None, ``induce_counts`` [B, M, M]
    """
    if not engrams.track_engram_id or engrams.engram_ids is None:
        raise ValueError("record_history needs engram ids: build the memory with track_id=True or keep_history=True")
    if len(histories) != engrams.engrams_types.size(0):
        raise ValueError(f"expected one history per batch row ({engrams.engrams_types.size(0)}), got {len(histories)}")
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
