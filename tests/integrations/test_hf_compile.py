"""A wrapped Hugging Face model under torch.compile: each segment's pass through the base model and the memory reads
is one compiled graph; the graph breaks only at the wrapper's memory boundary (``_start_segment``: write and remind;
``_finish_segment``: lifespans), so dynamo never traces into the memory, C extensions built or not. Training gives
eager's results (eager backend: bit for bit; inductor: within float tolerance)."""

import collections
import copy

import pytest
import torch
import torch._dynamo
from conftest import MEMORY, VOCAB, tiny_model

from memoria.integrations.transformers import add_memoria

BOUNDARY = ("MemoriaForCausalLM._start_segment", "MemoriaForCausalLM._finish_segment")


class CountingBackend:
    """The eager backend, counting how often each compiled graph runs."""

    def __init__(self) -> None:
        self.runs = collections.Counter()

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list) -> callable:
        name = len(self.runs)
        self.runs[name] = 0

        def run(*args):
            self.runs[name] += 1
            return graph.forward(*args)

        return run


def train(wrapper, step, documents) -> torch.Tensor:
    """One SGD step per document over a frozen base (memory reset per document); the losses. (Not Adam: it would
    blow the rounding noise of a zero gradient, the abstractor's key bias, up to the learning rate.)"""
    optimizer = torch.optim.SGD(wrapper.memory_parameters(), lr=0.5)
    losses = []
    for index, document in enumerate(documents):
        wrapper.reset_memory()
        torch.manual_seed(index)  # remind's tie-breaks alike on both sides
        loss = step(document, labels=document).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.detach())
    return torch.stack(losses)


def eager_and_copy(family: str = "llama"):
    eager = add_memoria(tiny_model(family), layers=[0, 2], segment_length=8, **MEMORY)
    eager.model.requires_grad_(False)
    return eager, copy.deepcopy(eager)


def assert_same_training(eager, compiled, got, expected, **tolerance) -> None:
    torch.testing.assert_close(got, expected, **tolerance)
    for (name, a), (_, b) in zip(eager.memory.named_parameters(), compiled.memory.named_parameters()):
        torch.testing.assert_close(b, a, **tolerance, msg=name)
    for a, b in zip(eager.readers.parameters(), compiled.readers.parameters()):
        torch.testing.assert_close(b, a, **tolerance)
    torch.testing.assert_close(compiled.memory.memoria.engrams.data, eager.memory.memoria.engrams.data, **tolerance)


@pytest.mark.parametrize("native", ["1", "0"])
def test_training_compiled_equals_eager_and_breaks_only_at_the_memory_boundary(native, monkeypatch):
    monkeypatch.setenv("MEMORIA_NATIVE", native)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager, twin = eager_and_copy()
    documents = torch.randint(0, VOCAB, (2, 2, 24))  # three segments each: empty, working only, and reminded reads
    expected = train(eager, eager, documents)
    backend = CountingBackend()
    got = train(twin, torch.compile(twin, backend=backend), documents)
    # to rounding: the parameters' gradients are summed over the segments in another order
    assert_same_training(eager, twin, got, expected, rtol=1e-4, atol=1e-5)

    reasons = torch._dynamo.utils.counters["graph_break"]
    assert reasons and all(any(name in reason for name in BOUNDARY) for reason in reasons), list(reasons)
    twin.load_state_dict(eager.state_dict())
    compiled = torch.compile(twin, backend=backend)
    logits = []
    for model in (eager, compiled):  # evaluation: the same logits bit for bit
        model.reset_memory()
        torch.manual_seed(5)
        with torch.no_grad():
            logits.append(model(documents[0][:, :16]).logits)
            before = dict(backend.runs)
            logits.append(model(documents[0][:, 16:]).logits)  # one more segment, in the steady state
    assert torch.equal(logits[2], logits[0]) and torch.equal(logits[3], logits[1])
    assert sum(backend.runs.values()) - sum(before.values()) == 1  # one graph ran for the whole segment
    # segments: a first, a second (nothing reminded yet), the rest, per grad mode, whatever the length and R; the loss
    assert len(backend.runs) == 2 * 3 + 1 and 2 * 3 <= torch._dynamo.config.recompile_limit


@pytest.mark.slow
def test_training_compiled_with_inductor_is_eager_within_float_tolerance():
    torch._dynamo.reset()
    eager, twin = eager_and_copy("gpt2")
    documents = torch.randint(0, VOCAB, (1, 2, 24))
    expected = train(eager, eager, documents)
    got = train(twin, torch.compile(twin, backend="inductor"), documents)
    assert_same_training(eager, twin, got, expected, rtol=1e-4, atol=1e-5)
