"""The sorting task: data module over the generated split files, and ``build(config)`` for the scripts.

Config sections used (see ``experiment/configs/sorting/*.json``)::

    "data": {"dir": ..., "sequence_length": L, "num_examples": {"train": N, "dev": N, "test": N},
             "seed": S, "generate": true, "num_workers": 0, "tie_rule": "first_occurrence" | "symbol"}
    "model": {...}, "segment_length": 256, "batch_size": 32, "eval_batch_size": 32,
    "optimizer": {"learning_rate": 2e-4, "warmup_rate": 0.06, "weight_decay": 0.0}

With ``"generate": true`` missing split files are generated (once, on the first process) before training.
``dir`` may name the sequence length as ``{sequence_length}`` (``"data/sorting/L{sequence_length}"``), so that a
length trend changes one entry: ``--override data.sequence_length=4096``.
"""

from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from experiment.data.sorting import DEFAULT_TIE_RULE, SPLITS, VOCAB_SIZE, SortingDataset, write_sorting_file
from experiment.tasks.base import SegmentedTask, segmented_task


class SortingDataModule(L.LightningDataModule):
    """Train/dev/test loaders over ``<dir>/{train,dev,test}.bin``."""

    def __init__(self, data_config: dict[str, Any], batch_size: int, eval_batch_size: int) -> None:
        super().__init__()
        self.config = data_config
        self.directory = Path(data_config["dir"].format(sequence_length=data_config["sequence_length"]))
        self.tie_rule = data_config.get("tie_rule", DEFAULT_TIE_RULE)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.datasets: dict[str, SortingDataset] = {}

    def path(self, split: str) -> Path:
        return self.directory / f"{split}.bin"

    def prepare_data(self) -> None:
        if not self.config.get("generate", False):
            return
        for split in SPLITS:
            if not self.path(split).exists():
                count = self.config["num_examples"][split]
                write_sorting_file(
                    self.path(split),
                    count,
                    self.config["sequence_length"],
                    self.config.get("seed", 42),
                    split,
                    tie_rule=self.tie_rule,
                )

    def setup(self, stage: str) -> None:
        for split in SPLITS:
            if split not in self.datasets and self.path(split).exists():
                self.datasets[split] = SortingDataset(self.path(split), self.config["sequence_length"], self.tie_rule)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise FileNotFoundError(
                f"no {split} split at {self.path(split)}; set data.generate or run sorting_generate"
            )
        workers = self.config.get("num_workers", 0)
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)


def build(config: dict[str, Any]) -> tuple[SegmentedTask, SortingDataModule]:
    """The Lightning module and data module a sorting config describes."""
    model_config = dict(config["model"])
    if model_config.setdefault("vocab_size", VOCAB_SIZE) < VOCAB_SIZE:
        raise ValueError(f"model.vocab_size must be at least {VOCAB_SIZE} (20 symbols and the separator)")
    task = segmented_task(config, model_config, learning_rate=2e-4)
    batch_size = config["batch_size"]
    data = SortingDataModule(config["data"], batch_size, config.get("eval_batch_size", batch_size))
    return task, data
