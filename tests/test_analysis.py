"""Engram analysis on a four-step history whose answers are worked out by hand below."""

import math

import torch

from memoria.analysis import creation_curves, temporal_contiguity, type_counts
from memoria.history_manager import HistoryManager
from memoria.types import EngramInfo, EngramsInfo

S, L = "SHORTTERM", "LONGTERM"
# Step -> engram id -> (type, fire count). Reminded (fire count rose): step 1: {0}; step 2: {0, 2, 3}; step 3: {3, 4}.
STEPS = [
    {0: (S, 1), 1: (S, 1)},
    {0: (S, 2), 1: (S, 1), 2: (S, 1), 3: (S, 1)},
    {0: (L, 3), 2: (S, 2), 3: (S, 2), 4: (S, 1)},
    {0: (L, 3), 3: (S, 3), 4: (S, 2)},
]


def small_history() -> HistoryManager:
    history = HistoryManager()
    for step in STEPS:
        infos = {i: EngramInfo(i, kind, 1.0, None, fires, (), ()) for i, (kind, fires) in step.items()}
        ids = lambda kind: tuple(i for i, (k, _) in step.items() if k == kind)  # noqa: E731
        history.add_summary(EngramsInfo(infos, {}, (), ids(S), ids(L)))
    return history


def assert_equal_nan(actual: torch.Tensor, expected: list) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual.tolist(), expected):
        assert (math.isnan(a) and math.isnan(e)) or a == e, (actual, expected)


def test_creation_curves_by_hand():
    # Created at step 0: {0, 1}; step 1: {2, 3}; step 2: {4}. Alive at the end: {0, 3, 4}.
    # Durations 0:4, 1:2, 2:2, 3:3, 4:2. Reminders 0:2, 1:0, 2:1, 3:2, 4:1. Long-term: only 0.
    curves = creation_curves(small_history())
    nan = float("nan")
    assert curves.created.tolist() == [2, 2, 1, 0]
    assert curves.alive_at_end.tolist() == [1, 1, 1, 0]
    assert_equal_nan(curves.survival_rate, [0.5, 0.5, 1.0, nan])
    assert_equal_nan(curves.mean_duration, [3.0, 2.5, 2.0, nan])
    assert_equal_nan(curves.reminded_rate, [0.5, 1.0, 1.0, nan])
    assert_equal_nan(curves.mean_reminders, [1.0, 1.5, 1.0, nan])
    assert_equal_nan(curves.longterm_rate, [0.5, 0.0, 0.0, nan])


def test_temporal_contiguity_by_hand():
    # Candidates (alive the step before) by creation step, and reminded ones:
    #   step 1: candidates [2,0,0,0], reminded [1,0,0,0]
    #   step 2: candidates [2,2,0,0], reminded [1,2,0,0]
    #   step 3: candidates [1,2,1,0], reminded [0,1,1,0]
    # Candidate pairs by lag: 0: 1+2+1 = 4; 1: 4+4 = 8; 2: 1; 3: 0.
    # Co-reminded pairs by lag: 0: (2,3) = 1; 1: (0,2),(0,3),(3,4) = 3; 2: 0; 3: 0.
    contiguity = temporal_contiguity(small_history())
    assert contiguity.lags.tolist() == [0, 1, 2, 3]
    assert contiguity.candidate_pairs.tolist() == [4, 8, 1, 0]
    assert contiguity.co_reminded.tolist() == [1, 3, 0, 0]
    assert_equal_nan(contiguity.probability, [0.25, 0.375, 0.0, float("nan")])
    assert temporal_contiguity(small_history(), max_lag=1).co_reminded.tolist() == [1, 3]


def test_type_counts_by_hand():
    assert type_counts(small_history()).tolist() == [[0, 2, 0], [0, 4, 0], [0, 3, 1], [0, 2, 1]]


def test_empty_history():
    history = HistoryManager()
    assert creation_curves(history).created.numel() == 0
    assert type_counts(history).shape == (0, 3)
    assert temporal_contiguity(history).co_reminded.tolist() == [0]
