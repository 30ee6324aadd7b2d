"""EngramStore keeps physical slots but must always read back exactly like the logical Engrams operations."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memoria import Engrams, EngramType
from memoria.store import EngramStore


def random_engrams(batch, length, hidden, generator):
    types = torch.randint(0, 4, (batch, length), generator=generator, dtype=torch.uint8)
    counts = torch.randint(-1, 5, (batch, length, length), generator=generator, dtype=torch.int32)
    counts = torch.maximum(counts, counts.transpose(1, 2))
    lifespan = torch.randint(-1, 4, (batch, length), generator=generator).float()
    data = torch.randn(batch, length, hidden, generator=generator)
    return Engrams(data, counts, types, lifespan, track_age=True, track_engram_id=True)


def test_round_trip_and_reads():
    g = torch.Generator().manual_seed(0)
    e = random_engrams(2, 5, 3, g)
    store = EngramStore(e, spare=4)
    assert store.to_engrams() == e
    rows = torch.tensor([[4, -1], [0, 2]])
    expected = e.induce_counts.gather(1, rows.clamp(min=0).unsqueeze(2).expand(-1, -1, 5)).masked_fill(
        (rows < 0).unsqueeze(2), -1
    )
    assert torch.equal(store.counts_at(rows), expected)
    assert torch.equal(store.data_at(rows), e.select(rows).data)


@st.composite
def operations(draw):
    ops = []
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["append", "keep", "fire"]))
        ops.append((kind, draw(st.integers(0, 2**31 - 1))))
    return draw(st.integers(1, 3)), draw(st.integers(1, 6)), ops


@settings(max_examples=60, deadline=None)
@given(operations())
def test_store_follows_engrams_operations(case):
    check_operations(case)


@pytest.mark.parametrize("seed", range(25))
def test_gpu_branches_follow_engrams_operations(seed, monkeypatch):
    """The store's GPU branches (no host round trips) on CPU tensors: no GPU was lent to this project's CI."""

    monkeypatch.setenv("MEMORIA_FORCE_GPU_BRANCHES", "1")
    g = torch.Generator().manual_seed(seed)
    kinds = ["append", "keep", "fire"]
    ops = [(kinds[int(torch.randint(0, 3, (), generator=g))], seed * 100 + step) for step in range(10)]
    check_operations((1 + seed % 3, 1 + seed % 6, ops))


def check_operations(case):
    batch, length, ops = case
    g = torch.Generator().manual_seed(length)
    logical = random_engrams(batch, length, 3, g)
    store = EngramStore(logical)
    for kind, seed in ops:
        g = torch.Generator().manual_seed(seed)
        if kind == "append":
            width = int(torch.randint(0, 5, (1,), generator=g))
            new = Engrams(torch.randn(batch, width, 3, generator=g), lifespan=2.0, track_age=True, track_engram_id=True)
            logical = logical + new
            store.append(new)
        elif kind == "keep":
            mask = torch.rand(batch, logical.memory_length, generator=g) > 0.4
            logical = logical.mask_select(mask)
            store.keep(mask)
        else:
            width = int(torch.randint(0, 6, (1,), generator=g))
            indices = torch.randint(-1, max(logical.memory_length, 1), (batch, width), generator=g)
            if logical.memory_length == 0:
                indices.fill_(-1)
            logical.fire_together_wire_together(indices)
            store.fire_together(indices)
        assert store.to_engrams() == logical, kind


def test_capacity_grows_and_padding_slots_are_fresh():
    e = Engrams(torch.ones(2, 2, 1), lifespan=3.0)
    store = EngramStore(e)
    capacity = store.capacity
    for _ in range(4):
        store.append(Engrams(torch.ones(2, capacity, 1), lifespan=1.0))
    assert store.capacity > capacity
    store.keep(torch.tensor([[True] * store.memory_length, [False] * store.memory_length]))
    view = store.to_engrams()
    assert (view.engrams_types[1] == EngramType.NULL.value).all()
    assert (view.induce_counts[1] == -1).all() and (view.data[1] == 0).all()


def test_append_with_different_tracking_drops_it_like_concatenation():
    tracked = Engrams(torch.rand(2, 3, 4), track_age=True, track_engram_id=True)
    store = EngramStore(tracked)
    plain = Engrams(torch.rand(2, 2, 4))
    with pytest.warns(UserWarning, match="no longer tracked"):
        store.append(plain)
    with pytest.warns(UserWarning):
        expected = tracked + plain
    assert store.to_engrams() == expected
    assert store.age is None and store.engram_ids is None


def test_new_engrams_take_slots_from_the_freest_groups():
    g = torch.Generator().manual_seed(3)
    store = EngramStore(random_engrams(2, 40, 3, g), spare=60)
    # free every other slot of the first 40: those groups are half free, the tail beyond them wholly free
    store.keep(torch.arange(40).remainder(2).bool().expand(2, 40))
    free_before = torch.ones(2, store.capacity, dtype=torch.bool)
    free_before.scatter_(1, store.slots, False)
    store.append(Engrams(torch.randn(2, 16, 3, generator=g), lifespan=1.0))
    taken = store.slots[:, -16:]
    assert bool(free_before.gather(1, taken).all())
    assert torch.equal(taken, taken.sort(dim=1).values) and len(set(taken[0].tolist())) == 16
    # a whole free group of 16 neighbours exists, so the 16 new engrams share one cache line of every count row
    assert bool((taken // 16 == taken[:, :1] // 16).all())
    expected = EngramStore(random_engrams(2, 40, 3, torch.Generator().manual_seed(3)), spare=60)
    expected.keep(torch.arange(40).remainder(2).bool().expand(2, 40))
    assert store.to_engrams().induce_counts[:, :-16, :-16].equal(expected.to_engrams().induce_counts)
    assert (store.to_engrams().induce_counts[:, -16:, :] == 0).all()


@pytest.mark.parametrize("seed", range(6))
def test_type_widths_known_after_keep_and_append_are_the_true_ones(seed):
    """keep reads each engram type's width with the survivors' (one host read), append of WORKING engrams adds to it;
    the widths the next remind uses without reading must be the largest per-row counts of the state."""
    g = torch.Generator().manual_seed(seed)
    store = EngramStore(random_engrams(3, 12, 2, g), spare=8)
    assert store._type_widths is None  # unknown until a compaction
    store.keep(torch.rand(3, 12, generator=g) < 0.6)
    store.append(Engrams(torch.randn(3, 4, 2, generator=g), lifespan=1.0), EngramType.WORKING.value)
    for engram_type in (EngramType.WORKING, EngramType.SHORTTERM, EngramType.LONGTERM):
        expected = int((store.to_engrams().engrams_types == engram_type.value).sum(dim=1).max())
        assert store._type_widths[engram_type.value] == expected, engram_type
    assert EngramType.NULL.value not in store._type_widths  # padding comes with the compaction
    (working,) = store.indices_of(EngramType.WORKING.value)
    assert working.size(1) == store._type_widths[EngramType.WORKING.value]
    store.append(Engrams(torch.randn(3, 1, 2, generator=g), lifespan=1.0))  # types unknown to the store
    assert store._type_widths is None
