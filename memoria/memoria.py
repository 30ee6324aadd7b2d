"""Memoria: a Hebbian memory of working, short-term and long-term engrams, kept per batch row.

One step of a model that uses the memory is three calls (``docs/algorithm.md`` has the full contract):

1. ``add_working_memory(data)``: the segment's summaries become new WORKING engrams with ``initial_lifespan``.
2. ``remind()`` finds what the working memories call up:
   a. short-term: the ``num_reminded_stm`` SHORTTERM engrams most similar to the working memories;
   b. short-term to long-term: for each of them, the LONGTERM engram it fired together with most often (ties broken
      by one random draw);
   c. the long-term graph walk: ``ltm_search_depth`` steps from those, each to the strongest unvisited neighbour in
      the graph of co-firing counts among long-term engrams;
   d. final selection: of the engrams the walk found, the ``num_final_ltms`` most similar to the working memories;
   e. everything that took part (working, reminded short-term and long-term) fires together: each pair's co-firing
      count gains 1.
   It returns the reminded engrams' vectors and indices.
3. ``adjust_lifespan_and_memories(indices, lifespan_delta)``: reminded engrams gain the lifespan the model gives
   them; every engram loses 1 and ages; working engrams become short-term, the oldest short-term ones beyond
   ``stm_capacity`` become long-term, and engrams whose lifespan ran out are forgotten.

The stages below say what is computed. How an operation runs on each device (torch on a CPU or a GPU, or the optional
C extensions) is decided behind one boundary, ``memoria.ops``; where the engrams are kept, ``memoria.store``.
"""

import functools
import warnings
from typing import Callable, List, Optional, Tuple, Union

import torch

from . import checkpoint, ops
from .checkpoint import CONFIG_NAMES, check_engrams
from .engram import Engrams, EngramType
from .history_manager import HistoryManager, check_history_rows, check_keep_history, histories_for, record_history
from .rows import RowwiseMemoria
from .similarity import Working
from .store import EngramStore
from .utils import added_at, super_unique
from .validation import (
    MAX_SEARCH_DEPTH,
    adjust_inputs,
    as_float32_data,
    check_count,
    check_data,
    check_data_fits,
    check_device,
    check_generator,
    check_lifespan,
    check_rows,
    confirm_adjust,
)

WORKING, SHORTTERM, LONGTERM = EngramType.WORKING.value, EngramType.SHORTTERM.value, EngramType.LONGTERM.value


def _changes_memory(method: Callable) -> Callable:
    """Marks a method that may change the engrams: the snapshot ``engrams`` returns is rebuilt on the next read."""

    @functools.wraps(method)
    def changing(self, *args, **kwargs):
        self._view = None  # a snapshot read before the call is not what the call works on (history reads it)
        result = method(self, *args, **kwargs)  # (a refused call changes nothing: its snapshot stays true)
        self._view = None
        return result

    return changing


class Memoria:
    """A Hebbian memory kept per batch row: add working memories, remind, then adjust lifespans.

    Attributes:
        engrams: a snapshot of the memory in its logical layout (assign an ``Engrams`` to replace the state).
        timestep: number of ``add_working_memory`` calls since the last reset.
        next_engram_id: the id the next new engram gets.
        history: one ``HistoryManager`` per batch row when ``keep_history``, else ``None``.
        generator: the tie-break draw's random source (``None``: the global RNG).
        device: device of the stored engrams (the first input's unless given).
        ext_device: device of the latest input; outputs go there.
    """

    def __init__(
        self,
        num_reminded_stm: int,
        stm_capacity: int,
        ltm_search_depth: int,
        initial_lifespan: float,
        num_final_ltms: int,
        track_age: bool = False,
        track_id: bool = False,
        keep_history: Union[bool, int] = False,
        device: Optional[Union[str, torch.device]] = None,
        independent_rows: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        """
        Args:
            num_reminded_stm: how many short-term engrams each step reminds.
            stm_capacity: short-term engrams kept per row; the oldest beyond it become long-term.
            ltm_search_depth: steps of the long-term graph walk.
            initial_lifespan: lifespan of a new engram.
            num_final_ltms: how many long-term engrams each step reminds at most.
            track_age: keep each engram's age.
            track_id: give each engram an id.
            keep_history: record a status summary per row after every adjust (turns both tracking flags on); an int
                N >= 2 keeps each row's last N steps only (``docs/training.md``).
            device: where engrams live; ``None`` keeps them on the device of the first input.
            independent_rows: keep every batch row as a memory of its own (``memoria.rows``): a row's results never
                depend on the other rows, so ``reset_memory_rows`` leaves the other rows exactly as without it, and
                ``remind`` returns a fixed width (num_reminded_stm + num_final_ltms + 1). Each row then equals the
                published package fed that row alone, with a generator of its own; rows run one after another.
            generator: the random source of the long-term tie-break draw, on the engrams' device (``None``: the
                global RNG, as in the published package). With ``independent_rows`` it seeds the rows' generators.
        """
        self.num_reminded_stm = check_count(num_reminded_stm, "num_reminded_stm")
        self.stm_capacity = check_count(stm_capacity, "stm_capacity")
        self.ltm_search_depth = check_count(ltm_search_depth, "ltm_search_depth", MAX_SEARCH_DEPTH)
        self.num_final_ltms = check_count(num_final_ltms, "num_final_ltms")
        self.initial_lifespan = check_lifespan(initial_lifespan, "initial_lifespan")
        self.device: Optional[torch.device] = None if device is None else check_device(device, "device")
        self.generator = check_generator(generator)
        keep_history = check_keep_history(keep_history)
        if keep_history and not (track_id and track_age):
            warnings.warn("keep_history=True needs engram ids and ages: track_id and track_age are turned on")
            track_id = track_age = True
        self.track_age, self.track_id, self.keep_history = track_age, track_id, keep_history
        self.independent_rows = bool(independent_rows)
        self.ext_device: Optional[torch.device] = None
        self.ext_dtype: torch.dtype = torch.float32
        self.reset_memory()

    def reset_memory(self) -> None:
        """Forget everything: no engrams, timestep 0, next id 0, no history."""
        self._store: Optional[EngramStore] = None
        self._view: Optional[Engrams] = None
        width = self.num_reminded_stm + self.num_final_ltms + 1
        self._rowwise = RowwiseMemoria(self._make_row, width, self.generator) if self.independent_rows else None
        self.next_engram_id = self.timestep = 0
        self.history: Optional[List[HistoryManager]] = None
        self._bounds = checkpoint.CounterBounds()  # ages and co-firing counts never wrap (issue 27 D7)

    @property
    def _rows(self) -> Optional[RowwiseMemoria]:
        """The independent rows once they hold a batch (``independent_rows``), else None."""
        return self._rowwise if self._rowwise is not None and self._rowwise.batch_size else None

    def _make_row(self, generator: Optional[torch.Generator], device: Optional[torch.device]) -> "Memoria":
        """The batch-1 memory of one row, with independent rows."""
        return Memoria(**{**self.config(), "independent_rows": False}, device=device, generator=generator)

    @property
    def engrams(self) -> Engrams:
        """The memory in its logical layout (rows compacted and left-padded), as a snapshot built on first read after a
        change (``memoria.store`` keeps the storage). Changing it does not change the memory: assign an ``Engrams``."""
        if self._view is None:
            if self._rowwise is not None:
                self._view = self._rowwise.engrams()
            elif self._store is not None:
                self._view = self._store.to_engrams()
        if self._view is None:
            return Engrams.empty(track_age=self.track_age, track_engram_id=self.track_id)
        return self._view

    @engrams.setter
    @_changes_memory
    def engrams(self, engrams: Engrams) -> None:
        if not isinstance(engrams, Engrams):
            raise TypeError(f"memoria.engrams must be an Engrams, got {type(engrams).__name__}")
        self._bounds = check_engrams(engrams, self.track_age, self.track_id)  # (issue 27 D7)
        if self._rowwise is not None:
            if engrams.batch_size == 0:
                self._rowwise.clear()
            else:
                self._rowwise.set_engrams(engrams, self.device)
            return
        self._store = EngramStore(engrams) if engrams.batch_size > 0 else None

    @property
    def memory_length(self) -> int:
        """Engrams per row, padding included (``engrams.memory_length`` without building the snapshot)."""
        if self._rowwise is not None:
            return self._rowwise.memory_length
        return 0 if self._store is None else self._store.memory_length

    def config(self) -> dict:
        """The constructor arguments that shape behaviour (device and generator aside)."""
        return {name: getattr(self, name) for name in CONFIG_NAMES}

    @_changes_memory
    def to(self, device: Union[str, torch.device]) -> "Memoria":
        """Keep the engrams on ``device`` from now on (outputs still follow the input's device); returns self."""
        device = check_device(device, "device")
        if self._store is not None:
            self._store.to(device)
        if self._rowwise is not None:
            self._rowwise.to(device)
        self.device = device
        return self

    @_changes_memory
    def reset_memory_rows(self, rows: Union[torch.Tensor, List[int]]) -> None:
        """Forget everything in the chosen batch rows (a new document starts there); other rows are untouched.

        ``rows``: a bool mask [BatchSize] or row indices (tensor, list, tuple, numpy array, or one int). The rows become
        padding, compacted away at the next adjust. Rows are coupled through shared widths (``docs/algorithm.md``), so
        the others evolve exactly as without the reset only with ``independent_rows=True``.
        """
        if self._rows is not None:
            self._rows.reset_memory_rows(check_rows(rows, self._rows.batch_size))
            self.history = self._rows.history()
        elif self._store is not None:
            self._store.clear_rows(check_rows(rows, self._store.batch_size, self._store.device))

    def state_dict(self) -> dict:
        """Everything needed to resume, as plain tensors, numbers and lists (``memoria.checkpoint``)."""
        self._view = None  # from the store, not from a snapshot its reader may have edited in place (issue 27 D3)
        return checkpoint.memoria_state(
            self.config(), self.engrams, self.timestep, self.next_engram_id, self.ext_dtype, self.history, self._rows
        )

    @_changes_memory
    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict`` (from a memory with the same configuration); checked before anything changes."""
        loaded = checkpoint.read_memoria_state(state, self.config(), self._rowwise, self.device)
        if loaded.rows is not None:
            self._rowwise.load(loaded.rows, loaded.hidden_dim)
            self._bounds = checkpoint.CounterBounds.of(self.engrams)  # (the setter takes them otherwise)
        else:
            self.engrams = loaded.engrams
        self.history = self._rowwise.history() if loaded.rows is not None else loaded.history
        self.timestep, self.next_engram_id, self.ext_dtype = loaded.timestep, loaded.next_engram_id, loaded.ext_dtype

    # ------------------------------------------------------------------ the three calls

    @torch.no_grad()
    @_changes_memory
    def add_working_memory(self, data: torch.Tensor) -> None:
        """Append new WORKING engrams to every row.

        Args:
            data: [BatchSize, WorkingMemoryLength, HiddenDim] real-valued tensor (detached; stored as float32, which
                must hold every value as a finite number; integer dtypes are taken as floats).
        """
        check_data(data, "data")
        holder = self._rows or (self._store if self._store is not None and self._store.memory_length else None)
        shape = (holder.batch_size, holder.hidden_dim) if holder is not None else (None, None)
        check_data_fits(data, *shape, self.memory_length, self.next_engram_id if self.track_id else None)
        check_history_rows(self.history, data.size(0))
        device = self.device or data.device
        if self._rowwise is None:
            check_generator(self.generator, device=device)
        # the one copy that can fail for size happens before anything changes
        stored = as_float32_data(data, device)
        if self._rowwise is not None:
            self._rowwise.add_working_memory(stored, device)
        else:
            self._store = EngramStore.with_working(
                self._store, stored, self.initial_lifespan, self.next_engram_id, self.track_age, self.track_id
            )
        self.ext_device, self.device = data.device, device
        self.ext_dtype = data.dtype if data.is_floating_point() else torch.float32
        if self.track_id:
            self.next_engram_id += data.size(1)
        self.timestep += 1

    @torch.no_grad()
    @_changes_memory
    def remind(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Remind short-term and long-term engrams for the current working memories, and wire the co-fired engrams.

        Returns:
            memories: [BatchSize, RemindedLength, HiddenDim] on the latest input's device and dtype (zeros at -1).
            indices: [BatchSize, RemindedLength] global indices of the reminded engrams, -1 for none.
        """
        out_device = self.ext_device or self.device or torch.device("cpu")
        self._bounds.before_remind(lambda: self.engrams)
        if self._rows is not None:
            return self._rows.remind(self.ext_dtype, out_device)
        store = self._store
        if store is None:
            return torch.zeros(0, 0, 0, dtype=self.ext_dtype, device=out_device), torch.zeros(0, 0, dtype=torch.long)
        wm_indices, stm_indices, ltm_indices = store.indices_of(WORKING, SHORTTERM, LONGTERM)
        ltm_mask = store.type_masks()[LONGTERM]
        # padded working positions are zero vectors and take part in every score, as in the published package
        wm_data, stm_data = store.data_at_each(wm_indices, stm_indices)
        working = Working.of(wm_data)

        reminded_stm = self._remind_shortterm(working, stm_indices, stm_data)
        del wm_data, stm_data  # one buffer: free it before the long-term search
        initial_ltm = self._initial_longterm(reminded_stm, ltm_mask, ltm_indices)
        found_ltm = self._search_longterm(initial_ltm, ltm_mask, ltm_indices)
        reminded_ltm = self._select_final_longterm(working, found_ltm)

        fired = torch.cat([wm_indices, reminded_stm, reminded_ltm], dim=1)
        store.fire_together(fired)
        reminded = super_unique(fired[:, wm_indices.size(1) :], dim=1)
        memories = store.data_at(reminded)
        return memories.to(device=out_device, dtype=self.ext_dtype), reminded.to(out_device)

    @torch.no_grad()
    @_changes_memory
    def adjust_lifespan_and_memories(self, indices: torch.Tensor, lifespan_delta: torch.Tensor) -> None:
        """Give lifespan to reminded engrams, age everything, move engrams between stages, drop the dead.

        Args:
            indices: [BatchSize, RemindedLength] global indices (as returned by ``remind``), -1 ignored; a tensor, list,
                tuple or numpy array.
            lifespan_delta: [BatchSize, RemindedLength] lifespan added to the engram at the same position (repeated
                indices add up), or what broadcasts to it: a number, a 0-dim tensor, a [1, RemindedLength] row.
        """
        rowwise, store = self._rows, self._store
        if store is None and rowwise is None:
            if isinstance(indices, torch.Tensor) and indices.numel() == 0:
                return  # nothing stored and nothing reminded (e.g. the first segment): nothing to adjust
            raise ValueError("the memory is empty: call add_working_memory before adjust_lifespan_and_memories")
        self._bounds.before_adjust(lambda: self.engrams)
        devices = {self.device, self.ext_device, torch.device("cpu")}
        length = None if rowwise is not None else store.memory_length
        indices, delta, pending = adjust_inputs(indices, lifespan_delta, (rowwise or store).batch_size, devices, length)
        if rowwise is not None:
            rowwise.adjust_lifespan_and_memories(indices, delta)
            self.history = rowwise.history()
            return
        indices, delta = indices.to(store.device), delta.to(store.device)
        history = histories_for(self.history, store.batch_size, self.keep_history)
        # The new lifespans and types are computed aside, so that the checks of the inputs are read with the
        # survivors' widths (one host read) and bad input still finds the memory unchanged.
        lifespan = added_at(store.lifespan, indices.clamp(max=length - 1), delta).sub_(1.0)
        types = store.engrams_types.masked_fill(store.type_masks()[WORKING], SHORTTERM)
        # the oldest short-term engrams beyond capacity become long-term (before the dead are dropped)
        stm_mask = types == SHORTTERM
        stm_rank = stm_mask.cumsum(dim=1)
        types.masked_fill_(stm_mask & (stm_rank <= stm_rank[:, -1:] - self.stm_capacity), LONGTERM)
        alive = lifespan > 0
        survival = store.survival(alive, types, pending)
        confirm_adjust(survival.pending, length)
        store.lifespan, store.engrams_types = lifespan, types
        if store.age is not None:
            store.age = store.age + 1  # (not in place: it may come from an inference-mode step)
        store.keep(alive, survival)
        if history is not None:
            record_history(history, self.engrams)
            self.history = history

    # ------------------------------------------------------------------ remind stages

    def _remind_shortterm(self, working: Working, stm_indices: torch.Tensor, stm_data: torch.Tensor) -> torch.Tensor:
        """Top ``num_reminded_stm`` short-term engrams (``stm_data`` [BatchSize, NumSTM, HiddenDim], written) by
        similarity to the working memories.

        Returns:
            [BatchSize, NumSTM]: the STM global index where chosen, -1 elsewhere (positions kept).
        """
        scores = working.scores(stm_data.sub_(working.center))
        num_reminded = min(self.num_reminded_stm, scores.size(1))
        chosen = scores.topk(num_reminded, dim=1).indices
        return torch.full_like(stm_indices, -1).scatter_(1, chosen, stm_indices.gather(1, chosen))

    def _initial_longterm(
        self, reminded_stm: torch.Tensor, ltm_mask: torch.Tensor, ltm_indices: torch.Tensor
    ) -> torch.Tensor:
        """For each reminded entry, the long-term engram it co-fired with most (random among ties).

        Returns:
            [BatchSize, NumSTM] global LTM indices, -1 for none. The published package makes them unique here; the
            walk reads them as a set, so the repeats are left in (one host read fewer).
        """
        # quirk R1: a -1 entry reads the last row, as negative indexing does in the published package
        rows = reminded_stm.remainder(self._store.memory_length)
        return ops.strongest_longterm(self._store, rows, ltm_mask, ltm_indices, self.generator)

    def _search_longterm(
        self, initial_ltm: torch.Tensor, ltm_mask: torch.Tensor, ltm_indices: torch.Tensor
    ) -> torch.Tensor:
        """Walk the co-firing graph of long-term engrams from the initial ones.

        Returns:
            [BatchSize, F] *local* positions in the LTM list (quirk R4), -1 for none; zeros when there is nothing to
            search (quirk R2: their count shows only in being 0 or not, as they all name position 0).
        """
        (batch_size, num_initial), num_ltm = initial_ltm.shape, ltm_indices.size(1)
        if num_initial == 0 or num_ltm == 0:
            # R2's zeros all name position 0, so one walk's worth stands for the published (depth + 1) * distinct starts
            return torch.zeros(
                batch_size, self.ltm_search_depth + 1 if num_initial else 0, dtype=torch.long, device=ltm_mask.device
            )
        walked = ops.walk_from(self._store.longterm_graph(ltm_indices), ltm_mask, initial_ltm, self.ltm_search_depth)
        return ops.super_unique(walked, 1, ignore=ops.ABSENT)

    def _select_final_longterm(self, working: Working, found_ltm: torch.Tensor) -> torch.Tensor:
        """Top ``num_final_ltms`` of the searched positions by similarity to the working memories.

        Returns:
            [BatchSize, min(num_final_ltms, F)] indices taken from ``found_ltm``.
        """
        if found_ltm.size(1) == 0:
            return found_ltm
        # quirk R4: the local LTM positions are used as global indices here
        scores = working.scores(self._store.data_at(found_ltm).sub_(working.center))
        top = scores.topk(min(self.num_final_ltms, scores.size(1)), dim=1).indices
        return found_ltm.gather(1, top)
