"""Speed, memory and output equality of our Memoria against the published memoria-pytorch 1.1.0 and 1.0.0.

Per configuration one stream of ``add_working_memory -> remind -> adjust_lifespan_and_memories`` steps is
fed to every implementation with the same inputs and the same global RNG state before each one's step
(the only random draw, the long-term tie-break, then comes out the same). After each step the returned
indices, the returned memories and the whole engram state are compared with 1.0.0's; a difference is
checked for a near-tie in float64 (SPEC §7) and the implementation is resynchronised to 1.0.0's state.

Steps: ``warmup`` untimed steps (ours alone, or ours and 1.0.0 with ``--compare-warmup``; the references
then start from a copy of that state), ``steps`` timed steps (all three; the median is reported), then
``probes`` untimed steps measuring peak memory (and CUDA syncs). Every step after the warm-up is compared.
With ``--count-ops`` (the default) one more step of ours runs after the warm-up, on a copy of its state and with the
global RNG restored after it, with the GPU forms forced: its ops and host syncs per phase (``benchmarks/op_count.py``).

    python -m benchmarks.benchmark                      # every configuration, CPU
    python -m benchmarks.benchmark --quick              # reduced run, under a minute
    python -m benchmarks.benchmark --configs gpt2,sweep --device cuda --json results.json
"""

import argparse
import importlib
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from types import ModuleType
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from benchmarks.memory_profile import held_bytes, measure_peak
from benchmarks.op_count import count_step_on_copy, op_table
from benchmarks.reference import load_reference
from benchmarks.syncs import PACKAGE_DIR, count_syncs_by_caller

OURS, BEFORE, REF_110, REF_100 = "ours", "before", "1.1.0", "1.0.0"
NEAR_TIE_RTOL = 1e-5
# Squared distances between data rows average 2 * D * scale^2 = 16: far from exp() underflow (SPEC §7).
DATA_SQUARED_NORM = 8.0
LIFESPAN_EXTEND_SCALE = 8.0
STATE_FIELDS = ("data", "induce_counts", "engrams_types", "lifespan")


@dataclass(frozen=True)
class BenchConfig:
    """One Memoria configuration and the stream fed to it."""

    name: str
    batch_size: int
    hidden_dim: int
    num_working: int  # working memories added per step
    stm_capacity: int
    num_reminded_stm: int
    num_final_ltms: int
    ltm_search_depth: int = 10
    initial_lifespan: int = 9

    def memoria_kwargs(self) -> Dict[str, int]:
        return dict(
            num_reminded_stm=self.num_reminded_stm,
            stm_capacity=self.stm_capacity,
            ltm_search_depth=self.ltm_search_depth,
            initial_lifespan=self.initial_lifespan,
            num_final_ltms=self.num_final_ltms,
        )

    def auto_warmup(self) -> int:
        """Steps until the short-term store has filled and long-term conversion has run for a while."""
        return math.ceil(self.stm_capacity / self.num_working) + 20


CONFIGS = {
    "gpt2": BenchConfig("gpt2", 8, 768, 50, 400, 50, 50, 10, 9),
    "enwik8": BenchConfig("enwik8", 8, 512, 128, 1536, 192, 192, 10, 9),
    "sort": BenchConfig("sort", 8, 512, 128, 512, 256, 640, 10, 5),
    # Small enough for the smoke test: every stage (STM overflow, LTM search) is reached within a few steps.
    "tiny": BenchConfig("tiny", 2, 16, 4, 8, 3, 3, 2, 3),
}
SWEEP_CAPACITIES = (200, 400, 800, 1600, 3200)
QUICK_SWEEP_CAPACITIES = (200, 400)


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


# ---------------------------------------------------------------------------------------------- modules


def load_package(path: str, name: str = "memoria_before") -> ModuleType:
    """The ``memoria`` package inside ``path`` (e.g. a git worktree of an older commit, its C extensions built in
    place), imported as ``name`` so that it runs beside ours in one process."""
    init = os.path.join(os.path.abspath(path), "memoria", "__init__.py")
    if not os.path.isfile(init):
        raise SystemExit(f"--before {path}: no memoria package there ({init} is missing)")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[os.path.dirname(init)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_module(spec: str) -> ModuleType:
    """``reference:1.1.0`` loads a published version, anything else is imported as a module name."""
    if spec.startswith("reference:"):
        return load_reference(spec.split(":", 1)[1])
    return importlib.import_module(spec)


# ------------------------------------------------------------------------------------------ RNG, device


def get_rng(device: torch.device) -> Tuple[torch.Tensor, ...]:
    states = (torch.get_rng_state(),)
    if device.type == "cuda":
        states += (torch.cuda.get_rng_state(device),)
    return states


def set_rng(states: Tuple[torch.Tensor, ...], device: torch.device) -> None:
    torch.set_rng_state(states[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states[1], device)


def rng_equal(a: Tuple[torch.Tensor, ...], b: Tuple[torch.Tensor, ...]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------ stream


def make_stream(config: BenchConfig, num_steps: int, seed: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Per step: working memories ``[B, W, D]`` and lifespan logits ``[B, Rmax]`` (CPU).

    Drawn from a private generator so that the global RNG only feeds the implementations.
    """
    generator = torch.Generator().manual_seed(seed)
    scale = math.sqrt(DATA_SQUARED_NORM / config.hidden_dim)
    # remind returns at most the reminded STMs, the final LTMs and one -1 column.
    max_reminded = config.num_reminded_stm + config.num_final_ltms + 1
    stream = []
    for _ in range(num_steps):
        data = torch.randn(config.batch_size, config.num_working, config.hidden_dim, generator=generator) * scale
        logits = torch.randn(config.batch_size, max_reminded, generator=generator)
        stream.append((data, logits))
    return stream


def lifespan_delta(logits: torch.Tensor, num_reminded: int) -> torch.Tensor:
    """What a model passes: attention weight of each reminded memory x number reminded x 8; ``[B, R]``."""
    return logits[:, :num_reminded].softmax(dim=1) * num_reminded * LIFESPAN_EXTEND_SCALE


# --------------------------------------------------------------------------------------------- one step


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


# ------------------------------------------------------------------------------------ compare, resync


def clone_engrams(module: ModuleType, engrams: Any) -> Any:
    """A copy of ``engrams`` (the four state fields) as ``module``'s Engrams."""
    return module.Engrams(**{name: getattr(engrams, name).clone() for name in STATE_FIELDS})


def resync(impl: Impl, reference: Impl) -> None:
    """Give ``impl`` a copy of the reference's engram state so later steps are compared again."""
    impl.memoria.engrams = clone_engrams(impl.module, reference.memoria.engrams)


def differing_parts(out: StepOutput, ref_out: StepOutput, impl: Impl, reference: Impl) -> List[str]:
    parts = []
    if not torch.equal(out.indices, ref_out.indices):
        parts.append("indices")
    if out.memories.shape != ref_out.memories.shape or not torch.equal(out.memories, ref_out.memories):
        parts.append("memories")
    for name in STATE_FIELDS:
        mine, theirs = getattr(impl.memoria.engrams, name), getattr(reference.memoria.engrams, name)
        if mine.shape != theirs.shape or not torch.equal(mine, theirs.to(mine.device)):
            parts.append(name)
    return parts


def differing_rows(a: torch.Tensor, b: torch.Tensor) -> List[int]:
    """Batch rows whose sets of returned indices differ; ``a``, ``b``: ``[B, R]`` (widths may differ)."""
    return [row for row in range(a.size(0)) if not torch.equal(a[row].unique(), b[row].unique())]


def exp_neg_sq_dist(working: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``exp(-||w - k||^2)`` in float64; ``[B, W, D] x [B, K, D] -> [B, W, K]``."""
    working, keys = working.double(), keys.double()
    squared = (
        working.pow(2).sum(-1).unsqueeze(2) + keys.pow(2).sum(-1).unsqueeze(1) - 2 * working @ keys.transpose(1, 2)
    )
    return squared.clamp_min(0).neg().exp()


def boundary_gap(scores: torch.Tensor, values: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the smallest relative score gap between a top-``k`` candidate and a left-out one.

    Candidates that carry the same index value (e.g. several ``-1`` paddings) are interchangeable and
    are not compared. ``scores``, ``values``: ``[B, N]``; returns ``[B]`` (``inf`` where nothing is left out).
    """
    if k >= scores.size(1):
        return torch.full([scores.size(0)], math.inf, dtype=torch.float64)
    order = scores.argsort(dim=1, descending=True, stable=True)
    scores, values = scores.gather(1, order), values.gather(1, order)
    top, rest = scores[:, :k].unsqueeze(2), scores[:, k:].unsqueeze(1)
    gap = (top - rest) / top.abs()
    gap = gap.masked_fill(values[:, :k].unsqueeze(2) == values[:, k:].unsqueeze(1), math.inf)
    return gap.flatten(1).min(dim=1).values


def near_tie_gaps(
    reference: Impl, before_step: Any, data: torch.Tensor, rng: Tuple[torch.Tensor, ...], device: torch.device
) -> torch.Tensor:
    """Per row, the smallest float64 top-k boundary gap of 1.0.0's two rankings at this step; ``[B]``.

    Replays 1.0.0's add and remind on a copy of its state before the step (same data, same RNG state) to get
    its long-term candidates, then scores the short-term and the long-term candidates as mean / sum over
    working rows of ``exp(-||w - k||^2)``, zero-vector padded rows included as the reference does.
    """
    module, config = reference.module, reference.config
    scratch = module.Memoria(**config.memoria_kwargs())
    scratch.engrams = clone_engrams(module, before_step)
    scratch.add_working_memory(data.to(device))
    engrams = scratch.engrams
    working, _ = engrams.get_working_memory()
    shortterm, shortterm_indices = engrams.get_shortterm_memory()
    longterm, _ = engrams.get_longterm_memory()

    stm_scores = exp_neg_sq_dist(working.data.cpu(), shortterm.data.cpu()).mean(dim=1)
    k_stm = min(config.num_reminded_stm, stm_scores.size(1))
    gaps = boundary_gap(stm_scores, shortterm_indices.cpu(), k_stm)

    # The long-term candidates come from the reference's own steps (its tie-break draw needs this RNG state).
    saved = get_rng(device)
    set_rng(rng, device)
    weight = scratch._calculate_memory_weight(working, shortterm)
    reminded_stm = scratch._remind_shortterm_memory(weight, shortterm_indices)
    initial_ltm = scratch._find_initial_longterm_memory(reminded_stm)
    searched = scratch._search_longterm_memories_with_initials(initial_ltm, longterm)
    set_rng(saved, device)
    if searched.size(1) > 0:
        found = engrams.select(searched)
        ltm_scores = exp_neg_sq_dist(working.data.cpu(), found.data.cpu()).sum(dim=1)
        k_ltm = min(config.num_final_ltms, ltm_scores.size(1))
        gaps = torch.minimum(gaps, boundary_gap(ltm_scores, searched.cpu(), k_ltm))
    return gaps


def record_comparison(
    impl: Impl,
    reference: Impl,
    out: StepOutput,
    ref_out: StepOutput,
    step: int,
    check_near_ties: bool,
    near_tie_cache: Dict[str, torch.Tensor],
    before_step: Any,
    data: torch.Tensor,
    rng: Tuple[torch.Tensor, ...],
    device: torch.device,
) -> None:
    stats = impl.stats
    stats.compared += 1
    if not rng_equal(out.rng_after, ref_out.rng_after):
        stats.rng_mismatches += 1
    parts = differing_parts(out, ref_out, impl, reference)
    if not parts:
        stats.identical += 1
        return
    record: Dict[str, Any] = dict(step=step, parts=parts)
    if check_near_ties:
        rows = differing_rows(out.indices, ref_out.indices)
        if "gaps" not in near_tie_cache:
            near_tie_cache["gaps"] = near_tie_gaps(reference, before_step, data, rng, device)
        gaps = near_tie_cache["gaps"]
        row_gaps = [float(gaps[row]) for row in rows]
        record.update(rows=rows, boundary_gaps=row_gaps)
        if row_gaps:
            smallest = min(row_gaps)
            stats.min_boundary_gap = (
                smallest if stats.min_boundary_gap is None else min(stats.min_boundary_gap, smallest)
            )
        # Equal index sets with a different state, or a row without a near-tie, is a real difference.
        if rows and all(gap < NEAR_TIE_RTOL for gap in row_gaps):
            stats.near_ties += 1
            record["kind"] = "near-tie"
        else:
            stats.unexplained += 1
            record["kind"] = "unexplained"
    else:
        stats.unexplained += 1
        record["kind"] = "differs"
    stats.differences.append(record)
    resync(impl, reference)


# --------------------------------------------------------------------------------------- one config


def run_config(
    config: BenchConfig,
    modules: Dict[str, ModuleType],
    device: torch.device,
    warmup: int,
    steps: int,
    probes: int,
    seed: int,
    compare_warmup: bool = False,
    log=print,
    count_ops: bool = False,
) -> Dict[str, Any]:
    """Feed one stream to every implementation in ``modules`` (``1.0.0`` must be among them if any reference is).

    The warm-up runs ours alone (with 1.0.0 too if ``compare_warmup``); the references then start from
    a copy of that state, and every later step is run by all and compared. With ``count_ops`` (and ours being the
    ``memoria`` package), the first step after the warm-up is also run once more, on a copy of ours and with the RNG
    restored after it, counting its ops and host syncs in the GPU forms (``op_count``; ``None`` otherwise).
    """
    impls = {name: Impl(name, module, config, ImplStats(name)) for name, module in modules.items()}
    reference = impls.get(REF_100)
    others = [impl for name, impl in impls.items() if name != REF_100]

    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
    total = warmup + steps + probes
    stream = make_stream(config, total, seed)
    started = time.perf_counter()
    ours = impls[OURS]
    op_count = None
    count_ops = count_ops and os.path.abspath(getattr(ours.module, "__file__", "")).startswith(PACKAGE_DIR)
    for step, (data, logits) in enumerate(stream):
        timed, probe = warmup <= step < warmup + steps, step >= warmup + steps
        if step == warmup and count_ops:
            # the steady state's ops and syncs: a copy runs the step, nothing of ours nor the RNG changes
            op_count = count_step_on_copy(
                ours.memoria, data.to(device), lambda indices: lifespan_delta(logits, indices.size(1)).to(device)
            )
        if step == warmup and reference is not None:
            # References that sat out the warm-up start from a copy of the state it produced.
            if not compare_warmup:
                resync(reference, ours)
            if REF_110 in impls:
                resync(impls[REF_110], reference)
        in_warmup = step < warmup
        run_reference = reference is not None and (compare_warmup or not in_warmup)
        # an older version of ours (``--before``) runs the warm-up too: both then time the same states
        active = [impl for impl in others if impl is ours or impl.name == BEFORE or not in_warmup]
        rng = get_rng(device)
        ref_out, before_step = None, None
        if run_reference:
            # Kept for the near-tie replay; copied outside any timer or memory probe.
            before_step = clone_engrams(reference.module, reference.memoria.engrams)
            ref_out = run_step(reference, data, logits, device, timed, probe)
        rng_after = ref_out.rng_after if ref_out is not None else None
        outs = {}
        # every other step in the reverse order, so that neither of two timed implementations always runs first
        for impl in active if step % 2 == 0 else active[::-1]:
            set_rng(rng, device)
            outs[impl.name] = run_step(impl, data, logits, device, timed, probe)
            rng_after = rng_after or outs[impl.name].rng_after
        set_rng(rng_after, device)
        if run_reference:
            near_tie_cache: Dict[str, torch.Tensor] = {}
            for impl in active:
                check = impl.name != REF_110  # 1.1.0 differs by design (it ranks without exp)
                record_comparison(
                    impl,
                    reference,
                    outs[impl.name],
                    ref_out,
                    step,
                    check,
                    near_tie_cache,
                    before_step,
                    data,
                    rng,
                    device,
                )
            set_rng(rng_after, device)
        if (step + 1) % 10 == 0 or step + 1 == total:
            log(
                f"  [{config.name}] step {step + 1}/{total}, M={ours.memoria.engrams.memory_length}, "
                f"{time.perf_counter() - started:.0f}s"
            )
    return dict(
        config=asdict(config),
        warmup=warmup,
        compare_warmup=compare_warmup,
        steps=steps,
        probes=probes,
        device=str(device),
        impls={name: impl.stats.summary() for name, impl in impls.items()},
        op_count=op_count,
    )


# ------------------------------------------------------------------------------------------------ tables


def _mib(num_bytes: Optional[int]) -> str:
    return "-" if num_bytes is None else f"{num_bytes / 2**20:.1f}"


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> str:
    return "-" if not numerator or not denominator else f"{numerator / denominator:.1f}x"


def _length(summary: Dict[str, Any]) -> str:
    low, high = summary["memory_length_min"], summary["memory_length_max"]
    return "-" if low is None else (str(low) if low == high else f"{low}-{high}")


def _equality(summary: Dict[str, Any], name: str) -> str:
    if name == REF_100:
        return "(baseline)"
    if summary["compared"] == 0:
        return "-"
    text = f"{summary['identical']}/{summary['compared']}"
    if name == REF_110:
        return text + " (ranks without exp)"
    text += f", near-ties {summary['near_ties']}, unexplained {summary['unexplained']}"
    return text + (f", RNG drift {summary['rng_mismatches']}" if summary["rng_mismatches"] else "")


def config_table(result: Dict[str, Any]) -> str:
    """Markdown table of one configuration's result."""
    impls = result["impls"]
    ref_times = {name: impls[name]["median_step_s"] for name in (REF_110, REF_100, BEFORE) if name in impls}
    cuda = result["device"].startswith("cuda")
    before = BEFORE in impls
    header = (
        [
            "impl",
            "memory length",
            "step ms (median)",
            "vs 1.1.0",
            "vs 1.0.0",
            "state MiB (peak)",
            "step peak MiB",
            "identical to 1.0.0 (steps)",
        ]
        + (["syncs/step"] if cuda else [])
        + (["vs before"] if before else [])
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in (OURS, BEFORE, REF_110, REF_100):
        if name not in impls:
            continue
        summary = impls[name]
        row = [
            name,
            _length(summary),
            _ms(summary["median_step_s"]),
            _ratio(ref_times.get(REF_110), summary["median_step_s"]),
            _ratio(ref_times.get(REF_100), summary["median_step_s"]),
            _mib(summary["state_peak_bytes"]),
            _mib(summary["step_peak_bytes"]),
            _equality(summary, name),
        ] + ([str(summary["syncs_per_step"])] if cuda else [])
        row += [_ratio(ref_times.get(BEFORE), summary["median_step_s"])] if before else []
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def sweep_table(results: Sequence[Dict[str, Any]]) -> str:
    """Markdown table of the stm_capacity sweep: time and memory against memory length."""
    header = [
        "stm_capacity",
        "memory length",
        "ours ms",
        "1.1.0 ms",
        "1.0.0 ms",
        "vs 1.1.0",
        "vs 1.0.0",
        "ours step MiB",
        "1.1.0 step MiB",
        "1.0.0 step MiB",
        "ours state MiB",
        "identical",
        "before ms",
        "ours vs before",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        impls = result["impls"]
        get = lambda name, key: impls[name][key] if name in impls else None  # noqa: E731
        ours = impls[OURS]
        lines.append(
            "| "
            + " | ".join(
                [
                    str(result["config"]["stm_capacity"]),
                    _length(ours),
                    _ms(get(OURS, "median_step_s")),
                    _ms(get(REF_110, "median_step_s")),
                    _ms(get(REF_100, "median_step_s")),
                    _ratio(get(REF_110, "median_step_s"), get(OURS, "median_step_s")),
                    _ratio(get(REF_100, "median_step_s"), get(OURS, "median_step_s")),
                    _mib(get(OURS, "step_peak_bytes")),
                    _mib(get(REF_110, "step_peak_bytes")),
                    _mib(get(REF_100, "step_peak_bytes")),
                    _mib(get(OURS, "state_peak_bytes")),
                    _equality(ours, OURS) if REF_100 in impls else "-",
                    _ms(get(BEFORE, "median_step_s")),
                    _ratio(get(BEFORE, "median_step_s"), get(OURS, "median_step_s")),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- main


def machine_description(device: torch.device) -> Dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    description = dict(
        cpu=cpu,
        cores=os.cpu_count(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        python=platform.python_version(),
        load_average=os.getloadavg(),
    )
    if device.type == "cuda":
        description["gpu"] = torch.cuda.get_device_name(device)
    return description


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--configs", default="gpt2,enwik8,sort,sweep", help="comma list of " + ",".join(CONFIGS) + ",sweep"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="a few steps per configuration and a small sweep")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: STM full + 20)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 8, quick 2)")
    parser.add_argument("--probes", type=int, default=None, help="memory / sync probe steps (default 1)")
    parser.add_argument(
        "--compare-warmup", action="store_true", help="run and compare 1.0.0 in the warm-up too (implied by --quick)"
    )
    parser.add_argument("--sweep", default=None, help="comma list of stm_capacity values for the sweep")
    parser.add_argument("--ref-limit", type=int, default=800, help="largest sweep stm_capacity the references run")
    parser.add_argument("--ours-module", default="memoria", help="module of ours, or reference:VERSION as a stand-in")
    parser.add_argument("--no-references", action="store_true", help="time ours alone")
    parser.add_argument(
        "--before",
        default=None,
        help="a directory holding an older memoria package (a git worktree): timed beside ours",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--count-ops",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the warm-up, count one step's ops and host syncs in the GPU forms, on a copy (default: on)",
    )
    parser.add_argument("--json", default=None, help="write all results to this path")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps if args.steps is not None else (2 if args.quick else 8)
    probes = args.probes if args.probes is not None else 1
    if args.sweep:
        capacities = tuple(int(value) for value in args.sweep.split(","))
    else:
        capacities = QUICK_SWEEP_CAPACITIES if args.quick else SWEEP_CAPACITIES

    compare_warmup = args.compare_warmup or args.quick
    ours = load_module(args.ours_module)
    references = {} if args.no_references else {REF_110: load_reference("1.1.0"), REF_100: load_reference("1.0.0")}
    before = {BEFORE: load_package(args.before)} if args.before else {}
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGS and name != "sweep"]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; expected some of {list(CONFIGS) + ['sweep']}")

    def warmup_for(config: BenchConfig) -> int:
        if args.warmup is not None:
            return args.warmup
        return 2 if args.quick else config.auto_warmup()

    machine = machine_description(device)
    # whether ours drew its CPU tie-break with the optional C extension (memoria/forms/draw.py) or with torch ops
    draw = getattr(getattr(ours, "forms", None), "draw", None) or getattr(ours, "draw", None)
    native_draw = getattr(draw, "native_draw_matches", None)
    if native_draw is not None and device.type == "cpu":
        machine["native_draw"] = native_draw()
    print(f"# Memoria benchmark on {machine}, ours = {args.ours_module} ({getattr(ours, '__file__', '?')})")
    output: Dict[str, Any] = dict(machine=machine, args=vars(args), configs={}, sweep=[])
    for name in names:
        if name == "sweep":
            print(f"\n## sweep: gpt2 settings, stm_capacity {capacities} (references up to {args.ref_limit})")
            for capacity in capacities:
                config = replace(CONFIGS["gpt2"], name=f"sweep-{capacity}", stm_capacity=capacity)
                modules = {OURS: ours, **before, **(references if capacity <= args.ref_limit else {})}
                result = run_config(
                    config,
                    modules,
                    device,
                    warmup_for(config),
                    steps,
                    probes,
                    args.seed,
                    compare_warmup,
                    count_ops=args.count_ops,
                )
                output["sweep"].append(result)
            print(sweep_table(output["sweep"]))
            counted = {r["config"]["name"]: r["op_count"] for r in output["sweep"] if r["op_count"]}
            if counted:
                print(
                    "\nops and host syncs of one step in the GPU forms (benchmarks/op_count.py):\n" + op_table(counted)
                )
            continue
        config = CONFIGS[name]
        print(f"\n## {name}: {config}")
        modules = {OURS: ours, **before, **references}
        result = run_config(
            config,
            modules,
            device,
            warmup_for(config),
            steps,
            probes,
            args.seed,
            compare_warmup,
            count_ops=args.count_ops,
        )
        output["configs"][name] = result
        print(config_table(result))
        if result["op_count"]:
            print(
                "\nops and host syncs of one step in the GPU forms (benchmarks/op_count.py):\n"
                + op_table({name: result["op_count"]})
            )
    machine["load_average_end"] = os.getloadavg()
    print(f"\n# load average (1, 5, 15 min) at start {machine['load_average']}, at end {machine['load_average_end']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(output, handle, indent=1)
    return output


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
