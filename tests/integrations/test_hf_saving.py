"""memoria.integrations.transformers.saving: the memory's weights (a folder of their own, beside the base model's) and
its state (per document, memoria.nn.save_memory) reload into a fresh wrapper with identical logits."""

import json

import pytest
import torch
from conftest import MEMORY, VOCAB, tiny_model
from transformers import AutoModelForCausalLM

from memoria.integrations.transformers import add_memoria, load_memoria, save_memoria
from memoria.nn import load_memory, save_memory


def trained_wrapper(family: str):
    """A wrapper whose memory parameters moved off their initial values (two steps over a frozen base)."""
    wrapper = add_memoria(tiny_model(family), layers=[1, 2], segment_length=8, **MEMORY)
    wrapper.model.requires_grad_(False)
    optimizer = torch.optim.AdamW(wrapper.memory_parameters(), lr=1e-2)
    for document in torch.randint(0, VOCAB, (2, 2, 32)):
        wrapper.reset_memory()
        wrapper(document, labels=document).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return wrapper


def test_weights_and_memory_state_round_trip_into_a_fresh_wrapper(family, tmp_path):
    wrapper = trained_wrapper(family)
    document = torch.randint(0, VOCAB, (2, 40))
    wrapper.reset_memory()
    with torch.no_grad():
        wrapper(document[:, :24])  # three segments read: a memory mid-document
    wrapper.model.save_pretrained(tmp_path)  # the base model's own files ...
    save_memoria(wrapper, tmp_path)  # ... and the memory's beside them
    save_memory(wrapper, tmp_path / "memory_state.pt")  # the document's state, apart from the weights
    files = {path.name for path in tmp_path.iterdir()}
    assert {"memoria_config.json", "memoria_weights.safetensors", "memory_state.pt", "config.json"} <= files
    torch.manual_seed(2)
    with torch.no_grad():
        expected = wrapper(document[:, 24:]).logits

    fresh = load_memoria(AutoModelForCausalLM.from_pretrained(tmp_path).eval(), tmp_path)
    assert fresh.layer_indices == [1, 2] and fresh.segment_length == 8
    for name, tensor in wrapper.memory_weights().items():
        assert torch.equal(fresh.memory_weights()[name], tensor), name
    load_memory(fresh, tmp_path / "memory_state.pt")
    torch.manual_seed(2)
    with torch.no_grad():
        got = fresh(document[:, 24:]).logits
    assert torch.equal(got, expected)


def test_a_memory_saved_for_another_model_is_refused(tmp_path):
    save_memoria(add_memoria(tiny_model("llama"), segment_length=8, **MEMORY), tmp_path)
    config = json.loads((tmp_path / "memoria_config.json").read_text())
    assert config["settings"]["num_working_memories"] == 4 and config["settings"]["gate"] == 0.0
    narrow = tiny_model("llama")
    narrow.config.hidden_size = 16
    with pytest.raises(ValueError, match="hidden size"):
        load_memoria(narrow, tmp_path)
    with pytest.raises(FileNotFoundError):
        load_memoria(tiny_model("llama"), tmp_path / "nowhere")
    base = tiny_model("llama")
    with pytest.raises(ValueError, match="does not fit"):
        load_memoria(base, tmp_path, layers=[0])  # a reader saved for layers 1 and 2 has no place
    assert all(not layer._forward_hooks for layer in base.model.layers)
