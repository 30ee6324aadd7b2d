"""Each step of an implementation against 1.0.0's: a difference is explained by a float64 near-tie (SPEC §7) or
counted as unexplained, and the implementation is resynchronised to 1.0.0's state."""

import math
from types import ModuleType
from typing import Any, Dict, List, Tuple

import torch

from benchmarks.rng import get_rng, rng_equal, set_rng
from benchmarks.steps import Impl, StepOutput

NEAR_TIE_RTOL = 1e-5
STATE_FIELDS = ("data", "induce_counts", "engrams_types", "lifespan")


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
