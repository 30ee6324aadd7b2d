"""Markdown table of language-modelling runs: one row per ``output_dir``.

    python -m experiment.scripts.lm_table runs/language_modeling/tiny_*

Reads each run's ``config.json``, ``test_metrics.json`` and the last training step in its CSV log.
"""

import argparse
import csv
import json
from pathlib import Path
from typing import Optional, Sequence


def last_step(output_dir: Path) -> Optional[int]:
    """The highest ``step`` logged in the run's CSV metrics (the global step of the last evaluation), or None."""
    steps = []
    for path in output_dir.glob("csv/version_*/metrics.csv"):
        with path.open() as file:
            steps += [int(row["step"]) for row in csv.DictReader(file) if row.get("step")]
    return max(steps) if steps else None


def table(output_dirs: Sequence[Path]) -> str:
    lines = ["| model | config | training steps | test tokens | test bpc | test ppl |", "|---|---|---|---|---|---|"]
    for output_dir in output_dirs:
        config = json.loads((output_dir / "config.json").read_text())
        metrics = json.loads((output_dir / "test_metrics.json").read_text())
        lines.append(
            f"| {config['model']['model_type']} | {config.get('name', output_dir.name)} | {last_step(output_dir)} "
            f"| {int(metrics['test/tokens'])} | {metrics['test/bpc']:.4f} | {metrics['test/ppl']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dirs", nargs="+", type=Path, help="run folders written by experiment.scripts.train")
    text = table(parser.parse_args(argv).output_dirs)
    print(text)
    return text


if __name__ == "__main__":
    main()
