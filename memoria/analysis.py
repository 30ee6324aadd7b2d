"""Engram analysis of a row's history, as in the paper: what survives and what is reminded, by creation step.

- ``creation_curves``: per creation step, how many engrams were made, how many are still alive at the end, how
  long they lived and how often they were reminded (primacy shows up at early steps, recency at late ones).
- ``temporal_contiguity``: for engram pairs whose creation steps are ``lag`` apart, how often both were reminded
  at the same step, out of the steps at which both could have been.
- ``type_counts``: working / short-term / long-term engrams alive at each step.

"Reminded" means a ``Firing``: the fire count of an engram that already existed rose at that step (the working
memories added at a step fire too, but that is their creation, not a reminding).
"""

from dataclasses import dataclass
from typing import Optional

import torch

from .history_manager import HistoryManager


@dataclass(frozen=True)
class CreationCurves:
    """Per creation step ``c`` (index of every tensor, shaped [Steps])."""

    #: Engrams first alive at step c.
    created: torch.Tensor
    #: Of those, alive at the last recorded step.
    alive_at_end: torch.Tensor
    #: ``alive_at_end / created`` (NaN where nothing was created).
    survival_rate: torch.Tensor
    #: Mean number of steps they were alive.
    mean_duration: torch.Tensor
    #: Fraction reminded at least once.
    reminded_rate: torch.Tensor
    #: Mean number of times reminded.
    mean_reminders: torch.Tensor
    #: Fraction that became long-term engrams.
    longterm_rate: torch.Tensor


@dataclass(frozen=True)
class TemporalContiguity:
    """Co-reminding against creation-step lag (index of every tensor, shaped [MaxLag + 1])."""

    #: Lags ``0..max_lag`` (0: created at the same step).
    lags: torch.Tensor
    #: Pairs (unordered, distinct engrams) reminded at the same step, summed over steps.
    co_reminded: torch.Tensor
    #: Pairs that could have been: both alive before that step's reminding, summed over steps.
    candidate_pairs: torch.Tensor
    #: ``co_reminded / candidate_pairs`` (NaN where there were no candidates).
    probability: torch.Tensor


def _per_creation_step(values: torch.Tensor, creation: torch.Tensor, steps: int) -> torch.Tensor:
    """Sum of float ``values`` [Engrams] grouped by ``creation`` step -> [Steps]."""
    return torch.zeros(steps, dtype=torch.float64).index_add_(0, creation, values.double())


def creation_curves(history: HistoryManager) -> CreationCurves:
    """Survival and reminding of engrams against the step they were created at."""
    steps = len(history)
    creation_times = history.engram_creation_times
    ids = list(creation_times)
    creation = torch.tensor([creation_times[i] for i in ids], dtype=torch.long)
    durations = history.engram_durations
    duration = torch.tensor([durations[i] for i in ids], dtype=torch.float64)
    reminders = history.engram_fire_counts
    reminded = torch.tensor([reminders.get(i, 0) for i in ids], dtype=torch.float64)
    alive = set(history.alive_engram_ids)
    alive_at_end = torch.tensor([i in alive for i in ids], dtype=torch.float64)
    longterm_ids: set[int] = set()
    for timestep in range(steps):
        step = history.step(timestep)
        longterm_ids.update(step.ids[step.types == 3].tolist())
    longterm = torch.tensor([i in longterm_ids for i in ids], dtype=torch.float64)

    created = torch.bincount(creation, minlength=steps).double()
    nan_if_empty = torch.where(created > 0, created, torch.nan)
    alive_count = _per_creation_step(alive_at_end, creation, steps)
    return CreationCurves(
        created=created.long(),
        alive_at_end=alive_count.long(),
        survival_rate=alive_count / nan_if_empty,
        mean_duration=_per_creation_step(duration, creation, steps) / nan_if_empty,
        reminded_rate=_per_creation_step((reminded > 0).double(), creation, steps) / nan_if_empty,
        mean_reminders=_per_creation_step(reminded, creation, steps) / nan_if_empty,
        longterm_rate=_per_creation_step(longterm, creation, steps) / nan_if_empty,
    )


def _pairs_by_lag(histograms: torch.Tensor, max_lag: int) -> torch.Tensor:
    """Unordered pairs of distinct items per creation-step lag.

    Args:
        histograms: items per creation step, one row per reminding step, shaped [Rows, Steps]
    Returns:
        pair counts summed over rows shaped [MaxLag + 1]
    """
    pairs = torch.zeros(max_lag + 1, dtype=torch.long)
    pairs[0] = (histograms * (histograms - 1) // 2).sum()
    for lag in range(1, min(max_lag, histograms.size(1) - 1) + 1):
        pairs[lag] = (histograms[:, :-lag] * histograms[:, lag:]).sum()
    return pairs


def temporal_contiguity(history: HistoryManager, max_lag: Optional[int] = None) -> TemporalContiguity:
    """How often engrams created ``lag`` steps apart are reminded at the same step.

    At step ``s`` the candidates are the engrams alive at step ``s - 1`` (those the reminding at ``s`` chose
    from) and the co-reminded ones are ``s``'s firings.
    """
    steps = len(history)
    max_lag = max(steps - 1, 0) if max_lag is None else max_lag
    creation_times = history.engram_creation_times
    candidates = torch.zeros(max(steps - 1, 0), max(steps, 1), dtype=torch.long)  # [Reminding steps, Creation]
    reminded = torch.zeros_like(candidates)
    previous = history.step(0) if steps else None
    for timestep in range(1, steps):
        step = history.step(timestep)
        candidate_creation = torch.tensor([creation_times[i] for i in previous.ids.tolist()], dtype=torch.long)
        candidates[timestep - 1] = torch.bincount(candidate_creation, minlength=steps)
        fired_creation = torch.tensor([creation_times[i] for i in step.ids[step.reminded].tolist()], dtype=torch.long)
        reminded[timestep - 1] = torch.bincount(fired_creation, minlength=steps)
        previous = step
    co_reminded = _pairs_by_lag(reminded, max_lag)
    candidate_pairs = _pairs_by_lag(candidates, max_lag)
    probability = co_reminded.double() / torch.where(candidate_pairs > 0, candidate_pairs.double(), torch.nan)
    return TemporalContiguity(
        lags=torch.arange(max_lag + 1),
        co_reminded=co_reminded,
        candidate_pairs=candidate_pairs,
        probability=probability,
    )


def type_counts(history: HistoryManager) -> torch.Tensor:
    """Engrams alive per step and type: [Steps, 3] for WORKING, SHORTTERM, LONGTERM."""
    counts = torch.zeros(len(history), 3, dtype=torch.long)
    for timestep in range(len(history)):
        types = history.step(timestep).types.long()
        counts[timestep] = torch.bincount(types, minlength=4)[1:4]
    return counts
