"""How much of a whole step each optional C extension saves (``memoria/native.py``), at the benchmark configurations.

For each configuration, ours alone (no references) is timed with every extension on (``MEMORIA_NATIVE=1``), with none
(``MEMORIA_NATIVE=0``) and with each extension alone off, the others on (``MEMORIA_NATIVE=walk,counts,index`` for
"without mt19937"). Every variant is a fresh ``python -m benchmarks.benchmark --no-references`` subprocess on the same
seed and stream, warmed up until the memory is in steady state; the median step (add + remind + adjust) is read from
its ``--json``. The share an extension saves is ``(without X - all on) / without X``: the part of the step that would
come back if the extension were dropped and its torch form ran instead.

    OMP_NUM_THREADS=1 python -m benchmarks.native_share --threads 1              # gpt2, enwik8, sort
    python -m benchmarks.native_share --configs gpt2 --warmup 40 --steps 5 --repeats 2
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

from benchmarks.workload import CONFIGS
from memoria import native

ALL, NONE = "all on", "none"
KEEP_SHARE = 0.10  # an extension pays where it saves at least this share of a step at some configuration


def variants(names: Sequence[str] = native.NAMES) -> Dict[str, str]:
    """Variant label -> ``MEMORIA_NATIVE`` value: all on, none, and each extension alone off."""
    table = {ALL: "1", NONE: "0"}
    for name in names:
        table[f"without {name}"] = ",".join(other for other in names if other != name)
    return table


def run_variant(config: str, switch: str, args: argparse.Namespace) -> Tuple[float, Dict]:
    """Median step seconds of ours on ``config`` under ``MEMORIA_NATIVE=switch``, and the run's machine record."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "result.json")
        command = [sys.executable, "-m", "benchmarks.benchmark", "--no-references", "--configs", config]
        command += ["--warmup", str(args.warmup), "--steps", str(args.steps), "--probes", "0"]
        command += ["--seed", str(args.seed), "--json", path]
        if args.threads:
            command += ["--threads", str(args.threads)]
        env = dict(os.environ, MEMORIA_NATIVE=switch)
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        with open(path) as handle:
            result = json.load(handle)
    machine = result["machine"]
    # the tie-break draw reports which form it took: a check that the switch reached the subprocess
    expected_draw = native.mt19937 is not None and (switch == "1" or "mt19937" in switch.split(","))
    if machine.get("native_draw", expected_draw) != expected_draw:
        raise RuntimeError(f"MEMORIA_NATIVE={switch}: the draw ran natively={machine['native_draw']}")
    return result["configs"][config]["impls"]["ours"]["median_step_s"], machine


def share(without: float, with_all: float) -> float:
    return (without - with_all) / without


def table(medians: Dict[str, Dict[str, float]], names: Sequence[str] = native.NAMES) -> str:
    """Markdown: config | all on | none | without X (share X saves) for each X."""
    header = ["config", f"{ALL} ms", f"{NONE} ms (share all save)"] + [f"without {name} ms (share)" for name in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for config, row in medians.items():
        on = row[ALL]
        cells = [config, f"{on * 1e3:.1f}"]
        for label in [NONE] + [f"without {name}" for name in names]:
            cells.append(f"{row[label] * 1e3:.1f} ({100 * share(row[label], on):+.1f} %)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(medians: Dict[str, Dict[str, float]], names: Sequence[str] = native.NAMES) -> Dict[str, bool]:
    """Extension name -> whether it saves at least KEEP_SHARE of the step at any configuration."""
    return {
        name: any(share(row[f"without {name}"], row[ALL]) >= KEEP_SHARE for row in medians.values()) for name in names
    }


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="gpt2,enwik8,sort", help="comma list of " + ",".join(CONFIGS))
    parser.add_argument("--warmup", type=int, default=120, help="untimed steps first, to a steady-state memory")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per run (the median is taken)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over all variants; the median run is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads in every run (0: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write every run's median step seconds to this path")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    args = parse_args(argv)
    configs = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in configs if name not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; expected some of {list(CONFIGS)}")
    built = [name for name, present in native.built().items() if present]
    if not built:
        raise SystemExit("no C extension is built: run `python setup.py build_ext --inplace` first")
    runs: Dict[str, Dict[str, List[float]]] = {}
    loads: List[Tuple[float, ...]] = [os.getloadavg()]
    machine: Dict = {}
    print(f"# native_share: {args}, extensions built: {built}, load average {os.getloadavg()}", flush=True)
    for config in configs:
        runs[config] = {}
        for round_ in range(args.repeats):
            # one variant at a time, rounds interleaved, so a slow spell of the machine spreads over all variants
            for label, switch in variants(built).items():
                seconds, machine = run_variant(config, switch, args)
                runs[config].setdefault(label, []).append(seconds)
                loads.append(tuple(machine["load_average_end"]))
                print(
                    f"  {config} {label:<16} MEMORIA_NATIVE={switch:<24} {seconds * 1e3:8.1f} ms"
                    f"  (round {round_ + 1}, load average {loads[-1][0]:.2f})",
                    flush=True,
                )
    medians = {config: {label: statistics.median(v) for label, v in row.items()} for config, row in runs.items()}
    print()
    print(table(medians, built))
    print()
    for name, keep in verdicts(medians, built).items():
        print(
            f"- {name}: {'keep' if keep else 'drop'} (saves >= {KEEP_SHARE:.0%} of a step at some configuration: {keep})"
        )
    print(
        f"\n# CPU {machine.get('cpu')}, {machine.get('cores')} cores, torch {machine.get('torch')}, threads {args.threads}"
    )
    print(f"# load average (1, 5, 15 min) at start {loads[0]}, highest 1-min during {max(l[0] for l in loads):.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(args=vars(args), machine=machine, runs=runs, medians=medians, loads=loads), handle, indent=1)
    return medians


if __name__ == "__main__":
    main()
