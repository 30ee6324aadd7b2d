"""The far-recall task: data module over generated examples, and ``build(config)`` for the scripts.

Config sections used (see ``experiment/configs/far_recall/*.json``)::

    "data": {"num_labels": 10, "vocab_size": 32, "distance": 3, "evidence_fraction": 0.5,
             "num_examples": {"train": N, "dev": N, "test": N}, "seed": S}
    "model": {...}, "segment_length": 32, "batch_size": 32, "eval_batch_size": 100,
    "optimizer": {"learning_rate": 1e-3, "warmup_rate": 0.06, "weight_decay": 0.0}

The examples' segment length is the config's ``segment_length``, so the model walks them one segment at a time and
the ``[SEP]`` token that asks for the label comes alone in the last segment. Logged ``accuracy`` is the accuracy of
the predicted label (the one labelled token of each example).
"""

from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from experiment.data.far_recall import FarRecallConfig, FarRecallDataset
from experiment.tasks.base import SegmentedTask, segmented_task

SPLITS = ("train", "dev", "test")


class FarRecallDataModule(L.LightningDataModule):
    """Train/dev/test loaders over examples generated in memory (each split from its own seed)."""

    def __init__(self, data_config: dict[str, Any], segment_length: int, batch_size: int, eval_batch_size: int) -> None:
        super().__init__()
        fields = ("num_labels", "vocab_size", "distance", "evidence_fraction")
        self.set_config = FarRecallConfig(
            segment_length=segment_length, **{k: data_config[k] for k in fields if k in data_config}
        )
        self.counts = data_config["num_examples"]
        self.seed = data_config.get("seed", 0)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.datasets: dict[str, FarRecallDataset] = {}

    def setup(self, stage: str) -> None:
        for offset, split in enumerate(SPLITS):
            if split not in self.datasets:
                # distinct seeds per split: no test example is a copy of a training one by construction of the RNG
                self.datasets[split] = FarRecallDataset(self.set_config, self.counts[split], 1000 * self.seed + offset)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["dev"], batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["test"], batch_size=self.eval_batch_size)


def build(config: dict[str, Any]) -> tuple[SegmentedTask, FarRecallDataModule]:
    """The Lightning module and data module a far-recall config describes."""
    model_config = dict(config["model"])
    vocab_size = config["data"].get("vocab_size", FarRecallConfig.vocab_size)
    if model_config.setdefault("vocab_size", vocab_size) < vocab_size:
        raise ValueError(f"model.vocab_size must be at least data.vocab_size ({vocab_size})")
    task = segmented_task(config, model_config, learning_rate=1e-3)
    batch_size = config["batch_size"]
    data = FarRecallDataModule(
        config["data"], config["segment_length"], batch_size, config.get("eval_batch_size", batch_size)
    )
    return task, data
