"""Prints how a wrapped Hugging Face model compiles, per segment: the graph breaks dynamo reports (with the function
each one skipped) and the compiled graphs that run, for the wrapper as shipped and with its own memory boundary taken
away (``--without-boundary``: dynamo then traces the segment loop and the bookkeeping and stops only at
``memoria.nn``'s boundary inside them).

    python tests/integrations/graph_breaks.py [--without-boundary] [--family llama]
"""

import argparse
import collections
import sys
from pathlib import Path

import torch
import torch._dynamo

sys.path.insert(0, str(Path(__file__).parent))
from conftest import MEMORY, VOCAB, open_gates, tiny_model  # noqa: E402

from memoria.integrations.transformers import add_memoria  # noqa: E402
from memoria.integrations.transformers.model import MemoriaForCausalLM  # noqa: E402


class CountingBackend:
    """The eager backend, counting the runs of each compiled graph."""

    def __init__(self) -> None:
        self.runs: collections.Counter = collections.Counter()

    def __call__(self, graph, example_inputs):
        name = len(self.runs)
        self.runs[name] = 0

        def run(*args):
            self.runs[name] += 1
            return graph.forward(*args)

        return run


def skipped(reason: str) -> str:
    """The function a graph break skipped, or the reason's first line."""
    for line in reason.splitlines():
        if "Skip inlining function <function " in line:
            return line.split("<function ")[1].split(" at ")[0]
    return reason.splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--without-boundary", action="store_true")
    parser.add_argument("--family", default="llama")
    args = parser.parse_args()
    if args.without_boundary:  # the functions as they were before they were marked
        for name in ("forward", "_start_segment", "_finish_segment"):
            setattr(MemoriaForCausalLM, name, getattr(MemoriaForCausalLM, name).__wrapped__)
        torch._dynamo.maybe_mark_dynamic = lambda *args: None  # nor the dynamic sizes (dynamo refuses to trace it)
    wrapper = add_memoria(tiny_model(args.family), layers=[0, 2], segment_length=8, **MEMORY)
    open_gates(wrapper)
    document = torch.randint(0, VOCAB, (2, 40))
    with torch.no_grad():
        wrapper(document[:, :24])  # three segments: the memory holds working and reminded memories
        state = wrapper.memory.memory_state_dict()
        for segments in (1, 2):
            wrapper.memory.load_memory_state_dict(state)
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()
            backend = CountingBackend()
            torch.compile(wrapper, backend=backend)(document[:, 24 : 24 + 8 * segments])
            breaks = torch._dynamo.utils.counters["graph_break"]
            names = collections.Counter()
            for reason, count in breaks.items():
                names[skipped(reason)] += count
            print(
                f"{'without' if args.without_boundary else 'with'} the wrapper's boundary, {segments} segment(s):"
                f" {sum(breaks.values())} graph breaks {dict(names)}; {len(backend.runs)} graphs compiled,"
                f" {sum(backend.runs.values())} graph runs"
            )


if __name__ == "__main__":
    main()
