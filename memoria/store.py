"""Physical storage behind ``Memoria``: engram vectors and co-firing counts in slots that never move.

``Engrams`` describes the memory in its *logical* layout: every row compacted and left-padded, so forgetting one engram
shifts every later row and column of the ``[Batch, M, M]`` count matrix. Doing that every step costs a full copy of the
matrix (and of the ``[Batch, M, Hidden]`` vectors). The store keeps those two big tensors in physical slots instead
and moves only a ``[Batch, M]`` map from logical positions to slots; the small per-engram fields stay logical. Padding
positions are real slots too, because the published algorithm reads and even revives them (quirks R2, R4).
"""

import warnings
from typing import Optional

import torch

from . import native, utils
from .engram import Engrams, EngramType, pair_gather
from .utils import gather_slots, indices_with_mask, mask_with_indices


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
    def device(self) -> torch.device:
        return self.slots.device

    # ------------------------------------------------------------------ reading by logical index

    def physical(self, indices: torch.Tensor) -> torch.Tensor:
        """Physical slots of logical ``indices`` [BatchSize, K]; -1 stays -1."""
        if self.memory_length == 0:
            return torch.full_like(indices, -1)
        if (
            utils.on_cpu(indices)
            and native.active(native.index)
            and indices.dtype == self.slots.dtype == torch.long
            and indices.dim() == 2
            and indices.size(0) == self.batch_size
        ):
            indices, slots = indices.contiguous(), self.slots.contiguous()
            out = torch.empty(indices.shape, dtype=torch.long)
            native.index.physical(
                slots.data_ptr(),
                self.batch_size,
                self.memory_length,
                indices.data_ptr(),
                indices.size(1),
                out.data_ptr(),
            )
            return out
        return torch.where(indices < 0, -1, self.slots.gather(1, indices.clamp(min=0)))

    def data_at(self, indices: torch.Tensor) -> torch.Tensor:
        """Vectors at logical ``indices`` [BatchSize, K] -> [BatchSize, K, HiddenDim], zeros at -1."""
        batch_size, width, hidden = self.data.shape
        slots = self.physical(indices)
        # -1 reads the zero slot at the end of its row
        rows = (
            slots.masked_fill(slots < 0, width - 1) + torch.arange(batch_size, device=self.device).unsqueeze(1) * width
        )
        return self.data.view(-1, hidden).index_select(0, rows.flatten()).view(*indices.shape, hidden)

    def counts_at(self, rows: torch.Tensor, columns: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Counts between logical ``rows`` [BatchSize, R] and ``columns`` [BatchSize, C] (all positions by default).

        Returns:
            [BatchSize, R, C], -1 wherever a row or column index is -1.
        """
        physical_columns = self.slots if columns is None else self.physical(columns)
        return self._pair_gather(self.physical(rows), physical_columns)

    def _pair_gather(self, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """``pair_gather`` on the physical counts: [BatchSize, R] and [BatchSize, C] slots -> [BatchSize, R, C]."""
        counts = self.counts
        if not (utils.on_cpu(counts) and native.active(native.counts) and counts.is_contiguous()):
            return pair_gather(counts, rows, columns)
        # in C the counts are read where they lie; the torch form copies whole count rows before picking columns
        rows, columns = rows.to(torch.long).contiguous(), columns.to(torch.long).contiguous()
        out = torch.empty(self.batch_size, rows.size(1), columns.size(1), dtype=torch.int32)
        native.counts.pair_gather(
            counts.data_ptr(), self.batch_size, self.capacity, rows.data_ptr(), rows.size(1), columns.data_ptr(),
            columns.size(1), out.data_ptr(), *native.threads(),
        )  # fmt: skip
        return out

    def to_engrams(self) -> Engrams:
        """The logical view: a new ``Engrams`` holding copies."""
        return Engrams(
            data=gather_slots(self.data, self.slots),
            induce_counts=self._pair_gather(self.slots, self.slots),
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
        if utils.on_cpu(indices):
            distinct = indices_with_mask(mask_with_indices(indices, self.memory_length))
        else:
            # each engram once, without asking the host how many there are: repeats after sorting become -1
            distinct = indices.sort(dim=1).values
            distinct[:, 1:].masked_fill_(distinct[:, 1:] == distinct[:, :-1], -1)
        fired = self.physical(distinct)
        if fired.numel() == 0:
            return
        batch = torch.arange(fired.size(0), device=fired.device).unsqueeze(1)
        if utils.on_cpu(fired):
            # ascending slots make the accumulation walk each count row in memory order (fewer cache misses)
            fired = fired.sort(dim=1).values
            if native.active(native.counts) and self.counts.is_contiguous():
                native.counts.fire_together(
                    self.counts.data_ptr(),
                    fired.size(0),
                    self.counts.size(1),
                    fired.data_ptr(),
                    fired.size(1),
                    *native.threads(),
                )
                return
            valid = fired >= 0
            safe = fired.clamp(min=0)
            pairs = (batch.unsqueeze(2), safe.unsqueeze(2), safe.unsqueeze(1))
            pair_valid = (valid.unsqueeze(2) & valid.unsqueeze(1)).to(torch.int32)
            self.counts.index_put_(pairs, pair_valid, accumulate=True)
            return
        # A GPU adds up repeated targets one after another, so element pairs (the -1 entries all on slot 0) cost 200 ms
        # a step at the enwik8 settings. Instead each fired row gains a whole [Capacity] row of 1s at the fired
        # columns: K targets per batch row, and the -1 entries, sent to their own position, add a row of 0s there.
        capacity = self.counts.size(2)
        valid = fired >= 0
        position = torch.arange(fired.size(1), device=fired.device) % capacity
        safe = torch.where(valid, fired, position)
        ones = valid.to(self.counts.dtype)
        # [BatchSize, Capacity] 1 at every fired column (fired slots are distinct, the 0s may land anywhere)
        columns = torch.zeros(fired.size(0), capacity, dtype=self.counts.dtype, device=fired.device)
        columns.scatter_add_(1, safe, ones)
        self.counts.index_put_((batch, safe), ones.unsqueeze(2) * columns.unsqueeze(1), accumulate=True)

    def append(self, new: Engrams) -> None:
        """Add ``new``'s engrams after the current ones in every row, as ``Engrams.__add__`` does."""
        width = new.memory_length
        if width == 0:
            return
        if self.capacity - self.memory_length < width:
            self._grow(_grown_capacity(self.memory_length + width))
        # every row has the same number of free slots (capacity - memory length)
        taken = self._free_slots(width)
        batch = torch.arange(self.batch_size, device=self.device).unsqueeze(1)
        if utils.on_cpu(self.data):
            # whole vectors into their slots: index_copy_ of rows is a plain copy per row, unlike an indexed assignment
            rows = (taken + batch * self.data.size(1)).flatten()
            self.data.view(-1, self.data.size(2)).index_copy_(0, rows, new.data.reshape(-1, self.data.size(2)))
        else:
            self.data[batch, taken] = new.data
        # new engrams start with 0 against everything mapped (padding too) and among themselves, like a concatenation
        if utils.on_cpu(self.counts):
            if not self._fill_natively(taken, 0):
                # per row, index_fill_ writes each count row's few new columns in place, a run of them per cache line
                for row, columns in zip(self.counts, taken):
                    row.index_fill_(0, columns, 0).index_fill_(1, columns, 0)
        else:
            # a zero on the device: a Python 0 would be copied over from the host, and the host would wait for it
            self.counts.index_put_((batch, taken), self.counts.new_zeros(()))
            # columns by scatter along the last axis, the new slots innermost: neighbouring threads write neighbouring
            # slots (index_put_ on the transposed view wrote one element per row, far apart; with the same change in
            # _clear_slots, sort's adjust on an H200 went from 12.0 to 7.4 ms)
            self.counts.scatter_(2, taken.unsqueeze(1).expand(-1, self.counts.size(1), -1), 0)
        # the new slots' rows and columns are 0 now, so counts among new engrams need writing only where they are not
        # (new working memories have none; asking costs a GPU a host round trip, so a GPU writes them anyway)
        if not utils.on_cpu(self.counts) or bool(new.induce_counts.any()):
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

    def keep(self, mask: torch.Tensor) -> None:
        """``Engrams.mask_select``: keep the positions where ``mask`` [BatchSize, MemoryLength] is true."""
        survivors = indices_with_mask(mask)
        if survivors.size(1) == self.memory_length and bool(mask.all()):
            return
        padding = survivors < 0
        new_slots = self.physical(survivors)
        # (a GPU goes on without asking whether there is any padding: the answer would cost a host round trip)
        if not utils.on_cpu(padding) or bool(padding.any()):
            # Left padding needs fresh NULL slots: the first slots of each row that no survivor uses, cleared. Padding
            # positions come first in a row, so the j-th of them takes the j-th free slot.
            used = torch.zeros(self.batch_size, self.capacity + 1, dtype=torch.bool, device=self.device)
            used.scatter_(1, torch.where(padding, self.capacity, new_slots), True)
            free = (~used[:, : self.capacity]).to(torch.uint8)
            free_first = free.sort(dim=1, descending=True, stable=True).indices[:, : new_slots.size(1)]
            new_slots = torch.where(padding, free_first, new_slots)
            self._clear_slots(torch.where(padding, new_slots, -1))
        self.slots = new_slots
        self.engrams_types = gather_slots(self.engrams_types, survivors, EngramType.NULL.value)
        self.lifespan = gather_slots(self.lifespan, survivors, -1.0)
        if self.age is not None:
            self.age = gather_slots(self.age, survivors, -1)
        if self.engram_ids is not None:
            self.engram_ids = gather_slots(self.engram_ids, survivors, -1)

    def clear_rows(self, rows: torch.Tensor) -> None:
        """Turn every position of the chosen rows (bool [BatchSize]) into fresh NULL padding; other rows untouched."""
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
        if slots.size(1) == 0:
            return
        valid = slots >= 0
        batch = torch.arange(self.batch_size, device=self.device).unsqueeze(1).expand_as(slots)
        if utils.on_cpu(slots):
            rows, columns = batch[valid], slots[valid]
            self.data[rows, columns] = 0
            if not self._fill_natively(slots, -1):
                self.counts[rows, columns] = -1
                self.counts.transpose(1, 2)[rows, columns] = -1
            return
        # Without picking the valid entries out (a host round trip on a GPU): a skipped entry of a row that clears
        # some slot clears that slot once more; in a row that clears none, every entry rewrites slot 0 as it is.
        first = slots.max(dim=1, keepdim=True).values
        target = torch.where(valid, slots, first.clamp(min=0))
        # a row clears all its entries' targets, or (no valid slot) rewrites slot 0 as it is
        clear = (first >= 0).view(-1, 1, 1)
        self.data[batch, target] = torch.where(clear, 0.0, self.data[batch, target])
        self.counts[batch, target] = torch.where(clear, -1, self.counts[batch, target])
        # columns along the last axis with the targets innermost, so that neighbouring threads touch neighbouring slots
        columns = target.unsqueeze(1).expand(-1, self.counts.size(1), -1)
        self.counts.scatter_(2, columns, torch.where(clear, -1, self.counts.gather(2, columns)))

    def _fill_natively(self, slots: torch.Tensor, value: int) -> bool:
        """Set the count rows and columns of physical ``slots`` [BatchSize, K] (-1 skipped) to ``value`` in C.

        Returns False, having done nothing, where the C extension cannot (not built, turned off, not a CPU tensor).
        Column writes miss the cache once per count row; the C code splits the batch rows over torch's threads and
        writes each count row's slots as runs, one visit per row (index_fill_ per batch row: append 2.1 -> 1.6 ms at
        gpt2 settings with stm_capacity 200, caches cold).
        """
        if not (utils.on_cpu(slots) and native.active(native.counts) and self.counts.is_contiguous()):
            return False
        slots = slots.to(torch.long).contiguous()
        native.counts.fill_slots(
            self.counts.data_ptr(), self.batch_size, self.capacity, slots.data_ptr(), slots.size(1), value,
            *native.threads(),
        )  # fmt: skip
        return True

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
        chosen = indices_with_mask(free.gather(1, candidates))[:, :width]
        return candidates.gather(1, chosen).sort(dim=1).values

    def _grow(self, capacity: int) -> None:
        batch_size, old, hidden = self.data.size(0), self.capacity, self.data.size(2)
        data = self.data.new_zeros(batch_size, capacity + 1, hidden)
        data[:, :old] = self.data[:, :old]
        counts = self.counts.new_full((batch_size, capacity, capacity), -1)
        counts[:, :old, :old] = self.counts
        self.data, self.counts = data, counts


# slots per 64-byte line of an int32 count row
_SLOT_GROUP = 16


def _grown_capacity(needed: int) -> int:
    """Capacity with head-room, so that the big buffers are reallocated only now and then."""
    return max(needed + needed // 4, needed + 8)
