"""Physical storage behind the algorithm (``memoria.algorithm``): engram vectors and co-firing counts in slots that
never move.

``Engrams`` describes the memory in its *logical* layout: every row compacted and left-padded, so forgetting one engram
shifts every later row and column of the ``[B, M, M]`` co-firing counts. Doing that every step costs a full copy of
them (and of the ``[B, M, D]`` vectors). The store keeps those two big tensors in physical slots instead and moves
only a ``[B, M]`` map from logical positions to slots; the small per-engram fields stay logical. Padding positions are
real slots too, because the published algorithm reads and even revives them (quirks R2, R4).

Shapes: B batch rows, M memory length (logical positions), D hidden size, N physical slots (capacity + 1), L new
engrams, K indices.
"""

import warnings
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch

from . import ops
from .engram import PADDING, Engrams, EngramType


class EngramStore:
    """Engrams of a batch: logical ``[B, M]`` fields plus physically slotted data and counts.

    Attributes:
        data: [B, N, D] vectors by physical slot; the last slot is always zero.
        counts: [B, N, N] co-firing counts by physical slot (unmapped slots hold garbage); the last row and column are a
            spare that nothing reads, where writes for "no slot" may land.
        slots: [B, M] physical slot of every logical position (padding included).
        engrams_types, lifespan, age, engram_ids: [B, M] logical fields, as in ``Engrams``.
    """

    def __init__(self, engrams: Engrams, spare: int = 0) -> None:
        batch_size, length, hidden = engrams.data.shape
        capacity = _grown_capacity(length + spare)
        device = engrams.device
        self.track_age = engrams.track_age
        self.track_engram_id = engrams.track_engram_id
        # one slot beyond capacity stays zero for ever: null positions read it, so reads need no fill pass
        self.data = torch.zeros(batch_size, capacity + 1, hidden, dtype=torch.float32, device=device)
        self.data[:, :length] = engrams.data
        self.counts = torch.full((batch_size, capacity + 1, capacity + 1), -1, dtype=torch.int32, device=device)
        self.counts[:, :length, :length] = engrams.induce_counts
        self.slots = torch.arange(length, device=device).expand(batch_size, length).clone()
        self.engrams_types = engrams.engrams_types.clone()
        self.lifespan = engrams.lifespan.clone()
        self.age = None if engrams.age is None else engrams.age.clone()
        self.engram_ids = None if engrams.engram_ids is None else engrams.engram_ids.clone()
        self._lookup_of: Optional[torch.Tensor] = None
        self._masks_of: Optional[torch.Tensor] = None
        self._data_offsets = self._offsets()
        # the largest count over rows of each engram type, where known without reading the device (see keep, append)
        self._type_widths: Optional[Dict[int, int]] = None

    @property
    def batch_size(self) -> int:
        return self.slots.size(0)

    @property
    def memory_length(self) -> int:
        return self.slots.size(1)

    @property
    def capacity(self) -> int:
        return self.data.size(1) - 1

    @property
    def hidden_dim(self) -> int:
        return self.data.size(2)

    @property
    def device(self) -> torch.device:
        return self.slots.device

    # ------------------------------------------------------------------ reading by logical index

    def indices_of(self, *engram_types: int) -> List[torch.Tensor]:
        """Logical positions [B, K] of the engrams of each type (``EngramType`` values), left-padded."""
        masks: Union[torch.Tensor, List[torch.Tensor]] = self.type_masks()
        first = engram_types[0] if engram_types else 0
        if tuple(engram_types) == tuple(range(first, first + len(engram_types))):
            masks = masks[first : first + len(engram_types)]  # the stacked masks as they are
        else:
            masks = [masks[engram_type] for engram_type in engram_types]
        known = self._type_widths
        if known is not None and all(engram_type in known for engram_type in engram_types):
            return ops.indices_with_masks(masks, [known[engram_type] for engram_type in engram_types])
        return ops.indices_with_masks(masks)

    def type_masks(self) -> torch.Tensor:
        """bool [NumTypes, B, M]: where the engrams of each type are (``EngramType`` value order)."""
        kinds = ops.arange(len(EngramType), self.device).view(-1, 1, 1)
        if self._masks_of is not self.engrams_types:
            self._masks, self._masks_of = self.engrams_types == kinds, self.engrams_types
        return self._masks

    def _offsets(self) -> torch.Tensor:
        """[B, 1] where each batch row starts in ``data`` seen as [B * N, D]."""
        return torch.arange(self.data.size(0), device=self.data.device).unsqueeze(1) * self.data.size(1)

    def _lookup(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """[B, M + 1] tables by logical position: the physical slot, and the row of ``data`` seen
        as [B * N, D]. Their last column answers -1 (none): slot -1, the zero vector.

        Built once for every new ``slots`` (which is replaced, never written in place), so that a read is one gather.
        """
        if self._lookup_of is not self.slots:
            slots = torch.nn.functional.pad(self.slots, (0, 1), value=-1)
            # -1 reads the zero vector, the last slot
            self._tables = slots, slots.remainder(self.data.size(1)).add_(self._data_offsets)
            self._lookup_of = self.slots
        return self._tables

    def physical(self, indices: torch.Tensor) -> torch.Tensor:
        """Physical slots of logical ``indices`` [B, K]; -1 stays -1."""
        # -1 is the tables' last column
        return self._lookup()[0].gather(1, indices.remainder(self.memory_length + 1))

    def data_at(self, indices: torch.Tensor) -> torch.Tensor:
        """Vectors at logical ``indices`` [B, K] -> [B, K, D], zeros at -1."""
        rows = self._lookup()[1].gather(1, indices.remainder(self.memory_length + 1))
        return self.data.view(-1, self.hidden_dim).index_select(0, rows.flatten()).view(*indices.shape, self.hidden_dim)

    def data_at_each(self, *indices: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """``data_at`` of several index lists [B, K_i] in one read (views of one tensor)."""
        return self.data_at(torch.cat(indices, dim=1)).split([part.size(1) for part in indices], dim=1)

    def counts_at(self, rows: torch.Tensor, columns: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Counts between logical ``rows`` [B, R] and ``columns`` [B, C] (all positions by default).

        Returns:
            [B, R, C], -1 wherever a row or column index is -1.
        """
        physical_columns = self.slots if columns is None else self.physical(columns)
        return ops.pair_gather(self.counts, self.physical(rows), physical_columns)

    def longterm_graph(self, ltm_indices: torch.Tensor) -> ops.LongtermGraph:
        """The co-firing graph among the long-term engrams at logical ``ltm_indices`` [B, T] (-1 padding),
        read in place from the counts."""
        # padding reads the slot of position 0: the walk treats it as visited from the start, so its counts never matter
        return ops.LongtermGraph(
            self.counts, self.slots.gather(1, ltm_indices.clamp(min=0)), ltm_indices < 0, ltm_indices
        )

    def to_engrams(self) -> Engrams:
        """The logical view: a new ``Engrams`` holding copies."""
        return Engrams(
            data=ops.gather_slots(self.data, self.slots),
            induce_counts=ops.pair_gather(self.counts, self.slots),
            engrams_types=self.engrams_types.clone(),
            lifespan=self.lifespan.clone(),
            age=None if self.age is None else self.age.clone(),
            engram_ids=None if self.engram_ids is None else self.engram_ids.clone(),
            track_age=self.track_age,
            track_engram_id=self.track_engram_id,
        )

    # ------------------------------------------------------------------ writing

    def fire_together(self, indices: torch.Tensor) -> None:
        """``Engrams.fire_together_wire_together`` on logical ``indices`` [B, K]."""
        self._writable()
        ops.fire_together(self.counts, self.physical(indices), spare=True)

    @classmethod
    def empty(
        cls, batch_size: int, hidden_dim: int, device: torch.device, track_age: bool, track_engram_id: bool, spare: int
    ) -> "EngramStore":
        """A store of ``batch_size`` rows of hidden size ``hidden_dim`` that holds no engram yet, with room for
        ``spare``."""
        nothing = torch.zeros(batch_size, 0, hidden_dim, dtype=torch.float32, device=device)
        return cls(Engrams(nothing, track_age=track_age, track_engram_id=track_engram_id), spare)

    @classmethod
    def with_working(
        cls,
        store: Optional["EngramStore"],
        data: torch.Tensor,
        lifespan: float,
        first_id: int,
        track_age: bool,
        track_engram_id: bool,
    ) -> "EngramStore":
        """``store`` with new WORKING engrams ``data`` [B, L, D] (float32, on the store's device) appended, with
        ``lifespan``, age 0 and ids from ``first_id`` where tracked, as ``Engrams(data, ...)`` would hold them; like
        ``Engrams.__add__``, an empty (or no) store is replaced."""
        if store is None or store.memory_length == 0:
            batch_size, length, hidden = data.shape
            store = cls.empty(batch_size, hidden, data.device, track_age, track_engram_id, spare=2 * length)
        store.append(_FreshWorking.of(data, lifespan, first_id, track_age, track_engram_id), EngramType.WORKING.value)
        return store

    def append(self, new: Engrams, engram_type: Optional[int] = None, no_counts: bool = False) -> None:
        """Add ``new``'s engrams after the current ones in every row, as ``Engrams.__add__`` does (``engram_type``: the
        type of every new engram, where the caller knows it; ``no_counts``: its counts are known to be all 0)."""
        width = new.memory_length
        if width == 0:
            return
        self._writable()
        widths = self._type_widths
        if widths is not None and engram_type is not None:
            # every row gains `width` engrams of that type
            widths[engram_type] = widths.get(engram_type, 0) + width
        else:
            self._type_widths = None
        if self.capacity - self.memory_length < width:
            self._grow(_grown_capacity(self.memory_length + width))
        # every row has the same number of free slots (capacity - memory length)
        taken = ops.free_slots(self.slots, self.capacity, width)
        # whole vectors into their slots: index_copy_ of rows is a plain copy per row, unlike an indexed assignment
        rows = (taken + self._data_offsets).flatten()
        self.data.view(-1, self.data.size(2)).index_copy_(0, rows, new.data.reshape(-1, self.data.size(2)))
        # new engrams start with 0 against everything mapped (padding too) and among themselves, like a concatenation
        ops.fill_slots(self.counts, taken, 0, all_valid=True)
        # counts among the new engrams need writing only where they are not 0 (new working memories have none)
        if not no_counts and new.induce_counts is not None and ops.may_hold_any(new.induce_counts != 0):
            batch = torch.arange(self.batch_size, device=self.device).view(-1, 1, 1)
            self.counts[batch, taken.unsqueeze(2), taken.unsqueeze(1)] = new.induce_counts
        self.slots = torch.cat([self.slots, taken], dim=1)
        self.engrams_types = torch.cat([self.engrams_types, new.engrams_types], dim=1)
        self.lifespan = torch.cat([self.lifespan, new.lifespan], dim=1)
        self.age = self._concatenated("age", "track_age", new.age)
        self.engram_ids = self._concatenated("engram_ids", "track_engram_id", new.engram_ids)

    def _concatenated(self, name: str, flag: str, new: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """An optional field after appending; tracked only while both sides track it, as in ``Engrams.__add__``."""
        mine = getattr(self, name)
        if mine is None or new is None:
            if (mine is None) != (new is None):
                warnings.warn(f"{name} is tracked by only one side of the append: it is no longer tracked")
            setattr(self, flag, False)
            return None
        return torch.cat([mine, new], dim=1)

    def survival_parts(self, mask: torch.Tensor, types: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        """What ``keep(mask)`` needs to know, as device values not yet read (``Survival.of`` reads them): the
        survivors' width (the most in a row) and the fewest in a row, and the width of each engram type among them
        (``types``: the types they will have; default the current ones), so that the next remind needs no read for
        its lists. A caller with device values of its own reads them in the same host read."""
        types = self.engrams_types if types is None else types
        kinds = ops.arange(len(EngramType), self.device).view(-1, 1, 1)
        # [NumTypes, B] survivors of each type in each row
        per_type = ((types == kinds) & mask).sum(dim=2)
        return [torch.stack(torch.aminmax(mask.sum(dim=1))[::-1]), per_type.amax(dim=1)]

    def survival(self, mask: torch.Tensor, types: Optional[torch.Tensor] = None) -> "Survival":
        """``survival_parts`` read (one host read)."""
        return Survival.of(torch.cat(self.survival_parts(mask, types)).tolist())

    def keep(self, mask: torch.Tensor, survival: Optional["Survival"] = None) -> None:
        """``Engrams.mask_select``: keep the positions where ``mask`` [B, M] is true (``survival``:
        ``survival(mask)`` where the caller read it already)."""
        survival = self.survival(mask) if survival is None else survival
        self._writable()
        width = survival.width
        self._type_widths = dict(survival.type_widths)
        if survival.fewest == self.memory_length:
            return
        # Each row in the order [the dead..., the survivors...], both ascending: the last `width` positions are the
        # survivors, left-padded with dead positions, whose slots become the padding's fresh NULL slots.
        # (a bool mask read as uint8 is a view, not a copy)
        alive, order = mask.contiguous().view(torch.uint8).sort(dim=1, stable=True)
        kept, padding = order[:, self.memory_length - width :], alive[:, self.memory_length - width :] == 0
        new_slots = ops.padding_slots(self.slots.gather(1, kept), padding, self.capacity)
        # padding takes at most the first `width - fewest` columns of a row
        cleared = width - survival.fewest
        if cleared:
            self._clear_slots(torch.where(padding[:, :cleared], new_slots[:, :cleared], ops.constant(-1, self.device)))
        self.slots = new_slots
        # the small per-engram fields are logical: they move with the survivors
        for name in ("engrams_types", "lifespan", "age", "engram_ids"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.gather(1, kept).masked_fill_(padding, PADDING[name]))

    def clear_rows(self, rows: torch.Tensor) -> None:
        """Turn every position of the chosen rows (bool [B]) into fresh NULL padding; other rows untouched."""
        self._writable()
        self._type_widths = self._masks_of = None
        self.data[rows] = 0
        self.counts[rows] = -1
        self.engrams_types[rows] = EngramType.NULL.value
        self.lifespan[rows] = -1.0
        for field in (self.age, self.engram_ids):
            if field is not None:
                field[rows] = -1

    def to(self, device: torch.device) -> "EngramStore":
        """Move every tensor to ``device`` (in place); returns self."""
        for name in _TENSOR_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        self._data_offsets = self._offsets()
        return self

    def _writable(self) -> None:
        """Copy, once, the tensors made under ``torch.inference_mode`` (an evaluation loop's steps), which cannot be
        written in place outside it (the training steps after)."""
        if torch.is_inference_mode_enabled():
            return
        for name in _TENSOR_FIELDS:
            value = getattr(self, name)
            if value is not None and value.is_inference():
                setattr(self, name, value.clone())

    def _clear_slots(self, slots: torch.Tensor) -> None:
        """Make physical ``slots`` [B, K] (-1 skipped) fresh NULL padding: zero vector, -1 counts."""
        ops.zero_vectors(self.data, slots, self._data_offsets)
        ops.fill_slots(self.counts, slots, -1, spare=True)

    def _grow(self, capacity: int) -> None:
        batch_size, old, hidden = self.data.size(0), self.capacity, self.data.size(2)
        data = self.data.new_zeros(batch_size, capacity + 1, hidden)
        data[:, :old] = self.data[:, :old]
        counts = self.counts.new_full((batch_size, capacity + 1, capacity + 1), -1)
        counts[:, :old, :old] = self.counts[:, :old, :old]
        self.data, self.counts = data, counts
        self._data_offsets = self._offsets()
        self._lookup_of = None  # the data rows moved


_TENSOR_FIELDS = ("data", "counts", "slots", "engrams_types", "lifespan", "age", "engram_ids")


class _FreshWorking(NamedTuple):
    """New working memories as ``append`` reads an ``Engrams``, without making one: the per-engram fields are shared
    constants broadcast to [B, Width] (read once, by the concatenation), the counts all 0 (``None``)."""

    data: torch.Tensor
    engrams_types: torch.Tensor
    lifespan: torch.Tensor
    age: Optional[torch.Tensor]
    engram_ids: Optional[torch.Tensor]
    induce_counts: None = None

    @property
    def memory_length(self) -> int:
        return self.data.size(1)

    @classmethod
    def of(
        cls, data: torch.Tensor, lifespan: float, first_id: int, track_age: bool, track_engram_id: bool
    ) -> "_FreshWorking":
        batch_size, width, _ = data.shape
        device = data.device
        ids = None
        if track_engram_id:
            ids = torch.arange(first_id, first_id + width, dtype=torch.int32, device=device).expand(batch_size, -1)
        return cls(
            data,
            ops.constant(EngramType.WORKING.value, device, torch.uint8).expand(batch_size, width),
            ops.constant(float(lifespan), device, torch.float32).expand(batch_size, width),
            ops.constant(0, device, torch.int32).expand(batch_size, width) if track_age else None,
            ids,
        )


class Survival(NamedTuple):
    """``EngramStore.survival``'s host values: the survivors' width (the most in a row), the fewest in a row, and each
    engram type's width among them."""

    width: int
    fewest: int
    type_widths: Dict[int, int]

    #: how many values ``EngramStore.survival_parts`` holds
    SIZE = 2 + len(EngramType)

    @classmethod
    def of(cls, values: List[int]) -> "Survival":
        """From the ``SIZE`` values of ``survival_parts``, read."""
        # (NULL is left out: compaction adds padding)
        widths = {kind.value: values[2 + kind.value] for kind in EngramType if kind is not EngramType.NULL}
        return cls(values[0], values[1], widths)


def _grown_capacity(needed: int) -> int:
    """Capacity with head-room, so that the big buffers are reallocated only now and then."""
    return max(needed + needed // 4, needed + 8)
