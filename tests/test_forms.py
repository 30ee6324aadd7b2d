"""Every fast form of every operation in ``memoria.ops.OPERATIONS`` gives what the plain form gives.

The GPU forms are torch ops and run here on CPU tensors; the C forms run where their extension was built. Each case
feeds every form copies of the same inputs (the same generator state for the draws) and compares the outputs, the
tensors the operation writes in place, and the generator state after it.
"""

import copy
import inspect
from typing import Callable, Dict, List, Tuple

import pytest
import torch

from memoria import Engrams, EngramType, native, ops
from memoria.forms import gpu, plain
from memoria.store import EngramStore


def random_store(seed: int, batch: int = 3, length: int = 14, hidden: int = 4, ltm_share: float = 0.5) -> EngramStore:
    """A store whose slots are out of logical order, with padding, every engram type and repeated counts."""
    generator = torch.Generator().manual_seed(seed)
    types = torch.randint(1, 3, (batch, length), generator=generator, dtype=torch.uint8)
    types[torch.rand(batch, length, generator=generator) < ltm_share] = EngramType.LONGTERM.value
    counts = torch.randint(0, 4, (batch, length, length), generator=generator, dtype=torch.int32)
    counts = torch.maximum(counts, counts.transpose(1, 2))
    data = torch.randn(batch, length, hidden, generator=generator)
    store = EngramStore(Engrams(data, counts, types, torch.full((batch, length), 3.0)), spare=5)
    store.keep(torch.rand(batch, length, generator=generator) < 0.8)  # padding, freed slots reused out of order
    store.append(Engrams(torch.randn(batch, 3, hidden, generator=generator), lifespan=2.0))
    return store


def without_spare(counts: torch.Tensor) -> torch.Tensor:
    """A store's counts less the spare last row and column (the ``spare`` hint lets forms write there)."""
    return counts[:, :-1, :-1]


def indices(generator: torch.Generator, batch: int, width: int, length: int) -> torch.Tensor:
    return torch.randint(-1, length, (batch, width), generator=generator)


# each case: (name, seed) -> (arguments builder, what to compare after calling: output + in-place arguments)
def case_indices_with_mask(seed: int):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(4, 9 + seed, generator=generator) < 0.4
    mask[1] = False  # an empty row
    return (mask,), []


def case_indices_with_masks(seed: int):
    generator = torch.Generator().manual_seed(seed)
    masks = [torch.rand(3, 11, generator=generator) < share for share in (0.2, 0.5, 0.0)]
    if seed % 3 == 1:  # stacked, as the store passes its type masks
        return (torch.stack(masks),), []
    if seed % 3 == 2:  # the widths known to the caller
        return (masks, [int(mask.sum(dim=1).max()) for mask in masks]), []
    return (masks,), []


def case_super_unique(seed: int):
    generator = torch.Generator().manual_seed(seed)
    if seed % 3 == 1:
        return (torch.randint(-1, 6, (4, 9), generator=generator), 1), []
    if seed % 3 == 2:  # entries that stand for nothing (a fixed-width walk's), all of them in the last case
        t = torch.randint(-1, 30, (4, 9), generator=generator)
        t[torch.rand(4, 9, generator=generator) < (1.0 if seed == 5 else 0.4)] = ops.ABSENT
        return (t, 1, ops.ABSENT), []
    return (torch.randint(-3, 40, (5, 3, 2), generator=generator), seed % 3), []


def case_gather_slots(seed: int):
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(3, 7, 5, generator=generator) if seed % 2 else torch.randint(0, 9, (3, 7), generator=generator)
    return (values, indices(generator, 3, 6, 7), -3), []


def case_pair_gather(seed: int):
    store = random_store(seed)
    generator = torch.Generator().manual_seed(seed)
    rows = indices(generator, store.batch_size, 5, store.capacity)
    columns = None if seed % 3 == 0 else indices(generator, store.batch_size, 8, store.capacity)
    return (store.counts, rows, columns), []


def case_fire_together(seed: int):
    store = random_store(seed)
    generator = torch.Generator().manual_seed(seed)
    fired = indices(generator, store.batch_size, 12, store.capacity)  # repeats and -1 included
    fired[0] = -1  # a row where nothing fires
    fired[1, :2] = -7  # any negative index means none (Engrams.fire_together_wire_together takes them)
    if seed % 2:  # the store's counts have a spare last row and column, which the forms may write: not compared
        return (store.counts, fired.clamp(min=-1), True), [(0, without_spare)]
    return (store.counts, fired), [0]


def case_fill_slots(seed: int):
    store = random_store(seed)
    generator = torch.Generator().manual_seed(seed)
    if seed % 3 == 2:  # new slots: distinct, none -1
        slots = torch.stack([torch.randperm(store.capacity, generator=generator)[:5] for _ in range(store.batch_size)])
        return (store.counts, slots, 0, True), [0]
    slots = indices(generator, store.batch_size, 6, store.capacity)
    slots[1] = -1  # a row that fills nothing
    if seed % 3 == 1:  # with the store's spare row and column, which are not compared
        return (store.counts, slots, -1, False, True), [(0, without_spare)]
    return (store.counts, slots, -1 if seed % 2 else 0), [0]


def case_zero_vectors(seed: int):
    store = random_store(seed)
    generator = torch.Generator().manual_seed(seed)
    slots = indices(generator, store.batch_size, 6, store.capacity)
    slots[2] = -1
    return (store.data, slots), [0]


def case_strongest_longterm(seed: int):
    store = random_store(seed, ltm_share=0.0 if seed == 0 else 0.5)
    generator = torch.Generator().manual_seed(seed)
    ltm_mask = store.engrams_types == EngramType.LONGTERM.value
    rows = torch.randint(0, store.memory_length, (store.batch_size, 7), generator=generator)
    rows[:, :2] = store.memory_length - 1  # entries that read the last row (quirk R1)
    arguments = (store.counts, store.slots, rows, ltm_mask, plain.indices_with_mask(ltm_mask))
    return (*arguments, torch.Generator().manual_seed(seed)), [0, 5]


def case_walk(seed: int):
    store = random_store(seed)
    generator = torch.Generator().manual_seed(seed)
    (ltm_indices,) = store.indices_of(EngramType.LONGTERM.value)
    start = torch.randint(-1, ltm_indices.size(1), (store.batch_size, 4), generator=generator)
    start = torch.where(ltm_indices.gather(1, start.clamp(min=0)) < 0, -1, start)  # walkers stand on engrams
    return (store.longterm_graph(ltm_indices), start, seed % 5), []


def case_walk_from(seed: int):
    store = random_store(seed, ltm_share=0.5 if seed % 3 else 0.05)
    generator = torch.Generator().manual_seed(seed)
    ltm_mask = store.engrams_types == EngramType.LONGTERM.value
    (ltm_indices,) = store.indices_of(EngramType.LONGTERM.value)
    initial = torch.where(
        torch.rand(store.batch_size, 6, generator=generator) < 0.7,
        torch.randint(0, store.memory_length, (store.batch_size, 6), generator=generator),
        -1,
    )
    if seed == 3:
        initial[:] = -1  # no start anywhere: nothing is walked
    return (store.longterm_graph(ltm_indices), ltm_mask, initial, seed % 4), []


def case_first_max_at_columns(seed: int):
    generator = torch.Generator().manual_seed(seed)
    length, batch = 40, 3
    columns = torch.stack([torch.randperm(length, generator=generator)[:10].sort().values for _ in range(batch)])
    columns[0, :3] = -1  # left padding
    if seed % 2:
        columns[1] = torch.arange(20, 30)  # one run of positions
    candidates = (torch.rand(batch, 4, 10, generator=generator) < 0.5) & (columns >= 0).unsqueeze(1)
    candidate_of_entry = torch.randint(0, 4, (batch, 30), generator=generator)
    return (length, columns, candidates, candidate_of_entry, torch.Generator().manual_seed(seed)), [4]


def case_advance(seed: int):
    return ((2, 3 + seed, 50), torch.device("cpu"), torch.Generator().manual_seed(seed)), [2]


CASES: Dict[str, Callable] = {
    "indices_with_mask": case_indices_with_mask,
    "indices_with_masks": case_indices_with_masks,
    "super_unique": case_super_unique,
    "gather_slots": case_gather_slots,
    "pair_gather": case_pair_gather,
    "fire_together": case_fire_together,
    "fill_slots": case_fill_slots,
    "zero_vectors": case_zero_vectors,
    "strongest_longterm": case_strongest_longterm,
    "walk": case_walk,
    "walk_from": case_walk_from,
    "first_max_at_columns": case_first_max_at_columns,
    "advance": case_advance,
}


# operations whose forms may answer differently, each checked by a test of its own below
CHECKED_APART = {"may_hold_any", "free_slots", "padding_slots"}

# outputs compared after this (the forms may differ in padding that it removes)
AFTER = {"walk_from": lambda walked: plain.super_unique(walked, 1, ignore=ops.ABSENT)}


def fast_forms() -> List[Tuple[str, str]]:
    return [
        (name, form)
        for name, forms in ops.OPERATIONS.items()
        for form in ("cpu", "gpu", "c")
        if getattr(forms, form) is not None and name not in CHECKED_APART
    ]


def observed(value) -> list:
    """Tensors, generator states and numbers of an output or argument, to compare."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, torch.Generator):
        return [value.get_state()]
    if isinstance(value, (tuple, list)):
        return [part for item in value for part in observed(item)]
    return [value]


def after(arguments: tuple, written: list) -> list:
    """The written arguments to compare: an index, or (index, what of it to compare)."""
    return [arguments[i] if isinstance(i, int) else i[1](arguments[i[0]]) for i in written]


def test_every_operation_with_forms_has_a_case():
    assert set(CASES) | CHECKED_APART == set(ops.OPERATIONS)


def test_every_form_takes_the_arguments_of_the_plain_form_that_declares_it():
    """The wrapper ``ops.<name>`` passes the caller's arguments to whichever form runs: each fast form takes the plain
    form's arguments, in its order and with its defaults (the plain form may take more, to be composed of others)."""
    for name, operation in ops.OPERATIONS.items():
        declared = [(p.name, p.default) for p in inspect.signature(operation.plain).parameters.values()]
        assert getattr(ops, name).__wrapped__ is operation.plain and operation.where in dict(declared)
        for kind in ("cpu", "gpu", "c"):
            form = getattr(operation, kind)
            if form is not None:
                taken = [(p.name, p.default) for p in inspect.signature(form).parameters.values()]
                required = sum(default is inspect.Parameter.empty for _, default in declared)
                assert taken == declared[: len(taken)] and len(taken) >= max(required, operation.position + 1), name


@pytest.mark.parametrize("name, form", fast_forms(), ids=[f"{name}-{form}" for name, form in fast_forms()])
@pytest.mark.parametrize("seed", range(6))
def test_fast_form_equals_the_plain_form(name, form, seed):
    forms = ops.OPERATIONS[name]
    if not forms.can(form):
        pytest.skip(f"the {form} form of {name} cannot run here (extension not built, or its self-check failed)")
    arguments, written = CASES[name](seed)
    results = {}
    for which in ("plain", form):
        copied = copy.deepcopy(arguments)
        output = ops.run(name, torch.device("cpu"), which)(*copied)
        results[which] = observed(AFTER.get(name, lambda value: value)(output)) + observed(after(copied, written))
    for expected, got in zip(results["plain"], results[form], strict=True):
        if isinstance(expected, torch.Tensor):
            assert expected.dtype == got.dtype and torch.equal(expected, got), (name, form)
        else:
            assert expected == got, (name, form)


def test_the_gpu_form_of_may_hold_any_never_says_no_where_there_is_something():
    for mask in (torch.zeros(2, 3, dtype=torch.bool), torch.eye(3, dtype=torch.bool)):
        assert ops.OPERATIONS["may_hold_any"].gpu(mask) or not ops.OPERATIONS["may_hold_any"].plain(mask)
    assert not ops.OPERATIONS["may_hold_any"].plain(torch.zeros(2, 3, dtype=torch.bool))


@pytest.mark.parametrize("seed", range(6))
def test_the_gpu_walk_without_its_copy_of_the_counts_equals_the_plain_walk(monkeypatch, seed):
    """Above ``WALK_COPY_ELEMENTS`` the GPU walk reads rows from the counts at every depth instead of copying them."""
    monkeypatch.setattr(gpu, "WALK_COPY_ELEMENTS", 0)
    arguments, _ = case_walk(seed)
    assert torch.equal(gpu.walk(*copy.deepcopy(arguments)), plain.walk(*arguments))
    arguments, _ = case_walk_from(seed)
    walked = gpu.walk_from(*copy.deepcopy(arguments))
    assert torch.equal(AFTER["walk_from"](walked), AFTER["walk_from"](plain.walk_from(*arguments)))


@pytest.mark.parametrize("form", ["plain", "cpu"])
@pytest.mark.parametrize("seed", range(4))
def test_every_form_of_free_slots_gives_distinct_free_slots_in_order(form, seed):
    """Which free slots an append takes is not observable, so the forms may differ; each must give free ones."""
    store = random_store(seed)
    free = store.capacity - store.memory_length
    for width in (1, free):
        taken = ops.OPERATIONS["free_slots"].__getattribute__(form)(store.slots, store.capacity, width)
        assert taken.shape == (store.batch_size, width) and taken.dtype == torch.long
        assert torch.equal(taken, taken.sort(dim=1).values) and bool((taken[:, 1:] > taken[:, :-1]).all())
        assert bool(((taken >= 0) & (taken < store.capacity)).all())
        assert not bool((taken.unsqueeze(2) == store.slots.unsqueeze(1)).any())
    # all of them: the plain form and the cpu form then agree
    assert torch.equal(taken, plain.free_slots(store.slots, store.capacity, free))


@pytest.mark.parametrize("form", ["plain", "cpu"])
@pytest.mark.parametrize("seed", range(4))
def test_every_form_of_padding_slots_keeps_the_survivors_and_gives_the_padding_unused_slots(form, seed):
    """A compaction's padding slots are not observable either: any distinct slots that no survivor uses will do."""
    store = random_store(seed)
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(store.batch_size, store.memory_length, generator=generator) < 0.6
    mask[0] = True  # a row without padding
    alive, order = mask.view(torch.uint8).sort(dim=1, stable=True)
    width = int(mask.sum(dim=1).max())
    kept, padding = order[:, -width:], alive[:, -width:] == 0
    dead_slots = store.slots.gather(1, kept)
    slots = getattr(ops.OPERATIONS["padding_slots"], form)(dead_slots.clone(), padding, store.capacity)
    assert torch.equal(slots[~padding], dead_slots[~padding])  # the survivors keep theirs
    for row in range(store.batch_size):
        assert len(set(slots[row].tolist())) == width  # distinct
        assert bool(((slots[row] >= 0) & (slots[row] < store.capacity)).all())
    assert bool(padding.any()) and bool(padding[0].logical_not().all())


def test_the_switch_chooses_one_form_per_device(monkeypatch):
    cpu_tensor = torch.zeros(2, 2)
    monkeypatch.delenv("MEMORIA_FORCE_GPU_BRANCHES", raising=False)
    monkeypatch.delenv("MEMORIA_FORMS", raising=False)
    expected_walk = "c" if native.active(native.walk) else "cpu"
    assert ops.form_for("walk", cpu_tensor) == expected_walk
    assert ops.form_for("gather_slots", cpu_tensor) == "cpu"
    assert ops.form_for("pair_gather", torch.device("meta")) == "plain"  # off the CPU, no GPU form: the plain one
    assert ops.form_for("walk", torch.device("meta")) == "gpu"
    monkeypatch.setenv("MEMORIA_FORCE_GPU_BRANCHES", "1")
    assert not ops.on_cpu(cpu_tensor)
    assert {ops.form_for(name, cpu_tensor) for name in ops.OPERATIONS} == {"gpu", "plain"}
    monkeypatch.setenv("MEMORIA_FORCE_GPU_BRANCHES", "0")
    monkeypatch.setenv("MEMORIA_NATIVE", "0")
    assert ops.form_for("walk", cpu_tensor) == "cpu"
    monkeypatch.setenv("MEMORIA_FORMS", "plain")
    assert {ops.form_for(name, cpu_tensor) for name in ops.OPERATIONS} == {"plain"}


def test_a_whole_stream_is_the_same_in_every_form_setting(monkeypatch):
    """The plain forms everywhere, the GPU forms on CPU tensors, the CPU forms without C, and the default: one stream
    gives the same reminded indices, memories and engrams in all four."""
    settings = [{}, {"MEMORIA_FORMS": "plain"}, {"MEMORIA_FORCE_GPU_BRANCHES": "1"}, {"MEMORIA_NATIVE": "0"}]
    outcomes = []
    for environment in settings:
        for key in ("MEMORIA_FORMS", "MEMORIA_FORCE_GPU_BRANCHES", "MEMORIA_NATIVE"):
            monkeypatch.delenv(key, raising=False)
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        from memoria import Memoria

        memory = Memoria(4, 8, 3, 3, 5, track_id=True, track_age=True, generator=torch.Generator().manual_seed(1))
        generator = torch.Generator().manual_seed(0)
        outputs = []
        for _ in range(16):
            memory.add_working_memory(torch.randn(3, 4, 6, generator=generator))
            memories, reminded = memory.remind()
            delta = torch.rand(reminded.shape, generator=generator) * 3
            memory.adjust_lifespan_and_memories(reminded, delta)
            outputs += [memories, reminded]
        outcomes.append((outputs, memory.engrams))
    for outputs, engrams in outcomes[1:]:
        assert all(torch.equal(a, b) for a, b in zip(outcomes[0][0], outputs, strict=True))
        assert engrams == outcomes[0][1]


def to_cuda(value):
    """The case's arguments on the GPU (a graph field by field)."""
    if isinstance(value, torch.Tensor):
        return value.cuda()
    if isinstance(value, plain.LongtermGraph):
        return plain.LongtermGraph(*(field.cuda() for field in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_cuda(item) for item in value)
    return value


# the draws differ between devices (the GPU's generator is not the CPU's): those cases compare on one device above
DEVICE_FREE = [name for name in CASES if name not in {"strongest_longterm", "first_max_at_columns", "advance"}]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", DEVICE_FREE)
@pytest.mark.parametrize("seed", range(3))
def test_the_form_a_gpu_takes_equals_the_plain_form_on_the_cpu(name, seed):
    arguments, written = CASES[name](seed)
    expected_arguments = copy.deepcopy(arguments)
    expected = observed(
        AFTER.get(name, lambda value: value)(ops.run(name, torch.device("cpu"), "plain")(*expected_arguments))
    )
    expected += observed(after(expected_arguments, written))
    on_gpu = to_cuda(copy.deepcopy(arguments))
    got = observed(AFTER.get(name, lambda value: value)(ops.run(name, torch.device("cuda"))(*on_gpu)).cpu())
    got += observed(after(on_gpu, written))
    for want, have in zip(expected, got, strict=True):
        if isinstance(want, torch.Tensor):
            assert torch.equal(want, have.cpu()), name
        else:
            assert want == have, name


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("copy_limit", [gpu.WALK_COPY_ELEMENTS, 0])
@pytest.mark.parametrize("seed", range(3))
def test_the_gpu_walk_on_a_gpu_equals_the_plain_walk_on_the_cpu(monkeypatch, copy_limit, seed):
    monkeypatch.setattr(gpu, "WALK_COPY_ELEMENTS", copy_limit)
    arguments, _ = case_walk(seed)
    expected = plain.walk(*copy.deepcopy(arguments))
    assert torch.equal(gpu.walk(*to_cuda(copy.deepcopy(arguments))).cpu(), expected)
