"""Streaming segments for memory models: each batch row is one contiguous token stream.

Segment ``t`` of row ``b`` continues segment ``t - 1`` of row ``b``: its first input token is the previous
segment's last target. Every token with a left context is a target exactly once, so an evaluation that sums
the loss over all segments covers the split exactly once.

Two layouts:

- one stream (WikiText-103, enwik8): the documents are concatenated, the ``N - 1`` targets are cut into
  ``Batch`` contiguous rows as equal as possible; only segment 0 starts fresh.
- per-document reset (PG-19): each book starts at a segment boundary and is padded to whole segments;
  books go to the row with the fewest segments so far (in book order); ``reset[b, t]`` marks a new book.

Padding carries input id ``pad_id`` and target ``IGNORE_INDEX``.
"""

from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch
from torch.utils.data import Dataset

IGNORE_INDEX = -100


@dataclass
class StreamLayout:
    """Token streams cut into segments.

    Attributes:
        inputs: ``[Batch, NumSegments * SegmentLength]`` int32 input ids.
        targets: ``[Batch, NumSegments * SegmentLength]`` int32 next-token ids, ``IGNORE_INDEX`` on padding.
        reset: ``[Batch, NumSegments]`` bool, True where a row's memory must start empty.
        segment_length: tokens per segment.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    reset: torch.Tensor
    segment_length: int

    @property
    def batch_size(self) -> int:
        return self.inputs.size(0)

    @property
    def num_segments(self) -> int:
        return self.reset.size(1)

    @property
    def num_targets(self) -> int:
        """How many tokens are predicted over the whole layout."""
        return int((self.targets != IGNORE_INDEX).sum())

    def segment(self, index: int) -> Dict[str, torch.Tensor]:
        """Segment ``index``: ``input_ids`` / ``labels`` ``[Batch, SegmentLength]`` int64, ``reset`` ``[Batch]``."""
        span = slice(index * self.segment_length, (index + 1) * self.segment_length)
        return {
            "input_ids": self.inputs[:, span].long(),
            "labels": self.targets[:, span].long(),
            "reset": self.reset[:, index].clone(),
        }

    def shard(self, rank: int, world_size: int) -> "StreamLayout":
        """Rows ``rank, rank + world_size, ...``: each data-parallel process walks its own streams."""
        if self.batch_size % world_size:
            raise ValueError(f"batch size {self.batch_size} is not divisible by {world_size} processes")
        rows = slice(rank, None, world_size)
        return StreamLayout(self.inputs[rows], self.targets[rows], self.reset[rows], self.segment_length)


def _empty_layout(batch_size: int, num_segments: int, segment_length: int, pad_id: int) -> StreamLayout:
    width = num_segments * segment_length
    return StreamLayout(
        inputs=torch.full((batch_size, width), pad_id, dtype=torch.int32),
        targets=torch.full((batch_size, width), IGNORE_INDEX, dtype=torch.int32),
        reset=torch.zeros(batch_size, num_segments, dtype=torch.bool),
        segment_length=segment_length,
    )


def layout_single_stream(
    documents: Sequence[torch.Tensor], batch_size: int, segment_length: int, pad_id: int = 0
) -> StreamLayout:
    """Concatenate ``documents`` (1-D id tensors) into one stream and cut it into ``batch_size`` rows."""
    stream = torch.cat([doc.reshape(-1) for doc in documents])
    num_targets = stream.numel() - 1
    if num_targets < batch_size:
        raise ValueError(f"a stream of {stream.numel()} tokens cannot fill {batch_size} rows")
    # The first `extra` rows get one more target, so that row lengths differ by at most one.
    base, extra = divmod(num_targets, batch_size)
    lengths = [base + (row < extra) for row in range(batch_size)]
    num_segments = -(-max(lengths) // segment_length)
    layout = _empty_layout(batch_size, num_segments, segment_length, pad_id)
    start = 0
    for row, length in enumerate(lengths):
        layout.inputs[row, :length] = stream[start : start + length].to(torch.int32)
        layout.targets[row, :length] = stream[start + 1 : start + 1 + length].to(torch.int32)
        start += length
    layout.reset[:, 0] = True
    return layout


def layout_per_document(
    documents: Sequence[torch.Tensor], batch_size: int, segment_length: int, pad_id: int = 0
) -> StreamLayout:
    """Place each document (book) on a row from a segment boundary; ``reset`` marks each one's first segment.

    A document's first token has no context and is not a target; documents shorter than 2 tokens are skipped.
    """
    documents = [doc.reshape(-1) for doc in documents if doc.numel() >= 2]
    if not documents:
        raise ValueError("no document has 2 or more tokens")
    spans = [-(-(doc.numel() - 1) // segment_length) for doc in documents]
    row_segments = [0] * batch_size
    placement: List[tuple] = []  # (row, first segment) per document
    for span in spans:
        row = min(range(batch_size), key=lambda r: (row_segments[r], r))
        placement.append((row, row_segments[row]))
        row_segments[row] += span
    layout = _empty_layout(batch_size, max(row_segments), segment_length, pad_id)
    for doc, (row, first) in zip(documents, placement):
        start = first * segment_length
        layout.inputs[row, start : start + doc.numel() - 1] = doc[:-1].to(torch.int32)
        layout.targets[row, start : start + doc.numel() - 1] = doc[1:].to(torch.int32)
        layout.reset[row, first] = True
    # Trailing padding segments of short rows predict nothing; a reset keeps stale memory out of them.
    for row, used in enumerate(row_segments):
        layout.reset[row, used:] = True
    return layout


class StreamSegmentDataset(Dataset):
    """Item ``t`` is segment ``t`` of every row (already a batch): use ``DataLoader(batch_size=None)``,
    never shuffled, so that the memory carried between steps follows each row's stream."""

    def __init__(self, layout: StreamLayout):
        self.layout = layout

    def __len__(self) -> int:
        return self.layout.num_segments

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return self.layout.segment(index)
