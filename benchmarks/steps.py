"""One implementation under test and one timed, probed step of it."""

import statistics
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple

import torch

from benchmarks.memory_profile import held_bytes, measure_peak
from benchmarks.rng import get_rng, synchronize
from benchmarks.syncs import count_syncs_by_caller
from benchmarks.workload import BenchConfig, lifespan_delta

OURS, BEFORE, REF_110, REF_100 = "ours", "before", "1.1.0", "1.0.0"


@dataclass
class ImplStats:
    """What one implementation did on one configuration."""

    name: str
    step_seconds: List[float] = field(default_factory=list)
    phase_seconds: Dict[str, List[float]] = field(default_factory=lambda: {"add": [], "remind": [], "adjust": []})
    memory_lengths: List[int] = field(default_factory=list)  # after add, timed steps
    state_peak_bytes: int = 0
    step_peak_bytes: List[int] = field(default_factory=list)
    syncs_per_step: List[int] = field(default_factory=list)
    compared: int = 0
    identical: int = 0
    near_ties: int = 0
    unexplained: int = 0
    rng_mismatches: int = 0
    min_boundary_gap: Optional[float] = None
    differences: List[Dict[str, Any]] = field(default_factory=list)

    def summary(self) -> Dict[str, Any]:
        median = statistics.median(self.step_seconds) if self.step_seconds else None
        return dict(
            name=self.name,
            median_step_s=median,
            median_phase_s={k: statistics.median(v) if v else None for k, v in self.phase_seconds.items()},
            memory_length_min=min(self.memory_lengths) if self.memory_lengths else None,
            memory_length_max=max(self.memory_lengths) if self.memory_lengths else None,
            state_peak_bytes=self.state_peak_bytes,
            step_peak_bytes=max(self.step_peak_bytes) if self.step_peak_bytes else None,
            syncs_per_step=max(self.syncs_per_step) if self.syncs_per_step else None,
            compared=self.compared,
            identical=self.identical,
            near_ties=self.near_ties,
            unexplained=self.unexplained,
            rng_mismatches=self.rng_mismatches,
            min_boundary_gap=self.min_boundary_gap,
            step_seconds=self.step_seconds,
            differences=self.differences[:20],
        )


@dataclass
class Impl:
    """An implementation under test: its module and the live Memoria instance."""

    name: str
    module: ModuleType
    config: BenchConfig
    stats: ImplStats
    memoria: Any = None

    def __post_init__(self) -> None:
        self.memoria = self.module.Memoria(**self.config.memoria_kwargs())


@dataclass
class StepOutput:
    indices: torch.Tensor
    memories: torch.Tensor
    rng_after: Tuple[torch.Tensor, ...]


def count_syncs(fn, device: torch.device) -> Tuple[Any, int]:
    """Run ``fn()`` counting host-device synchronisations (CUDA only; 0 on CPU)."""
    if device.type != "cuda":
        return fn(), 0
    result, by_caller = count_syncs_by_caller(fn)
    return result, sum(by_caller.values())


def run_step(
    impl: Impl,
    data: torch.Tensor,
    logits: torch.Tensor,
    device: torch.device,
    timed: bool,
    probe: bool,
) -> StepOutput:
    """One add -> remind -> adjust step; timed steps record time, probe steps peak memory and syncs."""
    memoria, stats = impl.memoria, impl.stats
    data = data.to(device)
    synchronize(device)

    def add():
        memoria.add_working_memory(data)
        synchronize(device)

    def remind():
        memories, indices = memoria.remind()
        synchronize(device)
        return memories, indices

    def adjust(indices, delta):
        memoria.adjust_lifespan_and_memories(indices, delta)
        synchronize(device)

    if probe:
        # Memory and sync probes are not timed: the profiler and sync-debug mode slow the step down.
        # No synchronize() inside the counted calls: it would count as a sync itself.
        def whole_step():
            memoria.add_working_memory(data)
            (memories, indices), remind_syncs = count_syncs(memoria.remind, device)
            delta = lifespan_delta(logits, indices.size(1)).to(device)  # the caller's copy, not counted
            _, adjust_syncs = count_syncs(lambda: memoria.adjust_lifespan_and_memories(indices, delta), device)
            return (memories, indices), remind_syncs + adjust_syncs

        ((memories, indices), syncs), peak = measure_peak(whole_step, device)
        stats.step_peak_bytes.append(peak)
        stats.syncs_per_step.append(syncs)
        return StepOutput(indices.cpu(), memories.cpu(), get_rng(device))

    start = time.perf_counter()
    add()
    add_seconds = time.perf_counter() - start
    # Outside the timers: the state is at its largest between add and adjust. Measured before anything reads
    # ``memoria.engrams``, which may build a logical view that the implementation itself would not hold.
    stats.state_peak_bytes = max(stats.state_peak_bytes, held_bytes(memoria))
    # ours builds its ``engrams`` snapshot on demand: its cheap ``memory_length`` keeps the timed step's caches as they are
    memory_length = memoria.memory_length if hasattr(memoria, "memory_length") else memoria.engrams.memory_length

    start = time.perf_counter()
    memories, indices = remind()
    remind_seconds = time.perf_counter() - start
    delta = lifespan_delta(logits, indices.size(1)).to(device)
    synchronize(device)
    start = time.perf_counter()
    adjust(indices, delta)
    adjust_seconds = time.perf_counter() - start

    if timed:
        stats.step_seconds.append(add_seconds + remind_seconds + adjust_seconds)
        for phase, seconds in zip(("add", "remind", "adjust"), (add_seconds, remind_seconds, adjust_seconds)):
            stats.phase_seconds[phase].append(seconds)
        stats.memory_lengths.append(memory_length)
    return StepOutput(indices.cpu(), memories.cpu(), get_rng(device))
