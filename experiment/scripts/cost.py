"""What a run will cost: time a few training steps and evaluation batches of a config, project the whole run.

    python -m experiment.scripts.cost --config experiment/configs/far_recall/memoria_longterm_cpu.json \\
        --steps 20 --eval-batches 4 [--override data.distance=24 ...]

For the segment-walking tasks (far recall, sorting). Builds the task and data as ``train`` does, runs ``--steps``
optimiser steps (AdamW, the first one not timed: it warms up) and ``--eval-batches`` evaluation batches as the task
runs them (engram counts included), and prints JSON: seconds per training step and per evaluation batch, the run's
training steps and evaluation batches (every validation and the test), and the projected wall time of the run
without Lightning's start-up. Run it as the runs themselves will run (one thread, beside the same load).
"""

import argparse
import json
import math
import time
from typing import Any, Optional, Sequence

import torch

from experiment.config import load_config
from experiment.scripts.train import apply_process_settings, build_task
from experiment.tasks.base import SegmentedTask, run_segments


def run_shape(config: dict[str, Any], steps_per_epoch: int, dev_batches: int, test_batches: int) -> dict[str, int]:
    """Training steps and evaluation batches of the whole run the config describes (Lightning's schedule: a
    validation every ``val_check_interval`` steps, or fraction of an epoch, else once per epoch; then the test)."""
    trainer = config.get("trainer", {})
    max_steps, max_epochs = trainer.get("max_steps", -1), trainer.get("max_epochs")
    limited = max_steps not in (None, -1)
    if max_epochs is None:  # Lightning: 1000 epochs, or as many as max_steps needs
        max_epochs = math.ceil(max_steps / steps_per_epoch) if limited else 1000
    total = min(max_epochs * steps_per_epoch, max_steps) if limited else max_epochs * steps_per_epoch
    interval = trainer.get("val_check_interval", 1.0)
    if isinstance(interval, float):
        validations = math.ceil(total / max(1, round(steps_per_epoch * interval)))
    else:
        validations = total // interval
    limit = trainer.get("limit_val_batches", dev_batches)
    per_validation = min(dev_batches, limit if isinstance(limit, int) else math.ceil(dev_batches * limit))
    return {"train_steps": total, "eval_batches": validations * per_validation + test_batches}


def measure(config: dict[str, Any], steps: int, eval_batches: int) -> dict[str, Any]:
    """Seconds per training step and per evaluation batch, and the projected run (see the module docstring)."""
    apply_process_settings(config)
    task, data = build_task(config)
    if not isinstance(task, SegmentedTask):
        raise ValueError(f"cost measures the segment-walking tasks (far recall, sorting), not {config['task']!r}")
    data.prepare_data()
    data.setup("fit")
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-3)
    train_loader, dev_loader, test_loader = data.train_dataloader(), data.val_dataloader(), data.test_dataloader()
    task.train()
    durations = []
    batches = iter(train_loader)
    for _ in range(steps + 1):
        batch = next(batches)
        start = time.perf_counter()
        stats = run_segments(task.model, batch["input_ids"], batch["labels"], task.segment_length, True)
        loss = stats.loss / stats.num_targets.clamp(min=1) + stats.auxiliary
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        durations.append(time.perf_counter() - start)
    task.eval()
    eval_durations = []
    with torch.no_grad():
        for index, batch in enumerate(test_loader):
            if index == eval_batches:
                break
            start = time.perf_counter()
            run_segments(task.model, batch["input_ids"], batch["labels"], task.segment_length, False, engram_log=[])
            eval_durations.append(time.perf_counter() - start)
    step, eval_batch = sum(durations[1:]) / steps, sum(eval_durations) / len(eval_durations)
    shape = run_shape(config, len(train_loader), len(dev_loader), len(test_loader))
    projected = shape["train_steps"] * step + shape["eval_batches"] * eval_batch
    return {
        "seconds_per_train_step": round(step, 4),
        "seconds_per_eval_batch": round(eval_batch, 4),
        **shape,
        "projected_seconds": round(projected, 1),
        "parameters": sum(p.numel() for p in task.model.parameters()),
    }


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a far-recall or sorting config")
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config entries to set")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps (after one untimed)")
    parser.add_argument("--eval-batches", type=int, default=4, help="timed test batches")
    args = parser.parse_args(argv)
    result = {"config": args.config, "overrides": args.override}
    result.update(measure(load_config(args.config, args.override), args.steps, args.eval_batches))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
