"""memoria.integrations.transformers.model: one call adds the memory to a causal LM of every family; at initialisation
the outputs are the pretrained model's; the memory trains over a frozen base; padding never reaches the memory; a
per-row reset leaves the other rows as they were."""

import copy
import subprocess
import sys

import pytest
import torch
from conftest import MEMORY, VOCAB, open_gates, tiny_model

from memoria.integrations.transformers import MemoriaForCausalLM, add_memoria, find_decoder_layers


def segment_wise_base_logits(base, input_ids: torch.Tensor, segment_length: int) -> torch.Tensor:
    """The base model alone, each segment on its own (positions from 0): [B, T, V]."""
    with torch.no_grad():
        return torch.cat([base(segment).logits for segment in input_ids.split(segment_length, dim=1)], dim=1)


def test_importing_memoria_and_memoria_nn_does_not_import_transformers():
    code = "import sys, memoria, memoria.nn, memoria.integrations; assert 'transformers' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_outputs_are_the_pretrained_models_at_initialisation(family):
    base = tiny_model(family)
    input_ids = torch.randint(0, VOCAB, (2, 36))  # 4 full segments and a partial one
    expected = segment_wise_base_logits(base, input_ids, 8)
    wrapper = add_memoria(base, layers=[0, -1], segment_length=8, **MEMORY)
    assert isinstance(wrapper, MemoriaForCausalLM) and wrapper.layer_indices == [0, 2]
    with torch.no_grad():
        output = wrapper(input_ids, labels=input_ids)
    assert torch.equal(output.logits, expected)  # bit for bit: the reads enter through gates at 0
    loss = torch.nn.functional.cross_entropy(expected[:, :-1].flatten(0, 1), input_ids[:, 1:].flatten())
    torch.testing.assert_close(output.loss, loss)
    assert wrapper.memory.memoria.engrams.memory_length > 0  # the memory did write and remind meanwhile
    # the base model called on its own stays the pretrained model, hooks or not, and without them after removal
    with torch.no_grad():
        open_gates(wrapper)
        assert torch.equal(base(input_ids[:, :8]).logits, expected[:, :8])
        assert wrapper.remove_memoria() is base and torch.equal(base(input_ids[:, :8]).logits, expected[:, :8])


def test_each_family_finds_its_decoder_layers(family):
    base = tiny_model(family)
    layers = find_decoder_layers(base)
    expected = base.transformer.h if family == "gpt2" else base.base_model.layers
    assert layers is expected and len(layers) == 3


def test_an_unknown_architecture_is_refused_unless_its_layers_are_given():
    class Config:
        hidden_size, num_attention_heads, num_hidden_layers = 32, 4, 2

    class Stack(torch.nn.Module):  # no _no_split_modules, no known attribute name
        def __init__(self):
            super().__init__()
            self.config = Config()
            self.rows = torch.nn.ModuleList([torch.nn.Linear(32, 32), torch.nn.Linear(32, 32)])

    with pytest.raises(ValueError, match="decoder_layers="):
        add_memoria(Stack(), segment_length=8)
    model = Stack()
    wrapper = add_memoria(model, layers=[1], segment_length=8, decoder_layers=model.rows, **MEMORY)
    assert wrapper.layer_indices == [1] and len(wrapper.readers) == 1


@pytest.mark.parametrize(
    "arguments, error",
    [
        (dict(layers=[3]), ValueError),
        (dict(layers=[0, 0]), ValueError),
        (dict(layers=[]), ValueError),
        (dict(layers="0"), TypeError),
        (dict(layers=[0.0]), TypeError),
        (dict(segment_length=0), ValueError),
        (dict(segment_length=65), ValueError),
        (dict(gate="0"), TypeError),
        (dict(num_working_memories=0), ValueError),
    ],
)
def test_bad_arguments_are_refused_before_the_model_changes(arguments, error):
    base = tiny_model("llama")
    options = {"segment_length": 8, **MEMORY, **arguments}
    with pytest.raises(error):
        add_memoria(base, **options)
    assert all(not layer._forward_hooks for layer in find_decoder_layers(base))


def test_bad_inputs_are_refused_before_the_memory_changes():
    wrapper = add_memoria(tiny_model("gpt2"), segment_length=8, **MEMORY)
    input_ids = torch.randint(0, VOCAB, (2, 16))
    wrapper(input_ids)
    state = wrapper.memory.memory_state_dict()
    for call, error in [
        (lambda: wrapper(input_ids.float()), TypeError),
        (lambda: wrapper(input_ids[0]), ValueError),
        (lambda: wrapper(input_ids, attention_mask=torch.ones(2, 15)), ValueError),
        (lambda: wrapper(input_ids, labels=input_ids[:, :4]), ValueError),
        (lambda: wrapper(torch.randint(0, VOCAB, (3, 8))), ValueError),  # another batch without reset_memory()
    ]:
        with pytest.raises(error):
            call()
    after = wrapper.memory.memory_state_dict()
    assert torch.equal(after["memory"]["state"]["engrams"]["data"], state["memory"]["state"]["engrams"]["data"])
    assert torch.equal(after["previous_hidden"], state["previous_hidden"])


def test_a_frozen_base_trains_every_memory_parameter_and_nothing_else(family):
    base = tiny_model(family)
    wrapper = add_memoria(base, layers=[0, 2], segment_length=8, **MEMORY)
    base.requires_grad_(False)
    parameters = list(wrapper.memory_parameters())
    assert {id(p) for p in parameters} == {id(p) for p in wrapper.parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(parameters, lr=1e-2)
    documents = torch.randint(0, VOCAB, (3, 2, 40))  # 5 segments: reminded memories are read from the third on
    losses = []
    for document in documents:
        wrapper.reset_memory()
        optimizer.zero_grad()
        loss = wrapper(document, labels=document).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    named = dict(wrapper.named_parameters())
    gradients = {name: p.grad.abs().max().item() for name, p in named.items() if p.requires_grad}
    # the abstractor's key bias adds the same score to every position a query sees: softmax cancels it, so its
    # gradient is zero but for rounding (as in the Memoria Transformer and the published package)
    assert (
        gradients.pop("memory.abstractor.key_transform.bias")
        < 1e-6 * gradients["memory.abstractor.key_transform.weight"]
    )
    dead = [name for name, size in gradients.items() if not size > 1e-7]
    assert not dead, f"memory parameters without a gradient: {dead}"
    assert len(gradients) == 8 + 2 + 11 * 2  # the abstractor (less its key bias), the write norm and two readers
    assert all(p.grad is None for name, p in named.items() if name.startswith("model."))
    assert all(reader.gate.abs().min() > 0 for reader in wrapper.readers)  # the reads have opened
    assert all(torch.isfinite(torch.tensor(losses)))


def test_padding_reaches_neither_the_real_tokens_nor_the_memory(family):
    base = tiny_model(family)
    wrapper = add_memoria(base, layers=[1], segment_length=8, **MEMORY)
    open_gates(wrapper)
    input_ids = torch.randint(3, VOCAB, (2, 32))
    mask = torch.ones(2, 32, dtype=torch.long)
    mask[1, :11] = 0  # left padding: a whole segment and part of the next
    outputs, states = [], []
    for pad in (0, 7):
        wrapper.reset_memory()
        torch.manual_seed(5)  # remind's tie-breaks alike
        padded = input_ids.masked_fill(mask == 0, pad)
        with torch.no_grad():
            outputs.append(wrapper(padded, attention_mask=mask).logits)
        states.append(wrapper.memory.memoria.engrams)
    real = mask.bool()
    torch.testing.assert_close(outputs[0][real], outputs[1][real], rtol=0, atol=1e-6)
    torch.testing.assert_close(states[0].data, states[1].data, rtol=0, atol=1e-6)
    torch.testing.assert_close(states[0].lifespan, states[1].lifespan, rtol=0, atol=1e-6)


def read_document(wrapper, segments, reset_row_at=None):
    """Logits [B, L, V] of each segment of ``segments`` [S, B, L]; row 0 restarts before segment ``reset_row_at``."""
    torch.manual_seed(3)  # the rows' generators of remind's tie-breaks are drawn from the global RNG
    logits = []
    for index, segment in enumerate(segments):
        if index == reset_row_at:
            wrapper.reset_memory_rows([0])
        with torch.no_grad():
            logits.append(wrapper(segment).logits)
    return logits


def test_a_row_reset_leaves_the_other_rows_exactly_as_they_were(family):
    wrapper = add_memoria(tiny_model(family), segment_length=8, independent_rows=True, **MEMORY)
    open_gates(wrapper)
    twin = copy.deepcopy(wrapper)
    segments = torch.randint(0, VOCAB, (6, 2, 8))
    kept = read_document(twin, segments)
    reset = read_document(wrapper, segments, reset_row_at=3)
    for index in range(6):
        assert torch.equal(reset[index][1], kept[index][1]), f"row 1 changed at segment {index}"
        assert torch.equal(reset[index][0], kept[index][0]) == (index < 3)  # row 0 forgot its document


def test_gradient_checkpointing_of_the_base_gives_the_same_gradients():
    """transformers checkpoints a layer's forward, not its call: the memory read (a hook) runs once, outside it."""
    gradients = []
    document = torch.randint(0, VOCAB, (2, 32))
    for checkpointing in (False, True):
        base = tiny_model("llama")
        wrapper = add_memoria(base, layers=[1, 2], segment_length=8, **MEMORY)
        open_gates(wrapper)
        if checkpointing:
            base.activation_checkpointing_enable({"use_reentrant": False})
        attention_runs = []  # inside the checkpointed forward: run again by the backward pass when checkpointing
        base.model.layers[1].self_attn.register_forward_hook(lambda *args: attention_runs.append(1))
        wrapper.train()
        torch.manual_seed(4)
        wrapper(document, labels=document).loss.backward()
        assert len(attention_runs) == (8 if checkpointing else 4)
        gradients.append({name: p.grad for name, p in wrapper.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys() and any(name.startswith("model.") for name in gradients[0])
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, rtol=1e-5, atol=1e-7, msg=name)
