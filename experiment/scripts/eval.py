"""Evaluate a trained model on a split, from the same JSON config used for training.

    python -m experiment.scripts.eval --config experiment/configs/sorting/memoria_tiny.json \\
        --checkpoint runs/sorting/memoria_tiny/checkpoints/last.ckpt [--split test] [--override key=value ...]

``--checkpoint`` takes a Lightning checkpoint (``.ckpt``, memory state included) or a ``save_pretrained``
folder (``output_dir/model``). Prints the metrics as JSON and writes them to ``--output`` when given.
``--memory-removed`` evaluates the same weights with the memory emptied before every segment (the config entry
``eval.reset_every_segment``), which shows what the memory adds.
"""

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from experiment.scripts.train import (
    apply_process_settings,
    build_task,
    load_config,
    make_trainer,
    release_process_group,
)


def evaluate(config: dict, checkpoint: str, split: str = "test") -> dict[str, float]:
    """Metrics of ``checkpoint`` on ``split`` ("test" or "dev")."""
    apply_process_settings(config)
    path = Path(checkpoint)
    if path.is_dir():  # a save_pretrained folder: load the weights into the configured model
        config = {**config, "model": {"model_type": config["model"]["model_type"], "pretrained": str(path)}}
    task, data = build_task(config)
    trainer = make_trainer(config, Path(config["output_dir"]), loggers=None)
    ckpt_path = None if path.is_dir() else str(path)
    if split == "test":
        results = trainer.test(task, datamodule=data, ckpt_path=ckpt_path, weights_only=False)
    elif split == "dev":
        results = trainer.validate(task, datamodule=data, ckpt_path=ckpt_path, weights_only=False)
    else:
        raise ValueError(f"split must be 'test' or 'dev', got {split!r}")
    return {key: float(value) for key, value in results[0].items()}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the JSON config the model was trained with")
    parser.add_argument("--checkpoint", required=True, help="Lightning .ckpt file or save_pretrained folder")
    parser.add_argument("--split", default="test", choices=["test", "dev"])
    parser.add_argument("--output", type=Path, help="write the metrics here as JSON")
    parser.add_argument(
        "--memory-removed", action="store_true", help="reset the memory before every segment (eval.reset_every_segment)"
    )
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config entries to set")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, float]:
    args = parse_args(argv)
    overrides = [*args.override, *(["eval.reset_every_segment=true"] if args.memory_removed else [])]
    metrics = evaluate(load_config(args.config, overrides), args.checkpoint, args.split)
    release_process_group()
    print(json.dumps(metrics, indent=2))
    if args.output:
        args.output.write_text(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
