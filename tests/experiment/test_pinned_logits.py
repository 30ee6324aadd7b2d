"""Tiny models saved by the experiment models as they were before the rebuild on ``memoria.nn`` (main fcde2ef; see
fixtures/pinned/make_pinned.py) load into today's models and give the outputs recorded then: logits, reminded
indices, lifespan deltas and the final engrams. Every parameter of the saved models was moved off its initial value,
so a weight that loads into the wrong place, or not at all, changes the outputs."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from experiment.models.memoria_bert import MemoriaBertForSequenceClassification
from experiment.models.memoria_roberta import MemoriaRobertaForSequenceClassification
from experiment.models.memoria_transformer import MemoriaTransformerLMHeadModel

PINNED = Path(__file__).parent / "fixtures" / "pinned"


def expected(name: str) -> dict:
    return torch.load(PINNED / name / "expected.pt", weights_only=True)


def assert_same_memory(model: torch.nn.Module, pinned: dict) -> None:
    engrams = model.memoria.engrams
    assert torch.equal(engrams.engrams_types, pinned["engram_types"])
    assert (pinned["engram_types"] == 3).any()  # the pinned run reached the long-term memory
    torch.testing.assert_close(engrams.data, pinned["engram_data"], rtol=1e-5, atol=1e-6)


def test_the_files_hold_the_abstractor_under_its_earlier_name():
    keys = load_file(PINNED / "memoria_transformer" / "model.safetensors")
    assert "transformer.abstractor.query_embeddings" in keys
    assert not any(".memory.abstractor." in key for key in keys)


def test_memoria_transformer_loads_and_gives_the_pinned_logits():
    pinned = expected("memoria_transformer")
    model = MemoriaTransformerLMHeadModel.from_pretrained(PINNED / "memoria_transformer").eval()
    torch.manual_seed(1)  # the tie-break draws of remind, as when the outputs were recorded
    state, logits, indices, deltas = None, [], [], []
    with torch.no_grad():
        for segment in pinned["input_ids"]:
            output = model(segment, memory_hidden_states=state)
            state = output.memory_hidden_states
            logits.append(output.logits)
            if output.reminded_indices is not None:
                indices.append(output.reminded_indices)
                deltas.append(output.lifespan_delta)
    # bit-identical on the machine that wrote them; a tolerance for other CPUs' kernels
    torch.testing.assert_close(torch.stack(logits), pinned["logits"], rtol=1e-5, atol=1e-5)
    assert len(indices) == len(pinned["reminded_indices"])
    for got, want in zip(indices, pinned["reminded_indices"]):
        assert torch.equal(got, want)
    for got, want in zip(deltas, pinned["lifespan_delta"]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert_same_memory(model, pinned)


def test_memoria_transformer_state_dict_with_the_earlier_names_loads_into_torch():
    """Lightning checkpoints and plain ``load_state_dict`` go through PyTorch, not ``from_pretrained``."""
    reference = MemoriaTransformerLMHeadModel.from_pretrained(PINNED / "memoria_transformer")
    earlier = load_file(PINNED / "memoria_transformer" / "model.safetensors")  # transformer.abstractor.*
    fresh = MemoriaTransformerLMHeadModel(reference.config)
    fresh.load_state_dict(earlier, strict=False)  # lm_head is tied, not in the file
    for name, tensor in reference.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name


@pytest.mark.parametrize(
    "name, model_class",
    [
        ("memoria_bert", MemoriaBertForSequenceClassification),
        ("memoria_roberta", MemoriaRobertaForSequenceClassification),
    ],
)
def test_memoria_encoders_load_and_give_the_pinned_outputs(name, model_class):
    pinned = expected(name)
    model = model_class.from_pretrained(PINNED / name).eval()
    hidden, indices, deltas, logits = [], [], [], []

    def keep(module: torch.nn.Module, args: tuple, output: object) -> None:
        hidden.append(output.last_hidden_state)
        indices.append(output.reminded_indices)
        deltas.append(output.lifespan_delta)

    model.base_model.register_forward_hook(keep)
    torch.manual_seed(1)
    with torch.no_grad():
        for segment, mask in zip(pinned["input_ids"], pinned["attention_mask"]):
            logits.append(model(segment, mask).logits)
    # bit-identical on the machine that wrote them; a tolerance for other CPUs' kernels
    torch.testing.assert_close(torch.stack(logits), pinned["logits"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.stack(hidden), pinned["last_hidden_state"], rtol=1e-5, atol=1e-5)
    for got, want in zip(indices, pinned["reminded_indices"], strict=True):
        assert torch.equal(got, want)
    for got, want in zip(deltas, pinned["lifespan_delta"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert_same_memory(model, pinned)
