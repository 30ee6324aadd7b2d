"""Independent rows: every batch row kept as a memory of its own (``Memoria(..., independent_rows=True)``).

The published algorithm couples the rows of a batch: index lists are padded to the widest row, the long-term search
quirks (R2, R4 in ``docs/algorithm.md``) read those padded positions, and one tie-break draw is shaped by the widest
row. So what one row reminds can depend on what the other rows hold, and forgetting one row changes the others later
on. Here each row is a batch-1 memory with a random generator of its own, and ``remind`` pads every row to the same
fixed width: a row's results depend on nothing but its own inputs, so resetting one row leaves every other row
bit-identical. Each row behaves exactly like the published package fed that row alone, with the row's generator as
its RNG.
"""

import hashlib
from typing import Any, Callable, List, Optional, Tuple

import torch

from .engram import Engrams
from .validation import check_index_range

#: Builds the memory of one row, given its generator (``Memoria`` with ``independent_rows=False``).
RowFactory = Callable[[torch.Generator, Optional[torch.device]], Any]


class RowwiseMemoria:
    """One batch-1 memory and one tie-break generator per batch row, with the verbs of ``Memoria``.

    Attributes:
        memories: the row memories in batch order (empty until the first ``add_working_memory``).
        width: the fixed width of ``remind``'s outputs, the most one row can remind (num_reminded_stm +
            num_final_ltms + 1, the -1 entry included).
    """

    def __init__(self, make_row: RowFactory, width: int, generator: Optional[torch.Generator] = None) -> None:
        """
        Args:
            make_row: ``make_row(generator, device)`` builds one row's memory.
            width: see above.
            generator: where the rows' seeds come from (default: the global RNG).
        """
        self.make_row = make_row
        self.width = width
        self.generator = generator
        self.memories: List[Any] = []
        self.hidden_dim = 0
        self.ext_dtype: torch.dtype = torch.float32
        self.ext_device: Optional[torch.device] = None

    @property
    def batch_size(self) -> int:
        return len(self.memories)

    @property
    def memory_length(self) -> int:
        """The longest row's memory length."""
        return max((memory.memory_length for memory in self.memories), default=0)

    def _start(self, batch_size: int, device: torch.device) -> None:
        """One memory per row, each with a generator seeded by one draw from ``self.generator``."""
        source = self.generator
        seeds = torch.randint(
            0, 2**62, (batch_size,), generator=source, device=source.device if source is not None else "cpu"
        ).tolist()
        self.memories = [self.make_row(torch.Generator(device=device).manual_seed(seed), device) for seed in seeds]

    def add_working_memory(self, data: torch.Tensor, device: torch.device) -> None:
        """``data`` [BatchSize, Length, HiddenDim] (checked, float32 on ``device``): row ``b`` goes to memory ``b``.

        The first call starts the rows; if it fails, the seeds' draw is undone and no row is started.
        """
        starting = not self.memories
        if starting:
            source = torch.default_generator if self.generator is None else self.generator
            seed_state = source.get_state()
            self._start(data.size(0), device)
        try:
            for row, memory in enumerate(self.memories):
                memory.add_working_memory(data[row : row + 1])
                # a row restored without engrams learns its device here; its generator must draw there
                memory.generator = _follow(memory.generator, memory.device)
        except Exception:
            if starting:
                self.memories = []
                source.set_state(seed_state)
            raise
        self.hidden_dim = data.size(2)

    def remind(self, dtype: torch.dtype, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Every row's ``remind``, padded to ``width`` (indices -1, memories 0) and stacked.

        Returns:
            memories: [BatchSize, Width, HiddenDim] in ``dtype`` on ``device``; indices: [BatchSize, Width].
        """
        memories = torch.zeros(self.batch_size, self.width, self.hidden_dim, dtype=dtype, device=device)
        indices = torch.full((self.batch_size, self.width), -1, dtype=torch.long, device=device)
        for row, memory in enumerate(self.memories):
            row_memories, row_indices = memory.remind()
            if row_indices.size(1) > self.width:
                raise RuntimeError(f"a row reminded {row_indices.size(1)} engrams, more than the bound {self.width}")
            if row_indices.numel():
                indices[row, : row_indices.size(1)] = row_indices[0]
                memories[row, : row_indices.size(1)] = row_memories[0]
        return memories, indices

    def adjust_lifespan_and_memories(self, indices: torch.Tensor, lifespan_delta: torch.Tensor) -> None:
        """Every row's adjust, with int64 ``indices`` [BatchSize, R] and float32 deltas of their shape; every row's
        part is checked before any row changes."""
        for row, memory in enumerate(self.memories):
            if memory.memory_length == 0:
                if bool((indices[row] != -1).any()):
                    raise ValueError(f"row {row} holds no engram (it was reset): its indices must all be -1")
                continue
            check_index_range(indices[row], memory.memory_length, f"indices[{row}]")
        for row, memory in enumerate(self.memories):
            if memory.memory_length > 0:
                memory.adjust_lifespan_and_memories(indices[row : row + 1], lifespan_delta[row : row + 1])

    def reset_memory_rows(self, rows: torch.Tensor) -> None:
        """Forget the rows where ``rows`` (bool [BatchSize]) is true; ids keep counting, the generators go on."""
        for row in rows.cpu().nonzero().flatten().tolist():
            memory = self.memories[row]
            next_engram_id = memory.next_engram_id
            memory.reset_memory()
            memory.next_engram_id = next_engram_id

    def engrams(self) -> Optional[Engrams]:
        """All rows in one ``Engrams``, each left-padded with NULL slots to the longest row (None when all are empty)."""
        rows = [memory.engrams for memory in self.memories]
        length = max((row.memory_length for row in rows), default=0)
        if length == 0:
            return None
        # an empty row (reset) is all padding, shaped like any non-empty one
        like = next(row for row in rows if row.memory_length)
        padded = []
        for row in rows:
            # -1 positions select NULL padding slots, as Engrams.mask_select pads
            positions = torch.arange(-(length - row.memory_length), row.memory_length, device=like.device)
            padded.append((row if row.memory_length else like).select(positions.clamp(min=-1).unsqueeze(0)))
        return stack_rows(padded)

    def set_engrams(self, engrams: Engrams, device: Optional[torch.device]) -> None:
        """Every row from the matching row of ``engrams`` (checked by the caller); the rows start if need be."""
        if self.batch_size != engrams.batch_size:
            self._start(engrams.batch_size, device or engrams.device)
        self.hidden_dim = engrams.hidden_dim
        for memory, row in zip(self.memories, engrams):
            memory.engrams = row

    def history(self) -> Optional[list]:
        if not any(memory.history for memory in self.memories):
            return None
        return [memory.history[0] if memory.history else None for memory in self.memories]

    def to(self, device: torch.device) -> None:
        """Move every row; a generator that cannot follow (another device type) is reseeded from itself."""
        for memory in self.memories:
            memory.to(device)
            memory.generator = _follow(memory.generator, device)

    def state_dict(self) -> dict:
        return {
            "hidden_dim": self.hidden_dim,
            "rows": [memory.state_dict() for memory in self.memories],
            "generators": [memory.generator.get_state() for memory in self.memories],
            "generator_devices": [memory.generator.device.type for memory in self.memories],
        }

    def restored(self, state: dict, device: Optional[torch.device]) -> List[Any]:
        """The row memories of ``state_dict()``; raises ``ValueError`` on a malformed state (nothing is changed)."""
        rows, generators = state.get("rows"), state.get("generators")
        if not isinstance(rows, list) or not isinstance(generators, list) or len(rows) != len(generators) or not rows:
            raise ValueError(
                "an independent-rows state must hold equally long, non-empty 'rows' and 'generators' lists"
            )
        hidden_dim = state.get("hidden_dim", 0)
        if isinstance(hidden_dim, bool) or not isinstance(hidden_dim, int) or hidden_dim < 0:
            raise ValueError(f"an independent-rows state's hidden_dim must be a non-negative int, got {hidden_dim!r}")
        saved_devices = state.get("generator_devices", [None] * len(generators))
        if not isinstance(saved_devices, list) or len(saved_devices) != len(generators):
            raise ValueError("'generator_devices' must name one device type per row generator")
        memories = []
        for row_state, generator_state, saved_device in zip(rows, generators, saved_devices):
            memory = self.make_row(None, device)
            memory.load_state_dict(row_state)
            shape = memory.engrams.data.shape
            if memory.memory_length and (shape[0], shape[2]) != (1, hidden_dim):
                raise ValueError(
                    f"every row state must hold one batch row of hidden size {hidden_dim}, got "
                    f"{shape[0]} rows of hidden size {shape[2]}"
                )
            if not isinstance(generator_state, torch.Tensor) or generator_state.dtype != torch.uint8:
                raise ValueError("every row generator state must be a uint8 tensor (Generator.get_state())")
            # the generator draws where the row's engrams live (a map_location moved them)
            target = torch.device(device) if device is not None else memory.device
            memory.generator = _restore_generator(generator_state.cpu(), saved_device, target)
            memories.append(memory)
        return memories

    def load(self, memories: List[Any], hidden_dim: int) -> None:
        """Take the row memories that ``restored`` built."""
        self.memories, self.hidden_dim = memories, hidden_dim

    def clear(self) -> None:
        """No rows (the next ``add_working_memory`` starts them afresh)."""
        self.memories, self.hidden_dim = [], 0


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
