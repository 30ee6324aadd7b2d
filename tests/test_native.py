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


# how the C code is run: on the calling thread alone, or split over two of torch's OpenMP threads
SERIAL = (0, 1)
TWO_THREADS = (native._openmp_parallel, 2)
RUNS = [
    pytest.param(SERIAL, id="serial"),
    pytest.param(
        TWO_THREADS,
        id="two-threads",
        marks=pytest.mark.skipif(native._openmp_parallel == 0, reason="torch runs its CPU threads without OpenMP"),
    ),
]


def test_threads_follow_torch_and_the_switch(monkeypatch):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert native.threads() == SERIAL
        torch.set_num_threads(2)
        assert native.threads() == (native._openmp_parallel, 2)
        monkeypatch.setenv("MEMORIA_NATIVE_THREADS", "0")
        assert native.threads() == SERIAL
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(
    "parallel backend: OpenMP" not in torch.__config__.parallel_info(),
    reason="torch runs its CPU threads without OpenMP",
)
def test_openmp_parallel_is_found_where_torch_uses_openmp():
    assert native._openmp_parallel != 0


def test_memoria_native_0_turns_the_extensions_off(monkeypatch):
    monkeypatch.setenv("MEMORIA_NATIVE", "0")
    assert not native.enabled()
    monkeypatch.setenv("MEMORIA_NATIVE", "1")
    assert native.enabled()
    monkeypatch.delenv("MEMORIA_NATIVE")
    assert native.enabled()


def test_memoria_native_comma_list_picks_extensions(monkeypatch):
    built = [getattr(native, name) for name in native.NAMES if getattr(native, name) is not None]
    monkeypatch.setenv("MEMORIA_NATIVE", "walk, counts")
    assert native.allowed() == {"walk", "counts"} and native.enabled()
    for module in built:
        assert native.active(module) == (module.__name__ in ("memoria._walk", "memoria._counts"))
    monkeypatch.setenv("MEMORIA_NATIVE", "mt19937")
    assert all(native.active(module) == (module.__name__ == "memoria._mt19937") for module in built)
    assert not native.active(None)
    for switch, expected in (("1", set(native.NAMES)), ("0", set()), ("mt19937,walk,counts", set(native.NAMES))):
        monkeypatch.setenv("MEMORIA_NATIVE", switch)
        assert native.allowed() == expected
        assert all(native.active(module) == bool(expected) for module in built)
    monkeypatch.setenv("MEMORIA_NATIVE", "walk,cuonts")
    for check in [native.allowed] + [lambda module=module: native.active(module) for module in built]:
        with pytest.raises(ValueError, match="MEMORIA_NATIVE='walk,cuonts': unknown extension.s. cuonts"):
            check()


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
@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("seed", range(10))
def test_walk_equals_the_walk_by_definition(seed, run):
    # odd batch sizes: the threads' shares of batch rows differ
    counts, nodes, slots, visited = _walk_inputs(seed, batch_size=3 + 2 * (seed % 3))
    depth, last = 6, slots.size(1) - 1
    expected_found, expected_nodes, expected_visited = _python_walk(counts, nodes, slots, visited, depth, last)
    found = torch.empty(depth, nodes.numel(), dtype=torch.long)
    batch_size, capacity = counts.shape[:2]
    native.walk.walk(
        counts.data_ptr(), batch_size, capacity, nodes.data_ptr(), nodes.numel() // batch_size, slots.data_ptr(),
        slots.size(1), visited.data_ptr(), depth, last, found.data_ptr(), *run,
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
            num_ltm, visited.data_ptr(), 2, num_ltm - 1, found.data_ptr(), *TWO_THREADS,
        )  # fmt: skip

    before = visited.clone()
    # past the end, before the start, and a node of another batch row (walks never leave their own row)
    for bad in (batch_size * num_ltm, -1, 0):
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
        ltm_mask = m._backend.store.engrams_types == memoria.EngramType.LONGTERM.value
        ltm_indices = indices_with_mask(ltm_mask)
        keep = torch.rand(3, 6, generator=torch.Generator().manual_seed(seed)) < 0.8
        initial = torch.where(keep, ltm_indices[:, :6], -1)  # some walkers start nowhere (quirk R3)
        results.append(m._backend.search_longterm(initial, ltm_mask, ltm_indices))
    assert torch.equal(results[0], results[1])
    assert (results[0] >= 0).any()


@needs_counts
@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("seed", range(6))
def test_fire_together_in_c_equals_index_put(seed, run):
    generator = torch.Generator().manual_seed(seed)
    batch_size, capacity, width = 5, 24, 7
    counts = torch.randint(-1, 5, (batch_size, capacity, capacity), generator=generator, dtype=torch.int32)
    fired = torch.stack([torch.randperm(capacity, generator=generator)[:width] for _ in range(batch_size)])
    fired = fired.masked_fill(torch.rand(batch_size, width, generator=generator) < 0.3, -1).sort(dim=1).values
    expected = counts.clone()
    for b in range(batch_size):
        valid = fired[b][fired[b] >= 0]
        expected[b, valid.unsqueeze(1), valid.unsqueeze(0)] += 1
    native.counts.fire_together(counts.data_ptr(), batch_size, capacity, fired.data_ptr(), width, *run)
    assert torch.equal(counts, expected)


def _filled_by_torch(counts: torch.Tensor, slots: torch.Tensor, value: int) -> torch.Tensor:
    expected = counts.clone()
    for b in range(counts.size(0)):
        valid = slots[b][slots[b] >= 0]
        expected[b, valid] = value
        expected[b, :, valid] = value
    return expected


@needs_counts
@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("value", [0, -1, 7])
@pytest.mark.parametrize("seed", range(4))
def test_fill_slots_sets_whole_rows_and_columns(seed, value, run):
    generator = torch.Generator().manual_seed(seed)
    batch_size, capacity, width = 5, 40, 9
    counts = torch.randint(-1, 5, (batch_size, capacity, capacity), generator=generator, dtype=torch.int32)
    # unsorted, with runs of neighbours, repeats and -1 padding; one row clears nothing
    slots = torch.randint(-1, capacity, (batch_size, width), generator=generator)
    slots[0, :4] = torch.tensor([12, 11, 13, 12])
    slots[1] = -1
    slots[2, -1] = capacity - 1
    expected = _filled_by_torch(counts, slots, value)
    native.counts.fill_slots(counts.data_ptr(), batch_size, capacity, slots.data_ptr(), width, value, *run)
    assert torch.equal(counts, expected)


@needs_counts
def test_fill_slots_refuses_an_out_of_range_slot_untouched():
    counts = torch.zeros(2, 5, 5, dtype=torch.int32)
    for bad in (5, -2):
        slots = torch.tensor([[0, 2], [1, bad]])
        with pytest.raises(ValueError, match="out of range"):
            native.counts.fill_slots(counts.data_ptr(), 2, 5, slots.data_ptr(), 2, -1, *TWO_THREADS)
    assert counts.abs().sum() == 0


@pytest.mark.parametrize("seed", range(3))
def test_a_stream_is_the_same_with_and_without_the_extensions(monkeypatch, seed):
    """Every step's outputs and the whole state, C code (on torch's threads) against torch ops alone."""
    generator = torch.Generator().manual_seed(seed)
    stream = [(torch.randn(4, 6, 8, generator=generator), torch.rand(4, 40, generator=generator)) for _ in range(25)]
    results = []
    for switch in ("1", "0"):
        monkeypatch.setenv("MEMORIA_NATIVE", switch)
        torch.manual_seed(seed)
        m = memoria.Memoria(
            num_reminded_stm=5, stm_capacity=12, ltm_search_depth=4, initial_lifespan=3, num_final_ltms=5
        )
        outputs = []
        for data, delta in stream:
            m.add_working_memory(data)
            memories, indices = m.remind()
            m.adjust_lifespan_and_memories(indices, delta[:, : indices.size(1)] * 3)
            outputs.append((memories, indices))
        results.append((outputs, m.engrams, torch.get_rng_state()))
    (outputs, engrams, rng), (expected_outputs, expected_engrams, expected_rng) = results
    for (memories, indices), (expected_memories, expected_indices) in zip(outputs, expected_outputs):
        assert torch.equal(indices, expected_indices) and torch.equal(memories, expected_memories)
    for name in ("data", "induce_counts", "engrams_types", "lifespan"):
        assert torch.equal(getattr(engrams, name), getattr(expected_engrams, name)), name
    assert torch.equal(rng, expected_rng)
    assert (engrams.engrams_types == memoria.EngramType.LONGTERM.value).any()  # the walk ran


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
        native.counts.fire_together(counts.data_ptr(), 2, 5, fired.data_ptr(), 3, *TWO_THREADS)
    assert counts.abs().sum() == 0


@needs_counts
@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("seed", range(4))
def test_pair_gather_in_c_equals_the_torch_form(monkeypatch, seed, run):
    monkeypatch.setattr(native, "threads", lambda: run)
    generator = torch.Generator().manual_seed(seed)
    store = EngramStore(_random_engrams(seed))
    store.keep(torch.rand(3, 20, generator=generator) < 0.7)  # padding, and slots out of logical order
    rows = torch.randint(-1, store.memory_length, (3, 7), generator=generator)
    columns = torch.randint(-1, store.memory_length, (3, 9), generator=generator)
    ours, ours_view = store.counts_at(rows, columns), store.to_engrams().induce_counts
    monkeypatch.setattr(native, "counts", None)
    assert torch.equal(ours, store.counts_at(rows, columns))
    assert torch.equal(ours_view, store.to_engrams().induce_counts)
    assert (ours == -1).any() and (ours > 0).any()


@needs_counts
def test_pair_gather_refuses_an_out_of_range_slot():
    counts = torch.zeros(2, 5, 5, dtype=torch.int32)
    out = torch.empty(2, 2, 2, dtype=torch.int32)
    for rows, columns in (
        (torch.tensor([[0, 5], [1, 2]]), torch.zeros(2, 2, dtype=torch.long)),
        (torch.zeros(2, 2, dtype=torch.long), torch.tensor([[0, -2], [1, 2]])),
    ):
        with pytest.raises(ValueError, match="out of range"):
            native.counts.pair_gather(
                counts.data_ptr(), 2, 5, rows.data_ptr(), 2, columns.data_ptr(), 2, out.data_ptr(), *TWO_THREADS
            )


def test_a_stream_from_another_python_thread_equals_the_main_threads():
    """The C code starts OpenMP teams from whichever thread calls it: a worker thread gets the same results."""
    import threading

    def run(results: list) -> None:
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(1)
        m = memoria.Memoria(
            num_reminded_stm=3, stm_capacity=6, ltm_search_depth=3, initial_lifespan=3, num_final_ltms=3
        )
        for _ in range(30):
            m.add_working_memory(torch.randn(6, 5, 8, generator=generator))
            _, indices = m.remind()
            m.adjust_lifespan_and_memories(indices, torch.ones_like(indices, dtype=torch.float))
            results.append(indices)

    main, worker = [], []
    run(main)
    thread = threading.Thread(target=run, args=(worker,))
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive() and len(worker) == 30
    assert all(torch.equal(a, b) for a, b in zip(main, worker))


def test_built_covers_every_extension_setup_builds():
    """``native.built()`` (what CI checks where a compiler is present) names every extension ``setup.py`` declares."""
    import ast
    from pathlib import Path

    setup = Path(__file__).resolve().parents[1] / "setup.py"
    declared = next(
        node.elts
        for node in ast.walk(ast.parse(setup.read_text()))
        if isinstance(node, ast.Tuple)
        and all(isinstance(e, ast.Constant) and str(e.value).startswith("_") for e in node.elts)
        and node.elts
    )
    assert set(native.built()) == {element.value.lstrip("_") for element in declared}
    assert all(native.built()[name] == (getattr(native, name) is not None) for name in native.built())


# ---------------------------------------------------------------------- the warning of an install without them


def import_without(missing, prelude: str = "", **env) -> list:
    """The warnings ``import memoria`` gives in a fresh interpreter where the extensions ``missing`` did not build
    (each ``memoria._<name>`` made unimportable), followed by two steps that use every form; one line per warning.
    ``prelude`` runs first, after the warnings filter is set to show every warning."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, warnings, torch\n"
        f"for name in {list(missing)!r}: sys.modules['memoria._' + name] = None\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    {prelude}\n"
        "    import memoria, memoria.native\n"
        "    m = memoria.Memoria(2, 4, 2, 3, 2)\n"
        "    for _ in range(2):\n"
        "        m.add_working_memory(torch.rand(2, 3, 4))\n"
        "        _, i = m.remind()\n"
        "        m.adjust_lifespan_and_memories(i, torch.ones(i.shape))\n"
        "print('\\n'.join(f'{w.category.__name__}: {w.message}' for w in caught))\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "MEMORIA_NATIVE"}
    environment.update(env)
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


def test_an_install_without_the_extensions_warns_once_saying_how_to_silence_it():
    (warning,) = import_without(native.NAMES)
    assert warning.startswith("RuntimeWarning: memoria: the C extension(s) mt19937, walk, counts did not build")
    assert "set MEMORIA_NATIVE=0 to run without them and without this warning" in warning
    (warning,) = import_without(["walk"])
    assert "extension(s) walk did not build" in warning and "MEMORIA_NATIVE=mt19937,counts" in warning


def test_the_warning_is_silenced_by_memoria_native_or_a_filter():
    assert import_without(native.NAMES, MEMORIA_NATIVE="0") == []
    assert import_without(native.NAMES, "warnings.filterwarnings('ignore', message='memoria: the C extension')") == []
