"""A sweep of generated bad calls at a live memory: each gets a clear error or a documented result.

After every rejected call the memory is bit-identical to before (engrams, counters, history, global RNG state).
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
    return (
        memoria.engrams.clone(),
        memoria.timestep,
        memoria.next_engram_id,
        [len(h) for h in memoria.history],
        torch.get_rng_state(),
    )


def assert_same(memoria: Memoria, before) -> None:
    engrams, timestep, next_id, history, rng = before
    assert memoria.engrams == engrams
    assert (memoria.timestep, memoria.next_engram_id) == (timestep, next_id)
    assert [len(h) for h in memoria.history] == history
    assert torch.equal(torch.get_rng_state(), rng)


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
