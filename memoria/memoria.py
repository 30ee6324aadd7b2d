"""``Memoria``: the public face of a Hebbian memory of working, short-term and long-term engrams, kept per batch row.

A model calls it three times a segment (``add_working_memory``, ``remind``, ``adjust_lifespan_and_memories``; the
contract is ``docs/algorithm.md``). This module is what stands between those calls and the algorithm: it checks every
input before anything changes (``memoria.validation``), keeps the input's device and dtype for the outputs, counts
timesteps and engram ids, records history, saves and loads checkpoints (``memoria.checkpoint``), and chooses, once per
reset, the backend that runs the algorithm:

- ``memoria.algorithm.BatchedMemoria``: the published algorithm, its steps named after the paper, the rows of a batch
  coupled as in ``memoria-pytorch`` 1.0.0;
- ``memoria.rows.IndependentRows`` (``independent_rows=True``): one batch-1 ``BatchedMemoria`` per row.

Both have the same verbs (``add``, ``remind``, ``adjust``, ``clear_rows``, ``engrams`` / ``set_engrams``, ``to``,
``state`` / ``load``), so no call here asks which one it has.

Shapes: B batch rows, L new engrams per row (segment length), M memory length, D hidden size, R reminded.
"""

import contextlib
import functools
import warnings
from typing import Callable, List, Optional, Tuple, Union

import torch

from . import checkpoint, legacy
from .algorithm import BatchedMemoria
from .checkpoint import CONFIG_NAMES, check_engrams
from .engram import Engrams
from .history_manager import HistoryManager, check_history_rows, check_keep_history, record_history, steps_kept
from .rows import IndependentRows
from .validation import (
    MAX_SEARCH_DEPTH,
    adjust_inputs,
    check_count,
    check_device,
    check_generator,
    check_lifespan,
    check_rows,
    working_data,
)

#: Device types whose autocast the memory turns off inside its calls (plus the engrams' own).
AUTOCAST_DEVICES = ("cpu", "cuda")


def _memory_call(method: Callable) -> Callable:
    """A call that may change the engrams: no gradient; autocast off, so that the memory's math runs in float32 whatever
    the caller's autocast (its results are those of a float32 run); the snapshot ``engrams`` is rebuilt on the next
    read."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        self._view = None  # a snapshot read before the call is not what the call works on (history reads it)
        kinds = AUTOCAST_DEVICES if self.device is None else {*AUTOCAST_DEVICES, self.device.type}
        autocast = [kind for kind in kinds if torch.is_autocast_enabled(kind)]
        try:
            with torch.no_grad(), contextlib.ExitStack() as stack:
                for kind in autocast:
                    stack.enter_context(torch.autocast(kind, enabled=False))
                return method(self, *args, **kwargs)
        finally:
            self._view = None

    return call


class Memoria:
    """A Hebbian memory kept per batch row: add working memories, remind, then adjust lifespans.

    Attributes:
        engrams: a snapshot of the memory in its logical layout (assign an ``Engrams`` to replace the state).
        timestep: number of ``add_working_memory`` calls since the last reset.
        next_engram_id: the id the next new engram gets.
        history: one ``HistoryManager`` per batch row when ``keep_history``, else ``None``.
        generator: the tie-break draw's random source (``None``: the global RNG), taken at construction and reset.
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
        if self.independent_rows:  # the width of every remind of independent rows
            check_count(self.num_reminded_stm + self.num_final_ltms + 1, "num_reminded_stm + num_final_ltms + 1")
        self.ext_device: Optional[torch.device] = None
        self.ext_dtype: torch.dtype = torch.float32
        self.reset_memory()

    def reset_memory(self) -> None:
        """Forget everything: no engrams, timestep 0, next id 0, no history."""
        if self.independent_rows:
            self._backend: Union[BatchedMemoria, IndependentRows] = IndependentRows(self.config(), self.generator)
        else:
            self._backend = BatchedMemoria(
                self.num_reminded_stm,
                self.stm_capacity,
                self.ltm_search_depth,
                self.initial_lifespan,
                self.num_final_ltms,
                self.track_age,
                self.track_id,
                self.generator,
            )
        self._view: Optional[Engrams] = None
        self.next_engram_id = self.timestep = 0
        self.history: Optional[List[Optional[HistoryManager]]] = None
        self._bounds = checkpoint.CounterBounds()  # ages and co-firing counts never wrap (issue 27 D7)

    @property
    def engrams(self) -> Engrams:
        """The memory in its logical layout (rows compacted and left-padded), as a snapshot built on first read after a
        change (``memoria.store`` keeps the storage). Changing it does not change the memory: assign an ``Engrams``."""
        if self._view is None:
            self._view = self._backend.engrams()
        if self._view is None:
            return Engrams.empty(track_age=self.track_age, track_engram_id=self.track_id)
        return self._view

    @engrams.setter
    @_memory_call
    def engrams(self, engrams: Engrams) -> None:
        if not isinstance(engrams, Engrams):
            raise TypeError(f"memoria.engrams must be an Engrams, got {type(engrams).__name__}")
        self._bounds = check_engrams(engrams, self.track_age, self.track_id)  # (issue 27 D7)
        self._backend.set_engrams(engrams, self.device)

    @property
    def memory_length(self) -> int:
        """Engrams per row, padding included (``engrams.memory_length`` without building the snapshot)."""
        return self._backend.memory_length

    def config(self) -> dict:
        """The constructor arguments that shape behaviour (device and generator aside)."""
        return {name: getattr(self, name) for name in CONFIG_NAMES}

    @_memory_call
    def to(self, device: Union[str, torch.device]) -> "Memoria":
        """Keep the engrams on ``device`` from now on (outputs still follow the input's device); returns self."""
        device = check_device(device, "device")
        self._backend.to(device)
        self.device = device
        return self

    @_memory_call
    def reset_memory_rows(self, rows: Union[torch.Tensor, List[int]]) -> None:
        """Forget everything in the chosen batch rows (a new document starts there); other rows are untouched.

        ``rows``: a bool mask [B] or row indices (tensor, list, tuple, numpy array, or one int). The rows become
        padding, compacted away at the next adjust. Rows are coupled through shared widths (``docs/algorithm.md``), so
        the others evolve exactly as without the reset only with ``independent_rows=True``, where a reset row starts
        a new memory (and history).
        """
        backend = self._backend
        if not backend.batch_size:
            return
        cleared = check_rows(rows, backend.batch_size, backend.device)
        backend.clear_rows(cleared)
        if self.history is not None:
            in_use = set(backend.rows_in_use())
            ended = [row for row in cleared.cpu().nonzero().flatten().tolist() if row not in in_use]
            self.history = [None if row in ended else history for row, history in enumerate(self.history)]
            if all(history is None for history in self.history):
                self.history = None

    def state_dict(self) -> dict:
        """Everything needed to resume, as plain tensors, numbers and lists (``memoria.checkpoint``)."""
        self._view = None  # from the store, not from a snapshot its reader may have edited in place (issue 27 D3)
        config = self.config()
        rows = self._backend.state(config, self.next_engram_id, self.history)
        return checkpoint.memoria_state(
            config, self.engrams, self.timestep, self.next_engram_id, self.ext_dtype, self.history, rows
        )

    @_memory_call
    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict`` (from a memory with the same configuration); checked before anything changes."""
        loaded = checkpoint.read_memoria_state(state, self.config(), self._backend.restored, self.device)
        self._backend.load(loaded.engrams, loaded.rows, loaded.hidden_dim)
        self._bounds = checkpoint.CounterBounds.of(self.engrams)  # (issue 27 D7)
        self.timestep, self.next_engram_id, self.ext_dtype = loaded.timestep, loaded.next_engram_id, loaded.ext_dtype
        self.history = loaded.history
        if loaded.rows is not None:
            histories = [row.history for row in loaded.rows]
            self.history = None if all(history is None for history in histories) else histories

    # ------------------------------------------------------------------ the three calls

    @_memory_call
    def add_working_memory(self, data: torch.Tensor) -> None:
        """Append new WORKING engrams to every row.

        Args:
            data: [B, L, D] real-valued tensor (detached; stored as float32, which must hold every value as a finite
                number; integer dtypes are taken as floats).
        """
        backend = self._backend
        next_id = self.next_engram_id if self.track_id else None
        stored = working_data(
            data,
            self.device,
            backend.fixed_shape,
            backend.memory_length,
            next_id,
            backend.output_width,
            backend.generator,
        )
        check_history_rows(self.history, data.size(0))
        backend.add(stored, self.next_engram_id)
        self.ext_device, self.device = data.device, self.device or data.device
        self.ext_dtype = data.dtype if data.is_floating_point() else torch.float32
        if self.track_id:
            self.next_engram_id += data.size(1)
        self.timestep += 1

    @_memory_call
    def remind(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Remind short-term and long-term engrams for the current working memories, and wire the co-fired engrams.

        Returns:
            memories: [B, R, D] on the latest input's device and dtype (zeros at -1).
            indices: [B, R] global indices of the reminded engrams, -1 for none.
        """
        out_device = self.ext_device or self.device or torch.device("cpu")
        if not self._backend.batch_size:
            return torch.zeros(0, 0, 0, dtype=self.ext_dtype, device=out_device), torch.zeros(0, 0, dtype=torch.long)
        self._bounds.before_remind(lambda: self.engrams)
        memories, indices = self._backend.remind()
        return memories.to(device=out_device, dtype=self.ext_dtype), indices.to(out_device)

    @_memory_call
    def adjust_lifespan_and_memories(self, indices: torch.Tensor, lifespan_delta: torch.Tensor) -> None:
        """Give lifespan to reminded engrams, age everything, move engrams between stages, drop the dead.

        Args:
            indices: [B, R] global indices (as returned by ``remind``), -1 ignored; a tensor, list, tuple or numpy
                array.
            lifespan_delta: [B, R] lifespan added to the engram at the same position (repeated indices add up), or
                what broadcasts to it: a number, a 0-dim tensor, a [1, R] row.
        """
        backend = self._backend
        if not backend.batch_size:
            if isinstance(indices, torch.Tensor) and indices.numel() == 0:
                return  # nothing stored and nothing reminded (e.g. the first segment): nothing to adjust
            raise ValueError("the memory is empty: call add_working_memory before adjust_lifespan_and_memories")
        self._bounds.before_adjust(lambda: self.engrams)
        devices = {self.device, self.ext_device, torch.device("cpu")}
        indices, delta, checks = adjust_inputs(
            indices, lifespan_delta, backend.batch_size, devices, backend.memory_length
        )
        if self.keep_history:
            check_history_rows(self.history, backend.batch_size)  # before the adjust changes anything
        in_use = backend.rows_in_use() if self.keep_history else []  # a row whose engrams all die here was adjusted
        backend.adjust(indices, delta, checks)
        if self.keep_history:
            self._record_history(in_use)

    def _record_history(self, in_use: List[int]) -> None:
        """Every row in use when the adjust began appends its state to its history (a row without one starts it)."""
        if self.history is None:
            self.history = [None] * self._backend.batch_size
        self.history = [
            HistoryManager(max_steps=steps_kept(self.keep_history)) if history is None and row in in_use else history
            for row, history in enumerate(self.history)
        ]
        view = self.engrams
        if len(in_use) == view.batch_size == self._backend.batch_size:
            record_history(self.history, view)
            return
        for row in in_use:  # independent rows: each row's own memory (the stacked view drops rows when all are empty)
            record_history([self.history[row]], self._backend.row_engrams(row))

    # ------------------------------------------------------------------ pickles

    def __setstate__(self, state: dict) -> None:
        """Unpickling: this package's memory as it was pickled; a published one's (memoria-pytorch 1.0.0 or 1.1.0)
        as a working memory with its configuration and engrams, checked as ``load_state_dict`` checks (``ValueError``
        or ``TypeError`` at load); anything else refused with a ``ValueError``."""
        if "_backend" in state:
            self.__dict__.update(state)
            return
        published = legacy.published_memoria(state)
        self.__init__(**published.config)
        if published.engrams is not None:
            self.engrams = published.engrams
        self.ext_device = published.ext_device
        self.timestep, self.next_engram_id = published.timestep, published.next_engram_id
        if published.history is not None and self.keep_history and published.engrams is not None:
            if len(published.history) != self._backend.batch_size or not all(
                isinstance(history, HistoryManager) for history in published.history
            ):
                raise ValueError("a pickled Memoria's history must hold one HistoryManager per batch row")
            self.history = published.history
