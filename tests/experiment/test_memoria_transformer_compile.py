"""torch.compile over the Memoria Transformer, training included: eager's results, graph breaks at the memory only.

Before the model was rebuilt on ``memoria.nn``, dynamo traced into ``Memoria`` with fake tensors: with the C
extensions built it failed (``_counts.fire_together: a slot out of range``), without them (``MEMORIA_NATIVE=0``) a
training step of this model broke into 56 graphs (55 breaks) on every segment.
"""

import copy

import pytest
import torch
import torch._dynamo

from experiment.models.memoria_transformer import MemoriaTransformerConfig, MemoriaTransformerLMHeadModel

BOUNDARY = ("_write_and_remind", "_adjust")


def train(model: MemoriaTransformerLMHeadModel, step, segments: torch.Tensor) -> list[torch.Tensor]:
    """One SGD step per segment with the memory carried between segments; the losses. (Not Adam: it scales the
    float noise of gradients that are zero in exact arithmetic, such as the key bias's, up to whole steps.)"""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.reset_memory()
    state, losses = None, []
    for index, tokens in enumerate(segments):
        torch.manual_seed(index)  # the same tie-break draws in remind on both sides
        output = step(tokens, memory_hidden_states=state, labels=tokens)
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        state = output.memory_hidden_states
        losses.append(output.loss.detach())
    return losses


@pytest.mark.parametrize("native", ["1", "0"])
@pytest.mark.parametrize("backend", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_the_compiled_model_trains_as_in_eager(tiny_memoria, backend, native, monkeypatch):
    monkeypatch.setenv("MEMORIA_NATIVE", native)
    torch._dynamo.reset()
    eager = MemoriaTransformerLMHeadModel(MemoriaTransformerConfig(**tiny_memoria)).train()
    compiled = copy.deepcopy(eager)
    segments = torch.randint(0, 21, (5, 2, 10))
    expected = train(eager, eager, segments)
    got = train(compiled, torch.compile(compiled, backend=backend), segments)
    tolerance = dict(rtol=0, atol=0) if backend == "eager" else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.stack(got), torch.stack(expected), **tolerance)
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters()):
        torch.testing.assert_close(b, a, **tolerance, msg=name)
    assert torch.equal(compiled.memoria.engrams.engrams_types, eager.memoria.engrams.engrams_types)
    torch.testing.assert_close(compiled.memoria.engrams.data, eager.memoria.engrams.data, **tolerance)


def test_the_graph_breaks_of_a_training_segment_are_the_memory_boundary_only(tiny_memoria, monkeypatch):
    monkeypatch.setenv("MEMORIA_NATIVE", "0")  # the setting that compiled before, at 55 breaks a segment
    torch._dynamo.reset()
    model = MemoriaTransformerLMHeadModel(MemoriaTransformerConfig(**tiny_memoria)).train()
    segments = torch.randint(0, 21, (4, 2, 10))
    state = None
    for tokens in segments[:3]:
        state = model(tokens, memory_hidden_states=state).memory_hidden_states
    explanation = torch._dynamo.explain(model)(segments[3], memory_hidden_states=state, labels=segments[3])
    skipped = [next((name for name in BOUNDARY if f"MemoriaMemory.{name}" in r.reason), r.reason[:200]) for r in
               explanation.break_reasons]  # fmt: skip
    assert set(skipped) == set(BOUNDARY), skipped
    # LM head -> decoder -> memory -> the boundary: each of its two calls splits the three frames on the way
    assert explanation.graph_break_count <= 2 * 3
