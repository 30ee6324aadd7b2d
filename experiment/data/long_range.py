"""A generated long-document classification set whose label is decided far from the end of the document.

Each document is ``num_segments`` segments of ``content_length`` tokens. One segment (``evidence_segment``, an early
one) holds ``evidence_length`` evidence tokens drawn from the label's own token set, at a random position; every
other token is distractor text drawn from tokens that carry no label. A model that reads only the first segment sees
no evidence (when ``evidence_segment > 0``); a model that predicts from the last segment must carry the evidence
there through memory.

Token ids: ``0`` pad, ``1`` [CLS], ``2`` [SEP]; then ``evidence_tokens_per_label`` ids per label; the rest of the
vocabulary is distractors. Generation is deterministic given the seed.
"""

from dataclasses import dataclass
from typing import List, Tuple

import torch

PAD_ID, CLS_ID, SEP_ID = 0, 1, 2
NUM_SPECIAL_TOKENS = 3


@dataclass(frozen=True)
class LongRangeConfig:
    """Sizes of the generated set (defaults: the CPU check in docs/classification.md)."""

    vocab_size: int = 128
    num_labels: int = 2
    evidence_tokens_per_label: int = 4
    evidence_length: int = 4
    num_segments: int = 4
    content_length: int = 62  # segment length 64 minus [CLS] and [SEP]
    evidence_segment: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.evidence_segment < self.num_segments:
            raise ValueError(f"evidence_segment must be in 0..{self.num_segments - 1}, got {self.evidence_segment}")
        if not 0 < self.evidence_length <= self.content_length:
            raise ValueError(f"evidence_length must be in 1..{self.content_length}, got {self.evidence_length}")
        if self.first_distractor_id >= self.vocab_size:
            raise ValueError(
                f"vocab_size {self.vocab_size} leaves no distractor tokens (need > {self.first_distractor_id})"
            )

    @property
    def first_distractor_id(self) -> int:
        return NUM_SPECIAL_TOKENS + self.num_labels * self.evidence_tokens_per_label

    def evidence_ids(self, label: int) -> range:
        """The token ids that signal ``label``."""
        start = NUM_SPECIAL_TOKENS + label * self.evidence_tokens_per_label
        return range(start, start + self.evidence_tokens_per_label)


def generate_documents(config: LongRangeConfig, count: int, seed: int) -> List[Tuple[List[int], int]]:
    """``count`` documents as ``(token ids without special tokens, label)``; labels are balanced in expectation.

    Each document has ``num_segments * content_length`` tokens.
    """
    generator = torch.Generator().manual_seed(seed)
    length = config.num_segments * config.content_length
    labels = torch.randint(config.num_labels, (count,), generator=generator)
    tokens = torch.randint(config.first_distractor_id, config.vocab_size, (count, length), generator=generator)
    offsets = torch.randint(config.content_length - config.evidence_length + 1, (count,), generator=generator)
    picks = torch.randint(config.evidence_tokens_per_label, (count, config.evidence_length), generator=generator)
    evidence = NUM_SPECIAL_TOKENS + labels[:, None] * config.evidence_tokens_per_label + picks  # (N, E)
    starts = config.evidence_segment * config.content_length + offsets  # (N,)
    positions = starts[:, None] + torch.arange(config.evidence_length)  # (N, E)
    tokens.scatter_(1, positions, evidence)
    return [(row.tolist(), int(label)) for row, label in zip(tokens, labels)]
