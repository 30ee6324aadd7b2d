"""Invariants of the memory on random streams (property-based)."""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz_api import same
from memoria import EngramType, Memoria

STAGE = {EngramType.WORKING.value: 1, EngramType.SHORTTERM.value: 2, EngramType.LONGTERM.value: 3}


@st.composite
def streams(draw):
    config = dict(
        num_reminded_stm=draw(st.integers(0, 6)),
        stm_capacity=draw(st.integers(0, 12)),
        ltm_search_depth=draw(st.integers(0, 4)),
        initial_lifespan=draw(st.integers(1, 5)),
        num_final_ltms=draw(st.integers(0, 6)),
    )
    batch = draw(st.integers(1, 3))
    widths = draw(st.lists(st.integers(0, 5), min_size=2, max_size=12))
    return config, batch, widths, draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None)
@given(streams())
def test_invariants_hold_after_every_adjust(stream):
    config, batch, widths, seed = stream
    torch.manual_seed(seed)
    memoria = Memoria(**config, track_id=True, track_age=True)
    last_stage = {}
    for width in widths:
        memoria.add_working_memory(torch.randn(batch, width, 4) * 0.5)
        memories, indices = memoria.remind()
        assert memories.shape[:2] == indices.shape
        delta = torch.rand(indices.shape) * 4
        memoria.adjust_lifespan_and_memories(indices, delta)
        e = memoria.engrams
        types, lifespan, counts = e.engrams_types, e.lifespan, e.induce_counts
        dead = lifespan <= 0
        # padding only on the left: the dead (padding) slots of a row form a prefix
        assert torch.equal(dead, dead.cummin(dim=1).values)
        # no live engram with lifespan <= 0, and padding is NULL
        assert (types[dead] == EngramType.NULL.value).all()
        # short-term count within capacity after an adjust; no working engram survives an adjust
        assert (e.shortterm_memory_mask.sum(dim=1) <= config["stm_capacity"]).all()
        assert not e.working_memory_mask.any()
        # induce counts symmetric; a live engram's fire count (diagonal) >= every entry of its row. Padding and NULL
        # slots are excluded: concatenation gives them 0 (not -1) against new engrams, as in the published package
        assert torch.equal(counts, counts.transpose(1, 2))
        live = types != EngramType.NULL.value
        assert (counts.diagonal(dim1=1, dim2=2).unsqueeze(2) >= counts)[live].all()
        # types only move forward: WORKING -> SHORTTERM -> LONGTERM
        for row in range(batch):
            for engram_id, kind in zip(e.engram_ids[row].tolist(), types[row].tolist()):
                if engram_id < 0 or kind == EngramType.NULL.value:
                    continue
                assert STAGE[kind] >= last_stage.get((row, engram_id), 1)
                last_stage[(row, engram_id)] = STAGE[kind]


# ====================================================================== dimensions the audit of issue 27 found uncovered
# (dtypes and autocast, large finite values, overflow across calls, independent rows with reset and checkpoint; the
# history dimensions are tested apart). A call either gives what the plain float32 run gives, or is refused with a
# TypeError / ValueError that leaves the memory bit-identical.

CONFIG = dict(num_reminded_stm=4, stm_capacity=16, ltm_search_depth=3, initial_lifespan=4, num_final_ltms=4)
INT32_MAX = 2**31 - 1


def fingerprint(memoria: Memoria) -> tuple:
    return memoria.state_dict(), torch.get_rng_state()


def refused_cleanly(memoria: Memoria, call, *args):
    """``(outputs, None)``, or ``(None, error)`` for a TypeError / ValueError after which the memory is unchanged; any
    other error fails the test."""
    before = fingerprint(memoria)
    try:
        return call(*args), None
    except (TypeError, ValueError) as error:
        assert same(fingerprint(memoria), before), f"refused ({error}) but changed"
        return None, error


def step(memoria: Memoria, data: torch.Tensor, gains: torch.Tensor):
    """One add -> remind -> adjust step; its indices and memories, or None where a call was refused cleanly."""
    for call, args in ((memoria.add_working_memory, (data,)), (memoria.remind, ())):
        outputs, error = refused_cleanly(memoria, call, *args)
        if error is not None:
            return None
    memories, indices = outputs
    _, error = refused_cleanly(memoria, memoria.adjust_lifespan_and_memories, indices, gains[:, : indices.size(1)])
    return None if error is not None else (indices, memories)


def stream(seed: int, steps: int, batch: int = 2, width: int = 4, hidden: int = 32, scale: float = 0.3):
    generator = torch.Generator().manual_seed(seed)
    reminded = CONFIG["num_reminded_stm"] + CONFIG["num_final_ltms"] + 1
    for _ in range(steps):
        yield torch.randn(batch, width, hidden, generator=generator) * scale, torch.rand(batch, reminded) * 3


def plain_run(seed: int, steps: int, **kwargs) -> list:
    torch.manual_seed(seed)
    memoria = Memoria(**CONFIG)
    return [step(memoria, data, gains) for data, gains in stream(seed, steps, **kwargs)]


def assert_identical_or_refused(seed: int, steps: int, context, **kwargs) -> None:
    """The same stream inside ``context``: every step as in the plain run until a call is refused cleanly."""
    expected = plain_run(seed, steps, **kwargs)
    torch.manual_seed(seed)
    memoria = Memoria(**CONFIG)
    for number, ((data, gains), wanted) in enumerate(zip(stream(seed, steps, **kwargs), expected)):
        with context():
            got = step(memoria, data, gains)
        if got is None:
            return  # refused before anything changed: a clear answer
        assert torch.equal(got[0], wanted[0]), f"step {number}: other engrams reminded"
        assert torch.equal(got[1].float(), wanted[1].float()), f"step {number}: other memories"


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float64]))
def test_the_input_dtype_sets_only_the_output_dtype(seed, dtype):
    """The memory holds float32: data in another floating dtype gives what its float32 conversion gives."""
    converted = [(data.to(dtype), gains) for data, gains in stream(seed, 8)]
    torch.manual_seed(seed)
    plain, typed = Memoria(**CONFIG), Memoria(**CONFIG)
    for data, gains in converted:
        rng = torch.get_rng_state()
        expected = step(plain, data.float(), gains)
        torch.set_rng_state(rng)
        got = step(typed, data, gains)
        assert torch.equal(got[0], expected[0]) and got[1].dtype == dtype
        assert torch.equal(got[1], expected[1].to(dtype))
    assert plain.engrams == typed.engrams


@settings(max_examples=6, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16))
@example(seed=0)  # reminds other engrams from step 6 today
def test_autocast_changes_nothing_or_is_refused(seed):
    assert_identical_or_refused(seed, 20, lambda: torch.autocast("cpu", torch.bfloat16))


class default_dtype:
    """``torch.set_default_dtype`` inside, float32 again after."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __enter__(self) -> None:
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc) -> None:
        torch.set_default_dtype(torch.float32)


@settings(max_examples=4, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16))
@example(seed=0)
def test_a_float64_default_dtype_changes_nothing_or_is_refused(seed):
    assert_identical_or_refused(seed, 6, lambda: default_dtype(torch.float64))


@settings(max_examples=25, deadline=None)
@given(
    exponent=st.integers(0, 68),
    hidden=st.sampled_from([1, 4, 32]),
    keys=st.integers(2, 8),
    seed=st.integers(0, 2**16),
)
def test_large_finite_values_remind_the_nearest_key_or_are_refused(exponent, hidden, keys, seed):
    """README: the nearest key is reminded. At any magnitude up to the bound it is; beyond it the data is refused."""
    from memoria.similarity import largest_value

    generator = torch.Generator().manual_seed(seed)
    memory = torch.randn(1, keys, hidden, generator=generator) * 2.0**exponent
    working = torch.randn(1, 1, hidden, generator=generator) * 2.0**exponent
    memoria = Memoria(num_reminded_stm=1, stm_capacity=16, ltm_search_depth=0, initial_lifespan=9, num_final_ltms=0)
    fits = float(torch.cat([memory, working], dim=1).abs().max()) <= largest_value(hidden)
    _, error = refused_cleanly(memoria, memoria.add_working_memory, memory)
    if error is not None or not fits:
        assert error is not None and not fits and "data" in str(error)
        return
    memoria.adjust_lifespan_and_memories(torch.full((1, 0), -1), torch.zeros(1, 0))
    _, error = refused_cleanly(memoria, memoria.add_working_memory, working)
    assert error is None, error
    _, indices = memoria.remind()
    distances = (memory.double() - working.double()).pow(2).sum(-1)[0]  # [keys]
    (reminded,) = indices[indices >= 0].tolist()
    nearest = distances.min()
    assert distances[reminded] <= nearest * (1 + 1e-5) + 1e-30, (reminded, distances.tolist())


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    deltas=st.lists(st.floats(1e36, 3.4e38), min_size=3, max_size=6),
    initial=st.sampled_from([4, 3.4e38]),
)
@example(deltas=[3e38, 3e38, 3e38], initial=4)
def test_lifespans_stay_finite_across_calls_or_the_call_is_refused(deltas, initial):
    memoria = Memoria(**{**CONFIG, "initial_lifespan": initial})
    for number, delta in enumerate(deltas):
        if step(memoria, torch.rand(2, 3, 8), torch.full((2, 9), delta)) is None:
            continue
        assert bool(torch.isfinite(memoria.engrams.lifespan).all()), f"step {number}: an infinite lifespan"
        Memoria(**{**CONFIG, "initial_lifespan": initial}).load_state_dict(memoria.state_dict())


@settings(max_examples=6, deadline=None)
@given(age_gap=st.integers(1, 3), count_gap=st.integers(1, 3), steps=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_ages_and_counts_never_wrap_across_calls(age_gap, count_gap, steps, seed):
    """From a state a few steps below int32's limit: every step either runs (and its state loads again, its ages and
    counts non-negative) or is refused cleanly; nothing wraps."""
    torch.manual_seed(seed)
    source = Memoria(**CONFIG, track_age=True, track_id=True)
    for data, gains in stream(seed, 3, hidden=8):
        step(source, data, gains)
    state = source.state_dict()
    live = state["engrams"]["engrams_types"] != 0
    state["engrams"]["age"][live] = INT32_MAX - age_gap
    state["engrams"]["induce_counts"][live.unsqueeze(2) & live.unsqueeze(1)] = INT32_MAX - count_gap
    memoria = Memoria(**CONFIG, track_age=True, track_id=True)
    memoria.load_state_dict(state)
    for data, gains in stream(seed + 1, steps, hidden=8):
        step(memoria, data, gains)
        saved = memoria.state_dict()
        ages, counts = saved["engrams"]["age"], saved["engrams"]["induce_counts"]
        live = saved["engrams"]["engrams_types"] != 0
        assert not bool((ages[live] < 0).any()) and not bool((counts < -1).any())
        Memoria(**CONFIG, track_age=True, track_id=True).load_state_dict(saved)


def test_configs_that_cannot_be_allocated_are_refused_with_a_value_error():
    """Independent rows with ``num_reminded_stm = num_final_ltms = 2**31 - 1``: every remind's fixed-width
    [Batch, 2**32 - 1] outputs cannot be allocated (batched, the width is what the rows hold)."""
    try:
        memoria = Memoria(INT32_MAX, 4, 2, 3, INT32_MAX, independent_rows=True)
    except ValueError:
        return
    for data, gains in stream(0, 3, hidden=4):
        outputs = step(memoria, data, torch.zeros(2, 0).expand(2, 0))
        if outputs is None:
            return


@settings(max_examples=12, deadline=None)
@given(
    plan=st.lists(
        st.one_of(st.just("step"), st.just("checkpoint"), st.sets(st.integers(1, 2), min_size=1).map(sorted)),
        min_size=2,
        max_size=9,
    ),
    seed=st.integers(0, 2**16),
)
def test_independent_rows_with_reset_and_checkpoint(plan, seed):
    """Three runs of one stream on independent rows (batch 3; resets name rows 1 and 2, row 0 is never reset):
    with resets and checkpoint round trips (saved, loaded into a fresh memory that goes on), with the resets alone,
    and with neither. The first two agree on every output; every row that was never reset agrees with the third."""
    steps = plan.count("step")
    data = list(stream(seed, steps, batch=3, hidden=6))

    def run(resets: bool, checkpoints: bool) -> list:
        torch.manual_seed(seed)
        memoria = Memoria(**CONFIG, track_age=True, track_id=True, independent_rows=True)
        outputs, feed = [], iter(data)
        for action in plan:
            if action == "step":
                outputs.append(step(memoria, *next(feed)))
            elif action == "checkpoint" and checkpoints:
                state = memoria.state_dict()
                memoria = Memoria(**CONFIG, track_age=True, track_id=True, independent_rows=True)
                memoria.load_state_dict(state)
            elif isinstance(action, list) and resets and memoria.memory_length:
                memoria.reset_memory_rows(action)
        return outputs

    full, reset_only, plain = run(True, True), run(True, False), run(False, False)
    assert same(full, reset_only)
    never_reset = [row for row in range(3) if not any(isinstance(a, list) and row in a for a in plan)]
    for (indices, memories), (plain_indices, plain_memories) in zip(reset_only, plain):
        assert torch.equal(indices[never_reset], plain_indices[never_reset])
        assert torch.equal(memories[never_reset], plain_memories[never_reset])


def test_independent_rows_all_reset_checkpoint_round_trip():
    memoria = Memoria(**CONFIG, independent_rows=True)
    for data, gains in stream(0, 3, batch=2, hidden=6):
        step(memoria, data, gains)
    memoria.reset_memory_rows([0, 1])
    restored = Memoria(**CONFIG, independent_rows=True)
    restored.load_state_dict(memoria.state_dict())
    assert same(restored.state_dict(), memoria.state_dict())
