"""Summarise repeated classification runs and compare two models with a one-tailed t-test.

    python -m experiment.scripts.classification_summary --runs runs/classification/memoria_roberta/seed*/ \\
        --against runs/classification/roberta/seed*/ [--metric test/f1] [--student] [--output summary.json]

Each run is a folder holding ``test_metrics.json`` (written by ``experiment.scripts.train``) or that file itself.
Prints mean and sample standard deviation (ddof 1) of the metric for each model and, with ``--against``, the
one-tailed test of "``--runs`` scores higher than ``--against``": Welch's unequal-variance t-test by default,
Student's pooled-variance test with ``--student``.
"""

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from scipy import stats


@dataclass(frozen=True)
class Summary:
    count: int
    mean: float
    std: float  # sample standard deviation (ddof 1); 0 for a single run


@dataclass(frozen=True)
class TTest:
    t: float
    df: float
    p_one_tailed: float  # P(T >= t) under equal means: small when the first model is better
    equal_var: bool


def summarise(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation of a list of scores."""
    if not values:
        raise ValueError("no values to summarise")
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return Summary(len(values), mean, math.sqrt(var))


def one_tailed_t_test(first: Sequence[float], second: Sequence[float], equal_var: bool = False) -> TTest:
    """Tests mean(first) > mean(second). Welch (``equal_var=False``) or Student (pooled variance)."""
    if len(first) < 2 or len(second) < 2:
        raise ValueError("a t-test needs at least two runs per model")
    a, b = summarise(first), summarise(second)
    va, vb = a.std**2, b.std**2
    if equal_var:
        df = a.count + b.count - 2
        pooled = ((a.count - 1) * va + (b.count - 1) * vb) / df
        se = math.sqrt(pooled * (1 / a.count + 1 / b.count))
    else:
        sa, sb = va / a.count, vb / b.count
        se = math.sqrt(sa + sb)
        df = (sa + sb) ** 2 / (sa**2 / (a.count - 1) + sb**2 / (b.count - 1)) if se > 0 else float("nan")
    if se == 0:
        raise ValueError("both models have zero variance: the t statistic is undefined")
    t = (a.mean - b.mean) / se
    return TTest(t, df, float(stats.t.sf(t, df)), equal_var)


def read_metric(paths: Sequence[Path], metric: str) -> List[float]:
    """The metric from each run folder's (or file's) ``test_metrics.json``."""
    values = []
    for path in paths:
        file = path / "test_metrics.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no test_metrics.json at {path}")
        metrics = json.loads(file.read_text())
        if metric not in metrics:
            raise KeyError(f"{file} has no {metric!r}; it has {sorted(metrics)}")
        values.append(float(metrics[metric]))
    return values


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="run folders of the model under test")
    parser.add_argument("--against", nargs="+", type=Path, help="run folders of the model it is compared with")
    parser.add_argument("--metric", default="test/f1", help="key in test_metrics.json (default test/f1)")
    parser.add_argument("--student", action="store_true", help="pooled-variance Student test instead of Welch")
    parser.add_argument("--output", type=Path, help="also write the result here as JSON")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    runs = read_metric(args.runs, args.metric)
    result = {"metric": args.metric, "runs": asdict(summarise(runs)), "values": runs}
    if args.against:
        against = read_metric(args.against, args.metric)
        result["against"] = asdict(summarise(against))
        result["against_values"] = against
        result["t_test"] = asdict(one_tailed_t_test(runs, against, equal_var=args.student))
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
