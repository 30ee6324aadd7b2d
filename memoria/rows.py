"""Independent rows: every batch row kept as a memory of its own (``Memoria(..., independent_rows=True)``).

The published algorithm couples the rows of a batch: index lists are padded to the widest row, the long-term search
quirks (R2, R4) read those padded positions, and one tie-break draw is shaped by the widest row. So what one row
reminds can depend on what the other rows hold, and forgetting one row changes the others later on. Here each row is a
batch-1 ``Memoria`` with a random generator of its own, and ``remind`` pads every row to the same fixed width: a row's
results depend on nothing but its own inputs, so resetting one row leaves every other row bit-identical.
Each row behaves exactly like the published package fed that row alone, with the row's generator as its RNG.
"""

import hashlib
from typing import List, Optional, Tuple

import torch

from .engram import Engrams


class RowMemories:
    """One batch-1 ``Memoria`` and one tie-break generator per batch row.

    Attributes:
        memories: the row memories, in batch order.
    """

    def __init__(self, config: dict, batch_size: int, device: torch.device) -> None:
        """
        Args:
            config: the constructor arguments of the rows' ``Memoria`` (``independent_rows`` aside).
            batch_size: number of rows.
            device: where the rows keep their engrams and draw their tie-breaks.
        """
        from .memoria import Memoria

        self.config = config
        # one draw from the global RNG seeds every row's own stream
        seeds = torch.randint(0, 2**62, (batch_size,)).tolist()
        self.hidden_dim = 0
        self.memories: List[Memoria] = []
        for seed in seeds:
            memory = Memoria(**config, device=device)
            memory._generator = torch.Generator(device=device).manual_seed(seed)
            self.memories.append(memory)

    @property
    def batch_size(self) -> int:
        return len(self.memories)

    @property
    def width(self) -> int:
        """The fixed width of ``remind``'s outputs: the most one row can remind, the -1 entry included."""
        return self.config["num_reminded_stm"] + self.config["num_final_ltms"] + 1

    def add(self, data: torch.Tensor) -> None:
        """``data`` [BatchSize, Length, HiddenDim]: row ``b`` goes to memory ``b``."""
        self.hidden_dim = data.size(2)
        for row, memory in enumerate(self.memories):
            memory.add_working_memory(data[row : row + 1])
            # a row restored without engrams learns its device here; its generator must draw there
            memory._generator = _follow(memory._generator, memory.device)

    def remind(self, dtype: torch.dtype, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Every row's ``remind``, padded to ``width`` (indices -1, memories 0) and stacked.

        Returns:
            memories: [BatchSize, Width, HiddenDim]; indices: [BatchSize, Width].
        """
        all_memories, all_indices = [], []
        for memory in self.memories:
            memories, indices = memory.remind()
            if indices.size(1) > self.width:
                raise RuntimeError(f"a row reminded {indices.size(1)} engrams, more than the bound {self.width}")
            padded_indices = torch.full((1, self.width), -1, dtype=torch.long, device=device)
            padded_memories = torch.zeros(1, self.width, self.hidden_dim, dtype=dtype, device=device)
            if indices.numel():
                padded_indices[:, : indices.size(1)] = indices
                padded_memories[:, : indices.size(1)] = memories
            all_indices.append(padded_indices)
            all_memories.append(padded_memories)
        return torch.cat(all_memories), torch.cat(all_indices)

    def check_adjust(self, indices: torch.Tensor, lifespan_delta: torch.Tensor) -> None:
        """Check every row's part of an adjust before any row changes."""
        for row, memory in enumerate(self.memories):
            if memory.memory_length == 0:
                if bool((indices[row] != -1).any()):
                    raise ValueError(f"row {row} holds no engram (it was reset): its indices must all be -1")
                continue
            memory._check_adjust_inputs(indices[row : row + 1], lifespan_delta[row : row + 1])

    def adjust(self, indices: torch.Tensor, lifespan_delta: torch.Tensor) -> None:
        for row, memory in enumerate(self.memories):
            if memory.memory_length > 0:
                memory.adjust_lifespan_and_memories(indices[row : row + 1], lifespan_delta[row : row + 1])

    def reset(self, rows: torch.Tensor) -> None:
        """Forget the rows where ``rows`` (bool [BatchSize]) is true; ids keep counting, the generators go on."""
        for row in rows.nonzero().flatten().tolist():
            memory = self.memories[row]
            next_engram_id = memory.next_engram_id
            memory.reset_memory()
            memory.next_engram_id = next_engram_id

    def engrams(self) -> Engrams:
        """All rows in one ``Engrams``, each left-padded with NULL slots to the longest row."""
        rows = [memory.engrams for memory in self.memories]
        length = max(row.memory_length for row in rows)
        if length == 0:
            first = self.memories[0]
            return Engrams.empty(track_age=first.track_age, track_engram_id=first.track_id)
        # an empty row (reset) is all padding, shaped like any non-empty one
        like = next(row for row in rows if row.memory_length)
        padded = []
        for row in rows:
            # -1 positions select NULL padding slots, as Engrams.mask_select pads
            positions = torch.arange(-(length - row.memory_length), row.memory_length, device=like.device)
            padded.append((row if row.memory_length else like).select(positions.clamp(min=-1).unsqueeze(0)))
        return stack_rows(padded)

    def set_engrams(self, engrams: Engrams) -> None:
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
            memory._generator = _follow(memory._generator, device)

    def state_dict(self) -> dict:
        return {
            "hidden_dim": self.hidden_dim,
            "rows": [memory.state_dict() for memory in self.memories],
            "generators": [memory._generator.get_state() for memory in self.memories],
            "generator_devices": [memory._generator.device.type for memory in self.memories],
        }

    @classmethod
    def from_state(cls, config: dict, state: dict, device: Optional[torch.device]) -> "RowMemories":
        """Rebuild from ``state_dict()``; raises ``ValueError`` on a malformed state (nothing is changed)."""
        from .memoria import Memoria

        rows, generators = state.get("rows"), state.get("generators")
        if not isinstance(rows, list) or not isinstance(generators, list) or len(rows) != len(generators) or not rows:
            raise ValueError(
                "an independent-rows state must hold equally long, non-empty 'rows' and 'generators' lists"
            )
        restored = cls.__new__(cls)
        restored.config = config
        restored.memories = []
        hidden_dim = state.get("hidden_dim", 0)
        if isinstance(hidden_dim, bool) or not isinstance(hidden_dim, int) or hidden_dim < 0:
            raise ValueError(f"an independent-rows state's hidden_dim must be a non-negative int, got {hidden_dim!r}")
        restored.hidden_dim = hidden_dim
        saved_devices = state.get("generator_devices", [None] * len(generators))
        if not isinstance(saved_devices, list) or len(saved_devices) != len(generators):
            raise ValueError("'generator_devices' must name one device type per row generator")
        for row_state, generator_state, saved_device in zip(rows, generators, saved_devices):
            memory = Memoria(**config, device=device)
            memory.load_state_dict(row_state)
            if memory.memory_length and (memory._store.batch_size, memory._store.data.size(2)) != (1, hidden_dim):
                raise ValueError(
                    f"every row state must hold one batch row of hidden size {hidden_dim}, got "
                    f"{memory._store.batch_size} rows of hidden size {memory._store.data.size(2)}"
                )
            if not isinstance(generator_state, torch.Tensor) or generator_state.dtype != torch.uint8:
                raise ValueError("every row generator state must be a uint8 tensor (Generator.get_state())")
            # the generator draws where the row's engrams live (a map_location moved them)
            stored = memory._store.device if memory._store is not None else None
            target = torch.device(device) if device is not None else stored
            memory._generator = _restore_generator(generator_state.cpu(), saved_device, target)
            restored.memories.append(memory)
        return restored


# Generator.get_state() of the CPU's MT19937 generator is this long; a CUDA (Philox) state is 16 bytes.
_CPU_GENERATOR_STATE_BYTES = 5056


def _follow(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """``generator``, or where it cannot draw on ``device`` (another device type), a generator there seeded from it."""
    if generator.device.type == device.type:
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
