"""Language modelling: a Lightning module that walks token streams segment by segment, and its data module.

Each training step is one segment of every batch row (see :mod:`experiment.data.lm_stream`): the memory a
model carries (its registry ``state_argument`` output, plus the ``Memoria`` engrams inside a Memoria
Transformer) goes from one step to the next. It is emptied when the data says a stream starts: for every row at
segment 0, for the flagged rows only at a new PG-19 book (:func:`forget_rows` and the model's
``reset_memory_rows``), and for every row each ``memory_reset_period`` training steps (the paper's periodic reset).
Evaluation walks the whole split in order with its own memory, starting empty, and reports the loss summed over
every predicted token exactly once: ``ppl`` (perplexity) and ``bpc`` (bits per token; bits per character for
byte-level data). Afterwards the training memory is put back (``"memory_around_eval": "keep"``, the default) or
left empty (``"reset"``, the authors' form: their task wipes the memory when evaluation starts and ends). With
``"eval": {"reset_every_segment": true}`` evaluation empties the memory before every segment: the same weights
with the memory removed, the row that shows what the memory adds.

Config (JSON), besides ``"task": "language_modeling"`` and the ``"model"`` section of the model registry::

    "data": {"dataset": "wikitext103" | "pg19" | "enwik8" | "bytes", "path": ..., "tokenizer": "bytes" | DIR,
             "segment_length": 150, "batch_size": 8, "eval_batch_size": 8, "pg19_fraction": 1.0,
             "cache_dir": null},
    "optimizer": {"learning_rate": 2e-4, "warmup_rate": 0.06, "weight_decay": 0.0},
    "memory_reset_period": 500, "memory_around_eval": "keep" | "reset",
    "eval": {"reset_every_segment": false}

The model's ``vocab_size`` defaults to the tokenizer's.
"""

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from experiment.data.language_modeling import load_tokenizer, read_documents
from experiment.data.lm_metrics import bits_per_character, perplexity, summed_nll
from experiment.data.lm_stream import (
    IGNORE_INDEX,
    StreamLayout,
    StreamSegmentDataset,
    layout_per_document,
    layout_single_stream,
)
from experiment.models import build_model, model_spec
from experiment.models.compressive_transformer import CompressiveMemories
from experiment.models.infinity_former_xl import InfinityMemory
from experiment.tasks.base import ENGRAM_TYPES, engram_counts, memoria_of, optimizer_options

# Memory states that are dataclasses are stored in checkpoints as plain dicts and rebuilt with these.
STATE_CLASSES = {"compressive_mems": CompressiveMemories, "infinity_memory": InfinityMemory}


class LanguageModelingDataModule(L.LightningDataModule):
    """Reads, tokenises (cached under ``cache_dir`` when given) and lays out each split as streams."""

    def __init__(self, data_config: Dict[str, Any], tokenizer: Any = None) -> None:
        super().__init__()
        self.config = dict(data_config)
        self.tokenizer = tokenizer or load_tokenizer(self.config.get("tokenizer", "bytes"))
        self.layouts: Dict[str, StreamLayout] = {}

    def _tokens(self, split: str) -> Tuple[list, bool]:
        config = self.config
        key = "|".join(str(config.get(k)) for k in ("dataset", "path", "tokenizer", "pg19_fraction", "seed"))
        cache = None
        if config.get("cache_dir"):
            digest = hashlib.sha1(f"{key}|{split}".encode()).hexdigest()[:16]
            cache = Path(config["cache_dir"]) / f"lm_tokens_{split}_{digest}.pt"
            if cache.is_file():
                saved = torch.load(cache)
                return saved["documents"], saved["reset_per_document"]
        texts, reset_per_document = read_documents(
            config["dataset"], config["path"], split, config.get("pg19_fraction", 1.0), config.get("seed", 0)
        )
        documents = [self.tokenizer.encode_ids(text).to(torch.int32) for text in texts]
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"documents": documents, "reset_per_document": reset_per_document}, cache)
        return documents, reset_per_document

    def layout(self, split: str) -> StreamLayout:
        """The (sharded, under data parallelism) stream layout of ``split``."""
        if split not in self.layouts:
            documents, reset_per_document = self._tokens(split)
            batch_size = self.config["batch_size"] if split == "train" else self.config.get("eval_batch_size", 8)
            make = layout_per_document if reset_per_document else layout_single_stream
            layout = make(documents, batch_size, self.config["segment_length"])
            if self.trainer is not None and self.trainer.world_size > 1:
                layout = layout.shard(self.trainer.global_rank, self.trainer.world_size)
            self.layouts[split] = layout
        return self.layouts[split]

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(StreamSegmentDataset(self.layout(split)), batch_size=None, shuffle=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


def forget_rows(state: Any, rows: torch.Tensor) -> Any:
    """The carried ``state`` with the batch rows ``rows`` (bool [Batch]) zeroed, the other rows copied as they are.

    ``state`` is a tensor [Batch, ...], or a list, tuple or dataclass of them (``memory_hidden_states``,
    Transformer-XL ``mems``, :class:`CompressiveMemories`), or None. The rows share one memory length with the
    others, so they cannot be made empty: zeros carry nothing of the stream that ended there.
    """
    if state is None:
        return None
    if dataclasses.is_dataclass(state):
        return type(state)(**{f.name: forget_rows(getattr(state, f.name), rows) for f in dataclasses.fields(state)})
    if isinstance(state, (list, tuple)):
        return type(state)(forget_rows(value, rows) for value in state)
    if rows.shape != (state.size(0),):
        raise ValueError(f"rows mask must be shaped [{state.size(0)}], got {list(rows.shape)}")
    mask = rows.to(state.device).view(-1, *([1] * (state.dim() - 1)))
    return state.masked_fill(mask, 0)


def _state_to_plain(state: Any) -> Any:
    if dataclasses.is_dataclass(state):
        return {name: _state_to_plain(value) for name, value in dataclasses.asdict(state).items()}
    if isinstance(state, (list, tuple)):
        return [_state_to_plain(value) for value in state]
    return state.detach().cpu() if torch.is_tensor(state) else state


class LanguageModelingModule(L.LightningModule):
    """Trains and evaluates any registered model on streamed segments."""

    def __init__(self, model: PreTrainedModel, config: Dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.state_argument = model_spec(model).state_argument
        self.memory_reset_period = int(config.get("memory_reset_period") or 0)
        self.memory_around_eval = config.get("memory_around_eval", "keep")
        if self.memory_around_eval not in ("keep", "reset"):
            raise ValueError(f'memory_around_eval must be "keep" or "reset", got {self.memory_around_eval!r}')
        self.reset_every_segment = bool(config.get("eval", {}).get("reset_every_segment", False))
        self.memory_state: Any = None
        self.memory_resets = 0  # how many times the training memory was emptied (tests and logs read it)
        self._saved_training_memory: Optional[Dict[str, Any]] = None
        self._eval_sums = torch.zeros(3, dtype=torch.float64)  # summed NLL, predicted tokens, argmax hits
        self._eval_memoria: Any = None  # the model's Memoria during evaluation (engram counts), if it has one
        self._engram_sums = torch.zeros(len(ENGRAM_TYPES), dtype=torch.float64)
        self._eval_segments = 0

    # -- memory ---------------------------------------------------------------------------------------------
    def reset_memory(self) -> None:
        """Empty every row's memory: the carried state and the model's own (``Memoria``) memory."""
        self.memory_state = None
        if hasattr(self.model, "reset_memory"):
            self.model.reset_memory()

    def _apply_reset_flags(self, reset: torch.Tensor) -> None:
        """``reset`` [Batch] bool: rows whose stream starts here (only PG-19 book boundaries flag some rows).

        When every row is flagged, everything is emptied. Otherwise only the flagged rows forget: their part of
        the carried state is zeroed (:func:`forget_rows`) and a model that owns memory (``Memoria``) empties
        those rows through its ``reset_memory_rows``; the other rows carry on unchanged.
        """
        if not bool(reset.any()):
            return
        if bool(reset.all()):
            self.reset_memory()
            return
        if hasattr(self.model, "reset_memory_rows"):
            self.model.reset_memory_rows(reset)
        self.memory_state = forget_rows(self.memory_state, reset)

    def _model_memory(self) -> Optional[Dict[str, Any]]:
        return self.model.memory_state_dict() if hasattr(self.model, "memory_state_dict") else None

    def _restore_model_memory(self, saved: Optional[Dict[str, Any]]) -> None:
        if saved is not None:
            self.model.load_memory_state_dict(saved)

    # -- one segment ----------------------------------------------------------------------------------------
    def forward_segment(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, Any]:
        """Run one segment with the carried memory; returns (summed NLL, predicted tokens, model output)."""
        self._apply_reset_flags(batch["reset"])
        kwargs: Dict[str, Any] = {}
        if self.state_argument is not None and self.memory_state is not None:
            kwargs[self.state_argument] = self.memory_state
        if self.model.config.model_type == "gpt2":
            kwargs["use_cache"] = False
        output = self.model(input_ids=batch["input_ids"], **kwargs)
        if self.state_argument is not None:
            self.memory_state = getattr(output, self.state_argument)
        labels = batch["labels"]
        return summed_nll(output.logits, labels), (labels != IGNORE_INDEX).sum(), output

    # -- training -------------------------------------------------------------------------------------------
    def periodic_reset_due(self, step: int) -> bool:
        """Whether the memory is emptied before training step ``step`` (every ``memory_reset_period`` steps)."""
        return bool(self.memory_reset_period) and step > 0 and step % self.memory_reset_period == 0

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.periodic_reset_due(self.global_step):
            self.reset_memory()
            self.memory_resets += 1
        nll, count, output = self.forward_segment(batch)
        loss = nll / count.clamp(min=1)
        reconstruction = getattr(output, "reconstruction_loss", None)
        if reconstruction is not None:
            loss = loss + self.model.config.reconstruction_loss_weight * reconstruction
            self.log("train/reconstruction_loss", reconstruction.detach(), batch_size=len(batch["input_ids"]))
        auxiliary = getattr(output, "auxiliary_loss", None)  # already weighted by the model (the ∞-former's KL term)
        if auxiliary is not None:
            loss = loss + auxiliary
            self.log("train/auxiliary_loss", auxiliary.detach(), batch_size=len(batch["input_ids"]))
        batch_size = len(batch["input_ids"])
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size)
        self.log("train/bpc", (nll / count.clamp(min=1)).detach() / torch.log(torch.tensor(2.0)), batch_size=batch_size)
        return loss

    # -- evaluation -----------------------------------------------------------------------------------------
    def _start_eval(self) -> None:
        keep = self.memory_around_eval == "keep"
        self._saved_training_memory = {"state": self.memory_state, "model": self._model_memory()} if keep else None
        self.reset_memory()
        self._eval_sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        self._eval_memoria = memoria_of(self.model)
        self._engram_sums = torch.zeros(len(ENGRAM_TYPES), dtype=torch.float64)
        self._eval_segments = 0

    def _eval_step(self, batch: Dict[str, torch.Tensor]) -> None:
        if self.reset_every_segment:
            self.reset_memory()
        nll, count, output = self.forward_segment(batch)
        hits = (output.logits.argmax(-1) == batch["labels"]).sum()
        self._eval_sums += torch.stack([nll.double(), count.double(), hits.double()])
        self._eval_segments += 1
        if self._eval_memoria is not None:
            counts = engram_counts(self._eval_memoria)
            self._engram_sums += torch.tensor([counts[kind] for kind in ENGRAM_TYPES], dtype=torch.float64)

    def _end_eval(self, prefix: str) -> Dict[str, float]:
        sums = self.trainer.strategy.reduce(self._eval_sums, reduce_op="sum") if self._trainer else self._eval_sums
        total_nll, count = float(sums[0]), int(sums[1])
        metrics = {
            f"{prefix}/loss": total_nll / max(count, 1),
            f"{prefix}/ppl": perplexity(total_nll, count) if count else float("nan"),
            f"{prefix}/bpc": bits_per_character(total_nll, count) if count else float("nan"),
            f"{prefix}/tokens": float(count),
            # Next-token accuracy; also what the shared CLI's checkpoint callback monitors.
            f"{prefix}/accuracy": float(sums[2]) / max(count, 1),
        }
        if self._eval_memoria is not None and self._eval_segments:  # engrams alive per type, mean over segments
            for kind, total in zip(ENGRAM_TYPES, self._engram_sums.tolist()):
                metrics[f"{prefix}/engrams/{kind}"] = total / self._eval_segments
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name.endswith("bpc"), sync_dist=False)
        saved = self._saved_training_memory or {"state": None, "model": None}
        self.reset_memory()
        if self.memory_around_eval == "keep":
            self.memory_state = saved["state"]
            self._restore_model_memory(saved["model"])
        return metrics

    def on_validation_epoch_start(self) -> None:
        self._start_eval()

    def validation_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")

    def on_test_epoch_start(self) -> None:
        self._start_eval()

    def test_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._end_eval("test")

    # -- optimisation and checkpoints -----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        options = optimizer_options(self.config)
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=options.get("learning_rate", 2e-4), weight_decay=options.get("weight_decay", 0.0)
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(options.get("warmup_rate", 0.06) * total)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["lm_memory"] = {
            "state": _state_to_plain(self.memory_state),
            "model": self._model_memory(),
            "memory_resets": self.memory_resets,
        }

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        saved = checkpoint.get("lm_memory")
        if not saved:
            return
        state = saved["state"]
        if isinstance(state, dict) and self.state_argument in STATE_CLASSES:
            state = STATE_CLASSES[self.state_argument](**state)
        self.memory_state = state
        self.memory_resets = saved.get("memory_resets", 0)
        self._restore_model_memory(saved["model"])


def build(config: Dict[str, Any]) -> Tuple[LanguageModelingModule, LanguageModelingDataModule]:
    """The Lightning module and data module a language-modelling config describes."""
    data = LanguageModelingDataModule(config["data"])
    model_config = dict(config["model"])
    model_config.setdefault("vocab_size", data.tokenizer.vocab_size)
    if model_config["model_type"] == "gpt2":
        model_config.setdefault("n_positions", config["data"]["segment_length"])
    return LanguageModelingModule(build_model(model_config), config), data
