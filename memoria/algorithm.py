"""The published Memoria algorithm on the engrams of a batch, the rows coupled as in ``memoria-pytorch`` 1.0.0.

Shapes (the legend of ``docs/algorithm.md``): B batch rows, L new engrams per row (segment length), M memory length
(engram positions per row, padding included), D hidden size, W working, S short-term and T long-term entries (each
list padded to the widest row), F positions found by the long-term search, R reminded.

One step is three calls (``docs/algorithm.md``, section 4, has the contract):

1. ``add``: the segment's summaries become new WORKING engrams with ``initial_lifespan``.
2. ``remind`` finds what the working memories call up, in the stages of section 4.2:
   a. the lists of working, short-term and long-term engrams;
   b. short-term reminding: the ``num_reminded_stm`` short-term engrams most similar to the working memories;
   c. short-term to long-term: for each of them, the long-term engram it fired together with most often (ties broken
      by one random draw);
   d. the long-term graph walk: ``ltm_search_depth`` steps from those, each to the strongest unvisited neighbour;
   e. final selection: of the engrams the walk found, the ``num_final_ltms`` most similar to the working memories;
      then everything that took part (working, reminded short-term and long-term) fires together.
3. ``adjust`` in the steps of section 4.3: extend the reminded engrams' lifespans, decrease every lifespan (and age),
   promote working engrams to short-term, promote the oldest short-term engrams beyond ``stm_capacity`` to long-term,
   forget the engrams whose lifespan ran out.

Here are no input checks and no choice of backend (both belong to ``memoria.Memoria``), no choice of how an operation
runs on a device (``memoria.ops``) and no storage layout (``memoria.store``).
"""

from typing import List, Optional, Tuple

import torch

from . import ops
from .engram import Engrams, EngramType
from .similarity import Working
from .store import EngramStore, Survival
from .utils import added_at, super_unique

WORKING, SHORTTERM, LONGTERM = EngramType.WORKING.value, EngramType.SHORTTERM.value, EngramType.LONGTERM.value
#: Where lifespans saturate: a finite lifespan plus a finite gain can overflow float32.
LIFESPAN_MAX = torch.finfo(torch.float32).max


class BatchedMemoria:
    """The algorithm on one ``EngramStore`` holding every batch row (``None`` until the first ``add``).

    Rows share the widths of the padded lists (stage a) and one tie-break draw, so one row's contents can change another
    row's results, as in the published package. The verbs here are the ones every backend of ``Memoria`` has
    (``memoria.rows.IndependentRows`` is the other): ``add``, ``remind``, ``adjust``, ``clear_rows``, ``engrams`` /
    ``set_engrams``, ``to``, ``state`` / ``load``.

    Attributes:
        store: the engrams, ``None`` while there are none.
        generator: the tie-break draw's source (``None``: the global RNG of the engrams' device).
    """

    #: this backend's checkpoint is the engrams alone: it restores no rows of its own
    restored = None
    #: ``remind``'s outputs are as wide as what it reminds
    output_width = 0

    def __init__(
        self,
        num_reminded_stm: int,
        stm_capacity: int,
        ltm_search_depth: int,
        initial_lifespan: float,
        num_final_ltms: int,
        track_age: bool,
        track_id: bool,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        self.num_reminded_stm, self.stm_capacity = num_reminded_stm, stm_capacity
        self.ltm_search_depth, self.initial_lifespan, self.num_final_ltms = (
            ltm_search_depth,
            initial_lifespan,
            num_final_ltms,
        )
        self.track_age, self.track_id = track_age, track_id
        self.generator = generator
        self.store: Optional[EngramStore] = None

    @property
    def batch_size(self) -> int:
        return 0 if self.store is None else self.store.batch_size

    @property
    def memory_length(self) -> int:
        return 0 if self.store is None else self.store.memory_length

    @property
    def device(self) -> Optional[torch.device]:
        return None if self.store is None else self.store.device

    @property
    def fixed_shape(self) -> Optional[Tuple[int, int]]:
        """(B, D) the next input must have: the engrams', once there are any (an empty memory takes any input, as
        concatenating onto empty engrams does)."""
        return None if not self.memory_length else (self.store.batch_size, self.store.hidden_dim)

    def rows_in_use(self) -> List[int]:
        """The batch rows that go on as memories: all of them (a cleared row stays in the batch, as padding)."""
        return list(range(self.batch_size))

    # ------------------------------------------------------------------ the three calls

    def add(self, data: torch.Tensor, first_id: int) -> None:
        """New WORKING engrams ``data`` [B, L, D] (float32, on the engrams' device), ids from ``first_id``."""
        self.store = EngramStore.with_working(
            self.store, data, self.initial_lifespan, first_id, self.track_age, self.track_id
        )

    def remind(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Stages a-e (needs a store).

        Returns:
            memories: [B, R, D] float32 on the engrams' device (zeros at -1).
            indices: [B, R] global indices of the reminded engrams, -1 for none.
        """
        store = self.store
        wm_indices, stm_indices, ltm_indices = store.indices_of(WORKING, SHORTTERM, LONGTERM)  # (a)
        ltm_mask = store.type_masks()[LONGTERM]
        # padded working positions are zero vectors and take part in every score, as in the published package
        wm_data, stm_data = store.data_at_each(wm_indices, stm_indices)
        working = Working.of(wm_data)

        reminded_stm = self.remind_shortterm(working, stm_indices, stm_data)
        del wm_data, stm_data  # one buffer: free it before the long-term search
        initial_ltm = self.initial_longterm(reminded_stm, ltm_mask, ltm_indices)
        found_ltm = self.search_longterm(initial_ltm, ltm_mask, ltm_indices)
        reminded_ltm = self.select_final_longterm(working, found_ltm)

        fired = torch.cat([wm_indices, reminded_stm, reminded_ltm], dim=1)
        store.fire_together(fired)
        reminded = super_unique(fired[:, wm_indices.size(1) :], dim=1)
        return store.data_at(reminded), reminded

    def adjust(self, indices: torch.Tensor, delta: torch.Tensor, checks=None) -> None:
        """The steps of section 4.3 (needs a store).

        The new lifespans and types are computed aside and written only once ``checks`` (the caller's input checks
        whose values are still on the device, ``memoria.validation.PendingChecks``) have passed, read in the same host
        read as the survivors' widths: bad input finds the memory unchanged, at no extra wait for the host.

        Args:
            indices: [B, R] int64 global indices, -1 ignored (an index beyond the memory must fail ``checks``).
            delta: [B, R] float32 lifespan gains.
        """
        store = self.store
        indices, delta = indices.to(store.device), delta.to(store.device)
        lifespan = self.decrease_lifespan(self.extend_lifespan(indices, delta))
        types = self.promote_shortterm(self.promote_working(store.engrams_types))
        alive = lifespan > 0
        survival = self.survival(alive, types, checks)
        store.lifespan, store.engrams_types = lifespan, types
        self.increase_age()
        self.forget(alive, survival)

    # ------------------------------------------------------------------ remind stages

    def remind_shortterm(self, working: Working, stm_indices: torch.Tensor, stm_data: torch.Tensor) -> torch.Tensor:
        """(b) Top ``num_reminded_stm`` short-term engrams (``stm_data`` [B, S, D], written) by similarity to the
        working memories.

        Returns:
            [B, S]: the short-term global index where chosen, -1 elsewhere (positions kept).
        """
        scores = working.scores(stm_data.sub_(working.center))
        num_reminded = min(self.num_reminded_stm, scores.size(1))
        chosen = scores.topk(num_reminded, dim=1).indices
        return torch.full_like(stm_indices, -1).scatter_(1, chosen, stm_indices.gather(1, chosen))

    def initial_longterm(
        self, reminded_stm: torch.Tensor, ltm_mask: torch.Tensor, ltm_indices: torch.Tensor
    ) -> torch.Tensor:
        """(c) For each reminded entry [B, S], the long-term engram it co-fired with most (random among ties).

        Returns:
            [B, S] global long-term indices, -1 for none. The published package makes them unique here; the walk reads
            them as a set, so the repeats are left in (one host read fewer).
        """
        store = self.store
        # quirk R1: a -1 entry reads the last row, as negative indexing does in the published package
        rows = reminded_stm.remainder(store.memory_length)
        return ops.strongest_longterm(store.counts, store.slots, rows, ltm_mask, ltm_indices, self.generator)

    def search_longterm(
        self, initial_ltm: torch.Tensor, ltm_mask: torch.Tensor, ltm_indices: torch.Tensor
    ) -> torch.Tensor:
        """(d) Walk the co-firing graph of the long-term engrams [B, T] from the initial ones [B, S].

        Returns:
            [B, F] *local* positions in the long-term list (quirk R4), -1 for none; a zero when there is nothing to
            search (quirk R2).
        """
        (batch_size, num_initial), num_ltm = initial_ltm.shape, ltm_indices.size(1)
        if num_initial == 0 or num_ltm == 0:
            # R2's zeros: the published package has (depth + 1) * distinct starts of them, but they all name position 0,
            # so after the final selection they fire once and are reminded once, however many there are
            width = min(1, self.num_final_ltms) if num_initial else 0
            return torch.zeros(batch_size, width, dtype=torch.long, device=ltm_mask.device)
        # Every step of a row's walkers visits a long-term engram not visited before, until none is left; from then on
        # every step finds -1. So after T steps the walk finds nothing new: walking further changes nothing (and at
        # the deepest search accepted, 2**20 steps, would take minutes).
        depth = min(self.ltm_search_depth, num_ltm)
        walked = ops.walk_from(self.store.longterm_graph(ltm_indices), ltm_mask, initial_ltm, depth)
        return ops.super_unique(walked, 1, ignore=ops.ABSENT)

    def select_final_longterm(self, working: Working, found_ltm: torch.Tensor) -> torch.Tensor:
        """(e) Top ``num_final_ltms`` of the found positions [B, F] by similarity to the working memories.

        Returns:
            [B, min(num_final_ltms, F)] indices taken from ``found_ltm``.
        """
        if found_ltm.size(1) == 0:
            return found_ltm
        # quirk R4: the local long-term positions are used as global indices here
        scores = working.scores(self.store.data_at(found_ltm).sub_(working.center))
        top = scores.topk(min(self.num_final_ltms, scores.size(1)), dim=1).indices
        return found_ltm.gather(1, top)

    # ------------------------------------------------------------------ adjust steps

    def extend_lifespan(self, indices: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """1. The lifespans [B, M] with ``delta`` added at ``indices`` (repeats add up), as a new tensor."""
        # an index beyond the memory (which the checks refuse before anything is written) lands on the last position
        return added_at(self.store.lifespan, indices, delta, highest=self.store.memory_length - 1)

    def decrease_lifespan(self, lifespan: torch.Tensor) -> torch.Tensor:
        """2. Every lifespan [B, M] loses 1, in place; one that overflowed float32 saturates at its largest value."""
        return lifespan.sub_(1.0).clamp_(max=LIFESPAN_MAX)

    def promote_working(self, types: torch.Tensor) -> torch.Tensor:
        """3. The types [B, M] with every WORKING engram SHORTTERM, as a new tensor."""
        return types.masked_fill(self.store.type_masks()[WORKING], SHORTTERM)

    def promote_shortterm(self, types: torch.Tensor) -> torch.Tensor:
        """4. The oldest SHORTTERM engrams of ``types`` [B, M] beyond ``stm_capacity`` become LONGTERM, in place (before
        the dead are forgotten: it promotes engrams about to be removed too)."""
        stm_mask = types == SHORTTERM
        stm_rank = stm_mask.cumsum(dim=1)
        return types.masked_fill_(stm_mask & (stm_rank <= stm_rank[:, -1:] - self.stm_capacity), LONGTERM)

    def survival(self, alive: torch.Tensor, types: torch.Tensor, checks=None) -> Survival:
        """The adjust's one host read: the survivors' widths (``EngramStore.survival_parts``) and the values of the
        caller's pending ``checks``, which raise here, before anything is written, where the input is bad."""
        parts = self.store.survival_parts(alive, types)
        if checks is not None:
            parts.append(checks.values.to(self.store.device, torch.long))
        values = torch.cat(parts).tolist()
        if checks is not None:
            checks.confirm(values[Survival.SIZE :])
        return Survival.of(values[: Survival.SIZE])

    def increase_age(self) -> None:
        """2. (written) Every engram gets one step older, where ages are tracked."""
        if self.store.age is not None:
            self.store.age = self.store.age + 1  # (not in place: it may come from an inference-mode step)

    def forget(self, alive: torch.Tensor, survival: Survival) -> None:
        """5. Keep the engrams with a positive lifespan (``alive`` [B, M]), each row compacted and left-padded."""
        self.store.keep(alive, survival)

    # ------------------------------------------------------------------ the rest of the backend verbs

    def clear_rows(self, rows: torch.Tensor) -> None:
        """Every position of the rows where ``rows`` (bool [B]) is true becomes fresh NULL padding."""
        if self.store is not None:
            self.store.clear_rows(rows)

    def engrams(self) -> Optional[Engrams]:
        """The engrams in their logical layout (copies), ``None`` while there are none."""
        return None if self.store is None else self.store.to_engrams()

    def row_engrams(self, row: int) -> Optional[Engrams]:
        """Row ``row``'s engrams (batch 1), ``None`` while there are none."""
        engrams = self.engrams()
        return None if engrams is None else list(engrams)[row]

    def set_engrams(self, engrams: Engrams, device: Optional[torch.device] = None) -> None:
        """Take over ``engrams`` (checked by the caller; copied where they lie, ``device`` aside)."""
        self.store = EngramStore(engrams) if engrams.batch_size > 0 else None

    def to(self, device: torch.device) -> None:
        if self.store is not None:
            self.store.to(device)

    def state(self, config: dict, next_engram_id: int, history: Optional[list]) -> None:
        """What a checkpoint holds beyond the engrams, counters and history: nothing."""
        return None

    def load(self, engrams: Engrams, rows: Optional[list], hidden_dim: int) -> None:
        """Take a checked checkpoint's engrams (``rows`` and ``hidden_dim`` are independent rows' only)."""
        self.set_engrams(engrams)
