"""Pieces shared by every task: walking a long example segment by segment, and the Lightning module that
trains a registered model on labelled tokens of such examples.

A batch holds ``input_ids`` [Batch, Length] and ``labels`` [Batch, Length], the labels already shifted
(``labels[t]`` is the token to predict at position ``t``; -100 where nothing is predicted). The example is cut
into segments of ``segment_length`` tokens; the model carries its memory from one segment to the next through
the keyword its registry entry names (``state_argument``) and is reset between examples (each batch holds
whole examples, so memory is reset at the start of every batch).
"""

import contextlib
from dataclasses import dataclass
from typing import Any, Optional

import lightning as L
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from experiment.models import MODEL_REGISTRY, build_model, model_spec
from memoria import Memoria

IGNORE_INDEX = -100
ENGRAM_TYPES = ("working", "shortterm", "longterm")


@dataclass
class SegmentStatistics:
    """Sums over the labelled tokens of a batch: ``loss`` (cross-entropy sum, differentiable when trained),
    ``correct`` (argmax hits), ``num_targets``, and ``exact`` (examples whose every labelled token is right);
    ``auxiliary``: the sum of the model's own ``auxiliary_loss`` (e.g. the ∞-former's KL term) over the segments
    that hold labels, 0 for a model without one."""

    loss: torch.Tensor
    correct: torch.Tensor
    num_targets: torch.Tensor
    exact: torch.Tensor
    auxiliary: torch.Tensor


def optimizer_options(config: dict[str, Any]) -> dict[str, float]:
    """The config's ``"optimizer"`` section (``learning_rate``, ``warmup_rate``, ``weight_decay``; only the keys
    given). The older spelling, an ``"optimization"`` section with ``warmup_ratio``, is still read."""
    if "optimizer" in config and "optimization" in config:
        raise ValueError('config has both "optimizer" and "optimization" sections; keep "optimizer"')
    options = dict(config.get("optimizer", config.get("optimization", {})))
    if "warmup_ratio" in options:
        if "warmup_rate" in options:
            raise ValueError("optimizer section has both warmup_rate and warmup_ratio; keep warmup_rate")
        options["warmup_rate"] = options.pop("warmup_ratio")
    return options


def reset_model_memory(model: PreTrainedModel) -> None:
    """Forget what the model remembered (a model with no memory is left alone)."""
    if hasattr(model, "reset_memory"):
        model.reset_memory()


class _Totals:
    """Running sums of :class:`SegmentStatistics` over the labelled segments of a batch."""

    def __init__(self, input_ids: torch.Tensor) -> None:
        device = input_ids.device
        self.loss = torch.zeros((), device=device)
        self.auxiliary = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.wrong_per_example = torch.zeros(input_ids.size(0), dtype=torch.long, device=device)

    def add(self, output: Any, labels: torch.Tensor) -> None:
        """A model output over ``labels`` [Batch, S] (its logits [Batch, S, Vocab])."""
        labelled = labels != IGNORE_INDEX
        if getattr(output, "auxiliary_loss", None) is not None:
            self.auxiliary = self.auxiliary + output.auxiliary_loss.float()
        logits = output.logits.float()  # (B, S, V)
        flat = logits.reshape(-1, logits.size(-1))
        self.loss = self.loss + F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
        hits = (logits.argmax(-1) == labels) & labelled
        self.correct = self.correct + hits.sum()
        self.wrong_per_example += (labelled & ~hits).sum(dim=1)

    def statistics(self, labels: torch.Tensor) -> SegmentStatistics:
        num_targets = (labels != IGNORE_INDEX).sum()
        exact = (self.wrong_per_example == 0).sum()
        return SegmentStatistics(self.loss, self.correct, num_targets, exact, self.auxiliary)


def memoria_of(model: torch.nn.Module) -> Optional[Memoria]:
    """The ``memoria.Memoria`` a model (or one of its modules) holds, or None for a model without one."""
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, Memoria):
                return value
    return None


def engram_counts(memory: Memoria) -> dict[str, float]:
    """Engrams alive per type, averaged over the batch rows: ``{"working": .., "shortterm": .., "longterm": ..}``."""
    engrams = memory.engrams
    masks = (engrams.working_memory_mask, engrams.shortterm_memory_mask, engrams.longterm_memory_mask)
    return {
        name: float(mask.sum(dim=1).float().mean()) if mask.numel() else 0.0 for name, mask in zip(ENGRAM_TYPES, masks)
    }


def run_segments(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    segment_length: int,
    train: bool,
    reset_every_segment: bool = False,
    engram_log: Optional[list[dict[str, float]]] = None,
) -> SegmentStatistics:
    """Walk a batch of whole examples segment by segment, carrying memory, and sum the statistics.

    Args:
        input_ids: [Batch, Length]; labels: [Batch, Length], shifted, -100 where nothing is predicted.
        segment_length: tokens per segment (the last segment may be shorter).
        train: build the autograd graph for segments that hold labels. Segments without labels run under
            ``no_grad``: no loss reaches them, and the carried memory is detached; except, for a model whose config
            sets ``write_gradient_segments`` K > 0 (its engrams carry the gradient of a later loss back to the write
            that made them, K writes back), the K segments before a labelled one, which then build the graph too;
            and, when ``train``, for a model with ``unroll_segments`` K > 0 (and an ``unrolled()`` context), the
            walk runs inside that context and the K + 1 segments before a labelled one build the graph: the loss
            reaches their forward passes through the memory (one backward over the whole example).
        reset_every_segment: empty the memory before every segment (the same weights with the memory removed).
        engram_log: when given (and the model holds a ``Memoria``), gets per segment, after it is read, the engrams
            alive per type (:func:`engram_counts`), one entry per segment of the examples.

    A model registered with ``whole_example`` (the peers from PyPI) gets the whole example in one call and walks
    its segments itself, with its memory's gradient across them when ``train``.
    """
    if input_ids.shape != labels.shape:
        raise ValueError(f"input_ids {list(input_ids.shape)} and labels {list(labels.shape)} differ in shape")
    spec = model_spec(model)
    if spec.whole_example:
        if reset_every_segment:
            raise ValueError(f"{model.config.model_type} reads whole examples: its memory cannot be reset per segment")
        with torch.set_grad_enabled(train):
            output = model(input_ids)  # it walks the segments itself (its config's segment_length)
        totals = _Totals(input_ids)
        totals.add(output, labels)
        return totals.statistics(labels)
    memory = memoria_of(model) if engram_log is not None else None
    reset_model_memory(model)
    totals = _Totals(input_ids)
    reach = int(getattr(model.config, "write_gradient_segments", 0) or 0)  # segments a later loss reaches back
    unroll = int(getattr(model.config, "unroll_segments", 0) or 0) if train and hasattr(model, "unrolled") else 0
    if unroll:  # the write at segment s reads s - 1's hidden states: a labelled segment reaches K + 1 back
        reach = max(reach, unroll + 1)
    state_argument = spec.state_argument
    state: Optional[Any] = None
    # a segment builds the graph when a labelled segment comes within the next `reach`
    with model.unrolled() if unroll else contextlib.nullcontext():
        starts = range(0, input_ids.size(1), segment_length)
        has_labels = [bool((labels[:, start : start + segment_length] != IGNORE_INDEX).any()) for start in starts]
        for index, start in enumerate(starts):
            segment_labels = labels[:, start : start + segment_length]
            labelled = segment_labels != IGNORE_INDEX
            if (state_argument is None or reset_every_segment) and not labelled.any() and memory is None:
                continue  # nothing of this segment would reach a labelled one
            if reset_every_segment:
                reset_model_memory(model)
                state = None
            extra = {} if state_argument is None else {state_argument: state}
            with torch.set_grad_enabled(train and any(has_labels[index : index + reach + 1])):
                output = model(input_ids[:, start : start + segment_length], **extra)
            if state_argument is not None:
                state = getattr(output, state_argument)
            if memory is not None:
                engram_log.append(engram_counts(memory))
            if labelled.any():
                totals.add(output, segment_labels)
    return totals.statistics(labels)


def segmented_task(config: dict[str, Any], model_config: dict[str, Any], learning_rate: float) -> "SegmentedTask":
    """The :class:`SegmentedTask` a config describes: its ``segment_length`` and optimizer section (``learning_rate``
    is the default when the section names none)."""
    optimizer = optimizer_options(config)
    spec = MODEL_REGISTRY.get(model_config.get("model_type"))
    if spec is not None and spec.whole_example:  # it walks the segments itself: the task's segments
        if model_config.setdefault("segment_length", config["segment_length"]) != config["segment_length"]:
            raise ValueError(
                f"model.segment_length ({model_config['segment_length']}) differs from segment_length "
                f"({config['segment_length']})"
            )
    return SegmentedTask(
        model_config,
        segment_length=config["segment_length"],
        learning_rate=optimizer.get("learning_rate", learning_rate),
        warmup_rate=optimizer.get("warmup_rate", 0.06),
        weight_decay=optimizer.get("weight_decay", 0.0),
        reset_every_segment=bool(config.get("eval", {}).get("reset_every_segment", False)),
    )


class SegmentedTask(L.LightningModule):
    """Train and evaluate a registered model on labelled tokens of long examples walked in segments.

    Args:
        model_config: the config's ``"model"`` section (see :func:`experiment.models.build_model`).
        segment_length: tokens per segment.
        learning_rate, warmup_rate (fraction of all steps), weight_decay: AdamW with linear warm-up and decay.
        reset_every_segment: evaluate (val / test) with the memory emptied before every segment (the config's
            ``"eval": {"reset_every_segment": true}``); training is unchanged.
    Logged: ``{train,val,test}/loss`` (mean cross-entropy over labelled tokens), ``/accuracy`` (token accuracy over
    labelled tokens) and ``/exact_match`` (fraction of examples with every labelled token right); for a model with an
    ``auxiliary_loss`` also ``/auxiliary_loss``, which the optimised loss adds to the cross-entropy. For a model that
    holds a ``Memoria``, evaluation also logs the engrams alive per type after each segment,
    ``{val,test}/engrams/{working,shortterm,longterm}/segment_{i}`` (means over examples).
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        segment_length: int,
        learning_rate: float = 2e-4,
        warmup_rate: float = 0.06,
        weight_decay: float = 0.0,
        reset_every_segment: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(model_config)
        self.segment_length = segment_length
        self.reset_every_segment = reset_every_segment

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        reset = self.reset_every_segment and stage != "train"
        engram_log: Optional[list[dict[str, float]]] = None if stage == "train" else []
        stats = run_segments(
            self.model, batch["input_ids"], batch["labels"], self.segment_length, stage == "train", reset, engram_log
        )
        num_targets = stats.num_targets.clamp(min=1)
        loss = stats.loss / num_targets
        batch_size = batch["input_ids"].size(0)
        log = dict(sync_dist=stage != "train", on_step=stage == "train", on_epoch=True, prog_bar=True)
        self.log(f"{stage}/loss", loss, batch_size=int(num_targets), **log)
        self.log(f"{stage}/accuracy", stats.correct / num_targets, batch_size=int(num_targets), **log)
        self.log(f"{stage}/exact_match", stats.exact / batch_size, batch_size=batch_size, **{**log, "prog_bar": False})
        for index, counts in enumerate(engram_log or []):
            for kind, count in counts.items():
                self.log(
                    f"{stage}/engrams/{kind}/segment_{index}",
                    count,
                    batch_size=batch_size,
                    **{**log, "prog_bar": False},
                )
        if stats.auxiliary.requires_grad or bool(stats.auxiliary != 0):
            self.log(
                f"{stage}/auxiliary_loss", stats.auxiliary.detach(), batch_size=batch_size, **{**log, "prog_bar": False}
            )
            return loss + stats.auxiliary
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for name, parameter in self.model.named_parameters():
            (no_decay if parameter.dim() < 2 or "ln" in name else decay).append(parameter)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.learning_rate,
        )
        total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(total_steps * self.hparams.warmup_rate), total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The memory held at save time (the last batch's examples): lets a run be inspected or resumed exactly.
        if hasattr(self.model, "memory_state_dict"):
            checkpoint["memory_state"] = self.model.memory_state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "memory_state" in checkpoint and hasattr(self.model, "load_memory_state_dict"):
            self.model.load_memory_state_dict(checkpoint["memory_state"])
