"""Physical storage behind ``Memoria``: engram vectors and co-firing counts in slots that never move.

``Engrams`` describes the memory in its *logical* layout: every row compacted and left-padded, so forgetting one engram
shifts every later row and column of the ``[Batch, M, M]`` count matrix. Doing that every step costs a full copy of the
matrix (and of the ``[Batch, M, Hidden]`` vectors). The store keeps those two big tensors in physical slots instead
and moves only a ``[Batch, M]`` map from logical positions to slots; the small per-engram fields stay logical. Padding
positions are real slots too, because the published algorithm reads and even revives them (quirks R2, R4).
"""

import warnings
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch

from . import ops
from .engram import Engrams, EngramType, gather_fields


class EngramStore:
    """Engrams of a batch: logical ``[Batch, M]`` fields plus physically slotted data and counts.

    Attributes:
        data: [BatchSize, Capacity + 1, HiddenDim] vectors by physical slot; the last slot is always zero.
        counts: [BatchSize, Capacity, Capacity] co-firing counts by physical slot (unmapped slots hold garbage).
        slots: [BatchSize, MemoryLength] physical slot of every logical position (padding included).
        engrams_types, lifespan, age, engram_ids: [BatchSize, MemoryLength] logical fields, as in ``Engrams``.
    """

    def __init__(self, engrams: Engrams, spare: int = 0) -> None:
        batch_size, length, hidden = engrams.data.shape
        capacity = _grown_capacity(length + spare)
        device = engrams.device
        self.track_age = engrams.track_age
        self.track_engram_id = engrams.track_engram_id
        # one slot beyond capacity stays zero for ever: null positions read it, so reads need no fill pass
        self.data = torch.zeros(batch_size, capacity + 1, hidden, device=device)
        self.data[:, :length] = engrams.data
        self.counts = torch.full((batch_size, capacity, capacity), -1, dtype=torch.int32, device=device)
        self.counts[:, :length, :length] = engrams.induce_counts
        self.slots = torch.arange(length, device=device).expand(batch_size, length).clone()
        self.engrams_types = engrams.engrams_types.clone()
        self.lifespan = engrams.lifespan.clone()
        self.age = None if engrams.age is None else engrams.age.clone()
        self.engram_ids = None if engrams.engram_ids is None else engrams.engram_ids.clone()
        self._lookup_of: Optional[torch.Tensor] = None
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
        return self.counts.size(1)

    @property
    def hidden_dim(self) -> int:
        return self.data.size(2)

    @property
    def device(self) -> torch.device:
        return self.slots.device

    # ------------------------------------------------------------------ reading by logical index

    def indices_of(self, *engram_types: int) -> List[torch.Tensor]:
        """Logical positions [BatchSize, K] of the engrams of each type (``EngramType`` values), left-padded."""
        masks = [self.engrams_types == engram_type for engram_type in engram_types]
        widths = self._type_widths
        if widths is not None and all(engram_type in widths for engram_type in engram_types):
            return [ops.indices_with_mask(mask, widths[engram_type]) for mask, engram_type in zip(masks, engram_types)]
        return ops.indices_with_masks(masks)

    def _lookup(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """[BatchSize, MemoryLength + 1] tables by logical position: the physical slot, and the row of ``data`` seen
        as [BatchSize * (Capacity + 1), HiddenDim]. Their last column answers -1 (none): slot -1, the zero vector.

        Built once for every new ``slots`` (which is replaced, never written in place), so that a read is one gather.
        """
        if self._lookup_of is not self.slots:
            width = self.data.size(1)
            none = torch.full((self.batch_size, 1), -1, dtype=self.slots.dtype, device=self.device)
            slots = torch.cat([self.slots, none], dim=1)
            offset = torch.arange(self.batch_size, device=self.device).unsqueeze(1) * width
            self._tables = slots, torch.where(slots < 0, width - 1, slots) + offset
            self._lookup_of = self.slots
        return self._tables

    def physical(self, indices: torch.Tensor) -> torch.Tensor:
        """Physical slots of logical ``indices`` [BatchSize, K]; -1 stays -1."""
        # -1 is the tables' last column
        return self._lookup()[0].gather(1, indices.remainder(self.memory_length + 1))

    def data_at(self, indices: torch.Tensor) -> torch.Tensor:
        """Vectors at logical ``indices`` [BatchSize, K] -> [BatchSize, K, HiddenDim], zeros at -1."""
        rows = self._lookup()[1].gather(1, indices.remainder(self.memory_length + 1))
        return self.data.view(-1, self.hidden_dim).index_select(0, rows.flatten()).view(*indices.shape, self.hidden_dim)

    def counts_at(self, rows: torch.Tensor, columns: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Counts between logical ``rows`` [BatchSize, R] and ``columns`` [BatchSize, C] (all positions by default).

        Returns:
            [BatchSize, R, C], -1 wherever a row or column index is -1.
        """
        physical_columns = self.slots if columns is None else self.physical(columns)
        return ops.pair_gather(self.counts, self.physical(rows), physical_columns)

    def longterm_graph(self, ltm_indices: torch.Tensor) -> ops.LongtermGraph:
        """The co-firing graph among the long-term engrams at logical ``ltm_indices`` [BatchSize, NumLTM] (-1 padding),
        read in place from the counts."""
        # padding reads slot 0: the walk treats it as visited from the start, so its counts never matter
        return ops.LongtermGraph(self.counts, self.physical(ltm_indices).clamp(min=0), ltm_indices < 0)

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
        """``Engrams.fire_together_wire_together`` on logical ``indices`` [BatchSize, K]."""
        ops.fire_together(self.counts, self.physical(indices))

    @classmethod
    def appended(cls, store: Optional["EngramStore"], new: Engrams, engram_type: Optional[int] = None) -> "EngramStore":
        """``store`` with ``new`` appended; like ``Engrams.__add__``, an empty (or no) store is replaced by ``new``.
        ``engram_type``: the type of every new engram, where the caller knows it."""
        if store is None or store.memory_length == 0:
            return cls(new, spare=new.memory_length)
        store.append(new, engram_type)
        return store

    def append(self, new: Engrams, engram_type: Optional[int] = None) -> None:
        """Add ``new``'s engrams after the current ones in every row, as ``Engrams.__add__`` does (``engram_type``: the
        type of every new engram, where the caller knows it)."""
        width = new.memory_length
        if width == 0:
            return
        widths = self._type_widths
        if widths is not None and engram_type is not None:
            # every row gains `width` engrams of that type
            widths[engram_type] = widths.get(engram_type, 0) + width
        else:
            self._type_widths = None
        if self.capacity - self.memory_length < width:
            self._grow(_grown_capacity(self.memory_length + width))
        # every row has the same number of free slots (capacity - memory length)
        taken = self._free_slots(width)
        batch = torch.arange(self.batch_size, device=self.device).unsqueeze(1)
        # whole vectors into their slots: index_copy_ of rows is a plain copy per row, unlike an indexed assignment
        rows = (taken + batch * self.data.size(1)).flatten()
        self.data.view(-1, self.data.size(2)).index_copy_(0, rows, new.data.reshape(-1, self.data.size(2)))
        # new engrams start with 0 against everything mapped (padding too) and among themselves, like a concatenation
        ops.fill_slots(self.counts, taken, 0, all_valid=True)
        # counts among the new engrams need writing only where they are not 0 (new working memories have none)
        if ops.may_hold_any(new.induce_counts != 0):
            self.counts[batch.unsqueeze(2), taken.unsqueeze(2), taken.unsqueeze(1)] = new.induce_counts
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

    def survival(
        self, mask: torch.Tensor, types: Optional[torch.Tensor] = None, pending: Optional[torch.Tensor] = None
    ) -> "Survival":
        """What ``keep(mask)`` needs to know, in one host read: the survivors' width, whether all survive, the width of
        each engram type among them (``types``: the types they will have; default the current ones), so that the next
        remind needs no read for its lists, and the caller's ``pending`` device values with them."""
        types = self.engrams_types if types is None else types
        per_type = torch.zeros(self.batch_size, len(EngramType), dtype=torch.long, device=self.device)
        per_type.scatter_add_(1, types.long(), mask.long())
        parts = [torch.stack([mask.sum(dim=1).max(), mask.all().long()]), per_type.amax(dim=0)]
        if pending is not None:
            parts.append(pending.to(self.device, torch.long))
        values = torch.cat(parts).tolist()
        # (NULL is left out: compaction adds padding)
        widths = {kind.value: values[2 + kind.value] for kind in EngramType if kind is not EngramType.NULL}
        return Survival(values[0], bool(values[1]), widths, values[2 + len(EngramType) :])

    def keep(self, mask: torch.Tensor, survival: Optional["Survival"] = None) -> None:
        """``Engrams.mask_select``: keep the positions where ``mask`` [BatchSize, MemoryLength] is true (``survival``:
        ``survival(mask)`` where the caller read it already)."""
        survival = self.survival(mask) if survival is None else survival
        width, everything = survival.width, survival.everything
        self._type_widths = dict(survival.type_widths)
        if width == self.memory_length and everything:
            return
        survivors = ops.indices_with_mask(mask, width)
        padding = survivors < 0
        new_slots = self.physical(survivors)
        if ops.may_hold_any(padding):
            # Left padding needs fresh NULL slots: the first slots of each row that no survivor uses, cleared. Padding
            # positions come first in a row, so the j-th of them takes the j-th free slot.
            used = torch.zeros(self.batch_size, self.capacity + 1, dtype=torch.bool, device=self.device)
            used.scatter_(1, torch.where(padding, self.capacity, new_slots), True)
            free = (~used[:, : self.capacity]).to(torch.uint8)
            free_first = free.sort(dim=1, descending=True, stable=True).indices[:, : new_slots.size(1)]
            new_slots = torch.where(padding, free_first, new_slots)
            self._clear_slots(torch.where(padding, new_slots, -1))
        self.slots = new_slots
        # the small per-engram fields are logical: they move with the survivors
        for name, value in gather_fields(self, survivors, ("engrams_types", "lifespan", "age", "engram_ids")).items():
            setattr(self, name, value)

    def clear_rows(self, rows: torch.Tensor) -> None:
        """Turn every position of the chosen rows (bool [BatchSize]) into fresh NULL padding; other rows untouched."""
        self._type_widths = None
        self.data[rows] = 0
        self.counts[rows] = -1
        self.engrams_types[rows] = EngramType.NULL.value
        self.lifespan[rows] = -1.0
        for field in (self.age, self.engram_ids):
            if field is not None:
                field[rows] = -1

    def to(self, device: torch.device) -> "EngramStore":
        """Move every tensor to ``device`` (in place); returns self."""
        for name in ("data", "counts", "slots", "engrams_types", "lifespan", "age", "engram_ids"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self

    def _clear_slots(self, slots: torch.Tensor) -> None:
        """Make physical ``slots`` [BatchSize, K] (-1 skipped) fresh NULL padding: zero vector, -1 counts."""
        ops.zero_vectors(self.data, slots)
        ops.fill_slots(self.counts, slots, -1)

    def _free_slots(self, width: int) -> torch.Tensor:
        """[BatchSize, width] unmapped physical slots of every row, ascending.

        Slots are taken from the freest groups of ``_SLOT_GROUP`` neighbours first: zeroing the new engrams' columns
        then touches few cache lines of each count row, which is what an append costs on a large memory.
        """
        capacity = self.capacity
        num_groups = -(-capacity // _SLOT_GROUP)
        free = torch.zeros(self.batch_size, num_groups * _SLOT_GROUP, dtype=torch.bool, device=self.device)
        free[:, :capacity].fill_(True)
        free.scatter_(1, self.slots, False)
        groups = free.view(self.batch_size, num_groups, _SLOT_GROUP)
        order = groups.sum(dim=2).argsort(dim=1, descending=True, stable=True)
        # [BatchSize, NumGroups * Group] every slot, freest group first
        candidates = (order.unsqueeze(2) * _SLOT_GROUP + torch.arange(_SLOT_GROUP, device=self.device)).flatten(1)
        # every row has the same number of free slots (capacity - memory length), so no row is padded
        chosen = ops.indices_with_mask(free.gather(1, candidates), capacity - self.memory_length)[:, :width]
        return candidates.gather(1, chosen).sort(dim=1).values

    def _grow(self, capacity: int) -> None:
        batch_size, old, hidden = self.data.size(0), self.capacity, self.data.size(2)
        data = self.data.new_zeros(batch_size, capacity + 1, hidden)
        data[:, :old] = self.data[:, :old]
        counts = self.counts.new_full((batch_size, capacity, capacity), -1)
        counts[:, :old, :old] = self.counts
        self.data, self.counts = data, counts
        self._lookup_of = None  # the data rows moved


class Survival(NamedTuple):
    """``EngramStore.survival``'s host values: the survivors' width, whether all survive, each engram type's width
    among them, and the caller's pending values."""

    width: int
    everything: bool
    type_widths: Dict[int, int]
    pending: List[int]


# slots per 64-byte line of an int32 count row
_SLOT_GROUP = 16


def _grown_capacity(needed: int) -> int:
    """Capacity with head-room, so that the big buffers are reallocated only now and then."""
    return max(needed + needed // 4, needed + 8)
