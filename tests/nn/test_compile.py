"""torch.compile over the memory layer: the memory's host-side work is one boundary that dynamo never traces into.

A model that reads memory compiles with the C extensions built or not (``MEMORIA_NATIVE``), with the eager and the
inductor backends, training included, and gives eager's results (inductor: within float tolerance). The graph breaks
of a segment are the memory boundary's two calls (``MemoriaMemory._write_and_remind`` and ``_adjust``), each once per
frame between the compiled entry point and the boundary (dynamo's default; with
``torch._dynamo.config.nested_graph_breaks`` once each).
"""

import copy

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

from memoria.nn import MemoriaLayer

SMALL = dict(num_reminded_stm=4, stm_capacity=8, ltm_search_depth=2, initial_lifespan=3, num_final_ltms=4)
BOUNDARY = {"_write_and_remind", "_adjust"}


class TinyModel(nn.Module):
    def __init__(self, **options) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 16)
        self.memory = MemoriaLayer(16, 2, 4, **{**SMALL, **options})
        self.head = nn.Linear(16, 11)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.head(self.memory(self.embed(tokens))).flatten(0, 1), tokens.flatten())


def train(model: nn.Module, step: nn.Module, segments: torch.Tensor) -> list[torch.Tensor]:
    """One optimiser step per segment (SGD), the memory carried; the losses."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for index, tokens in enumerate(segments):
        torch.manual_seed(index)  # the same tie-break draws in remind on both sides
        loss = step(tokens)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.detach())
    return losses


@pytest.mark.parametrize("write_gradient_segments", [0, 2])
def test_a_compiled_model_compiles_nothing_more_once_the_memory_is_full(write_gradient_segments):
    """Each new engram count or id would otherwise recompile the model at every segment."""
    torch._dynamo.reset()
    eager = TinyModel(write_gradient_segments=write_gradient_segments)
    compiled = copy.deepcopy(eager)
    step = torch.compile(compiled, backend="eager")
    segments = torch.randint(0, 11, (8, 2, 6))
    expected = train(eager, eager, segments)
    got, compiled_per_segment = [], []
    optimizer = torch.optim.SGD(compiled.parameters(), lr=0.1)
    for index, tokens in enumerate(segments):
        counters.clear()
        torch.manual_seed(index)
        loss = step(tokens)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        got.append(loss.detach())
        compiled_per_segment.append(counters["stats"]["unique_graphs"])
    assert torch.equal(torch.stack(got), torch.stack(expected))
    assert compiled_per_segment[1] > 0 and compiled_per_segment[5:] == [0, 0, 0], compiled_per_segment


def boundary_breaks(explanation) -> list[str]:
    """The function each graph break of ``torch._dynamo.explain`` skipped, or the reason where it was no skip."""
    names = []
    for reason in explanation.break_reasons:
        text = reason.reason
        names.append(next((name for name in BOUNDARY if f"MemoriaMemory.{name}" in text), text.splitlines()[0]))
    return names


@pytest.mark.parametrize("native", ["1", "0"])
@pytest.mark.parametrize("backend", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_a_compiled_model_with_a_memory_layer_trains_as_in_eager(backend, native, monkeypatch):
    monkeypatch.setenv("MEMORIA_NATIVE", native)
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = TinyModel()
    compiled = copy.deepcopy(eager)
    segments = torch.randint(0, 11, (5, 2, 6))
    expected = train(eager, eager, segments)
    got = train(compiled, torch.compile(compiled, backend=backend), segments)
    tolerance = dict(rtol=0, atol=0) if backend == "eager" else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.stack(got), torch.stack(expected), **tolerance)
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters()):
        torch.testing.assert_close(b, a, **tolerance, msg=name)
    assert compiled.memory.memory.memoria.engrams.memory_length == eager.memory.memory.memoria.engrams.memory_length
    torch.testing.assert_close(
        compiled.memory.memory.memoria.engrams.data, eager.memory.memory.memoria.engrams.data, **tolerance
    )


def test_the_graph_breaks_of_a_segment_are_the_memory_boundary_only(monkeypatch):
    torch._dynamo.reset()
    model = TinyModel()
    with torch.no_grad():
        for tokens in torch.randint(0, 11, (3, 2, 6)):
            model(tokens)
    tokens = torch.randint(0, 11, (2, 6))
    state = model.memory.memory_state_dict()
    explanation = torch._dynamo.explain(model)(tokens)
    # model.forward -> layer.forward -> memory.forward / memory.adjust -> the boundary: the frames split there
    assert sorted(boundary_breaks(explanation)) == ["_adjust"] * 2 + ["_write_and_remind"] * 2
    assert explanation.graph_break_count <= 2 * 3, [
        (reason.reason.splitlines()[0], [str(frame) for frame in reason.user_stack[-2:]])
        for reason in explanation.break_reasons
    ]

    model.memory.load_memory_state_dict(state)
    monkeypatch.setattr(torch._dynamo.config, "nested_graph_breaks", True)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(tokens)
    assert sorted(boundary_breaks(explanation)) == ["_adjust", "_write_and_remind"]
    assert explanation.graph_break_count == 2 and explanation.graph_count == 3
