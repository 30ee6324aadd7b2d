"""The optional C extensions (``memoria/native.py``) against the torch-op forms they replace.

The tie-break draw's extension is tested with the draw itself, in ``tests/test_draw.py``; whole streams with and
without the extensions are compared with the published package in ``tests/test_differential.py``.
"""

import pytest
import torch

import memoria
from memoria import native
from memoria.store import EngramStore
from memoria.utils import indices_with_mask

needs_walk = pytest.mark.skipif(
    native.walk is None, reason="the optional C extension memoria._walk was not built (no C compiler at install)"
)
needs_counts = pytest.mark.skipif(
    native.counts is None, reason="the optional C extension memoria._counts was not built (no C compiler at install)"
)


def test_memoria_native_0_turns_the_extensions_off(monkeypatch):
    monkeypatch.setenv("MEMORIA_NATIVE", "0")
    assert not native.enabled()
    monkeypatch.setenv("MEMORIA_NATIVE", "1")
    assert native.enabled()
    monkeypatch.delenv("MEMORIA_NATIVE")
    assert native.enabled()


def _python_walk(counts, nodes, slots, visited, depth, last):
    """The walk in plain Python loops, from its definition (SPEC §3.3): the reference both forms must equal."""
    num_ltm = slots.size(1)
    counts, slots, nodes, visited = counts.tolist(), slots.tolist(), nodes.tolist(), visited.tolist()
    found = []
    for _ in range(depth):
        before = list(visited)  # a depth reads the visits made before it
        reached = []
        for node in nodes:
            row, local = divmod(node, num_ltm)
            scores = [
                -1 if before[row * num_ltm + j] else counts[row][slots[row][local]][slots[row][j]]
                for j in range(num_ltm)
            ]
            step = scores.index(max(scores))
            reached.append(-1 if before[row * num_ltm + step] else step)
        nodes = [(node // num_ltm) * num_ltm + (last if step < 0 else step) for node, step in zip(nodes, reached)]
        for node in nodes:
            visited[node] = True
        found.append(reached)
    return torch.tensor(found, dtype=torch.long).view(depth, -1), torch.tensor(nodes), torch.tensor(visited)


def _walk_inputs(seed: int, batch_size: int = 3, capacity: int = 30, num_ltm: int = 12, walkers: int = 5):
    generator = torch.Generator().manual_seed(seed)
    # small counts give many ties; -1 marks pairs that never co-fired
    counts = torch.randint(-1, 3, (batch_size, capacity, capacity), generator=generator, dtype=torch.int32)
    counts[1] = -1  # a row where nothing co-fired: visited or not, every candidate scores -1 and the first wins
    slots = torch.stack([torch.randperm(capacity, generator=generator)[:num_ltm] for _ in range(batch_size)])
    visited = torch.rand(batch_size * num_ltm, generator=generator) < 0.3
    visited[:num_ltm] = True  # a row where every engram is visited already
    local = torch.randint(0, num_ltm, (batch_size, walkers), generator=generator)
    nodes = (local + torch.arange(batch_size).unsqueeze(1) * num_ltm).flatten()
    visited[nodes] = True
    return counts, nodes, slots, visited


@needs_walk
@pytest.mark.parametrize("seed", range(10))
def test_walk_equals_the_walk_by_definition(seed):
    counts, nodes, slots, visited = _walk_inputs(seed)
    depth, last = 6, slots.size(1) - 1
    expected_found, expected_nodes, expected_visited = _python_walk(counts, nodes, slots, visited, depth, last)
    found = torch.empty(depth, nodes.numel(), dtype=torch.long)
    batch_size, capacity = counts.shape[:2]
    native.walk.walk(
        counts.data_ptr(), batch_size, capacity, nodes.data_ptr(), nodes.numel() // batch_size, slots.data_ptr(),
        slots.size(1), visited.data_ptr(), depth, last, found.data_ptr(),
    )  # fmt: skip
    assert torch.equal(found, expected_found)
    assert torch.equal(nodes, expected_nodes) and torch.equal(visited, expected_visited)


@needs_walk
def test_walk_refuses_out_of_range_nodes_and_slots_untouched():
    counts, nodes, slots, visited = _walk_inputs(0)
    batch_size, capacity = counts.shape[:2]
    num_ltm = slots.size(1)
    found = torch.empty(2, nodes.numel(), dtype=torch.long)

    def call(nodes, slots):
        native.walk.walk(
            counts.data_ptr(), batch_size, capacity, nodes.data_ptr(), nodes.numel() // batch_size, slots.data_ptr(),
            num_ltm, visited.data_ptr(), 2, num_ltm - 1, found.data_ptr(),
        )  # fmt: skip

    before = visited.clone()
    for bad in (batch_size * num_ltm, -1):
        bad_nodes = nodes.clone()
        bad_nodes[-1] = bad
        with pytest.raises(ValueError, match="out of range"):
            call(bad_nodes, slots)
    bad_slots = slots.clone()
    bad_slots[1, 3] = capacity
    with pytest.raises(ValueError, match="out of range"):
        call(nodes, bad_slots)
    assert torch.equal(visited, before)


def _random_engrams(seed: int) -> memoria.Engrams:
    generator = torch.Generator().manual_seed(seed)
    batch_size, length = 3, 20
    counts = torch.randint(0, 4, (batch_size, length, length), generator=generator, dtype=torch.int32)
    return memoria.Engrams(
        data=torch.randn(batch_size, length, 4, generator=generator),
        induce_counts=torch.maximum(counts, counts.transpose(1, 2)),
        engrams_types=torch.randint(1, 4, (batch_size, length), generator=generator).to(torch.uint8),
        lifespan=torch.ones(batch_size, length),
    )


@pytest.mark.parametrize("seed", range(6))
def test_search_longterm_is_the_same_with_and_without_the_walk_extension(monkeypatch, seed):
    results = []
    for walk in (native.walk, None):
        monkeypatch.setattr(native, "walk", walk)
        m = memoria.Memoria(
            num_reminded_stm=4, stm_capacity=6, ltm_search_depth=5, initial_lifespan=3, num_final_ltms=4
        )
        m.engrams = _random_engrams(seed)
        ltm_mask = m._store.engrams_types == memoria.EngramType.LONGTERM.value
        ltm_indices = indices_with_mask(ltm_mask)
        keep = torch.rand(3, 6, generator=torch.Generator().manual_seed(seed)) < 0.8
        initial = torch.where(keep, ltm_indices[:, :6], -1)  # some walkers start nowhere (quirk R3)
        results.append(m._search_longterm(initial, ltm_mask, ltm_indices))
    assert torch.equal(results[0], results[1])
    assert (results[0] >= 0).any()


@needs_counts
@pytest.mark.parametrize("seed", range(6))
def test_fire_together_is_the_same_with_and_without_the_counts_extension(monkeypatch, seed):
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randint(-1, 20, (3, 9), generator=generator)  # repeats and -1 padding
    indices[2] = -1  # a row where nothing fired
    stores = []
    for counts in (native.counts, None):
        monkeypatch.setattr(native, "counts", counts)
        store = EngramStore(_random_engrams(seed))
        store.fire_together(indices)
        stores.append(store)
    assert torch.equal(stores[0].counts, stores[1].counts)
    assert not torch.equal(stores[0].counts, EngramStore(_random_engrams(seed)).counts)


@needs_counts
def test_fire_together_refuses_an_out_of_range_slot_untouched():
    counts = torch.zeros(2, 5, 5, dtype=torch.int32)
    fired = torch.tensor([[0, 2, 4], [1, 5, -1]])
    with pytest.raises(ValueError, match="out of range"):
        native.counts.fire_together(counts.data_ptr(), 2, 5, fired.data_ptr(), 3)
    assert counts.abs().sum() == 0
