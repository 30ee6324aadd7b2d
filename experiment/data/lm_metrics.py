"""Perplexity and bits per character from a summed negative log-likelihood.

Both are computed from the total NLL (natural log) over every predicted token and the count of those
tokens, so that segments of different fill (padding) weigh exactly by their real targets.
"""

import math

import torch
import torch.nn.functional as F

from experiment.data.lm_stream import IGNORE_INDEX


def perplexity(total_nll: float, num_tokens: int) -> float:
    """``exp(total_nll / num_tokens)``."""
    return math.exp(total_nll / num_tokens)


def bits_per_character(total_nll: float, num_tokens: int) -> float:
    """``total_nll / num_tokens / ln 2`` (bits per byte when the tokens are bytes)."""
    return total_nll / num_tokens / math.log(2)


def summed_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token NLL (nats) over the non-ignored labels.

    Args:
        logits: ``[Batch, Length, Vocab]`` scores at each input position.
        labels: ``[Batch, Length]`` target id at each position (already shifted), ``IGNORE_INDEX`` where none.
    """
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


class NLLMeter:
    """Accumulates summed NLL and target count over an evaluation walk."""

    def __init__(self) -> None:
        self.total_nll = 0.0
        self.num_tokens = 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one segment: ``logits`` ``[Batch, Length, Vocab]``, ``labels`` ``[Batch, Length]``."""
        self.total_nll += float(summed_nll(logits, labels))
        self.num_tokens += int((labels != IGNORE_INDEX).sum())

    @property
    def perplexity(self) -> float:
        return perplexity(self.total_nll, self.num_tokens)

    @property
    def bits_per_character(self) -> float:
        return bits_per_character(self.total_nll, self.num_tokens)
