"""Independent rows: every batch row kept as a memory of its own (``Memoria(..., independent_rows=True)``).

The published algorithm couples the rows of a batch: index lists are padded to the widest row, the long-term search
quirks (R2, R4 in ``docs/algorithm.md``) read those padded positions, and one tie-break draw is shaped by the widest
row. So what one row reminds can depend on what the other rows hold, and forgetting one row changes the others later
on. Here each row is a batch-1 ``BatchedMemoria`` with a random generator of its own, and ``remind`` pads every row to
the same fixed width: a row's results depend on nothing but its own inputs, so resetting one row leaves every other row
bit-identical. Each row behaves exactly like the published package fed that row alone, with the row's generator as
its RNG.

Shapes: B batch rows, L new engrams per row, D hidden size, R the fixed width of ``remind``'s outputs.
"""

import hashlib
from typing import List, NamedTuple, Optional, Tuple

import torch

from . import checkpoint
from .algorithm import BatchedMemoria
from .engram import Engrams
from .history_manager import HistoryManager
from .validation import check_index_range


class RestoredRow(NamedTuple):
    """One row of a checked checkpoint: its memory, the adds since its last reset, and its history."""

    memory: BatchedMemoria
    timestep: int
    history: Optional[HistoryManager]


class IndependentRows:
    """One batch-1 ``BatchedMemoria`` and one tie-break generator per batch row, with the same verbs.

    Attributes:
        rows: the row memories in batch order (empty until the first ``add``).
        steps: per row, the adds since its last reset (each row's own ``timestep`` in a checkpoint).
        width: the fixed width of ``remind``'s outputs, the most one row can remind (num_reminded_stm +
            num_final_ltms + 1, the -1 entry included).
        seed_source: where the rows' seeds come from (``None``: the global RNG).
        hidden_dim: D of the rows (0 until known); device: where they live (``None`` until known).
    """

    #: no generator of this object draws where the engrams live: each row's own generator does, and follows them
    generator = None

    def __init__(self, config: dict, seed_source: Optional[torch.Generator] = None) -> None:
        """
        Args:
            config: ``Memoria.config()`` of the memory that holds the rows.
            seed_source: see above.
        """
        self.row_config = {**config, "independent_rows": False}
        self.width = config["num_reminded_stm"] + config["num_final_ltms"] + 1
        self.seed_source = seed_source
        self.rows: List[BatchedMemoria] = []
        self.steps: List[int] = []
        self.hidden_dim = 0
        self.device: Optional[torch.device] = None

    def _row(self, generator: Optional[torch.Generator]) -> BatchedMemoria:
        names = ("num_reminded_stm", "stm_capacity", "ltm_search_depth", "initial_lifespan", "num_final_ltms")
        config = {name: self.row_config[name] for name in names}
        return BatchedMemoria(
            **config, track_age=self.row_config["track_age"], track_id=self.row_config["track_id"], generator=generator
        )

    @property
    def batch_size(self) -> int:
        return len(self.rows)

    @property
    def memory_length(self) -> int:
        """The longest row's memory length."""
        return max((row.memory_length for row in self.rows), default=0)

    @property
    def fixed_shape(self) -> Optional[Tuple[int, int]]:
        """(B, D) the next input must have, once the rows started."""
        return (self.batch_size, self.hidden_dim) if self.rows else None

    @property
    def output_width(self) -> int:
        return self.width

    def rows_in_use(self) -> List[int]:
        """The rows that hold a memory: a reset row is a new, empty memory until its next add."""
        return [number for number, row in enumerate(self.rows) if row.memory_length]

    def _start(self, batch_size: int, device: torch.device) -> None:
        """One memory per row, each with a generator seeded by one draw from ``seed_source``."""
        source = self.seed_source
        seeds = torch.randint(
            0, 2**62, (batch_size,), generator=source, device=source.device if source is not None else "cpu"
        ).tolist()
        self.rows = [self._row(torch.Generator(device=device).manual_seed(seed)) for seed in seeds]
        self.steps = [0] * batch_size

    # ------------------------------------------------------------------ the three calls

    def add(self, data: torch.Tensor, first_id: int) -> None:
        """``data`` [B, L, D] (checked, float32 on the engrams' device): row ``b`` goes to memory ``b``.

        The first call starts the rows; if it fails, the seeds' draw is undone and no row is started.
        """
        starting = not self.rows
        if starting:
            source = torch.default_generator if self.seed_source is None else self.seed_source
            seed_state = source.get_state()
            self._start(data.size(0), data.device)
        try:
            for number, row in enumerate(self.rows):
                # a row restored without engrams learns its device here; its generator must draw there
                row.generator = _follow(row.generator, data.device)
                row.add(data[number : number + 1], first_id)
                self.steps[number] += 1
        except Exception:
            if starting:
                self.rows, self.steps = [], []
                source.set_state(seed_state)
            raise
        self.hidden_dim, self.device = data.size(2), data.device

    def remind(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Every row's ``remind``, padded to ``width`` (indices -1, memories 0) and stacked.

        Returns:
            memories: [B, R, D] float32; indices: [B, R]; on the engrams' device.
        """
        memories = torch.zeros(self.batch_size, self.width, self.hidden_dim, dtype=torch.float32, device=self.device)
        indices = torch.full((self.batch_size, self.width), -1, dtype=torch.long, device=self.device)
        for number, row in enumerate(self.rows):
            if row.store is None:
                continue
            row_memories, row_indices = row.remind()
            if row_indices.size(1) > self.width:
                raise RuntimeError(f"a row reminded {row_indices.size(1)} engrams, more than the bound {self.width}")
            if row_indices.numel():
                indices[number, : row_indices.size(1)] = row_indices[0]
                memories[number, : row_indices.size(1)] = row_memories[0]
        return memories, indices

    def adjust(self, indices: torch.Tensor, delta: torch.Tensor, checks=None) -> None:
        """Every row's adjust, with int64 ``indices`` [B, R] and float32 deltas of their shape; ``checks`` (see
        ``BatchedMemoria.adjust``) and every row's part are checked before any row changes."""
        if checks is not None:
            checks.confirm(checks.values.tolist())
        for number, row in enumerate(self.rows):
            if row.memory_length == 0:
                if bool((indices[number] != -1).any()):
                    raise ValueError(f"row {number} holds no engram (it was reset): its indices must all be -1")
                continue
            check_index_range(indices[number], row.memory_length, f"indices[{number}]")
        for number, row in enumerate(self.rows):
            if row.memory_length > 0:
                row.adjust(indices[number : number + 1], delta[number : number + 1])

    # ------------------------------------------------------------------ the rest of the backend verbs

    def clear_rows(self, rows: torch.Tensor) -> None:
        """Forget the rows where ``rows`` (bool [B]) is true: each starts again as an empty memory (its generator goes
        on)."""
        for number in rows.cpu().nonzero().flatten().tolist():
            self.rows[number].store = None
            self.steps[number] = 0

    def row_engrams(self, row: int) -> Optional[Engrams]:
        """Row ``row``'s own engrams (batch 1; length 0 when it holds none)."""
        return self.rows[row].engrams()

    def engrams(self) -> Optional[Engrams]:
        """All rows in one ``Engrams``, each left-padded with NULL slots to the longest row (B rows of length 0 when
        every row is empty, ``None`` before the rows started)."""
        if not self.rows:
            return None
        views = [row.engrams() for row in self.rows]
        length = self.memory_length
        like = next((view for view in views if view is not None and view.memory_length), None)
        if like is None:
            track_age, track_id = self.row_config["track_age"], self.row_config["track_id"]
            empty = torch.zeros(self.batch_size, 0, self.hidden_dim, dtype=torch.float32, device=self.device)
            return Engrams(empty, track_age=track_age, track_engram_id=track_id)
        padded = []
        for view in views:
            own = 0 if view is None else view.memory_length
            # -1 positions select NULL padding slots, as Engrams.mask_select pads; an empty row is all padding
            positions = torch.arange(-(length - own), own, device=like.device)
            padded.append((view if own else like).select(positions.clamp(min=-1).unsqueeze(0)))
        return stack_rows(padded)

    def set_engrams(self, engrams: Engrams, device: Optional[torch.device] = None) -> None:
        """Every row from the matching row of ``engrams`` (checked by the caller); the rows start if need be."""
        if engrams.batch_size == 0:
            self.rows, self.steps, self.hidden_dim = [], [], 0
            return
        if self.batch_size != engrams.batch_size:
            self._start(engrams.batch_size, device or engrams.device)
        self.hidden_dim, self.device = engrams.hidden_dim, engrams.device
        for row, row_engrams in zip(self.rows, engrams):
            row.set_engrams(row_engrams)

    def to(self, device: torch.device) -> None:
        """Move every row; a generator that cannot follow (another device type) is reseeded from itself."""
        for row in self.rows:
            row.to(device)
            row.generator = _follow(row.generator, device)
        self.device = device

    def state(self, config: dict, next_engram_id: int, history: Optional[list]) -> Optional[dict]:
        """Every row's own state (in ``Memoria.state_dict``'s format) and generator; ``None`` before the rows start."""
        if not self.rows:
            return None
        row_states = []
        for number, row in enumerate(self.rows):
            own = None if history is None or history[number] is None else [history[number]]
            view = row.engrams()
            if view is None:
                view = Engrams.empty(self.row_config["track_age"], self.row_config["track_id"])
            step = self.steps[number]
            row_states.append(
                checkpoint.memoria_state(self.row_config, view, step, next_engram_id, torch.float32, own, None)
            )
        return {
            "hidden_dim": self.hidden_dim,
            "rows": row_states,
            "generators": [row.generator.get_state() for row in self.rows],
            "generator_devices": [row.generator.device.type for row in self.rows],
        }

    def restored(self, state: dict, device: Optional[torch.device]) -> List[RestoredRow]:
        """The rows of ``state()``; raises ``ValueError`` on a malformed state (nothing is changed)."""
        row_states, generators = state.get("rows"), state.get("generators")
        if (
            not isinstance(row_states, list)
            or not isinstance(generators, list)
            or len(row_states) != len(generators)
            or not row_states
        ):
            raise ValueError(
                "an independent-rows state must hold equally long, non-empty 'rows' and 'generators' lists"
            )
        hidden_dim = state.get("hidden_dim", 0)
        if isinstance(hidden_dim, bool) or not isinstance(hidden_dim, int) or hidden_dim < 0:
            raise ValueError(f"an independent-rows state's hidden_dim must be a non-negative int, got {hidden_dim!r}")
        saved_devices = state.get("generator_devices", [None] * len(generators))
        if not isinstance(saved_devices, list) or len(saved_devices) != len(generators):
            raise ValueError("'generator_devices' must name one device type per row generator")
        restored = []
        for row_state, generator_state, saved_device in zip(row_states, generators, saved_devices):
            loaded = checkpoint.read_memoria_state(row_state, self.row_config, None, device)
            shape = loaded.engrams.data.shape
            if loaded.engrams.memory_length and (shape[0], shape[2]) != (1, hidden_dim):
                raise ValueError(
                    f"every row state must hold one batch row of hidden size {hidden_dim}, got "
                    f"{shape[0]} rows of hidden size {shape[2]}"
                )
            if not isinstance(generator_state, torch.Tensor) or generator_state.dtype != torch.uint8:
                raise ValueError("every row generator state must be a uint8 tensor (Generator.get_state())")
            memory = self._row(None)
            memory.set_engrams(loaded.engrams)
            # the generator draws where the row's engrams live (a map_location moved them)
            target = torch.device(device) if device is not None else memory.device
            memory.generator = _restore_generator(generator_state.cpu(), saved_device, target)
            history = loaded.history[0] if loaded.history else None
            restored.append(RestoredRow(memory, loaded.timestep, history))
        return restored

    def load(self, engrams: Engrams, rows: Optional[List[RestoredRow]], hidden_dim: int) -> None:
        """Take a checked checkpoint: the rows that ``restored`` built, or (a state saved before the rows started)
        its engrams."""
        if rows is None:
            self.set_engrams(engrams)
            return
        self.rows = [row.memory for row in rows]
        self.steps = [row.timestep for row in rows]
        self.hidden_dim = hidden_dim
        self.device = next((row.device for row in self.rows if row.device is not None), engrams.device)


# Generator.get_state() of the CPU's MT19937 generator is this long; a CUDA (Philox) state is 16 bytes.
_CPU_GENERATOR_STATE_BYTES = 5056


def _follow(generator: torch.Generator, device: Optional[torch.device]) -> torch.Generator:
    """``generator``, or where it cannot draw on ``device`` (another device type), a generator there seeded from it."""
    if device is None or generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


def _restore_generator(
    state: torch.Tensor, saved_device: Optional[str], target: Optional[torch.device]
) -> torch.Generator:
    """A generator with the saved ``state``, on ``target`` (default: where it was saved).

    A state saved on another device type continues as a generator seeded from it, as ``to`` does; where that device
    type is missing here (a GPU checkpoint loaded on a CPU machine), the seed is taken from the state's bytes.
    """
    if saved_device is None:  # states written before the device types were saved
        saved_device = "cpu" if state.numel() == _CPU_GENERATOR_STATE_BYTES else "cuda"
    try:
        saved = torch.Generator(device=saved_device)
    except RuntimeError:
        if target is not None and target.type == saved_device:
            raise ValueError(f"a row generator was saved on {saved_device!r}, which this machine does not have")
        # an empty row has no engrams to follow: a CPU generator, moved (reseeded) by its first input if need be
        target = target if target is not None else torch.device("cpu")
        digest = hashlib.blake2b(state.numpy().tobytes(), digest_size=8).digest()
        return torch.Generator(device=target).manual_seed(int.from_bytes(digest, "little") >> 2)
    try:
        saved.set_state(state)
    except RuntimeError as error:
        raise ValueError(f"a row generator state does not fit a {saved_device} generator: {error}")
    return saved if target is None else _follow(saved, target)


def stack_rows(rows: List[Engrams]) -> Engrams:
    """Batch-1 ``Engrams`` of one length, stacked along the batch axis."""
    track_age = all(row.track_age for row in rows)
    track_id = all(row.track_engram_id for row in rows)
    return Engrams(
        data=torch.cat([row.data for row in rows]),
        induce_counts=torch.cat([row.induce_counts for row in rows]),
        engrams_types=torch.cat([row.engrams_types for row in rows]),
        lifespan=torch.cat([row.lifespan for row in rows]),
        age=torch.cat([row.age for row in rows]) if track_age else None,
        engram_ids=torch.cat([row.engram_ids for row in rows]) if track_id else None,
        track_age=track_age,
        track_engram_id=track_id,
    )
