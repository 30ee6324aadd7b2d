"""What the scripts print at start-up: Lightning's output without the lines that a user of these scripts cannot act
on (the LitLogger advertisement, a FLOPs column that reads 0 because no example input is declared, the note that our
summary replaces Lightning's, a deprecation inside Lightning itself)."""

import logging
import warnings
from typing import Any

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count

LIGHTNING_INFO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")
DROPPED_INFO = ("litlogger", "Skipping setting a default `ModelSummary` callback")
log = logging.getLogger("lightning.pytorch.callbacks.model_summary")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in DROPPED_INFO)


def quiet_lightning() -> None:
    """Drop the info lines in :data:`DROPPED_INFO` and Lightning's internal pytree deprecation warning (idempotent)."""
    for name in LIGHTNING_INFO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class ParameterSummary(ModelSummary):
    """Lightning's model summary without the FLOPs column and total (0 without an ``example_input_array``)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        widths = [max(len(name), *(len(str(v)) for v in values)) if values else len(name) for name, values in columns]
        rows = [" | ".join(name.ljust(width) for (name, _), width in zip(columns, widths))]
        rows.append("-" * len(rows[0]))
        for index in range(len(columns[0][1]) if columns else 0):
            rows.append(" | ".join(str(values[index]).ljust(width) for (_, values), width in zip(columns, widths)))
        rows += [
            f"Trainable params: {get_human_readable_count(trainable_parameters)}",
            f"Non-trainable params: {get_human_readable_count(total_parameters - trainable_parameters)}",
            f"Total params: {get_human_readable_count(total_parameters)}",
            f"Total estimated model params size (MB): {model_size:.3f}",
        ]
        log.info("\n" + "\n".join(rows))
