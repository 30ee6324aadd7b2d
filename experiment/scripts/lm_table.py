"""Markdown table of language-modelling runs: one row per ``output_dir``, and a "memory removed" row per memory model.

    python -m experiment.scripts.lm_table runs/language_modeling/tiny_* [--memory-removed]

Reads each run's ``config.json``, ``test_metrics.json`` and the last training step in its CSV log. With
``--memory-removed``, each run of a model with memory is also evaluated on the test split from the same checkpoint
(the one ``test_metrics.json`` names) with the memory emptied before every segment (``eval.reset_every_segment``),
once: the figures go to ``test_metrics_memory_removed.json`` beside the others and the table gets a row for them,
so that it shows what the memory adds.
"""

import argparse
import csv
import json
from pathlib import Path
from typing import Optional, Sequence

MEMORY_REMOVED = "test_metrics_memory_removed.json"


def last_step(output_dir: Path) -> Optional[int]:
    """The highest ``step`` logged in the run's CSV metrics (the global step of the last evaluation), or None."""
    steps = []
    for path in output_dir.glob("csv/version_*/metrics.csv"):
        with path.open() as file:
            steps += [int(row["step"]) for row in csv.DictReader(file) if row.get("step")]
    return max(steps) if steps else None


def has_memory(model_type: str) -> bool:
    """Whether a registered model carries memory from one segment to the next."""
    from experiment.models import MODEL_REGISTRY

    spec = MODEL_REGISTRY[model_type]
    return spec.state_argument is not None or hasattr(spec.model_class, "reset_memory")


def evaluate_memory_removed(output_dir: Path) -> dict[str, float]:
    """Test metrics of the run's tested checkpoint with the memory reset at every segment (written, then reused)."""
    target = output_dir / MEMORY_REMOVED
    if target.is_file():
        return json.loads(target.read_text())
    from experiment.config import load_config
    from experiment.scripts.eval import evaluate

    config = load_config(output_dir / "config.json", ["eval.reset_every_segment=true"])
    tested = json.loads((output_dir / "test_metrics.json").read_text()).get("checkpoint")
    checkpoint = tested or str(output_dir / "checkpoints" / "last.ckpt")
    metrics = evaluate(config, checkpoint, "test")
    metrics["checkpoint"] = checkpoint
    target.write_text(json.dumps(metrics, indent=2))
    return metrics


def table(output_dirs: Sequence[Path], memory_removed: bool = False) -> str:
    lines = ["| model | config | training steps | test tokens | test bpc | test ppl |", "|---|---|---|---|---|---|"]
    for output_dir in output_dirs:
        config = json.loads((output_dir / "config.json").read_text())
        metrics = json.loads((output_dir / "test_metrics.json").read_text())
        model_type, name, steps = (
            config["model"]["model_type"],
            config.get("name", output_dir.name),
            last_step(output_dir),
        )
        rows = [(name, metrics)]
        if memory_removed and has_memory(model_type):
            rows.append((f"{name}, memory removed", evaluate_memory_removed(output_dir)))
        for label, figures in rows:
            lines.append(
                f"| {model_type} | {label} | {steps} | {int(figures['test/tokens'])} | {figures['test/bpc']:.4f} "
                f"| {figures['test/ppl']:.4f} |"
            )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dirs", nargs="+", type=Path, help="run folders written by experiment.scripts.train")
    parser.add_argument(
        "--memory-removed",
        action="store_true",
        help="add, per memory model, the same checkpoint tested with the memory reset at every segment",
    )
    args = parser.parse_args(argv)
    text = table(args.output_dirs, args.memory_removed)
    print(text)
    return text


if __name__ == "__main__":
    main()
