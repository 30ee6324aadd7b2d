"""Long-document classification: documents cut into segments, fed segment by segment, memory carried along.

Config sections read here (see experiment/docs/classification.md):

- ``model``: ``model_type`` (``memoria_bert``, ``memoria_roberta``, ``bert``, ``roberta``, ``longformer``,
  ``big_bird``), the config fields, optional ``pretrained`` folder.
- ``data``: ``dataset`` = ``long_range`` (generated; sizes, seed) or ``hyperpartisan`` (``articles``,
  ``ground_truth``, ``splits`` paths, ``tokenizer`` folder or hub name, ``allow_split_overlap``).
- top level, as in every task: ``segment_length`` (with [CLS]/[SEP]), ``batch_size``, ``eval_batch_size``; and
  ``max_segments`` (1 = the truncated baseline, null = all), ``train_loss`` (``segment_mean``: cross-entropy averaged
  over a document's segments, ``last``, ``logit_mean``) and ``prediction`` (``last``: the last segment's logits,
  ``logit_mean``: logits averaged over segments).
- ``optimizer``: ``learning_rate``, ``warmup_rate``, ``weight_decay`` (AdamW, linear warm-up and decay).

A model with ``reset_memory()`` is reset before every batch: the memory holds one batch of documents.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from experiment.data import hyperpartisan
from experiment.data.long_range import CLS_ID, PAD_ID, SEP_ID, LongRangeConfig, generate_documents
from experiment.tasks.base import SegmentedTask, optimizer_options, reset_model_memory

TRAIN_LOSSES = ("segment_mean", "last", "logit_mean")
PREDICTIONS = ("last", "logit_mean")


# ----------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SpecialTokens:
    cls_id: int = CLS_ID
    sep_id: int = SEP_ID
    pad_id: int = PAD_ID


def segment_document(
    token_ids: Sequence[int], segment_length: int, max_segments: Optional[int], special: SpecialTokens
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cuts a document (ids without special tokens) into ``[CLS] chunk [SEP]`` segments.

    Returns input_ids and attention_mask, both [NumSegments, SegmentLength]; the last segment is padded. Only the
    first ``max_segments`` segments are kept (None: all). An empty document gives one ``[CLS] [SEP]`` segment.
    """
    content = segment_length - 2
    if content < 1:
        raise ValueError(f"segment_length must be at least 3, got {segment_length}")
    chunks = [list(token_ids[i : i + content]) for i in range(0, len(token_ids), content)] or [[]]
    chunks = chunks[:max_segments] if max_segments else chunks
    input_ids = torch.full((len(chunks), segment_length), special.pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(chunks), segment_length), dtype=torch.long)
    for row, chunk in enumerate(chunks):
        ids = [special.cls_id, *chunk, special.sep_id]
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


class SegmentedDataset(torch.utils.data.Dataset):
    """Documents as segment tensors: item = (input_ids [S, L], attention_mask [S, L], label)."""

    def __init__(
        self,
        documents: Sequence[Tuple[Sequence[int], int]],
        segment_length: int,
        max_segments: Optional[int],
        special: SpecialTokens,
    ) -> None:
        self.items = [
            (*segment_document(ids, segment_length, max_segments, special), label) for ids, label in documents
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor, int]:
        return self.items[index]


def collate_segments(
    items: List[Tuple[torch.Tensor, torch.Tensor, int]], pad_id: int = PAD_ID
) -> Dict[str, torch.Tensor]:
    """Pads documents to the batch's largest segment count.

    Returns input_ids and attention_mask [Batch, Segments, Length], segment_mask [Batch, Segments] (True for real
    segments) and labels [Batch].
    """
    batch, length = len(items), items[0][0].size(1)
    segments = max(ids.size(0) for ids, _, _ in items)
    input_ids = torch.full((batch, segments, length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, segments, length), dtype=torch.long)
    segment_mask = torch.zeros((batch, segments), dtype=torch.bool)
    for row, (ids, mask, _) in enumerate(items):
        input_ids[row, : ids.size(0)] = ids
        attention_mask[row, : ids.size(0)] = mask
        segment_mask[row, : ids.size(0)] = True
    # A padded segment still gets [CLS] attended so that every row of a step has one real position.
    attention_mask[:, :, 0] = 1
    labels = torch.tensor([label for _, _, label in items], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "segment_mask": segment_mask, "labels": labels}


def _long_range_documents(data: Dict[str, Any]) -> Dict[str, List[Tuple[List[int], int]]]:
    fields = {k: data[k] for k in LongRangeConfig.__dataclass_fields__ if k in data}
    config = LongRangeConfig(**fields)
    seed = data.get("seed", 0)
    sizes = {"train": data.get("num_train", 2000), "dev": data.get("num_dev", 200), "test": data.get("num_test", 400)}
    # Distinct seeds per split keep the splits disjoint draws.
    return {name: generate_documents(config, size, seed * 3 + i) for i, (name, size) in enumerate(sizes.items())}


def _hyperpartisan_documents(data: Dict[str, Any]) -> Tuple[Dict[str, List[Tuple[List[int], int]]], SpecialTokens]:
    from transformers import AutoTokenizer

    if data.get("articles"):
        articles = hyperpartisan.load_articles(data["articles"], data["ground_truth"])
    else:
        articles = hyperpartisan.load_articles_from_hub()
    splits = hyperpartisan.split_articles(articles, data["splits"], data.get("allow_split_overlap", False))
    tokenizer = AutoTokenizer.from_pretrained(data["tokenizer"])
    special = SpecialTokens(tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    include_title = data.get("include_title", True)
    documents = {
        name: [(tokenizer(a.full_text(include_title), add_special_tokens=False)["input_ids"], a.label) for a in split]
        for name, split in splits.items()
    }
    return documents, special


class ClassificationDataModule(L.LightningDataModule):
    """Train / dev / test loaders of segmented documents."""

    def __init__(self, config: Dict[str, Any]) -> None:
        super().__init__()
        self.data_config = config["data"]
        self.config = config
        self.datasets: Dict[str, SegmentedDataset] = {}
        self.special = SpecialTokens()

    def setup(self, stage: Optional[str] = None) -> None:
        if self.datasets:
            return
        kind = self.data_config["dataset"]
        if kind == "long_range":
            documents = _long_range_documents(self.data_config)
        elif kind == "hyperpartisan":
            documents, self.special = _hyperpartisan_documents(self.data_config)
        else:
            raise ValueError(f"unknown dataset {kind!r}; expected 'long_range' or 'hyperpartisan'")
        length = self.config.get("segment_length", 512)
        max_segments = self.config.get("max_segments")
        self.datasets = {
            name: SegmentedDataset(docs, length, max_segments, self.special) for name, docs in documents.items()
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        key = "batch_size" if shuffle else "eval_batch_size"
        batch_size = self.config.get(key, self.config.get("batch_size", 8))
        pad = self.special.pad_id
        dataset = self.datasets[split]
        sampler = None
        if not shuffle and torch.distributed.is_available() and torch.distributed.is_initialized():
            # Lightning's default sampler pads every rank to the same length with repeated documents, which would
            # count those documents twice in the aggregated F1; this one gives each document to exactly one rank.
            world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
            if world > 1:
                sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(
            dataset,
            batch_size,
            shuffle=shuffle,
            sampler=sampler,
            collate_fn=lambda items: collate_segments(items, pad),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


# -------------------------------------------------------------------------------------------------- metrics


def macro_f1(predictions: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    """Unweighted mean of F1 over the classes that occur in predictions or labels (predictions, labels: [Batch]).

    The same definition as the logged ``torchmetrics`` macro F1 (and scikit-learn's default): a class absent from
    both is left out of the mean.
    """
    scores = []
    for c in range(num_labels):
        tp = ((predictions == c) & (labels == c)).sum().item()
        fp = ((predictions == c) & (labels != c)).sum().item()
        fn = ((predictions != c) & (labels == c)).sum().item()
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return (predictions == labels).float().mean().item()


# ----------------------------------------------------------------------------------------------------- task


def segment_logits(model: torch.nn.Module, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Runs the model over every segment in order; returns logits [Batch, Segments, NumLabels].

    Memory models are reset first and carry memory from one segment to the next.
    """
    reset_model_memory(model)
    logits = []
    for step in range(batch["input_ids"].size(1)):
        output = model(input_ids=batch["input_ids"][:, step], attention_mask=batch["attention_mask"][:, step])
        logits.append(output.logits)
    return torch.stack(logits, dim=1)


def last_segment(values: torch.Tensor, segment_mask: torch.Tensor) -> torch.Tensor:
    """values [Batch, Segments, ...] at each row's last real segment -> [Batch, ...]."""
    last = segment_mask.long().sum(dim=1) - 1
    return values[torch.arange(values.size(0), device=values.device), last]


def masked_segment_mean(values: torch.Tensor, segment_mask: torch.Tensor) -> torch.Tensor:
    """Mean of values [Batch, Segments, ...] over each row's real segments -> [Batch, ...]."""
    mask = segment_mask.to(values.dtype).view(*segment_mask.shape, *([1] * (values.dim() - 2)))
    return (values * mask).sum(dim=1) / mask.sum(dim=1)


def document_loss(logits: torch.Tensor, labels: torch.Tensor, segment_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Training loss from logits [Batch, Segments, NumLabels]; see the module docstring for the modes."""
    if mode == "segment_mean":
        per_segment = F.cross_entropy(logits.transpose(1, 2), labels[:, None].expand_as(segment_mask), reduction="none")
        return masked_segment_mean(per_segment, segment_mask).mean()
    if mode == "last":
        return F.cross_entropy(last_segment(logits, segment_mask), labels)
    if mode == "logit_mean":
        return F.cross_entropy(masked_segment_mean(logits, segment_mask), labels)
    raise ValueError(f"unknown train_loss {mode!r}; expected one of {TRAIN_LOSSES}")


def document_logits(logits: torch.Tensor, segment_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Document logits [Batch, NumLabels] for prediction."""
    if mode == "last":
        return last_segment(logits, segment_mask)
    if mode == "logit_mean":
        return masked_segment_mean(logits, segment_mask)
    raise ValueError(f"unknown prediction {mode!r}; expected one of {PREDICTIONS}")


class ClassificationTask(SegmentedTask):
    """Segment-wise document classification (macro F1 and accuracy on dev and test).

    Reuses :class:`~experiment.tasks.base.SegmentedTask` for the model, optimiser and checkpointed memory state;
    the steps differ: one label per document, logits per segment.
    """

    def __init__(
        self,
        model_config: Dict[str, Any],
        segment_length: int,
        learning_rate: float = 3e-5,
        warmup_rate: float = 0.0,
        weight_decay: float = 0.0,
        train_loss: str = "segment_mean",
        prediction: str = "last",
    ) -> None:
        super().__init__(model_config, segment_length, learning_rate, warmup_rate, weight_decay)
        for value, allowed in ((train_loss, TRAIN_LOSSES), (prediction, PREDICTIONS)):
            if value not in allowed:
                raise ValueError(f"unknown segment mode {value!r}; expected one of {allowed}")
        self.train_loss_mode = train_loss
        self.prediction_mode = prediction
        self.num_labels = self.model.config.num_labels
        # Metric objects keep counts per rank and sum them across ranks when Lightning computes them at epoch end,
        # so under DDP the logged values are those of all evaluated documents.
        self.eval_metrics = nn.ModuleDict(
            {
                stage: MetricCollection(
                    {
                        "f1": MulticlassF1Score(self.num_labels, average="macro"),
                        "accuracy": MulticlassAccuracy(self.num_labels, average="micro"),
                    },
                    prefix=f"{stage}/",
                )
                for stage in ("val", "test")
            }
        )
        self.eval_losses = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    def training_step(self, batch: Dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        logits = segment_logits(self.model, batch)
        loss = document_loss(logits, batch["labels"], batch["segment_mask"], self.train_loss_mode)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["labels"].size(0))
        return loss

    def _evaluate(self, batch: Dict[str, torch.Tensor], stage: str) -> None:
        """Updates the stage's metrics with a batch of documents; Lightning computes, logs and resets them at the
        end of the epoch (``{stage}/loss``: mean cross-entropy per document; ``/f1``: macro F1 and ``/accuracy``,
        both fractions in [0, 1])."""
        logits = document_logits(segment_logits(self.model, batch), batch["segment_mask"], self.prediction_mode)
        self.eval_losses[stage].update(F.cross_entropy(logits, batch["labels"], reduction="none"))
        self.eval_metrics[stage].update(logits.argmax(-1), batch["labels"])
        self.log(f"{stage}/loss", self.eval_losses[stage], on_step=False, on_epoch=True)
        self.log_dict(self.eval_metrics[stage], on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: Dict[str, torch.Tensor], batch_index: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Dict[str, torch.Tensor], batch_index: int) -> None:
        self._evaluate(batch, "test")


def build(config: Dict[str, Any]) -> Tuple[ClassificationTask, ClassificationDataModule]:
    """The task's entry point for experiment.scripts.train / eval."""
    optimizer = optimizer_options(config)
    task = ClassificationTask(
        config["model"],
        config.get("segment_length", 512),
        learning_rate=optimizer.get("learning_rate", 3e-5),
        warmup_rate=optimizer.get("warmup_rate", 0.0),
        weight_decay=optimizer.get("weight_decay", 0.0),
        train_loss=config.get("train_loss", "segment_mean"),
        prediction=config.get("prediction", "last"),
    )
    if config["data"]["dataset"] == "long_range" and task.model.config.pad_token_id != PAD_ID:
        raise ValueError(f"the long_range set pads with id {PAD_ID}: set model.pad_token_id to {PAD_ID}")
    return task, ClassificationDataModule(config)
