"""benchmarks/fuzz_api.py: the fuzz tells each kind of finding apart (on calls made to show each), and a small run of
its bad calls against the package finds nothing where the package is done, and what issue 27 lists where it is not."""

import os
import time

import pytest
import torch

from benchmarks import fuzz_api
from benchmarks.fuzz_cases import Case
from benchmarks.fuzz_cases import make_case as make_fuzz_case
from memoria import Engrams, Memoria

# ------------------------------------------------------------------ calls made to show each kind (run by the worker)


def build_fixtures() -> dict:
    memory = Memoria(2, 4, 2, 3, 2)
    memory.add_working_memory(torch.ones(1, 2, 3))
    return {"engrams": Engrams(torch.zeros(1, 2, 3)), "memory": memory}


def refuse(_):
    raise ValueError("x must be positive")


def refuse_after_changing(engrams):
    engrams.lifespan.add_(1)
    refuse(engrams)


def refuse_after_drawing(_):
    torch.rand(1)
    refuse(_)


def break_the_memory(memory):
    memory._backend.store.lifespan.fill_(
        float("inf")
    )  # what no accepted call may leave: its checkpoint is then refused


def hang(_):
    time.sleep(600)


def crash(_):
    os.abort()


def raise_runtime_error(_):
    raise RuntimeError("x: the allocator says no")


def raise_unnamed(_):
    raise ValueError("something is wrong")


SHOWN = [
    ("refused", "engrams", refuse),
    ("wrong-kind", "engrams", raise_runtime_error),
    ("wrong-kind", "engrams", raise_unnamed),
    ("state-changed", "engrams", refuse_after_changing),
    ("state-changed", "engrams", refuse_after_drawing),
    ("hangs", "engrams", hang),
    ("crashes", "engrams", crash),
    ("accepted", "memory", lambda memory: None),
    ("accepted-broken", "memory", break_the_memory),
    ("refused", "memory", refuse),  # after a hang and a crash, a fresh worker answers
]


def make_case(seed: int, index: int) -> Case:
    expected, fixture, call = SHOWN[index % len(SHOWN)]
    return Case(f"shown.{expected}", "x", call.__name__ if hasattr(call, "__name__") else "", ("x",), fixture, call)


def test_each_kind_of_finding_is_told_apart_and_the_worker_restarts():
    summary = fuzz_api.run(len(SHOWN), timeout=5, cases_module="test_fuzz_api")
    outcomes = [result["outcome"] for result in summary["results"]]
    assert outcomes == [expected for expected, _, _ in SHOWN]
    assert summary["counts"] == {
        "refused": 2,
        "accepted": 1,
        "wrong-kind": 2,
        "state-changed": 2,
        "accepted-broken": 1,
        "hangs": 1,
        "crashes": 1,
    }
    report = fuzz_api.report(summary)
    assert "## hangs (1)" in report and "#5 shown.hangs(x = hang)" in report
    assert "## crashes (1)" in report and "exit code" in report


# ------------------------------------------------------------------ the package


KNOWN = {  # entry points where issue 27 listed findings (D5, D13), fuzzed on their own below
    "Memoria.adjust_lifespan_and_memories": "D5: finite deltas that add up to an infinite lifespan",
    "Memoria()": "D13: sizes whose remind cannot be allocated",
    "Memoria.add_working_memory": "D13: an expanded [3, 1, 10**12] first input is read (a hang) before its size is checked",
}
DONE = sorted({case.target for case in (make_fuzz_case(0, index) for index in range(3000))} - set(KNOWN))


def test_a_small_fuzz_finds_nothing_in_the_entry_points_that_are_done():
    assert len(DONE) >= 21 and "Engrams.select" in DONE and "HistoryManager.load_state_dict" in DONE
    summary = fuzz_api.run(120, seed=0, targets=DONE)
    assert summary["calls"] == 120
    findings = {outcome: summary["counts"][outcome] for outcome in fuzz_api.FINDINGS}
    assert not any(findings.values()), fuzz_api.report(summary)
    assert summary["counts"]["refused"] >= 110  # bad calls, refused: the few accepted ones are accepted by design


def test_a_small_fuzz_finds_nothing_in_the_entry_points_issue_27_lists():
    summary = fuzz_api.run(80, seed=0, targets=sorted(KNOWN), timeout=20)
    assert not any(summary["counts"][outcome] for outcome in fuzz_api.FINDINGS), fuzz_api.report(summary)
