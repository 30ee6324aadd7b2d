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
import json
import os
import platform
import sys
from dataclasses import replace
from typing import Any, Dict, Optional, Sequence

import torch

from benchmarks.loaders import load_module, load_package
from benchmarks.op_count import op_table
from benchmarks.reference import ReferenceUnavailable, load_reference
from benchmarks.runner import run_config
from benchmarks.steps import BEFORE, OURS, REF_100, REF_110
from benchmarks.tables import config_table, sweep_table
from benchmarks.workload import CONFIGS, QUICK_SWEEP_CAPACITIES, SWEEP_CAPACITIES, BenchConfig


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
    try:
        sys.exit(0 if main() else 1)
    except ReferenceUnavailable as error:
        sys.exit(f"error: {error} (or time ours alone: --no-references)")
