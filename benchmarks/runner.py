"""One configuration: one stream fed to every implementation, each step compared with 1.0.0's."""

import os
import time
from dataclasses import asdict
from types import ModuleType
from typing import Any, Dict

import torch

from benchmarks.compare import clone_engrams, record_comparison, resync
from benchmarks.op_count import count_step_on_copy
from benchmarks.rng import get_rng, set_rng
from benchmarks.steps import BEFORE, OURS, REF_100, REF_110, Impl, ImplStats, run_step
from benchmarks.syncs import PACKAGE_DIR
from benchmarks.workload import BenchConfig, lifespan_delta, make_stream


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
