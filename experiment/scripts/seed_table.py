"""Markdown table over seeds: one row per model, its per-seed test figures and their mean ± std.

    python -m experiment.scripts.seed_table runs/far_recall/*_seed* --metric test/accuracy --percent

Runs are grouped by their ``output_dir`` name less a trailing ``_seed<N>``; each run's ``test_metrics.json`` gives
the figure and its ``config.json`` the seed. The standard deviation is the sample one (n - 1), as over seeds.
"""

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence


def collect(output_dirs: Sequence[Path], metric: str) -> dict[str, dict[int, float]]:
    """``{group: {seed: value}}`` from each run's ``config.json`` and ``test_metrics.json``."""
    groups: dict[str, dict[int, float]] = defaultdict(dict)
    for output_dir in output_dirs:
        metrics_file = output_dir / "test_metrics.json"
        if not metrics_file.exists():
            continue  # a run still going or one that failed: left out, not counted as a zero
        seed = json.loads((output_dir / "config.json").read_text())["seed"]
        group = re.sub(r"_seed\d+$", "", output_dir.name)
        groups[group][seed] = float(json.loads(metrics_file.read_text())[metric])
    return dict(groups)


def table(groups: dict[str, dict[int, float]], metric: str, percent: bool = False, digits: int = 1) -> str:
    """Rows in the order given; seeds as columns (the union over groups)."""
    seeds = sorted({seed for values in groups.values() for seed in values})
    scale, unit = (100.0, " %") if percent else (1.0, "")
    header = f"| run | {' | '.join(f'seed {s}' for s in seeds)} | mean ± std ({metric}) |"
    lines = [header, "|---|" + "---|" * (len(seeds) + 1)]
    for group, values in groups.items():
        cells = [f"{values[s] * scale:.{digits}f}" if s in values else "—" for s in seeds]
        figures = [v * scale for v in values.values()]
        spread = statistics.stdev(figures) if len(figures) > 1 else float("nan")
        lines.append(
            f"| {group} | {' | '.join(cells)} | {statistics.mean(figures):.{digits}f} ± {spread:.{digits}f}{unit} |"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dirs", nargs="+", type=Path, help="run folders written by experiment.scripts.train")
    parser.add_argument("--metric", default="test/accuracy", help="key of test_metrics.json")
    parser.add_argument("--percent", action="store_true", help="show the figures times 100")
    parser.add_argument("--digits", type=int, default=1)
    args = parser.parse_args(argv)
    text = table(collect(args.output_dirs, args.metric), args.metric, args.percent, args.digits)
    print(text)
    return text


if __name__ == "__main__":
    main()
