"""The algorithm (``memoria/algorithm.py``): its adjust steps saturate instead of overflowing, and its long-term search
ends after as many steps as there are long-term engrams, on every form, at the deepest search accepted."""

import copy
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from memoria import EngramType, Memoria, ops
from memoria.store import EngramStore
from memoria.validation import MAX_SEARCH_DEPTH

ROOT = Path(__file__).resolve().parent.parent
FLOAT32_MAX = torch.finfo(torch.float32).max
FORM_SETTINGS = {
    "default": {},
    "torch forms": {"MEMORIA_NATIVE": "0"},
    "gpu forms": {"MEMORIA_FORCE_GPU_BRANCHES": "1"},
    "plain forms": {"MEMORIA_FORMS": "plain"},
}


def stream_step(memory: Memoria, generator: torch.Generator, delta: float):
    memory.add_working_memory(torch.randn(2, 3, 4, generator=generator))
    memories, indices = memory.remind()
    memory.adjust_lifespan_and_memories(indices, torch.full(indices.shape, delta))
    return memories, indices


@pytest.mark.parametrize("initial_lifespan, delta", [(3, 3e38), (3.4e38, 1e38)])
def test_lifespans_saturate_at_the_largest_float32_and_the_checkpoint_stays_loadable(initial_lifespan, delta):
    """Finite inputs whose sum overflows float32 (issue #27, D5): the lifespan stays the largest float32 (an engram
    there lives on, as one at infinity would), where it used to become infinite and the memory's own checkpoint was
    refused."""
    generator = torch.Generator().manual_seed(0)
    memory = Memoria(2, 4, 2, initial_lifespan, 2)
    for _ in range(4):
        stream_step(memory, generator, delta)
    lifespan = memory.engrams.lifespan
    assert bool(torch.isfinite(lifespan).all()) and float(lifespan.max()) == FLOAT32_MAX
    buffer = io.BytesIO()
    torch.save(memory.state_dict(), buffer)
    buffer.seek(0)
    resumed = Memoria(2, 4, 2, initial_lifespan, 2)
    resumed.load_state_dict(torch.load(buffer))
    torch.manual_seed(1)
    expected = stream_step(memory, copy.deepcopy(generator), delta)
    torch.manual_seed(1)
    assert all(torch.equal(a, b) for a, b in zip(stream_step(resumed, generator, delta), expected))


def random_store(seed: int, ltm: int = 9) -> EngramStore:
    """Long-term engrams with random co-firing counts (ties included), some short-term ones, padding."""
    from memoria import Engrams

    generator = torch.Generator().manual_seed(seed)
    batch, length = 3, ltm + 5
    types = torch.full((batch, length), EngramType.SHORTTERM.value, dtype=torch.uint8)
    types[:, :ltm] = EngramType.LONGTERM.value
    counts = torch.randint(0, 3, (batch, length, length), generator=generator, dtype=torch.int32)
    counts = torch.maximum(counts, counts.transpose(1, 2))
    engrams = Engrams(torch.randn(batch, length, 4, generator=generator), counts, types, torch.ones(batch, length))
    store = EngramStore(engrams)
    store.keep(torch.rand(batch, length, generator=generator) < 0.8)  # rows with fewer long-term engrams: padding
    return store


@pytest.mark.parametrize("setting", FORM_SETTINGS)
@pytest.mark.parametrize("seed", range(4))
def test_walking_longer_than_there_are_longterm_engrams_finds_nothing_more(monkeypatch, setting, seed):
    """Why the search may stop after T steps (T: the long-term list's width): every step visits an engram not visited
    before until none is left, and then finds -1 only. Compared here with the walk run to the full depth, in every
    form: what the search returns (its distinct positions) is the same."""
    for name, value in FORM_SETTINGS[setting].items():
        monkeypatch.setenv(name, value)
    store = random_store(seed)
    (ltm_indices,) = store.indices_of(EngramType.LONGTERM.value)
    ltm_mask = store.type_masks()[EngramType.LONGTERM.value]
    initial = torch.where(
        torch.rand(3, 4, generator=torch.Generator().manual_seed(seed)) < 0.7, ltm_indices[:, -4:], -1
    )
    graph = store.longterm_graph(ltm_indices)
    num_ltm = ltm_indices.size(1)
    bounded = ops.super_unique(ops.walk_from(graph, ltm_mask, initial, num_ltm), 1, ignore=ops.ABSENT)
    for depth in (num_ltm + 1, num_ltm + 7, 3 * num_ltm):
        walked = ops.super_unique(ops.walk_from(graph, ltm_mask, initial, depth), 1, ignore=ops.ABSENT)
        assert torch.equal(walked, bounded), depth
    assert (bounded == -1).any() and (bounded >= 0).any()


SEARCH_AT_THE_DEEPEST = textwrap.dedent("""
    import json, os, sys, time
    import torch
    from memoria import Memoria
    from memoria.validation import MAX_SEARCH_DEPTH

    settings = json.loads(sys.argv[1])
    results = {}
    for name, environment in settings.items():
        for key in ("MEMORIA_NATIVE", "MEMORIA_FORCE_GPU_BRANCHES", "MEMORIA_FORMS"):
            os.environ.pop(key, None)
        os.environ.update(environment)
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(1)
        memory = Memoria(4, 4, MAX_SEARCH_DEPTH, 30, 4)
        reminded, slowest = [], 0.0
        for _ in range(14):
            memory.add_working_memory(torch.randn(2, 3, 4, generator=generator))
            start = time.perf_counter()
            _, indices = memory.remind()
            slowest = max(slowest, time.perf_counter() - start)
            memory.adjust_lifespan_and_memories(indices, torch.full(indices.shape, 3.0))
            reminded.append(indices.tolist())
        longterm = int((memory.engrams.engrams_types == 3).sum())
        results[name] = {"reminded": reminded, "slowest": slowest, "longterm": longterm}
    print(json.dumps(results))
    """)


def test_a_remind_at_the_deepest_accepted_search_finishes_on_every_form():
    """``ltm_search_depth=MAX_SEARCH_DEPTH`` (2**20) was accepted, and a remind then walked 2**20 steps: minutes on the
    torch forms, a hang (issue #27, D9). Each form now stops after as many steps as there are long-term engrams. Run in
    a process of its own, so that a hang is a timeout here; every form reminds the same."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MEMORIA_")}
    command = [sys.executable, "-c", SEARCH_AT_THE_DEEPEST, json.dumps(FORM_SETTINGS)]
    try:
        done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a remind at ltm_search_depth={MAX_SEARCH_DEPTH} did not finish within 300 s")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    first = results["default"]
    assert first["longterm"] > 4  # the search had long-term engrams to walk
    for name, result in results.items():
        assert result["reminded"] == first["reminded"], name
        print(f"\n[deepest search] {name}: slowest remind {result['slowest']:.3f} s")
