"""Train a model on a task from a JSON config.

    python -m experiment.scripts.train --config experiment/configs/sorting/memoria_tiny.json \\
        [--override key.sub=value ...]

The config's ``"task"`` names a module ``experiment.tasks.<task>`` exposing ``build(config) -> (LightningModule,
LightningDataModule)``. ``--override`` sets any config entry by its dotted path; the value is read as JSON when
it parses (numbers, true/false, null, lists, objects) and as a string otherwise.

A config may extend others and state only what it changes (``"extends"``, ``"unset"``: :mod:`experiment.config`);
``--print-config`` prints the resolved config and exits.

Writes to ``output_dir``: ``config.json`` (resolved, after overrides), CSV logs (``csv/``), TensorBoard logs
(``tensorboard/``), Lightning checkpoints with the memory state (``checkpoints/``), the final model as
``save_pretrained`` files (``model/``) and ``test_metrics.json``. wandb logging is added when the package is
installed and the config's ``"wandb"`` section is not ``false``.

The best checkpoint, the one tested after training, is picked by the config's ``"checkpoint"`` section:
``{"monitor": "val/bpc", "mode": "min"}`` (default ``val/accuracy``, ``max``). ``trainer.enable_progress_bar=false``
turns the progress bar off; ``progress_refresh_rate`` sets how often it redraws.

Resume: ``--resume CHECKPOINT`` (or ``"resume_from"`` in the config) continues a run from a Lightning checkpoint:
weights, optimiser, schedule, step counters and the memory state (the tasks' checkpoint hooks). Lightning restarts
the data loader at the beginning of the interrupted epoch.

Multi-GPU: set ``trainer.devices`` to the number of GPUs (``--override trainer.devices=8``); Lightning then uses
DDP with ``find_unused_parameters`` (the memory layers are idle on an example's first segment). ``batch_size``
is per process. ``"num_threads"`` caps torch's CPU threads (useful when several runs share a CPU).
"""

import argparse
import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from transformers.utils import logging as transformers_logging

from experiment.config import load_config, parse_override, set_by_path  # noqa: F401  (the scripts' config API)
from experiment.scripts.console import ParameterSummary, quiet_lightning


def build_task(config: dict[str, Any]) -> tuple[L.LightningModule, L.LightningDataModule]:
    """Import ``experiment.tasks.<config["task"]>`` and call its ``build(config)``."""
    return importlib.import_module(f"experiment.tasks.{config['task']}").build(config)


def make_loggers(config: dict[str, Any], output_dir: Path) -> list:
    loggers = [CSVLogger(output_dir, name="csv"), TensorBoardLogger(output_dir, name="tensorboard")]
    wandb_config = config.get("wandb", {})
    if wandb_config is not False and importlib.util.find_spec("wandb") is not None:
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(save_dir=str(output_dir), **(wandb_config or {})))
    return loggers


def make_checkpoint_callback(config: dict[str, Any], output_dir: Path) -> ModelCheckpoint:
    """Keeps the best and the last checkpoint under ``output_dir/checkpoints``.

    The config's ``"checkpoint"`` section picks the metric: ``{"monitor": "val/bpc", "mode": "min"}``
    (default ``val/accuracy``, ``max``); any other key in it goes to ``ModelCheckpoint``.
    """
    settings = {"monitor": "val/accuracy", "mode": "max", **config.get("checkpoint", {})}
    monitor = settings["monitor"]
    metric_name = monitor.rsplit("/", 1)[-1]
    return ModelCheckpoint(
        **{
            "dirpath": output_dir / "checkpoints",
            "filename": f"step{{step}}-{metric_name}{{{monitor}:.4f}}",
            "auto_insert_metric_name": False,
            "save_last": True,
            **settings,
        }
    )


def make_trainer(config: dict[str, Any], output_dir: Path, loggers: Optional[list] = None) -> L.Trainer:
    """A Trainer from the config's ``"trainer"`` section (any ``lightning.Trainer`` argument)."""
    arguments = {"accelerator": "auto", "devices": 1, "log_every_n_steps": 10, **config.get("trainer", {})}
    devices = arguments["devices"]
    if "strategy" not in arguments and (devices == -1 or (isinstance(devices, int) and devices > 1)):
        arguments["strategy"] = "ddp_find_unused_parameters_true"
    quiet_lightning()
    callbacks: list = [make_checkpoint_callback(config, output_dir)]
    if arguments.get("enable_model_summary", True):  # Lightning refuses a summary callback when it is off
        callbacks.append(ParameterSummary())
    if arguments.get("enable_progress_bar", True):  # Lightning refuses a progress-bar callback when it is off
        callbacks.append(TQDMProgressBar(refresh_rate=config.get("progress_refresh_rate", 1)))
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return L.Trainer(
        default_root_dir=output_dir, logger=loggers or False, callbacks=callbacks, deterministic=False, **arguments
    )


def apply_process_settings(config: dict[str, Any]) -> None:
    """Seed every generator and cap torch's CPU threads as the config says (``seed``, ``num_threads``)."""
    L.seed_everything(config.get("seed", 42), workers=True)
    if config.get("num_threads"):
        # on a shared CPU torch's default pool spin-waits for busy cores: one thread per run is many times faster
        torch.set_num_threads(config["num_threads"])


def train(config: dict[str, Any]) -> dict[str, float]:
    """Fit, save the model, test the best checkpoint; returns the test metrics."""
    output_dir = Path(config["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.json").write_text(json.dumps(config, indent=2))
    apply_process_settings(config)
    task, data = build_task(config)
    trainer = make_trainer(config, output_dir, make_loggers(config, output_dir))
    resume = config.get("resume_from")
    # our checkpoints carry the memory state (plain tensors and dicts), so they are loaded with weights_only=False
    trainer.fit(task, datamodule=data, ckpt_path=resume, weights_only=False if resume else None)
    if trainer.is_global_zero:
        segment_length = config.get("segment_length") or config.get("data", {}).get("segment_length")
        if segment_length:  # generate() then reads a text in the segments the model was trained on
            task.model.config.segment_length = segment_length
        transformers_logging.disable_progress_bar()  # a bar for writing one local file
        try:
            task.model.save_pretrained(output_dir / "model")
        finally:
            transformers_logging.enable_progress_bar()
    metrics: dict[str, float] = {}
    if config.get("test_after_fit", True):
        best = trainer.checkpoint_callback.best_model_path or None
        results = trainer.test(task, datamodule=data, ckpt_path=best, weights_only=False)
        metrics = {key: float(value) for key, value in results[0].items()} if results else {}
        metrics["checkpoint"] = best
        if trainer.is_global_zero:
            (output_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def release_process_group() -> None:
    """Under DDP, wait for every rank and destroy the process group before the interpreter exits: gloo's threads left
    to the exit can abort a rank that has finished its work (SIGABRT, "terminate called without an active
    exception"), which a caller sees as a failed run."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", required=True, help="JSON config, e.g. experiment/configs/sorting/memoria_tiny.json"
    )
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config entries to set")
    parser.add_argument("--resume", metavar="CHECKPOINT", help="continue from a Lightning checkpoint (e.g. last.ckpt)")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config (extends and overrides applied) and exit"
    )
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, float]:
    args = parse_args(argv)
    config = load_config(args.config, args.override)
    if args.resume:
        config["resume_from"] = args.resume
    if args.print_config:
        print(json.dumps(config, indent=2))
        return {}
    metrics = train(config)
    release_process_group()
    return metrics


if __name__ == "__main__":
    main()
