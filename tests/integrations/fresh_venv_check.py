"""Issue 24's "done when" check for the transformers integration, for a fresh virtual environment.

Run it from outside the repository after ``pip install <repo> transformers`` (so that neither ``experiment/`` nor the
source tree is on the path)::

    python3 -m venv /tmp/hf-fresh && /tmp/hf-fresh/bin/pip install torch && /tmp/hf-fresh/bin/pip install <repo> transformers
    cd /tmp && /tmp/hf-fresh/bin/python <repo>/tests/integrations/fresh_venv_check.py

For tiny random GPT-2, Llama, Qwen2, Mistral and GPT-NeoX models (nothing downloaded) it adds Memoria, trains the
memory 20 steps over the frozen base (every memory parameter gets a gradient), generates across 3 segment boundaries
(the logits equal the segment-wise forward's), saves and reloads the memory's weights and state (identical logits),
and runs a training step under torch.compile (inductor) with the C extensions built. Exits non-zero on any failure.
"""

import copy
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch._dynamo
import transformers

import memoria
from memoria import native
from memoria.integrations.transformers import add_memoria, load_memoria, save_memoria
from memoria.nn import load_memory, save_memory

VOCAB, SEGMENT = 61, 8
MEMORY = dict(
    num_working_memories=4, num_reminded_stm=4, stm_capacity=8, ltm_search_depth=2, initial_lifespan=3, num_final_ltms=4
)
# softmax cancels a bias added to every key alike: this one's gradient is zero but for rounding
KEY_BIAS = "memory.abstractor.key_transform.bias"


def tiny_model(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    config = {
        "gpt2": lambda: transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4, n_positions=64),
        "llama": lambda: transformers.LlamaConfig(**common, num_key_value_heads=2),
        "qwen2": lambda: transformers.Qwen2Config(**common, num_key_value_heads=2),
        "mistral": lambda: transformers.MistralConfig(**common, num_key_value_heads=2, sliding_window=16),
        "gpt_neox": lambda: transformers.GPTNeoXConfig(**common),
    }[family]()
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def train_20_steps(wrapper) -> tuple[float, float]:
    """20 AdamW steps over the frozen base, 5-segment documents; first and last loss. Raises if a memory parameter
    never got a gradient or the base got one."""
    wrapper.model.requires_grad_(False)
    optimizer = torch.optim.AdamW(wrapper.memory_parameters(), lr=1e-2)
    largest = {name: 0.0 for name, p in wrapper.named_parameters() if p.requires_grad}
    losses = []
    for _ in range(20):
        document = torch.randint(0, VOCAB, (2, 5 * SEGMENT))
        wrapper.reset_memory()
        loss = wrapper(document, labels=document).loss
        loss.backward()
        for name, parameter in wrapper.named_parameters():
            if parameter.requires_grad and parameter.grad is not None:
                largest[name] = max(largest[name], parameter.grad.abs().max().item())
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    key_bias = largest.pop(KEY_BIAS)
    dead = [name for name, size in largest.items() if not size > 1e-7]
    assert not dead, f"memory parameters without a gradient: {dead}"
    assert key_bias < 1e-6 * largest["memory.abstractor.key_transform.weight"], key_bias
    assert all(p.grad is None for name, p in wrapper.named_parameters() if name.startswith("model."))
    return losses[0], losses[-1]


def generate_across_boundaries(wrapper) -> float:
    """Generate 20 tokens after a 13-token prompt (boundaries at 16, 24, 32); the largest logit difference to the
    segment-wise forward of the generated text."""
    prompt = torch.randint(0, VOCAB, (2, 13))
    wrapper.reset_memory()
    torch.manual_seed(1)
    output = wrapper.generate(prompt, max_new_tokens=20, return_dict=True)
    wrapper.reset_memory()
    torch.manual_seed(1)
    with torch.no_grad():
        logits = wrapper(output.sequences).logits
    difference = (output.logits - logits[:, 12:-1]).abs().max().item()
    assert output.sequences.shape == (2, 33) and difference < 1e-5, difference
    return difference


def save_and_reload(wrapper, folder: Path) -> None:
    """Save the memory's weights and mid-document state; reload into a fresh wrapper: identical logits."""
    document = torch.randint(0, VOCAB, (2, 4 * SEGMENT))
    wrapper.reset_memory()
    with torch.no_grad():
        wrapper(document[:, : 3 * SEGMENT])
    wrapper.model.save_pretrained(folder)
    save_memoria(wrapper, folder)
    save_memory(wrapper, folder / "memory_state.pt")
    torch.manual_seed(2)
    with torch.no_grad():
        expected = wrapper(document[:, 3 * SEGMENT :]).logits
    fresh = load_memoria(transformers.AutoModelForCausalLM.from_pretrained(folder).eval(), folder)
    load_memory(fresh, folder / "memory_state.pt")
    torch.manual_seed(2)
    with torch.no_grad():
        got = fresh(document[:, 3 * SEGMENT :]).logits
    assert torch.equal(got, expected), (got - expected).abs().max()


def compiled_training_step(wrapper) -> float:
    """One training step on a 3-segment document, eager and under torch.compile (inductor): the largest loss and
    gradient difference."""
    twin = copy.deepcopy(wrapper)
    document = torch.randint(0, VOCAB, (2, 3 * SEGMENT))
    # each family is a program of its own: dynamo's cache (and its limit of 8 graphs per function) starts afresh
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    results = []
    for model, step in ((wrapper, wrapper), (twin, torch.compile(twin, backend="inductor"))):
        model.reset_memory()
        torch.manual_seed(3)
        loss = step(document, labels=document).loss
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.memory_parameters()]))
        for parameter in model.memory_parameters():
            parameter.grad = None
    difference = max(
        [(results[0][0] - results[1][0]).abs().item()]
        + [(a - b).abs().max().item() for a, b in zip(results[0][1], results[1][1])]
    )
    assert difference < 1e-4, difference
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
    assert graphs > 0, "nothing was compiled"
    return difference, graphs, breaks


def main() -> None:
    assert importlib.util.find_spec("experiment") is None, "experiment/ must not be importable here"
    assert all(native.built().values()), f"the C extensions were not built: {native.built()}"
    print(f"memoria {memoria.__version__} from {Path(memoria.__file__).parent}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, C extensions {native.built()}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for family in ("gpt2", "llama", "qwen2", "mistral", "gpt_neox"):
            began = time.perf_counter()
            torch.manual_seed(0)
            wrapper = add_memoria(tiny_model(family), layers=[0, 2], segment_length=SEGMENT, **MEMORY)
            first, last = train_20_steps(wrapper)
            generated = generate_across_boundaries(wrapper)
            save_and_reload(wrapper, Path(scratch) / family)
            wrapper.eval()
            compiled, graphs, breaks = compiled_training_step(wrapper)
            print(
                f"{family:8s} train 20 steps: loss {first:.3f} -> {last:.3f}, every memory parameter got a gradient;"
                f" generate across 3 boundaries: max |logit - forward| {generated:.1e}; weights + memory state"
                f" reloaded: identical logits; inductor step ({graphs} graphs, {breaks} breaks): max |diff|"
                f" {compiled:.1e}"
                f" ({time.perf_counter() - began:.0f} s)"
            )
    print(f"all checks passed in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
