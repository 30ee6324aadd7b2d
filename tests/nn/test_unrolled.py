"""The memory that learns reliably: a silent read at the start, a normalised write, and backpropagation through the
memory inside ``memoria.nn.unrolled`` (values unchanged, gradients reaching K + 1 segments back and no further)."""

import pytest
import torch
from torch import nn

import memoria.nn as mn
from memoria.nn import MemoriaLayer, MemoriaMemory, MemoryReader

SMALL = dict(num_reminded_stm=8, stm_capacity=8, ltm_search_depth=2, initial_lifespan=5, num_final_ltms=8)


def layer(**options) -> MemoriaLayer:
    return MemoriaLayer(16, 2, 4, **{**SMALL, **options})


def test_the_default_read_starts_silent_and_its_output_projection_learns():
    torch.manual_seed(0)
    memory_layer = layer()
    assert memory_layer.reader.output_init == "zero"
    segments = [torch.randn(2, 6, 16, requires_grad=True) for _ in range(3)]
    outputs = [memory_layer(hidden) for hidden in segments]
    for hidden, output in zip(segments, outputs):
        assert torch.equal(output, hidden)
    outputs[-1].pow(2).sum().backward()
    assert memory_layer.reader.cross_attention.output.weight.grad.abs().max() > 0
    # the earlier form by name: the read changes the hidden states from the start
    torch.manual_seed(0)
    drawn = layer(output_init="default")
    assert drawn.reader.cross_attention.output.weight.abs().max() > 0
    later = [drawn(hidden.detach()) for hidden in segments]
    assert not torch.allclose(later[2], segments[2])


def test_a_zero_gate_keeps_a_drawn_output_projection_and_refuses_a_zero_one():
    gated = MemoryReader(16, 2, gate=0.0)
    assert gated.output_init == "default" and gated.cross_attention.output.weight.abs().max() > 0
    assert MemoryReader(16, 2, gate=0.5).output_init == "zero"
    with pytest.raises(ValueError, match="gate=0.0 with output_init='zero'"):
        MemoryReader(16, 2, gate=0.0, output_init="zero")
    with pytest.raises(ValueError, match="output_init"):
        MemoryReader(16, 2, output_init="ones")
    gated.cross_attention.output.weight.data.zero_()
    gated.reset_parameters()  # the drawn form is drawn again, not zeroed
    assert gated.cross_attention.output.weight.abs().max() > 0


def test_the_write_norm_gives_every_engram_the_same_scale():
    torch.manual_seed(0)
    memory = MemoriaMemory(16, 4, **SMALL)
    scales = torch.tensor([0.3, 1.0, 100.0])[:, None, None]
    memory(torch.randn(3, 6, 16) * scales)
    engrams = memory.memoria.engrams.data  # [B, M, D]
    torch.testing.assert_close(engrams.mean(-1), torch.zeros(3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(engrams.var(-1, unbiased=False), torch.ones(3, 4), atol=0.02, rtol=0)
    raw = MemoriaMemory(16, 4, write_norm=False, **SMALL)
    assert raw.write_norm is None
    raw(torch.randn(3, 6, 16) * scales)
    norms = raw.memoria.engrams.data.norm(dim=-1).mean(-1)
    assert norms[2] > 100 * norms[0]
    with pytest.raises(TypeError, match="write_norm"):
        MemoriaMemory(16, 4, write_norm=1, **SMALL)


def run(memory_layer: MemoriaLayer, segments: list[torch.Tensor], unroll: bool) -> list[torch.Tensor]:
    memory_layer.reset()
    torch.manual_seed(1)  # the same tie-break draws on both sides
    if unroll:
        with mn.unrolled(memory_layer):
            return [memory_layer(hidden) for hidden in segments]
    return [memory_layer(hidden) for hidden in segments]


@pytest.mark.parametrize("unroll_segments", [1, 3])
def test_unrolled_reads_the_same_values_and_reaches_k_plus_one_segments_back(unroll_segments):
    torch.manual_seed(0)
    memory_layer = layer(unroll_segments=unroll_segments, output_init="default")
    segments = [torch.randn(2, 6, 16, requires_grad=True) for _ in range(7)]
    plain = run(memory_layer, segments, unroll=False)
    plain[-1].pow(2).sum().backward()
    assert [hidden.grad is None for hidden in segments] == [True] * 6 + [False]

    for hidden in segments:
        hidden.grad = None
    unrolled = run(memory_layer, segments, unroll=True)
    for a, b in zip(plain, unrolled):
        assert torch.equal(a, b)
    unrolled[-1].pow(2).sum().backward()
    reached = [hidden.grad is not None and bool(hidden.grad.abs().max() > 0) for hidden in segments]
    # segment 6 reads the write of segment 5 (live) and the engrams of the writes of segments 5 - K .. 4
    first = 6 - 1 - unroll_segments
    assert reached == [index >= first for index in range(7)], reached
    assert memory_layer.memory.recent_writes.writes == []  # nothing of the graph is kept once the context ends
    assert not memory_layer.memory.keeps_written_graph


def test_after_an_unrolled_step_the_next_segment_does_not_reach_into_its_graph():
    torch.manual_seed(0)
    memory_layer = layer(output_init="default")
    segments = [torch.randn(2, 6, 16, requires_grad=True) for _ in range(4)]
    with mn.unrolled(memory_layer):
        outputs = [memory_layer(hidden) for hidden in segments]
    outputs[-1].sum().backward()
    after = memory_layer(torch.randn(2, 6, 16))  # reads the last unrolled segment, detached
    after.sum().backward()  # would raise if it reached the freed graph


def test_unroll_segments_zero_is_the_detached_write_and_bad_values_are_refused():
    torch.manual_seed(0)
    memory_layer = layer(unroll_segments=0, output_init="default")
    segments = [torch.randn(2, 6, 16, requires_grad=True) for _ in range(4)]
    with mn.unrolled(memory_layer):
        outputs = [memory_layer(hidden) for hidden in segments]
        assert not memory_layer.memory.keeps_written_graph
    outputs[-1].sum().backward()
    assert [hidden.grad is None for hidden in segments] == [True, True, True, False]
    with pytest.raises(ValueError, match="unroll_segments"):
        MemoriaMemory(16, 4, unroll_segments=-1, **SMALL)
    with pytest.raises(TypeError, match="unroll_segments"):
        MemoriaMemory(16, 4, unroll_segments=2.0, **SMALL)


def test_unrolled_under_no_grad_keeps_nothing():
    memory_layer = layer()
    with mn.unrolled(memory_layer), torch.no_grad():
        for _ in range(3):
            memory_layer(torch.randn(2, 6, 16))
        assert not memory_layer.memory.keeps_written_graph
        assert all(write.live is None for write in memory_layer.memory.recent_writes.writes)
    assert not memory_layer.previous_hidden.requires_grad


class Recall(nn.Module):
    """A token in the first segment, asked for after ``distance`` segments of noise: only the memory can carry it."""

    def __init__(self, **options) -> None:
        super().__init__()
        self.embed = nn.Embedding(12, 16)
        self.memory = layer(**options)
        self.head = nn.Linear(16, 12)

    def loss(self, tokens: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.memory.reset()
        out = None
        for segment in tokens.unbind(1):  # [B, S, L] -> S segments of [B, L]
            out = self.head(self.memory(self.embed(segment)))
        return nn.functional.cross_entropy(out[:, -1], target)


def test_unrolled_training_reaches_the_write_of_the_evidence_and_detached_training_does_not():
    torch.manual_seed(0)
    model = Recall(unroll_segments=3, output_init="default")  # a read that is not silent yet
    tokens = torch.randint(0, 10, (4, 4, 6))
    target = tokens[:, 0, 0]
    model.loss(tokens, target).backward()  # detached: only the last segment's read has a gradient
    detached = {name: p.grad.clone() for name, p in model.embed.named_parameters()}
    model.zero_grad()
    with mn.unrolled(model):
        loss = model.loss(tokens, target)
    loss.backward()
    # the evidence tokens (segment 0) get a gradient only through the memory, and only when unrolled
    evidence = tokens[:, 0].unique()
    last = tokens[:, -1].unique()
    only_early = evidence[~torch.isin(evidence, last)]
    assert len(only_early) > 0
    assert detached["weight"][only_early].abs().max() == 0
    assert model.embed.weight.grad[only_early].abs().max() > 0
