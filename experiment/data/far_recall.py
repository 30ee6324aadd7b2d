"""A generated far-recall set: a label shown at the start of a long example must be recalled at its end.

An example is ``1 + distance`` segments of ``segment_length`` tokens followed by one ``[SEP]`` token. Segment 0 holds
the label's own token at ``evidence_fraction`` of its positions (chosen at random) and noise elsewhere; the next
``distance`` segments are noise only; at ``[SEP]`` the model predicts the label. A model whose memory reaches back
less than ``distance * segment_length + 1`` tokens sees only noise and can do no better than chance
(``1 / num_labels``); the task is easy for one that sees segment 0.

Token ids: ``0 .. num_labels - 1`` the labels, then the noise tokens, then ``[SEP]`` (``vocab_size - 1``). Example
``i`` of a split is drawn from ``torch.Generator().manual_seed(seed)`` of that split, so a set is deterministic.
"""

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

IGNORE_INDEX = -100


@dataclass(frozen=True)
class FarRecallConfig:
    """Sizes of the generated set (defaults: the CPU table in experiment/README.md)."""

    num_labels: int = 10
    vocab_size: int = 32
    segment_length: int = 32
    distance: int = 3
    evidence_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.num_labels < 2:
            raise ValueError(f"num_labels must be at least 2, got {self.num_labels}")
        if self.vocab_size < self.num_labels + 2:
            raise ValueError(f"vocab_size must leave noise tokens and [SEP] beyond {self.num_labels} labels")
        if self.segment_length < 1 or self.distance < 0:
            raise ValueError(
                f"segment_length must be >= 1 and distance >= 0, got {self.segment_length}, {self.distance}"
            )
        if not 0.0 < self.evidence_fraction <= 1.0:
            raise ValueError(f"evidence_fraction must be in (0, 1], got {self.evidence_fraction}")

    @property
    def sep_id(self) -> int:
        return self.vocab_size - 1

    @property
    def length(self) -> int:
        """Tokens per example: evidence segment, ``distance`` noise segments, ``[SEP]``."""
        return (1 + self.distance) * self.segment_length + 1


def generate_far_recall(config: FarRecallConfig, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` examples: input ids [Count, Length] and labels [Count] (the label of each example)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(config.num_labels, (count,), generator=generator)
    tokens = torch.randint(config.num_labels, config.sep_id, (count, config.length), generator=generator)
    num_evidence = max(1, round(config.evidence_fraction * config.segment_length))
    order = torch.rand(count, config.segment_length, generator=generator).argsort(dim=1)
    positions = order[:, :num_evidence]  # (N, E) distinct positions of segment 0
    tokens.scatter_(1, positions, labels[:, None].expand(-1, num_evidence))
    tokens[:, -1] = config.sep_id
    return tokens, labels


class FarRecallDataset(Dataset):
    """Examples as ``{"input_ids": [Length], "labels": [Length]}``: labels are -100 except at ``[SEP]``."""

    def __init__(self, config: FarRecallConfig, count: int, seed: int) -> None:
        self.input_ids, self.targets = generate_far_recall(config, count, seed)
        self.labels = torch.full_like(self.input_ids, IGNORE_INDEX)
        self.labels[:, -1] = self.targets

    def __len__(self) -> int:
        return self.input_ids.size(0)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[index], "labels": self.labels[index]}
