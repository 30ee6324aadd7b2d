"""Memoria: working, short-term and long-term memory stages over batched engrams."""

import warnings
from typing import List, Optional, Tuple, Union

import torch

from . import draw, native, utils
from .checkpoint import STATE_FORMAT, check_engrams, engrams_from_state, max_live_id
from .engram import Engrams, EngramType
from .history_manager import HistoryManager, record_history
from .rows import RowMemories
from .similarity import Working
from .store import EngramStore
from .utils import add_at, indices_with_mask, local_indices, super_unique
from .validation import (
    DATA_DTYPES,
    INT32_MAX,
    MAX_SEARCH_DEPTH,
    as_float32_data,
    as_indices,
    as_lifespan_delta,
    check_count,
    check_data,
    check_device,
    check_index_range,
    check_lifespan,
    check_memory_length,
    check_rows,
)


class Memoria:
    """A Hebbian memory kept per batch row: add working memories, remind, then adjust lifespans.

    Attributes:
        engrams: a snapshot of the memory in its logical layout (assign an ``Engrams`` to replace the state).
        timestep: number of ``add_working_memory`` calls since the last reset.
        next_engram_id: the id the next new engram gets.
        history: one ``HistoryManager`` per batch row when ``keep_history``, else ``None``.
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
        keep_history: bool = False,
        device: Optional[Union[str, torch.device]] = None,
        independent_rows: bool = False,
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
            keep_history: record a status summary per row after every adjust (turns both tracking flags on).
            device: where engrams live; ``None`` keeps them on the device of the first input.
            independent_rows: keep every batch row as a memory of its own (``memoria.rows``): a row's results never
                depend on the other rows, so ``reset_memory_rows`` leaves the other rows exactly as without it, and
                ``remind`` returns a fixed width (num_reminded_stm + num_final_ltms + 1). Each row then equals the
                published package fed that row alone, with a generator of its own; rows run one after another.
        """
        num_reminded_stm = check_count(num_reminded_stm, "num_reminded_stm")
        stm_capacity = check_count(stm_capacity, "stm_capacity")
        ltm_search_depth = check_count(ltm_search_depth, "ltm_search_depth", MAX_SEARCH_DEPTH)
        num_final_ltms = check_count(num_final_ltms, "num_final_ltms")
        initial_lifespan = check_lifespan(initial_lifespan, "initial_lifespan")
        device = None if device is None else check_device(device, "device")
        if keep_history and not (track_id and track_age):
            warnings.warn("keep_history=True needs engram ids and ages: track_id and track_age are turned on")
            track_id = track_age = True

        self.num_reminded_stm = num_reminded_stm
        self.stm_capacity = stm_capacity
        self.ltm_search_depth = ltm_search_depth
        self.initial_lifespan = initial_lifespan
        self.num_final_ltms = num_final_ltms
        self.track_age = track_age
        self.track_id = track_id
        self.keep_history = keep_history
        self.independent_rows = bool(independent_rows)
        # the tie-break's random source: None is the global RNG, as in the published package (rows have their own)
        self._generator: Optional[torch.Generator] = None
        self.device: Optional[torch.device] = device
        self.ext_device: Optional[torch.device] = None
        self.ext_dtype: torch.dtype = torch.float32
        self.reset_memory()

    def reset_memory(self) -> None:
        """Forget everything: no engrams, timestep 0, next id 0, no history."""
        self._store: Optional[EngramStore] = None
        self._view: Optional[Engrams] = None
        self._rows: Optional[RowMemories] = None
        self.next_engram_id = 0
        self.timestep = 0
        self.history = None

    @property
    def engrams(self) -> Engrams:
        """The memory in its logical layout (rows compacted and left-padded), as a snapshot.

        The memory keeps its large tensors in slots that never move (``memoria.store``); this view is built on first
        read after a change. Changing the returned object does not change the memory: assign an ``Engrams`` to
        ``memoria.engrams`` for that.
        """
        if self._rows is not None:
            return self._rows.engrams()
        if self._store is None:
            return Engrams.empty(track_age=self.track_age, track_engram_id=self.track_id)
        if self._view is None:
            self._view = self._store.to_engrams()
        return self._view

    @engrams.setter
    def engrams(self, engrams: Engrams) -> None:
        if not isinstance(engrams, Engrams):
            raise TypeError(f"memoria.engrams must be an Engrams, got {type(engrams).__name__}")
        check_engrams(engrams, self.track_age, self.track_id)
        if self.independent_rows:
            if engrams.batch_size == 0:
                self._rows = None
                return
            if self._rows is None or self._rows.batch_size != engrams.batch_size:
                self._rows = RowMemories(self._row_config(), engrams.batch_size, self.device or engrams.device)
            self._rows.set_engrams(engrams)
            return
        self._store = EngramStore(engrams) if engrams.batch_size > 0 else None
        self._view = None

    @property
    def memory_length(self) -> int:
        """Engrams per row, padding included (``engrams.memory_length`` without building the snapshot)."""
        if self._rows is not None:
            return max(memory.memory_length for memory in self._rows.memories)
        return 0 if self._store is None else self._store.memory_length

    def config(self) -> dict:
        """The constructor arguments that shape behaviour (device aside)."""
        return {
            "num_reminded_stm": self.num_reminded_stm,
            "stm_capacity": self.stm_capacity,
            "ltm_search_depth": self.ltm_search_depth,
            "initial_lifespan": self.initial_lifespan,
            "num_final_ltms": self.num_final_ltms,
            "track_age": self.track_age,
            "track_id": self.track_id,
            "keep_history": self.keep_history,
            "independent_rows": self.independent_rows,
        }

    def _row_config(self) -> dict:
        """Constructor arguments of the batch-1 memories that hold the rows when ``independent_rows``."""
        config = self.config()
        config["independent_rows"] = False
        return config

    def to(self, device: Union[str, torch.device]) -> "Memoria":
        """Keep the engrams on ``device`` from now on (outputs still follow the input's device); returns self."""
        device = check_device(device, "device")
        if self._store is not None:
            self._store.to(device)
        if self._rows is not None:
            self._rows.to(device)
        self.device = device
        self._view = None
        return self

    def reset_memory_rows(self, rows: Union[torch.Tensor, List[int]]) -> None:
        """Forget everything in the chosen batch rows (a new document starts there); other rows are untouched.

        Args:
            rows: a bool mask [BatchSize] or row indices, each as a tensor, list, tuple or numpy array (or one int).

        The chosen rows become padding and are compacted away at the next adjust. The published algorithm couples rows
        through shared widths (memory length, short-term width, the shape of one random draw), so the other rows evolve
        exactly as without the reset only while the forgotten row sets none of those widths; with
        ``independent_rows=True`` they always do.
        """
        if self._store is None and self._rows is None:
            return
        batch_size = self._rows.batch_size if self._rows is not None else self._store.batch_size
        device = self._store.device if self._store is not None else torch.device("cpu")
        mask = check_rows(rows, batch_size, device)
        if self._rows is not None:
            self._rows.reset(mask.cpu())
            self.history = self._rows.history()
            return
        self._store.clear_rows(mask)
        self._view = None

    def state_dict(self) -> dict:
        """Everything needed to resume: engrams, counters, flags and history, as plain tensors, numbers and lists.

        With ``independent_rows`` the state also holds every row's own state and generator (``rows``); ``engrams`` is
        then the stacked view, for reading only.
        """
        engrams = self.engrams
        tensors = {
            "data": engrams.data,
            "induce_counts": engrams.induce_counts,
            "engrams_types": engrams.engrams_types,
            "lifespan": engrams.lifespan,
            "age": engrams.age,
            "engram_ids": engrams.engram_ids,
        }
        state = {
            "format": STATE_FORMAT,
            "config": self.config(),
            "timestep": self.timestep,
            "next_engram_id": self.next_engram_id,
            "ext_dtype": str(self.ext_dtype).replace("torch.", ""),
            "engrams": {name: value.clone() for name, value in tensors.items() if value is not None},
            # with independent rows every row's own state holds its history
            "history": None if self.history is None or self._rows else [entry.state_dict() for entry in self.history],
        }
        if self._rows is not None:
            state["rows"] = self._rows.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict`` (from a memory with the same configuration); checked before anything changes."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a Memoria state dict (expected a dict with format {STATE_FORMAT!r})")
        missing = {"config", "timestep", "next_engram_id", "engrams", "history"} - set(state)
        if missing:
            raise ValueError(f"Memoria state dict is missing {sorted(missing)}")
        if not isinstance(state["config"], dict):
            raise ValueError(f"Memoria state dict config must be a dict, got {type(state['config']).__name__}")
        saved_config = {"independent_rows": False, **state["config"]}  # states saved before the flag existed
        if saved_config != self.config():
            differences = {
                key: (saved_config.get(key), value)
                for key, value in self.config().items()
                if saved_config.get(key) != value
            }
            raise ValueError(f"state was saved by a differently configured memory (saved, this): {differences}")
        engrams = engrams_from_state(state["engrams"], self.track_age, self.track_id)
        history = None
        if state["history"] is not None:
            if not isinstance(state["history"], list) or len(state["history"]) != engrams.batch_size:
                raise ValueError("Memoria state dict history must hold one entry per batch row")
            history = []
            for entry in state["history"]:
                manager = HistoryManager()
                manager.load_state_dict(entry)
                history.append(manager)
        counters = [state["timestep"], state["next_engram_id"]]
        if any(isinstance(value, bool) or not isinstance(value, int) or value < 0 for value in counters):
            raise ValueError(f"timestep and next_engram_id must be non-negative ints, got {counters}")
        if counters[1] > INT32_MAX:
            raise ValueError(f"next_engram_id must be at most {INT32_MAX} (ids are int32), got {counters[1]}")
        if self.track_id and "rows" not in state and max_live_id(state["engrams"]) >= counters[1]:
            raise ValueError(
                f"next_engram_id {counters[1]} is not above the largest stored id {max_live_id(state['engrams'])}: "
                "new engrams would repeat ids"
            )
        ext_dtype = getattr(torch, str(state.get("ext_dtype", "float32")), None)
        if ext_dtype not in DATA_DTYPES:
            raise ValueError(f"ext_dtype must name a floating dtype, got {state.get('ext_dtype')!r}")

        rows = None
        if self.independent_rows and "rows" in state:
            if not isinstance(state["rows"], dict):
                raise ValueError("Memoria state dict rows must be a dict (RowMemories.state_dict())")
            rows = RowMemories.from_state(self._row_config(), state["rows"], self.device)
            if rows.batch_size != engrams.batch_size:
                raise ValueError(f"state holds {rows.batch_size} row states for a batch of {engrams.batch_size}")

        if self.device is not None:
            engrams = engrams.to(self.device)
        if rows is not None:
            self._store, self._view, self._rows = None, None, rows
            history = rows.history()
        else:
            self.engrams = engrams
        self.timestep, self.next_engram_id = counters
        self.ext_dtype = ext_dtype
        self.history = history

    # ------------------------------------------------------------------ the three calls

    @torch.no_grad()
    def add_working_memory(self, data: torch.Tensor) -> None:
        """Append new WORKING engrams to every row.

        Args:
            data: [BatchSize, WorkingMemoryLength, HiddenDim] real-valued tensor (detached; stored as float32, which
                must hold every value as a finite number; integer dtypes are taken as floats).
        """
        self._check_data(data)
        device = self.device or data.device
        # the one copy that can fail for size happens before anything changes
        stored = as_float32_data(data, device)
        ext_dtype = data.dtype if data.is_floating_point() else torch.float32
        if self.independent_rows:
            rows = self._rows
            if rows is None:
                rng_state = torch.get_rng_state()  # the rows' seeds come from the global RNG
                rows = RowMemories(self._row_config(), data.size(0), device)
            try:
                rows.add(stored)
            except Exception:
                if self._rows is None:
                    torch.set_rng_state(rng_state)
                raise
            self._rows = rows
        else:
            new_engrams = Engrams(
                stored,
                engrams_types=EngramType.WORKING,
                lifespan=self.initial_lifespan,
                engram_ids=self.next_engram_id,
                track_age=self.track_age,
                track_engram_id=self.track_id,
            )
            if self._store is None or self._store.memory_length == 0:
                # like Engrams.__add__: an empty memory is replaced by the new engrams
                self._store = EngramStore(new_engrams, spare=new_engrams.memory_length)
            else:
                self._store.append(new_engrams)
            self._view = None
        self.ext_device, self.ext_dtype, self.device = data.device, ext_dtype, device
        if self.track_id:
            self.next_engram_id += data.size(1)
        self.timestep += 1

    @torch.no_grad()
    def remind(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Remind short-term and long-term engrams for the current working memories, and wire the co-fired engrams.

        Returns:
            memories: [BatchSize, RemindedLength, HiddenDim] on the latest input's device and dtype (zeros at -1).
            indices: [BatchSize, RemindedLength] global indices of the reminded engrams, -1 for none.
        """
        store = self._store
        if self._rows is not None:
            return self._rows.remind(self.ext_dtype, self.ext_device or self.device)
        if store is None:
            device = self.ext_device or torch.device("cpu")
            return torch.zeros(0, 0, 0, dtype=self.ext_dtype, device=device), torch.zeros(0, 0, dtype=torch.long)
        types = store.engrams_types
        wm_indices = indices_with_mask(types == EngramType.WORKING.value)
        stm_indices = indices_with_mask(types == EngramType.SHORTTERM.value)
        ltm_mask = types == EngramType.LONGTERM.value
        ltm_indices = indices_with_mask(ltm_mask)
        # padded working slots are zero vectors and take part in every score, as in the published package
        working = Working.of(store.data_at(wm_indices))

        reminded_stm = self._remind_shortterm(working, stm_indices)
        initial_ltm = self._initial_longterm(reminded_stm, ltm_mask, ltm_indices)
        found_ltm = self._search_longterm(initial_ltm, ltm_mask, ltm_indices)
        reminded_ltm = self._select_final_longterm(working, found_ltm)

        reminded = torch.cat([reminded_stm, reminded_ltm], dim=1)
        store.fire_together(torch.cat([wm_indices, reminded], dim=1))
        self._view = None
        reminded = super_unique(reminded, dim=1)
        memories = store.data_at(reminded)
        out_device = self.ext_device or store.device
        return memories.to(device=out_device, dtype=self.ext_dtype), reminded.to(out_device)

    @torch.no_grad()
    def adjust_lifespan_and_memories(self, indices: torch.Tensor, lifespan_delta: torch.Tensor) -> None:
        """Give lifespan to reminded engrams, age everything, move engrams between stages, drop the dead.

        Args:
            indices: [BatchSize, RemindedLength] global indices (as returned by ``remind``), -1 ignored; a tensor, list,
                tuple or numpy array.
            lifespan_delta: [BatchSize, RemindedLength] lifespan added to the engram at the same position (repeated
                indices add up), or what broadcasts to it: a number, a 0-dim tensor, a [1, RemindedLength] row.
        """
        if self._store is None and self._rows is None and isinstance(indices, torch.Tensor) and indices.numel() == 0:
            return  # nothing stored and nothing reminded (e.g. the first segment): nothing to adjust
        if self._rows is not None:
            indices, lifespan_delta = self._adjust_form(indices, lifespan_delta, self._rows.batch_size)
            self._rows.check_adjust(indices, lifespan_delta)
            self._rows.adjust(indices, lifespan_delta)
            self.history = self._rows.history()
            return
        indices, lifespan_delta = self._check_adjust_inputs(indices, lifespan_delta)
        store = self._store
        add_at(store.lifespan, indices, lifespan_delta)
        store.lifespan -= 1.0
        if store.age is not None:
            store.age += 1

        types = store.engrams_types
        types.masked_fill_(types == EngramType.WORKING.value, EngramType.SHORTTERM.value)
        # the oldest short-term engrams beyond capacity become long-term (before the dead are dropped)
        stm_mask = types == EngramType.SHORTTERM.value
        overflow = stm_mask.sum(dim=1, keepdim=True) - self.stm_capacity
        types.masked_fill_(stm_mask & (stm_mask.cumsum(dim=1) <= overflow), EngramType.LONGTERM.value)

        store.keep(store.lifespan > 0)
        self._view = None
        if self.keep_history:
            self._record_history()

    # ------------------------------------------------------------------ remind stages

    def _remind_shortterm(self, working: Working, stm_indices: torch.Tensor) -> torch.Tensor:
        """Top ``num_reminded_stm`` short-term engrams by similarity to the working memories.

        Returns:
            [BatchSize, NumSTM]: the STM global index where chosen, -1 elsewhere (positions kept).
        """
        scores = working.scores(self._store.data_at(stm_indices).sub_(working.center))
        num_reminded = min(self.num_reminded_stm, scores.size(1))
        chosen = torch.zeros_like(stm_indices, dtype=torch.bool)
        chosen.scatter_(1, scores.topk(num_reminded, dim=1).indices, True)
        return stm_indices.masked_fill(~chosen, -1)

    def _initial_longterm(
        self, reminded_stm: torch.Tensor, ltm_mask: torch.Tensor, ltm_indices: torch.Tensor
    ) -> torch.Tensor:
        """For each reminded entry, the long-term engram it co-fired with most (random among ties), made unique.

        Args:
            reminded_stm: [BatchSize, NumSTM] from ``_remind_shortterm``.
            ltm_mask: bool [BatchSize, MemoryLength].
            ltm_indices: [BatchSize, NumLTM] ``indices_with_mask(ltm_mask)``.
        Returns:
            [BatchSize, K] global LTM indices, -1 for none.
        """
        batch_size, num_stm = reminded_stm.shape
        length = self._store.memory_length
        # quirk R1: a -1 entry reads the last row, as negative indexing does in the published package
        rows = torch.where(reminded_stm < 0, length - 1, reminded_stm)
        # one float16 draw of this exact shape per step keeps the global RNG stream equal to the published package's
        draw_shape = (batch_size, num_stm, length)
        if ltm_indices.size(1) == 0 or num_stm == 0:
            # no long-term engram anywhere: whatever the draw picks is not long-term
            draw.advance(draw_shape, rows.device, self._generator)
            return super_unique(torch.full_like(rows, -1), dim=1)

        if not utils.on_cpu(rows):
            # a GPU computes the published [BatchSize, NumSTM, MemoryLength] form at once, without host round trips
            noise = torch.rand(draw_shape, dtype=torch.float16, device=rows.device, generator=self._generator)
            return self._initial_longterm_all_columns(rows, ltm_mask, noise)
        # Every entry that is not a chosen STM reads the same row (R1), so the counts are read once per distinct row:
        # the chosen STM rows plus row MemoryLength - 1, in a [BatchSize, Distinct, NumLTM] table.
        chosen = reminded_stm >= 0
        table = indices_with_mask(chosen)
        r1_row = torch.full((batch_size, 1), length - 1, dtype=torch.long, device=rows.device)
        table_rows = torch.where(table >= 0, reminded_stm.gather(1, table.clamp(min=0)), length - 1)
        table_rows = torch.cat([table_rows, r1_row], dim=1)
        num_distinct = table_rows.size(1)
        # [BatchSize, Distinct, NumLTM]; padding columns read -1
        counts = self._store.counts_at(table_rows, ltm_indices)
        top = counts.max(dim=2, keepdim=True).values
        has_ltm = (ltm_indices >= 0).any(dim=1).view(-1, 1, 1)
        if bool((has_ltm & (top < 0)).any()):
            noise = torch.rand(draw_shape, dtype=torch.float16, device=rows.device, generator=self._generator)
            return self._initial_longterm_all_columns(rows, ltm_mask, noise)
        # the published package scores non-LTM columns -1, so with a non-negative best only LTM columns can tie for it
        best = (counts == top) & (ltm_indices >= 0).unsqueeze(1)
        # entry -> its table row: chosen entries by rank among the chosen, every other entry the R1 row
        rank = chosen.cumsum(dim=1) - 1 + (table.size(1) - chosen.sum(dim=1, keepdim=True))
        slot = torch.where(chosen, rank, num_distinct - 1)
        position, drew = draw.first_max_at_columns(length, ltm_indices, best, slot, self._generator)
        # LTM columns ascend, so the first maximum among them is the first in the whole row; an entry whose candidates
        # all drew 0 takes column 0, as argmax over the published package's all-zero row does
        choice = torch.where(drew, ltm_indices.gather(1, position), 0)
        choice = choice.masked_fill((choice < 0) | ~ltm_mask.gather(1, choice.clamp(min=0)), -1)
        return super_unique(choice, dim=1)

    def _initial_longterm_all_columns(
        self, rows: torch.Tensor, ltm_mask: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """The published package's full [BatchSize, NumSTM, MemoryLength] computation, for rows whose best is -1."""
        counts = self._store.counts_at(rows).masked_fill_(~ltm_mask.unsqueeze(1), -1)
        best = counts == counts.max(dim=2, keepdim=True).values
        choice = noise.masked_fill_(~best, 0).argmax(dim=2)
        choice = choice.masked_fill(~ltm_mask.gather(1, choice), -1)
        return super_unique(choice, dim=1)

    def _search_longterm(
        self, initial_ltm: torch.Tensor, ltm_mask: torch.Tensor, ltm_indices: torch.Tensor
    ) -> torch.Tensor:
        """Walk the co-firing graph of long-term engrams from the initial ones.

        Returns:
            [BatchSize, F] *local* positions in the LTM list (quirk R4), -1 for none; zeros when there is nothing to
            search (quirk R2).
        """
        batch_size, num_initial = initial_ltm.shape
        num_ltm = ltm_indices.size(1)
        if num_initial == 0 or num_ltm == 0:
            return torch.zeros(
                batch_size, (self.ltm_search_depth + 1) * num_initial, dtype=torch.long, device=ltm_mask.device
            )

        store = self._store
        current = local_indices(ltm_mask, initial_ltm, width=num_ltm)
        last = num_ltm - 1
        batch = torch.arange(batch_size, device=ltm_mask.device).unsqueeze(1)
        # [BatchSize, NumLTM] physical slots of the LTM engrams (padding is visited from the start, so never read)
        ltm_slots = store.physical(ltm_indices).clamp(min=0)
        # nodes are numbered flat, batch row * NumLTM + local position, so one index reaches any row's engram
        visited = (ltm_indices < 0).flatten()
        # quirk R3: a -1 entry stands for the last LTM slot, both when marking and when reading its row
        node = (torch.where(current < 0, last, current) + batch * num_ltm).flatten()
        visited.scatter_(0, node, True)
        found = [current]
        if utils.on_cpu(node) and native.active(native.walk) and store.counts.is_contiguous():
            # the same walk in C (memoria/_walk.c): each depth one pass over the distinct rows, no temporaries
            depths = torch.empty(self.ltm_search_depth, node.numel(), dtype=torch.long)
            ltm_slots = ltm_slots.contiguous()  # held in a name: the C code reads it through a raw pointer
            native.walk.walk(
                store.counts.data_ptr(),
                batch_size,
                store.counts.size(1),
                node.data_ptr(),
                current.size(1),
                ltm_slots.data_ptr(),
                num_ltm,
                visited.data_ptr(),
                self.ltm_search_depth,
                last,
                depths.data_ptr(),
                *native.threads(),
            )
            # [Depth, BatchSize * Initial] -> [BatchSize, Depth * Initial], depth-major like the torch form below
            walks = depths.view(self.ltm_search_depth, batch_size, current.size(1)).transpose(0, 1)
            found.append(walks.reshape(batch_size, -1))
            return super_unique(torch.cat(found, dim=1), dim=1)
        # Walks that stand on the same engram (all -1 ones do, by R3) read the same row: on a CPU each row is read once.
        # A GPU reads them all instead, since finding the distinct ones would make it wait for the host every depth.
        deduplicate = utils.on_cpu(node)
        for _ in range(self.ltm_search_depth):
            unique_nodes, which = torch.unique(node, return_inverse=True) if deduplicate else (node, None)
            row_start = unique_nodes - unique_nodes % num_ltm
            step = (
                _strongest_unvisited(store.counts, unique_nodes, row_start // num_ltm, ltm_slots, visited) + row_start
            )
            dead_end = visited[step]
            current = (step - row_start).masked_fill_(dead_end, -1)
            node = torch.where(dead_end, row_start + last, step)
            if which is not None:
                current, node = current[which], node[which]
            visited.scatter_(0, node, True)
            found.append(current.view(batch_size, -1))
        return super_unique(torch.cat(found, dim=1), dim=1)

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

    # ------------------------------------------------------------------ validation

    def _check_data(self, data: torch.Tensor) -> None:
        """Form of ``data`` and its fit to the memory (batch size, hidden size, length, ids); values are checked when
        converted (``as_float32_data``)."""
        check_data(data, "data")
        batch_size = hidden = None
        if self._rows is not None:
            batch_size, hidden = self._rows.batch_size, self._rows.hidden_dim
        elif self._store is not None and self._store.memory_length > 0:
            batch_size, hidden = self._store.batch_size, self._store.data.size(2)
        if batch_size is not None:
            if data.size(0) != batch_size:
                raise ValueError(
                    f"data batch size {data.size(0)} differs from the memory's batch size {batch_size}; "
                    "call reset_memory() before changing it"
                )
            if hidden and data.size(2) != hidden:
                raise ValueError(f"data hidden size {data.size(2)} differs from the memory's {hidden}")
        check_memory_length(data.size(0), self.memory_length + data.size(1), "data")
        if self.track_id and self.next_engram_id + data.size(1) - 1 > INT32_MAX:
            raise ValueError(
                f"data holds {data.size(1)} new engrams, but engram ids stop at {INT32_MAX} "
                f"(the next id is {self.next_engram_id}): call reset_memory() first"
            )

    def _adjust_form(self, indices, lifespan_delta, batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """An adjust's inputs as tensors: int64 indices [BatchSize, R] and float32 deltas broadcast to their shape.

        Indices may be tensors, lists, tuples or numpy arrays; a delta may also be a number, a 0-dim tensor or a
        [1, R] row (as in the published package).
        """
        indices = as_indices(indices, "indices")
        if indices.dim() != 2 or indices.size(0) != batch_size:
            raise ValueError(f"indices must be shaped [{batch_size}, RemindedLength], got {list(indices.shape)}")
        return indices, as_lifespan_delta(lifespan_delta, indices.shape, "lifespan_delta")

    def _check_adjust_inputs(self, indices, lifespan_delta) -> Tuple[torch.Tensor, torch.Tensor]:
        """``_adjust_form`` plus devices and index range, for the memory's store; returns tensors on its device."""
        if self._store is None:
            raise ValueError("the memory is empty: call add_working_memory before adjust_lifespan_and_memories")
        raw = {"indices": indices, "lifespan_delta": lifespan_delta}
        indices, lifespan_delta = self._adjust_form(indices, lifespan_delta, self._store.batch_size)
        allowed = {self.device, self.ext_device, self._store.device, torch.device("cpu")}
        for name, value in raw.items():
            if isinstance(value, torch.Tensor) and value.device not in allowed:
                raise ValueError(
                    f"{name} is on {value.device}, expected the memory's device {self.device} "
                    f"or the input's device {self.ext_device}"
                )
        indices = indices.to(self._store.device)
        check_index_range(indices, self._store.memory_length, "indices")
        return indices, lifespan_delta.to(self._store.device)

    # ------------------------------------------------------------------ history

    def _record_history(self) -> None:
        if self.history is None:
            self.history = [HistoryManager() for _ in range(self._store.batch_size)]
        record_history(self.history, self.engrams)


# above this many [Unique, NumLTM] elements a walk step reads its rows one batch row at a time
_WALK_SPLIT_ELEMENTS = 1 << 18


def _strongest_unvisited(
    counts: torch.Tensor,
    nodes: torch.Tensor,
    rows_batch: torch.Tensor,
    ltm_slots: torch.Tensor,
    visited: torch.Tensor,
) -> torch.Tensor:
    """For each node, the first LTM position with the largest count among the unvisited ones (all visited: 0).

    Args:
        counts: [BatchSize, Capacity, Capacity] physical counts.
        nodes: [Unique] flat nodes (batch row * NumLTM + local LTM position), ascending.
        rows_batch: [Unique] the batch row of each node.
        ltm_slots: [BatchSize, NumLTM] physical slots of the LTM positions.
        visited: bool [BatchSize * NumLTM] by flat node.
    Returns:
        [Unique] local LTM positions.
    """
    batch_size, capacity = counts.shape[:2]
    num_ltm = ltm_slots.size(1)
    visited = visited.view(batch_size, num_ltm)
    # whole physical rows are contiguous: copy them first, then pick the LTM columns from the copies
    if nodes.numel() * num_ltm <= _WALK_SPLIT_ELEMENTS or not utils.on_cpu(counts):
        physical_rows = ltm_slots.flatten().index_select(0, nodes) + rows_batch * capacity
        # [Unique, NumLTM]
        rows = counts.view(-1, capacity).index_select(0, physical_rows).gather(1, ltm_slots.index_select(0, rows_batch))
        return rows.masked_fill_(visited.index_select(0, rows_batch), -1).argmax(dim=1)
    # Large steps (the first one reads a row per initial engram) go one batch row at a time, where the column index
    # broadcasts instead of being a [Unique, NumLTM] int64 tensor that costs more than the counts it picks.
    steps = []
    sizes = torch.bincount(rows_batch, minlength=batch_size).tolist()
    for batch, batch_nodes in enumerate(nodes.split(sizes)):
        if batch_nodes.numel():
            rows = counts[batch].index_select(0, ltm_slots.flatten().index_select(0, batch_nodes))
            rows = rows.gather(1, ltm_slots[batch].expand(batch_nodes.numel(), -1))
            steps.append(rows.masked_fill_(visited[batch], -1).argmax(dim=1))
    return torch.cat(steps)
