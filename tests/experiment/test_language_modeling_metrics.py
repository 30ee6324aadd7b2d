"""Perplexity and bits per character over an evaluation walk, checked by hand on toy models."""

import math

import pytest
import torch

from experiment.data.lm_metrics import NLLMeter, bits_per_character, perplexity
from experiment.data.lm_stream import layout_single_stream


def walk(layout, logits_fn):
    meter = NLLMeter()
    for t in range(layout.num_segments):
        segment = layout.segment(t)
        meter.update(logits_fn(segment["input_ids"]), segment["labels"])
    return meter


def test_uniform_model_has_perplexity_vocab_and_log2_vocab_bits():
    layout = layout_single_stream([torch.randint(0, 8, (53,))], batch_size=3, segment_length=5)
    meter = walk(layout, lambda ids: torch.zeros(*ids.shape, 8))
    assert meter.num_tokens == 52
    assert meter.perplexity == pytest.approx(8.0)
    assert meter.bits_per_character == pytest.approx(3.0)


def test_toy_copy_model_by_hand():
    # Stream 0 1 0 1 ... (10 tokens): a model giving probability 3/4 to "next = 1 - current" and 1/4 to
    # the other of 2 symbols is right on all 9 targets: NLL = 9 * ln(4/3).
    stream = torch.tensor([0, 1] * 5)
    layout = layout_single_stream([stream], batch_size=2, segment_length=3)

    def logits_fn(ids):
        probs = torch.full((*ids.shape, 2), 0.25)
        probs.scatter_(-1, (1 - ids).clamp(0, 1).unsqueeze(-1), 0.75)
        return probs.log()

    meter = walk(layout, logits_fn)
    assert meter.num_tokens == 9
    assert meter.total_nll == pytest.approx(9 * math.log(4 / 3), rel=1e-6)
    assert meter.perplexity == pytest.approx(4 / 3, rel=1e-6)
    assert meter.bits_per_character == pytest.approx(math.log2(4 / 3), rel=1e-6)


def test_plain_formulas():
    assert perplexity(2 * math.log(5), 2) == pytest.approx(5.0)
    assert bits_per_character(4 * math.log(2), 2) == pytest.approx(2.0)
