"""Bad calls at a live memory and at every other public entry point: each gets a clean error or a documented result.

First a generated sweep; then grouped by kind: the state after an error, a hang, silent wrong results, inputs that
used to be accepted and broke things later, and the kind of error raised. After every refused call the memory is
bit-identical to before (its whole state dict, devices, dtype and the global RNG state).
"""

import itertools

import numpy as np
import pytest
import torch

from memoria import Memoria

BATCH, HIDDEN = 3, 6


def live_memory(independent_rows: bool = False) -> Memoria:
    torch.manual_seed(0)
    memoria = Memoria(
        4, 6, 3, 3, 4, keep_history=True, track_id=True, track_age=True, independent_rows=independent_rows
    )
    for _ in range(6):
        memoria.add_working_memory(torch.rand(BATCH, 4, HIDDEN))
        _, indices = memoria.remind()
        memoria.adjust_lifespan_and_memories(indices, torch.rand(indices.shape) * 3)
    return memoria


def fingerprint(memoria: Memoria):
    """Everything a call could change: the whole state dict (engrams, counters, history, row states and generators),
    devices and dtype, and the global RNG state."""
    return (
        memoria.state_dict(),
        torch.get_rng_state(),
        (memoria.device, memoria.ext_device, memoria.ext_dtype),
    )


def same(a, b) -> bool:
    """Bit-for-bit equality of nested state (tensors by dtype, shape and every bit)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(
                a.view(torch.uint8) if a.numel() and a.dim() else a, b.view(torch.uint8) if b.numel() and b.dim() else b
            )
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_same(memoria: Memoria, before) -> None:
    state, rng, devices = before
    assert same(memoria.state_dict(), state)
    assert torch.equal(torch.get_rng_state(), rng)
    assert (memoria.device, memoria.ext_device, memoria.ext_dtype) == devices


def bad_working_memories():
    good = torch.rand(BATCH, 4, HIDDEN)
    yield "list", good.tolist(), TypeError
    yield "numpy", good.numpy(), TypeError
    yield "int", 3, TypeError
    yield "none", None, TypeError
    for shape in [(HIDDEN,), (4, HIDDEN), (BATCH, 4, HIDDEN, 1), (1, BATCH, 4, HIDDEN)]:
        yield f"rank {len(shape)}", torch.rand(shape), ValueError
    for batch in [1, 2, 4, 7]:
        yield f"batch {batch}", torch.rand(batch, 4, HIDDEN), ValueError
    for hidden in [1, 5, 7, 12]:
        yield f"hidden {hidden}", torch.rand(BATCH, 4, hidden), ValueError
    for dtype in [torch.bool, torch.complex64, torch.float8_e4m3fn, torch.float8_e5m2]:
        yield f"dtype {dtype}", torch.ones(BATCH, 4, HIDDEN).to(dtype), TypeError
    yield "sparse", good.to_sparse(), TypeError
    yield "string", "data", TypeError
    yield "beyond float32", torch.full((BATCH, 4, HIDDEN), 1e300, dtype=torch.float64), ValueError
    # a scan of every value would never end here: the length is refused first
    yield "10**10 long", torch.zeros(()).expand(BATCH, 10**10, HIDDEN), ValueError
    for value, position in itertools.product([float("nan"), float("inf"), float("-inf")], range(20)):
        bad = good.clone()
        bad.view(-1)[position * 3] = value
        yield f"{value} at {position}", bad, ValueError
    for dtype in [torch.float16, torch.bfloat16, torch.float64]:
        bad = good.to(dtype).clone()
        bad[1, 2, 3] = float("nan")
        yield f"nan {dtype}", bad, ValueError
    yield "meta", torch.empty(BATCH, 4, HIDDEN, device="meta"), ValueError
    yield "empty batch", torch.rand(0, 4, HIDDEN), ValueError


def bad_adjustments(length: int, reminded: int):
    ok_indices = torch.zeros(BATCH, reminded, dtype=torch.long)
    ok_delta = torch.ones(BATCH, reminded)
    yield "indices string", "0", ok_delta, TypeError
    yield "indices none", None, ok_delta, TypeError
    yield "indices ragged list", [[0], [0, 1], []], ok_delta, TypeError
    yield "delta string", ok_indices, "1", TypeError
    yield "delta none", ok_indices, None, TypeError
    for dtype in [torch.float32, torch.float64, torch.bool, torch.complex64]:
        yield f"indices {dtype}", ok_indices.to(dtype), ok_delta, TypeError
    for dtype in [torch.bool, torch.complex64]:
        yield f"delta {dtype}", ok_indices, ok_delta.to(dtype), TypeError
    for shape in [(reminded,), (BATCH, reminded, 1), (1, BATCH, reminded)]:
        yield f"indices shape {shape}", torch.zeros(shape, dtype=torch.long), torch.ones(shape), ValueError
    for batch in [1, 2, 4, 6]:
        yield f"batch {batch}", torch.zeros(batch, reminded, dtype=torch.long), torch.ones(batch, reminded), ValueError
    for width in [reminded + 1, reminded + 3, max(reminded - 1, 0)]:
        if width not in (reminded, 1):  # a [BatchSize, 1] column broadcasts, as in the published package
            yield f"delta width {width}", ok_indices, torch.ones(BATCH, width), ValueError
    for value, row, column in itertools.product([length, length + 5, 10**6, -2, -7, -(10**6)], range(BATCH), range(4)):
        bad = torch.full((BATCH, max(reminded, 4)), -1, dtype=torch.long)
        bad[row, column] = value
        yield f"index {value} at {row},{column}", bad, torch.ones(bad.shape), ValueError
    for value, row, column in itertools.product([float("nan"), float("inf"), float("-inf")], range(BATCH), range(3)):
        delta = torch.ones(BATCH, max(reminded, 3))
        delta[row, column] = value
        yield f"delta {value} row {row}", torch.zeros(delta.shape, dtype=torch.long), delta, ValueError
    yield "delta 1e39 beyond float32", ok_indices, torch.full(ok_delta.shape, 1e39, dtype=torch.float64), ValueError
    yield "delta -1e300 beyond float32", ok_indices, torch.tensor(-1e300, dtype=torch.float64), ValueError
    yield "delta 10**400", ok_indices, 10**400, ValueError
    yield "index beyond int64", [[2**70] * reminded] * BATCH, ok_delta, ValueError
    yield "sparse indices", ok_indices.to_sparse(), ok_delta, TypeError
    meta = torch.zeros(BATCH, reminded, dtype=torch.long, device="meta")
    yield "indices on meta", meta, ok_delta, ValueError
    yield "delta on meta", ok_indices, torch.ones(BATCH, reminded, device="meta"), ValueError


@pytest.mark.parametrize("independent_rows", [False, True], ids=["batched", "independent-rows"])
def test_sweep_of_bad_calls_leaves_the_memory_untouched(capsys, independent_rows):
    memoria = live_memory(independent_rows)
    memoria.add_working_memory(torch.rand(BATCH, 4, HIDDEN))
    _, indices = memoria.remind()
    count = 0
    for name, data, error in bad_working_memories():
        before = fingerprint(memoria)
        with pytest.raises(error):
            memoria.add_working_memory(data)
        assert_same(memoria, before)
        count += 1
    for name, bad_indices, delta, error in bad_adjustments(memoria.engrams.memory_length, indices.size(1)):
        before = fingerprint(memoria)
        with pytest.raises(error):
            memoria.adjust_lifespan_and_memories(bad_indices, delta)
        assert_same(memoria, before)
        count += 1
    bad_rows = [[BATCH], [-1], torch.ones(BATCH + 1, dtype=torch.bool)]
    for rows in bad_rows:
        before = fingerprint(memoria)
        with pytest.raises(ValueError):
            memoria.reset_memory_rows(rows)
        assert_same(memoria, before)
        count += 1
    with capsys.disabled():
        print(
            f"\n[robustness] {count} bad calls rejected ({'independent rows' if independent_rows else 'batched'}), "
            "memory bit-identical after each"
        )
    assert count >= 200
    # and the memory still works afterwards
    memoria.adjust_lifespan_and_memories(indices, torch.ones(indices.shape))


def test_documented_results_for_odd_but_valid_calls():
    memoria = live_memory()
    # zero-width working memory: a step with nothing new; ids and lengths unchanged
    length, next_id = memoria.engrams.memory_length, memoria.next_engram_id
    memoria.add_working_memory(torch.rand(BATCH, 0, HIDDEN))
    assert memoria.engrams.memory_length == length and memoria.next_engram_id == next_id and memoria.timestep == 7

    # adjust before remind: uses the caller's indices like any other adjust
    memoria.add_working_memory(torch.rand(BATCH, 2, HIDDEN))
    lifespan = memoria.engrams.lifespan.clone()
    memoria.adjust_lifespan_and_memories(torch.full((BATCH, 1), -1), torch.zeros(BATCH, 1))
    assert memoria.engrams.memory_length <= lifespan.size(1)

    # remind twice: the second call reminds and wires again (fire counts of the working memories grow by 2)
    memoria.add_working_memory(torch.rand(BATCH, 2, HIDDEN))
    wm = memoria.engrams.working_memory_mask
    memoria.remind()
    once = memoria.engrams.fire_count[wm].clone()
    _, indices = memoria.remind()
    assert torch.equal(memoria.engrams.fire_count[wm], once + 1)

    # duplicate indices: their deltas add up (the published package keeps only one of them)
    target = int(memoria.engrams.lifespan[0].argmax())
    engram_id = int(memoria.engrams.engram_ids[0, target])
    before = memoria.engrams.lifespan[0, target].clone()
    duplicate = torch.full((BATCH, 2), -1)
    duplicate[0] = target
    memoria.adjust_lifespan_and_memories(duplicate, torch.tensor([[5.0, 6.0]] * BATCH))
    position = (memoria.engrams.engram_ids[0] == engram_id).nonzero().item()
    assert memoria.engrams.lifespan[0, position] == before + 11.0 - 1.0  # float32, as the memory computes it


def test_numpy_is_not_silently_accepted():
    memoria = Memoria(2, 4, 2, 3, 2)
    with pytest.raises(TypeError, match="torch.Tensor"):
        memoria.add_working_memory(np.zeros((2, 3, 4), dtype=np.float32))


# ---------------------------------------------------------------------- by kind: the state after an error


class _AllocatorFails(RuntimeError):
    pass


def _failing(*args, **kwargs):
    raise _AllocatorFails("can't allocate memory")  # what the allocator raises for a [B, M, M] beyond memory


@pytest.mark.parametrize("fresh", [False, True], ids=["live", "fresh"])
def test_an_input_failing_in_the_allocator_changes_nothing(monkeypatch, fresh):
    """dtype, devices, counters and the global RNG are set only once the new engrams exist."""
    from memoria.store import EngramStore

    memoria = Memoria(2, 4, 2, 3, 2, track_id=True) if fresh else live_memory()
    data = torch.rand(BATCH, 4, HIDDEN, dtype=torch.float64)
    before = fingerprint(memoria)
    monkeypatch.setattr(EngramStore, "append", _failing)
    monkeypatch.setattr(EngramStore, "__init__", _failing)
    with pytest.raises(_AllocatorFails):
        memoria.add_working_memory(data)
    assert_same(memoria, before)


def test_independent_rows_draw_their_seeds_only_for_a_good_input(monkeypatch):
    from memoria.store import EngramStore

    memoria = Memoria(2, 4, 2, 3, 2, independent_rows=True)
    good = torch.rand(BATCH, 4, HIDDEN)
    bad_inputs = [good.to_sparse(), torch.full((BATCH, 4, HIDDEN), 1e300, dtype=torch.float64)]
    before = fingerprint(memoria)
    for bad in bad_inputs:
        with pytest.raises((TypeError, ValueError)):
            memoria.add_working_memory(bad)
        assert_same(memoria, before)
        assert not memoria._backend.rows
    # the first row's store fails to allocate, after the rows' seeds were drawn: the draw is undone
    monkeypatch.setattr(EngramStore, "__init__", _failing)
    with pytest.raises(_AllocatorFails):
        memoria.add_working_memory(good)
    assert_same(memoria, before)
    assert not memoria._backend.rows


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "meta", "bogus", 5, None, torch.device("meta")])
def test_to_a_device_this_machine_lacks_is_refused_and_the_memory_keeps_working(device):
    if device == "cuda" and torch.cuda.is_available() or device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that device")
    memoria = live_memory()
    before = fingerprint(memoria)
    with pytest.raises(TypeError if device in (5, None) else ValueError, match="device"):
        memoria.to(device)
    assert_same(memoria, before)
    assert memoria.state_dict()["engrams"]["data"].device.type == "cpu"
    memoria.add_working_memory(torch.rand(BATCH, 4, HIDDEN))
    memoria.remind()


@pytest.mark.parametrize("device", ["bogus", 5, "meta", "cuda:99"])
def test_the_constructor_refuses_devices_it_cannot_use(device):
    with pytest.raises(TypeError if device == 5 else ValueError, match="device"):
        Memoria(2, 4, 2, 3, 2, device=device)


# ---------------------------------------------------------------------- by kind: a hang


def test_a_huge_expanded_input_is_refused_at_once():
    """[2, 10**10, 4] of one stored zero: its values are never scanned, its length is refused."""
    import time

    memoria = Memoria(2, 4, 2, 3, 2)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="cannot be held"):
        memoria.add_working_memory(torch.zeros(()).expand(2, 10**10, 4))
    assert time.perf_counter() - start < 1.0 and memoria._backend.store is None


# ---------------------------------------------------------------------- by kind: silent wrong results


@pytest.mark.parametrize("as_", [list, np.array, tuple], ids=["list", "numpy", "tuple"])
def test_a_bool_mask_as_a_list_or_array_resets_the_rows_it_marks(as_):
    memoria = live_memory()
    before = memoria.engrams.clone()
    memoria.reset_memory_rows(as_([True, False, False]))
    after = memoria.engrams
    assert (after.engrams_types[0] == 0).all()
    assert torch.equal(after.data[1:], before.data[1:]) and torch.equal(
        after.engrams_types[1:], before.engrams_types[1:]
    )


def test_row_indices_as_numpy_and_scalars_reset_those_rows():
    for rows, reset in [(np.array([2]), [2]), (np.int64(1), [1]), (0, [0]), ([], [])]:
        memoria = live_memory()
        memoria.reset_memory_rows(rows)
        empty = (memoria.engrams.engrams_types == 0).all(dim=1).tolist()
        assert [row for row in range(BATCH) if empty[row]] == reset


# ---------------------------------------------------------------------- by kind: accepted, then broken


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"initial_lifespan": float("nan")}, ValueError),
        ({"initial_lifespan": float("inf")}, ValueError),
        ({"initial_lifespan": 1e300}, ValueError),
        ({"initial_lifespan": "3"}, TypeError),
        ({"initial_lifespan": None}, TypeError),
        ({"ltm_search_depth": 10**12}, ValueError),
        ({"stm_capacity": 10**30}, ValueError),
        ({"num_reminded_stm": -1}, ValueError),
        ({"num_final_ltms": 2.0}, TypeError),
        ({"num_reminded_stm": True}, TypeError),
        ({"num_reminded_stm": np.float64(2)}, TypeError),
    ],
    ids=lambda value: repr(value) if isinstance(value, dict) else "",
)
def test_constructor_values_that_would_break_later_are_refused(overrides, error):
    config = dict(num_reminded_stm=2, stm_capacity=4, ltm_search_depth=2, initial_lifespan=3, num_final_ltms=2)
    config.update(overrides)
    name = next(iter(overrides))
    with pytest.raises(error, match=name):
        Memoria(**config)


def test_a_first_input_of_hidden_size_zero_is_refused():
    memoria = Memoria(2, 4, 2, 3, 2)
    with pytest.raises(ValueError, match="hidden size 0"):
        memoria.add_working_memory(torch.rand(2, 3, 0))
    assert memoria._backend.store is None and memoria.ext_device is None


def test_float64_beyond_float32_is_refused_so_the_checkpoint_stays_loadable():
    memoria = live_memory()
    before = fingerprint(memoria)
    with pytest.raises(ValueError, match="float32"):
        memoria.add_working_memory(torch.full((BATCH, 2, HIDDEN), 3.5e38, dtype=torch.float64))
    _, indices = memoria.remind()
    before = fingerprint(memoria)
    with pytest.raises(ValueError, match="float32"):
        memoria.adjust_lifespan_and_memories(indices, torch.full(indices.shape, 1e39, dtype=torch.float64))
    assert_same(memoria, before)
    Memoria(4, 6, 3, 3, 4, keep_history=True).load_state_dict(memoria.state_dict())


def tampered_states(good: dict):
    """(what was changed, state) for states whose values no memory reaches."""
    import copy

    def edit(change):
        state = copy.deepcopy(good)
        change(state)
        return state

    live = good["engrams"]["engrams_types"] != 0
    first = tuple(live.nonzero()[0].tolist())  # (row, slot) of a live engram
    second = tuple(live.nonzero()[1].tolist())
    yield "next_engram_id 2**40", edit(lambda s: s.update(next_engram_id=2**40))
    yield "next_engram_id below the stored ids", edit(lambda s: s.update(next_engram_id=1))
    yield "negative id", edit(lambda s: s["engrams"]["engram_ids"].__setitem__(first, -5))
    yield "duplicate ids", edit(
        lambda s: s["engrams"]["engram_ids"].__setitem__(second, int(s["engrams"]["engram_ids"][first]))
    )
    yield "count at int32's maximum (wraps at the next remind)", edit(
        lambda s: s["engrams"]["induce_counts"].__setitem__(first + (first[1],), 2**31 - 1)
    )
    yield "negative count", edit(lambda s: s["engrams"]["induce_counts"].__setitem__(first + (first[1],), -3))
    yield "negative age", edit(lambda s: s["engrams"]["age"].__setitem__(first, -2))


def test_tampered_states_are_refused_and_the_memory_untouched():
    memoria = live_memory()
    good = memoria.state_dict()
    count = 0
    for name, state in tampered_states(good):
        before = fingerprint(memoria)
        with pytest.raises(ValueError):
            memoria.load_state_dict(state)
        assert_same(memoria, before), name
        count += 1
    assert count == 7
    memoria.load_state_dict(good)  # the untouched state still loads


def test_tampered_row_states_are_refused():
    import copy

    memoria = live_memory(independent_rows=True)
    good = memoria.state_dict()
    wider = copy.deepcopy(good)
    row = wider["rows"]["rows"][1]["engrams"]
    row["data"] = torch.cat([row["data"], row["data"]], dim=2)  # hidden size 12 in a memory of 6
    batched = copy.deepcopy(good)
    row = batched["rows"]["rows"][0]["engrams"]
    for name in list(row):
        row[name] = torch.cat([row[name], row[name]])  # two batch rows in one row's state
    for state, words in [(wider, "hidden size"), (batched, "batch row")]:
        before = fingerprint(memoria)
        with pytest.raises(ValueError, match=words):
            memoria.load_state_dict(state)
        assert_same(memoria, before)


def test_engrams_that_do_not_track_what_the_memory_tracks_are_refused():
    from memoria import Engrams

    memoria = live_memory()
    candidates = [Engrams(torch.rand(BATCH, 2, HIDDEN)), Engrams(torch.rand(BATCH, 2, HIDDEN), track_age=True)]
    before = fingerprint(memoria)
    for engrams in candidates:
        with pytest.raises(ValueError, match="track"):
            memoria.engrams = engrams
        assert_same(memoria, before)
    with pytest.raises(TypeError, match="Engrams"):
        memoria.engrams = {"data": torch.rand(BATCH, 2, HIDDEN)}


# ---------------------------------------------------------------------- by kind: the kind of error


def engrams_with_types():
    from memoria import Engrams

    types = torch.tensor([[0, 1, 2, 3], [1, 1, 3, 2]], dtype=torch.uint8)
    return Engrams(torch.rand(2, 4, 3), engrams_types=types, lifespan=torch.rand(2, 4) + 1, track_engram_id=True)


def bad_engrams_calls(engrams):
    mask = engrams.longterm_memory_mask
    ok = torch.tensor([[0, -1], [1, 2]])
    calls = [
        ("select", (None,), TypeError),
        ("select", ("0",), TypeError),
        ("select", (torch.tensor([4]),), IndexError),
        ("select", (torch.tensor([-5]),), IndexError),
        ("select", (torch.tensor([[0, 4], [0, 0]]),), IndexError),
        ("select", (torch.zeros(2, 2, 2, dtype=torch.long),), ValueError),
        ("select", (torch.tensor([0.0]),), TypeError),
        ("get_mask_with_indices", (torch.tensor([[9], [0]]),), IndexError),
        ("get_mask_with_indices", ([[0], [2**70]],), ValueError),
        ("get_mask_with_indices", (torch.zeros(3, 1, dtype=torch.long),), ValueError),
        ("get_indices_with_mask", (mask.long(),), TypeError),
        ("get_indices_with_mask", (mask[:, :2],), ValueError),
        ("get_local_indices_from_global_indices", (mask, [[0, 4], [0, 1]]), IndexError),
        ("get_local_indices_from_global_indices", (None, ok), TypeError),
        ("fire_together_wire_together", (torch.tensor([[0, 7], [0, 0]]),), IndexError),
        ("fire_together_wire_together", (ok.to("meta"),), ValueError),
        ("fire_together_wire_together", (ok.float(),), TypeError),
        ("delete", (torch.tensor([[4], [0]]),), IndexError),
        ("delete", ("all",), TypeError),
        ("extend_lifespan", (ok, torch.ones(2, 3)), ValueError),
        ("extend_lifespan", (ok, float("nan")), ValueError),
        ("extend_lifespan", (ok, torch.ones(2, 2, dtype=torch.complex64)), TypeError),
        ("extend_lifespan", (torch.tensor([[5, 0], [0, 0]]), 1.0), IndexError),
        ("extend_lifespan", (ok, None), TypeError),
        ("mask_select", (mask.float(),), TypeError),
    ]
    yield from calls


def test_engrams_methods_raise_clean_errors_and_change_nothing():
    from memoria.validation import IndexRangeError

    count = 0
    for method, args, error in bad_engrams_calls(engrams_with_types()):
        engrams = engrams_with_types()
        before = engrams.clone()
        with pytest.raises(error) as raised:
            getattr(engrams, method)(*args)
        assert isinstance(raised.value, (TypeError, ValueError)), (method, args)
        if error is IndexError:
            # what the published package raises there, and a ValueError like every other bad value
            assert isinstance(raised.value, IndexRangeError) and isinstance(raised.value, ValueError)
        assert engrams == before, method
        count += 1
    assert count == 25


@pytest.mark.parametrize(
    "arguments, error",
    [
        ({"data": None}, TypeError),
        ({"data": torch.rand(2, 3)}, ValueError),
        ({"data": torch.rand(2, 3, 4), "induce_counts": [[0]]}, TypeError),
        ({"data": torch.rand(2, 3, 4), "lifespan": "long"}, TypeError),
        ({"data": torch.rand(2, 3, 4), "lifespan": torch.rand(2, 4)}, ValueError),
    ],
)
def test_engrams_constructor_errors(arguments, error):
    from memoria import Engrams

    with pytest.raises(error):
        Engrams(**arguments)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda u: u.super_unique([[1, 2]]), TypeError),
        (lambda u: u.super_unique(torch.rand(2, 3)), TypeError),
        (lambda u: u.super_unique(torch.tensor([[1, 2]]), dim=2), IndexError),
        (lambda u: u.super_unique(torch.tensor([[0, 10**12]])), ValueError),
    ],
    ids=["list", "float", "dim", "value range"],
)
def test_utils_raise_clean_errors(call, error):
    from memoria import utils

    with pytest.raises(error) as raised:
        call(utils)
    assert isinstance(raised.value, (TypeError, ValueError))


def test_remind_and_reset_on_bad_memory_calls():
    memoria = live_memory()
    before = fingerprint(memoria)
    for rows, error in [(None, TypeError), ("0", TypeError), ([0.5], TypeError), ([[True, False, True]], ValueError)]:
        with pytest.raises(error):
            memoria.reset_memory_rows(rows)
        assert_same(memoria, before)


def test_history_manager_and_abstractor_raise_clean_errors():
    from memoria import Abstractor
    from memoria.history_manager import HistoryManager
    from memoria.types import EngramInfo, EngramsInfo

    history = live_memory().history[0]
    before = history.state_dict()
    bad_summaries = [
        (None, TypeError),
        ({"engrams": {}}, TypeError),
        (EngramsInfo({0: EngramInfo(0, "NULL", 1.0, 0, 0, (), ())}, {}, (), (), ()), ValueError),
        (EngramsInfo({0: "not a record"}, {}, (), (), ()), ValueError),
    ]
    for summary, error in bad_summaries:
        with pytest.raises(error, match="summary"):
            history.add_summary(summary)
    after = history.state_dict()
    assert torch.equal(after["lengths"], before["lengths"]) and torch.equal(after["ids"], before["ids"])
    for state in [None, [], {"version": 1}, {"version": 1, "records": [{"ids": "x"}], "model": None}]:
        with pytest.raises(ValueError, match="HistoryManager state"):
            HistoryManager().load_state_dict(state)
    for arguments, error in [((-1, 4, 8), ValueError), ((2, 4.0, 8), TypeError), ((2, 4, None), TypeError)]:
        with pytest.raises(error):
            Abstractor(*arguments)
    with pytest.raises(TypeError, match="hidden_states"):
        Abstractor(2, 4, 8)(None)


def test_a_state_of_meta_or_sparse_tensors_is_refused():
    import copy

    memoria = live_memory()
    good = memoria.state_dict()
    for change in [lambda t: t.to("meta"), lambda t: t.to_sparse()]:
        state = copy.deepcopy(good)
        state["engrams"]["data"] = change(state["engrams"]["data"])
        before = fingerprint(memoria)
        with pytest.raises(ValueError, match="dense tensor"):
            memoria.load_state_dict(state)
        assert_same(memoria, before)
    state = copy.deepcopy(good)
    state["ext_dtype"] = "float8_e4m3fn"
    with pytest.raises(ValueError, match="ext_dtype"):
        memoria.load_state_dict(state)


def test_more_engrams_calls_raise_clean_errors():
    from memoria import Engrams

    engrams = engrams_with_types()
    for device, error in [("bogus", ValueError), (5, TypeError), ("meta", ValueError), (None, TypeError)]:
        with pytest.raises(error, match="device"):
            engrams.to(device)
    with pytest.raises(TypeError):
        engrams + torch.rand(2, 4, 3)
    with pytest.raises(ValueError, match="cannot be held"):
        Engrams(torch.zeros(()).expand(3, 10**9, 6))


@pytest.mark.parametrize("independent_rows", [False, True], ids=["batched", "independent-rows"])
def test_empty_indices_of_the_wrong_kind_are_refused(independent_rows):
    memoria = live_memory(independent_rows)
    before = fingerprint(memoria)
    with pytest.raises(TypeError, match="indices"):
        memoria.adjust_lifespan_and_memories(torch.zeros(0), torch.zeros(0))
    assert_same(memoria, before)


def test_sparse_tensor_raises_clean_errors():
    from memoria import SparseTensor
    from memoria.validation import IndexRangeError

    sparse = SparseTensor.from_tensor(torch.eye(3, dtype=torch.int32))
    before = (sparse.indices.clone(), sparse.values.clone())
    for key, error in [
        ((0, 0, 0), IndexRangeError),
        (5, IndexRangeError),
        ("a", TypeError),
        (torch.tensor([0.5]), TypeError),
    ]:
        with pytest.raises(error):
            sparse[key]
        with pytest.raises(error):
            sparse[key] = 1
        assert torch.equal(sparse.indices, before[0]) and torch.equal(sparse.values, before[1])
    for bad in [None, "1", torch.ones(1)]:
        with pytest.raises(TypeError):
            sparse + bad
    with pytest.raises(ValueError, match="shapes differ"):
        sparse + SparseTensor.from_tensor(torch.eye(2, dtype=torch.int32))
    with pytest.raises(TypeError):
        SparseTensor([[0, 0]], torch.ones(1))
    with pytest.raises(ValueError):
        SparseTensor(torch.zeros(2, 2, dtype=torch.long), torch.ones(3))


def test_an_input_whose_memory_cannot_be_allocated_is_refused_before_it_is_read():
    """An expanded input costs nothing, but the memory it would make must hold a [B, M, M] count matrix: 2**20 new
    engrams per row need terabytes (issue #27, D13: the allocator's RuntimeError, after summing the whole input). Refused
    with a ValueError naming ``data``, before anything changes."""
    memoria = live_memory()
    before = fingerprint(memoria)
    huge = torch.zeros(()).expand(BATCH, 2**20, HIDDEN)
    with pytest.raises(ValueError, match="data would make the memory .* co-firing counts need"):
        memoria.add_working_memory(huge)
    assert_same(memoria, before)
    fresh = Memoria(2, 4, 2, 3, 2)
    with pytest.raises(ValueError, match="^data "):
        fresh.add_working_memory(torch.zeros(()).expand(1, 2**20, 1))
    assert fresh.memory_length == 0 and fresh.device is None
