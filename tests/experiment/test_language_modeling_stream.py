"""Streaming segment layouts: each row is a contiguous stream, every token is predicted exactly once."""

import torch
from torch.utils.data import DataLoader

from experiment.data.lm_stream import (
    IGNORE_INDEX,
    StreamSegmentDataset,
    layout_per_document,
    layout_single_stream,
)


def row_tokens(layout, row):
    """The row's stream rebuilt from its segments: inputs then the last target."""
    inputs = torch.cat([layout.segment(t)["input_ids"][row] for t in range(layout.num_segments)])
    labels = torch.cat([layout.segment(t)["labels"][row] for t in range(layout.num_segments)])
    valid = labels != IGNORE_INDEX
    return torch.cat([inputs[valid], labels[valid][-1:]]), inputs, labels


def test_single_stream_rows_concatenate_back():
    stream = torch.arange(1, 48)  # 47 tokens, 46 targets over 3 rows: 16, 15, 15
    layout = layout_single_stream([stream[:20], stream[20:]], batch_size=3, segment_length=4)
    assert layout.num_segments == 4 and layout.num_targets == 46
    starts = [0, 16, 31]
    ends = [17, 32, 47]
    for row in range(3):
        tokens, inputs, labels = row_tokens(layout, row)
        assert tokens.tolist() == stream[starts[row] : ends[row]].tolist()
        valid = labels != IGNORE_INDEX
        # Within a row, each label is the next input: segment t continues segment t - 1.
        assert torch.equal(labels[valid][:-1], inputs[valid][1:])
    # Every token but the first is a target exactly once, in stream order across rows.
    all_labels = torch.cat([layout.targets[row][layout.targets[row] != IGNORE_INDEX] for row in range(3)])
    assert all_labels.tolist() == stream[1:].tolist()
    assert layout.reset[:, 0].all() and not layout.reset[:, 1:].any()


def test_per_document_layout_resets_at_book_starts():
    books = [torch.arange(100, 110), torch.arange(200, 204), torch.arange(300, 307), torch.arange(400, 401)]
    layout = layout_per_document(books, batch_size=2, segment_length=4)
    # Book 0 (9 targets) -> row 0, segments 0-2; book 1 (3) -> row 1, segment 0; book 2 (6) -> row 1, 1-2;
    # book 3 has one token and nothing to predict.
    assert layout.num_segments == 3 and layout.num_targets == 9 + 3 + 6
    assert layout.reset.tolist() == [[True, False, False], [True, True, False]]
    row1 = layout.targets[1].view(3, 4)
    assert row1[0].tolist() == [201, 202, 203, IGNORE_INDEX]
    assert row1[1].tolist() == [301, 302, 303, 304]
    assert layout.inputs[1].view(3, 4)[1].tolist() == [300, 301, 302, 303]
    assert row1[2].tolist() == [305, 306, IGNORE_INDEX, IGNORE_INDEX]
    tokens, _, _ = row_tokens(layout, 0)
    assert tokens.tolist() == books[0].tolist()


def test_per_document_pads_short_rows_with_reset_segments():
    layout = layout_per_document([torch.arange(9), torch.arange(3)], batch_size=2, segment_length=2)
    assert layout.reset.tolist() == [[True, False, False, False], [True, True, True, True]]
    assert (layout.targets[1, 2:] == IGNORE_INDEX).all()


def test_dataset_walks_segments_in_order_and_shards_rows():
    layout = layout_single_stream([torch.arange(41)], batch_size=4, segment_length=5)
    batches = list(DataLoader(StreamSegmentDataset(layout), batch_size=None))
    assert len(batches) == 2 and batches[0]["input_ids"].shape == (4, 5)
    assert batches[1]["input_ids"][0, 0] == batches[0]["labels"][0, -1]
    shard = layout.shard(1, 2)
    assert shard.batch_size == 2 and torch.equal(shard.inputs[0], layout.inputs[1])
