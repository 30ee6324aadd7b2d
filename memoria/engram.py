"""The engram container: every memory slot of every batch row, as a handful of batched tensors."""

import numbers
import warnings
from enum import Enum
from typing import Iterator, List, Optional, Tuple, Union

import torch

from .fields import FIELDS, PADDING, gather_fields  # noqa: F401  (PADDING: the store reads it from here)
from .legacy import engrams_state
from .ops import fire_together, indices_with_mask, pair_gather

# the records are re-exported here, where the published package defined them
from .types import EngramConnection, EngramInfo, EngramsInfo  # noqa: F401
from .utils import add_at, local_indices, mask_with_indices
from .validation import as_indices, as_lifespan_delta, check_device, check_index_range, check_memory_length


class EngramType(Enum):
    """Stage of an engram; ``.value`` is what the ``engrams_types`` uint8 tensor stores."""

    NULL = 0
    WORKING = 1
    SHORTTERM = 2
    LONGTERM = 3


class Engrams:
    """Memory slots of a batch: data plus bookkeeping. Rows shorter than the memory length are padded on the left.

    Attributes:
        data: engram vectors shaped [B, M, D], float32 (padding 0.0).
        induce_counts: co-firing counts shaped [B, M, M], int32; ``[b, i, j]`` counts the
            steps in which engrams i and j fired together, the diagonal is the fire count (-1 for pairs with padding).
        engrams_types: ``EngramType`` values shaped [B, M], uint8 (padding 0 = NULL).
        lifespan: remaining lifespan shaped [B, M], float32 (padding -1.0).
        age: steps survived shaped [B, M], int32 (padding -1), ``None`` unless ``track_age``.
        engram_ids: ids shaped [B, M], int32 (padding -1), ``None`` unless ``track_engram_id``.
    """

    @torch.no_grad()
    def __init__(
        self,
        data: torch.Tensor,
        induce_counts: Optional[torch.Tensor] = None,
        engrams_types: Optional[Union[torch.Tensor, EngramType]] = None,
        lifespan: Union[torch.Tensor, float] = 0,
        age: Optional[Union[torch.Tensor, int]] = None,
        engram_ids: Optional[Union[torch.Tensor, int]] = None,
        track_age: bool = False,
        track_engram_id: bool = False,
    ) -> None:
        """Wrap existing tensors, or create new engrams from ``data`` [B, M, D].

        Fields that are not given are created as for brand-new engrams: zero induce counts, the given type (WORKING by
        default), the given lifespan, age 0 and ids ``engram_ids, engram_ids + 1, ...`` along the memory axis.
        """
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"Engrams data must be a tensor [BatchSize, MemoryLength, HiddenDim], got {data!r:.60}")
        if data.dim() != 3:
            raise ValueError(f"Engrams data must be [BatchSize, MemoryLength, HiddenDim], got {list(data.shape)}")
        for name, value, scalar in (
            ("induce_counts", induce_counts, type(None)),
            ("engrams_types", engrams_types, (type(None), EngramType)),
            ("lifespan", lifespan, numbers.Real),
            ("age", age, (type(None), numbers.Integral)),
            ("engram_ids", engram_ids, (type(None), numbers.Integral)),
        ):
            if not isinstance(value, (torch.Tensor, scalar)) or isinstance(value, bool):
                raise TypeError(f"Engrams {name} must be a tensor (or a default), got {type(value).__name__}")
        batch_size, memory_length, _ = data.shape
        if induce_counts is None:
            check_memory_length(batch_size, memory_length, "Engrams data")
        device = data.device
        shape = (batch_size, memory_length)
        self.track_age = track_age
        self.track_engram_id = track_engram_id

        self.data: torch.Tensor = data.detach().float()
        if induce_counts is None:
            induce_counts = torch.zeros(batch_size, memory_length, memory_length, dtype=torch.int32, device=device)
        self.induce_counts: torch.Tensor = induce_counts.detach().to(torch.int32)

        if not isinstance(engrams_types, torch.Tensor):
            kind = engrams_types if isinstance(engrams_types, EngramType) else EngramType.WORKING
            engrams_types = torch.full(shape, kind.value, dtype=torch.uint8, device=device)
        self.engrams_types: torch.Tensor = engrams_types.detach().to(torch.uint8)

        if not isinstance(lifespan, torch.Tensor):
            lifespan = torch.full(shape, float(lifespan), dtype=torch.float32, device=device)
        self.lifespan: torch.Tensor = lifespan.detach().to(torch.float32)

        if track_age and not isinstance(age, torch.Tensor):
            age = torch.zeros(shape, dtype=torch.int32, device=device)
        self.age: Optional[torch.Tensor] = age.detach().to(torch.int32) if track_age else None

        if track_engram_id and not isinstance(engram_ids, torch.Tensor):
            start = int(engram_ids or 0)
            engram_ids = torch.arange(start, start + memory_length, dtype=torch.int32, device=device).repeat(
                batch_size, 1
            )
        self.engram_ids: Optional[torch.Tensor] = engram_ids.detach().to(torch.int32) if track_engram_id else None
        self._check_shapes()

    def __setstate__(self, state: dict) -> None:
        """Unpickling: also engrams pickled by the published package (``memoria.legacy``), or a ``ValueError``."""
        self.__dict__.update(engrams_state(state))
        self._check_shapes()

    def _check_shapes(self) -> None:
        batch_size, memory_length, _ = self.data.shape
        expected = dict.fromkeys(FIELDS[2:], (batch_size, memory_length))
        expected["induce_counts"] = (batch_size, memory_length, memory_length)
        for name, shape in expected.items():
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"Engrams {name} must be shaped {list(shape)} to match data, got {list(value.shape)}")

    # ------------------------------------------------------------------ construction and comparison

    @classmethod
    def empty(cls, track_age: bool = False, track_engram_id: bool = False) -> "Engrams":
        """Engrams with batch size, memory length and hidden size all 0."""
        return cls(torch.zeros(0, 0, 0), track_age=track_age, track_engram_id=track_engram_id)

    def _replace(self, **fields: Optional[torch.Tensor]) -> "Engrams":
        """New Engrams with the same flags, taking every field from ``fields``."""
        return Engrams(track_age=self.track_age, track_engram_id=self.track_engram_id, **fields)

    def _fields(self) -> dict:
        return {name: getattr(self, name) for name in FIELDS}

    def clone(self) -> "Engrams":
        """A deep copy (the memory mutates its current engrams in place during a step)."""
        return self._replace(**{k: None if v is None else v.clone() for k, v in self._fields().items()})

    def to(self, device: Union[str, torch.device]) -> "Engrams":
        """A copy on ``device`` (or ``self`` when already there)."""
        device = check_device(device, "device")
        if self.data.device == device:
            return self
        return self._replace(**{k: None if v is None else v.to(device) for k, v in self._fields().items()})

    @property
    def batch_size(self) -> int:
        return self.data.size(0)

    @property
    def memory_length(self) -> int:
        return self.data.size(1)

    @property
    def hidden_dim(self) -> int:
        return self.data.size(2)

    @property
    def device(self) -> torch.device:
        return self.data.device

    def __len__(self) -> int:
        """Number of slots, padding included: B * M."""
        return self.lifespan.numel()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Engrams):
            return NotImplemented
        if (self.track_age, self.track_engram_id) != (other.track_age, other.track_engram_id):
            return False
        pairs = zip(self._fields().values(), other._fields().values())
        return all(
            a is b is None or a is not None and b is not None and torch.equal(a, b.to(a.device)) for a, b in pairs
        )

    __hash__ = None

    def __repr__(self) -> str:
        counts = {t.name: int((self.engrams_types == t.value).sum()) for t in EngramType if t is not EngramType.NULL}
        return (
            f"Engrams(batch_size={self.batch_size}, memory_length={self.memory_length}, hidden_dim={self.hidden_dim}, "
            f"device={self.device}, {counts})"
        )

    @torch.no_grad()
    def __add__(self, other: "Engrams") -> "Engrams":
        """Append ``other``'s slots after ours in every row; cross induce counts are 0 (block-diagonal)."""
        if not isinstance(other, Engrams):
            return NotImplemented
        if len(self) == 0:
            return other
        if len(other) == 0:
            return self
        if other.batch_size != self.batch_size or other.hidden_dim != self.hidden_dim:
            raise ValueError(
                f"cannot concatenate engrams shaped {list(self.data.shape)} and {list(other.data.shape)}: "
                "batch size and hidden size must match"
            )
        track_age = self.track_age and other.track_age
        track_id = self.track_engram_id and other.track_engram_id
        if self.track_age != other.track_age:
            warnings.warn("age is tracked by only one operand: the concatenation does not track it")
        if self.track_engram_id != other.track_engram_id:
            warnings.warn("engram ids are tracked by only one operand: the concatenation does not track them")

        length, other_length = self.memory_length, other.memory_length
        induce_counts = self.induce_counts.new_zeros(self.batch_size, length + other_length, length + other_length)
        induce_counts[:, :length, :length] = self.induce_counts
        induce_counts[:, length:, length:] = other.induce_counts
        kept = {"age": track_age, "engram_ids": track_id, "induce_counts": False}
        fields = {
            name: torch.cat([getattr(self, name), getattr(other, name)], dim=1)
            for name in FIELDS
            if kept.get(name, True)
        }
        return Engrams(induce_counts=induce_counts, track_age=track_age, track_engram_id=track_id, **fields)

    def __iter__(self) -> Iterator["Engrams"]:
        """One single-row Engrams per batch row."""
        for row in range(self.batch_size):
            yield self._replace(**{k: None if v is None else v[row : row + 1] for k, v in self._fields().items()})

    # ------------------------------------------------------------------ masks and fire counts

    @property
    def working_memory_mask(self) -> torch.Tensor:
        """[B, M] bool, true at WORKING engrams."""
        return self.engrams_types == EngramType.WORKING.value

    @property
    def shortterm_memory_mask(self) -> torch.Tensor:
        """[B, M] bool, true at SHORTTERM engrams."""
        return self.engrams_types == EngramType.SHORTTERM.value

    @property
    def longterm_memory_mask(self) -> torch.Tensor:
        """[B, M] bool, true at LONGTERM engrams."""
        return self.engrams_types == EngramType.LONGTERM.value

    @property
    def fire_count(self) -> torch.Tensor:
        """[B, M]: the diagonal of the induce counts (a view)."""
        return self.induce_counts.diagonal(dim1=1, dim2=2)

    @fire_count.setter
    @torch.no_grad()
    def fire_count(self, value: Union[torch.Tensor, int]) -> None:
        """Set the diagonal from ``value`` [B, M] or what broadcasts to it (a number, a [1, M] row)."""
        value = torch.as_tensor(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else value
        if not isinstance(value, torch.Tensor) or value.dtype.is_complex or value.dtype == torch.bool:
            raise TypeError(f"fire_count must be a real tensor or a number, got {value!r:.60}")
        shape = self.fire_count.shape
        if value.dim() > 2 or any(size not in (1, full) for size, full in zip(value.shape[::-1], shape[::-1])):
            raise ValueError(f"fire_count must broadcast to {list(shape)}, got {list(value.shape)}")
        self.fire_count.copy_(value)

    # ------------------------------------------------------------------ index helpers

    def get_indices_with_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Positions where ``mask`` [B, M] is true, ascending; [B, K], left-padded with -1."""
        return indices_with_mask(self._mask(mask))

    def get_mask_with_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Bool mask [B, M], true at ``indices`` [B, K] (negative entries ignored)."""
        return mask_with_indices(self._row_indices(indices), self.memory_length)

    def _row_indices(self, indices, name: str = "indices", lowest: int = -(2**63)) -> torch.Tensor:
        """Per-row ``indices`` [B, K] (tensor, list, tuple or numpy array) as int64 on our device; entries
        from ``memory_length`` up or below ``lowest`` are an ``IndexRangeError``, negative ones mean none."""
        indices = as_indices(indices, name)
        if indices.dim() != 2 or indices.size(0) != self.batch_size:
            raise ValueError(f"{name} must be shaped [{self.batch_size}, K], got {list(indices.shape)}")
        indices = indices.to(self.device)
        check_index_range(indices, self.memory_length, name, lowest=lowest)
        return indices

    def _mask(self, mask, name: str = "mask") -> torch.Tensor:
        """A bool [B, M] mask (tensor, list or numpy array) on our device."""
        if not isinstance(mask, torch.Tensor):
            mask = torch.as_tensor(mask) if isinstance(mask, (list, tuple)) or hasattr(mask, "__array__") else mask
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"{name} must be a bool tensor shaped [BatchSize, MemoryLength], got {mask!r:.80}")
        if tuple(mask.shape) != (self.batch_size, self.memory_length):
            raise ValueError(f"{name} must be shaped [{self.batch_size}, {self.memory_length}], got {list(mask.shape)}")
        return mask.to(self.device)

    def get_working_memory(self) -> Tuple["Engrams", torch.Tensor]:
        """WORKING engrams (compacted, left-padded) and their global indices [B, K]."""
        return self._typed_memory(self.working_memory_mask)

    def get_shortterm_memory(self) -> Tuple["Engrams", torch.Tensor]:
        """SHORTTERM engrams (compacted, left-padded) and their global indices [B, K]."""
        return self._typed_memory(self.shortterm_memory_mask)

    def get_longterm_memory(self) -> Tuple["Engrams", torch.Tensor]:
        """LONGTERM engrams (compacted, left-padded) and their global indices [B, K]."""
        return self._typed_memory(self.longterm_memory_mask)

    def _typed_memory(self, mask: torch.Tensor) -> Tuple["Engrams", torch.Tensor]:
        indices = indices_with_mask(mask)
        return self._select_rows(indices), indices

    def get_local_indices_from_global_indices(
        self, partial_mask: torch.Tensor, global_indices: torch.Tensor
    ) -> torch.Tensor:
        """Where the given global indices sit in the compacted, left-padded list of ``partial_mask`` slots.

        Args:
            partial_mask: bool [B, M] choosing the sub-list.
            global_indices: [B, K] global positions; -1 and positions outside the sub-list are ignored.
        Returns:
            local positions [B, K'], ascending, left-padded with -1.
        """
        mask, indices = self._mask(partial_mask, "partial_mask"), self._row_indices(global_indices, "global_indices")
        return local_indices(mask, indices)

    # ------------------------------------------------------------------ selection

    @torch.no_grad()
    def select(self, indices: torch.Tensor) -> "Engrams":
        """Engrams at ``indices``: [K] picks the same slots in every row; [B, K] picks per row, -1 gives null.

        ``indices`` may be a tensor, list, tuple or numpy array; a [K] index counts negative entries from the end. As in
        the published package, a [B, K] index gives null for every entry from ``-memory_length`` to -1, and one
        below that is an ``IndexRangeError`` (on every form: the C one reads -1 as its only "none").
        """
        indices = as_indices(indices, "indices")
        if indices.dim() == 1:
            indices = indices.to(self.device)
            check_index_range(indices, self.memory_length, "indices", lowest=-self.memory_length)
            fields = {k: None if v is None else v[:, indices] for k, v in self._fields().items()}
            fields["induce_counts"] = self.induce_counts[:, indices][:, :, indices]
            return self._replace(**fields)
        if indices.dim() != 2:
            raise ValueError(f"indices must be shaped [K] or [BatchSize, K], got {list(indices.shape)}")
        return self._select_rows(self._row_indices(indices, lowest=-self.memory_length).clamp(min=-1))

    def _select_rows(self, indices: torch.Tensor) -> "Engrams":
        """``select`` of checked int64 [B, K] indices on our device."""
        return self._replace(induce_counts=pair_gather(self.induce_counts, indices), **gather_fields(self, indices))

    @torch.no_grad()
    def mask_select(self, mask: torch.Tensor) -> "Engrams":
        """Keep the slots where ``mask`` [B, M] is true, compacted with left padding."""
        mask = self._mask(mask)
        indices = indices_with_mask(mask)
        if indices.size(1) == self.memory_length and bool(mask.all()):
            return self._replace(**self._fields())
        return self._select_rows(indices)

    @torch.no_grad()
    def delete(self, indices: torch.Tensor) -> None:
        """Remove the slots at ``indices`` [B, K] (-1 ignored) and compact, in place."""
        kept = self.mask_select(~self.get_mask_with_indices(indices))  # checked there, before anything changes
        for name, value in kept._fields().items():
            setattr(self, name, value)

    # ------------------------------------------------------------------ updates (in place)

    @torch.no_grad()
    def fire_together_wire_together(self, indices: torch.Tensor) -> None:
        """Add 1 to ``induce_counts[b, i, j]`` for every pair i, j of the distinct non-negative ``indices[b]``.

        Args:
            indices: global indices shaped [B, K]; -1 is ignored and repeated indices count once.
        """
        fire_together(self.induce_counts, self._row_indices(indices))

    @torch.no_grad()
    def extend_lifespan(self, indices: torch.Tensor, lifespan_delta: torch.Tensor) -> None:
        """Add ``lifespan_delta[b, k]`` to the lifespan of slot ``indices[b, k]`` (negative skipped).

        A repeated index gets every one of its deltas (the published package keeps only one of them).

        Args:
            indices: [B, K] global indices (tensor, list, tuple or numpy array).
            lifespan_delta: [B, K] amounts, or anything that broadcasts to that: a number, a 0-dim tensor, a
                [1, K] row.
        """
        indices = self._row_indices(indices)
        delta = as_lifespan_delta(lifespan_delta, indices.shape, "lifespan_delta").to(self.device)
        add_at(self.lifespan, indices, delta)

    @torch.no_grad()
    def decrease_lifespan(self) -> None:
        """Every slot loses 1.0 of lifespan."""
        self.lifespan -= 1.0

    @torch.no_grad()
    def increase_age(self) -> None:
        """Every slot gets one step older (only when age is tracked)."""
        if self.age is not None:
            self.age += 1

    # ------------------------------------------------------------------ analysis

    def status_summary(self) -> List["EngramsInfo"]:
        """One ``EngramsInfo`` per batch row (needs engram ids): engrams, their edges, and ids per type."""
        from .summary import status_summary

        return status_summary(self)
