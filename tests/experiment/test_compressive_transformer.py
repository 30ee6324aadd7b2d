"""Compressive Transformer: forward/backward, memory and compressed-memory updates, save/load."""

import pytest
import torch

from experiment.models.compressive_transformer import (
    CompressiveMemories,
    CompressiveTransformerConfig,
    CompressiveTransformerLMHeadModel,
)


def tiny_config(**overrides):
    settings = dict(
        vocab_size=11,
        n_embd=16,
        n_layer=2,
        n_head=2,
        mem_len=6,
        compressed_mem_len=4,
        compression_rate=2,
        dropout=0.0,
        attn_dropout=0.0,
    )
    settings.update(overrides)
    return CompressiveTransformerConfig(**settings)


def test_forward_backward_trains_the_compressor_only_through_reconstruction():
    torch.manual_seed(0)
    model = CompressiveTransformerLMHeadModel(tiny_config())
    ids = torch.randint(0, 11, (3, 8))
    first = model(ids, labels=ids)
    assert first.logits.shape == (3, 8, 11)
    assert first.reconstruction_loss.item() > 0  # 8 states, mem_len 6: 2 were evicted and compressed
    second = model(ids, compressive_mems=first.compressive_mems, labels=ids)
    assert torch.isclose(second.loss, second.lm_loss + second.reconstruction_loss)
    second.lm_loss.backward(retain_graph=True)
    compressor = model.transformer.compressors[0].conv.weight
    assert compressor.grad is None or compressor.grad.abs().sum() == 0  # memories are detached
    model.zero_grad()
    second.reconstruction_loss.backward()
    assert compressor.grad.abs().sum() > 0
    others = [p for n, p in model.named_parameters() if "compressors" not in n]
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in others)


def test_memory_and_compressed_memory_update_by_mean_pooling():
    torch.manual_seed(0)
    model = CompressiveTransformerLMHeadModel(tiny_config(compression="mean")).eval()
    inputs = {}
    model.transformer.h[0].register_forward_pre_hook(lambda module, args: inputs.__setitem__("h", args[0].clone()))
    ids = torch.randint(0, 11, (2, 8))
    first = model(ids)
    h1 = inputs["h"]  # layer 0's input, (2, 8, 16)
    state = first.compressive_mems
    assert torch.equal(state.memories[0], h1[:, 2:])
    assert torch.allclose(state.compressed[0], h1[:, :2].mean(dim=1, keepdim=True))
    second = model(ids, compressive_mems=state)
    h2 = inputs["h"]
    # Evicted this time: the 6 old memories and the first 2 new states -> 4 slots; 1 + 4 slots keep the last 4.
    evicted = torch.cat([h1[:, 2:], h2[:, :2]], dim=1)
    expected = torch.cat([h1[:, :2].mean(1, keepdim=True), evicted.view(2, 4, 2, 16).mean(2)], dim=1)[:, -4:]
    assert torch.allclose(second.compressive_mems.compressed[0], expected, atol=1e-6)
    assert torch.equal(second.compressive_mems.memories[0], h2[:, 2:])
    # The memory is read: the same segment gives other logits with and without it.
    assert not torch.allclose(second.logits, first.logits)


def test_odd_eviction_drops_the_oldest_remainder():
    model = CompressiveTransformerLMHeadModel(tiny_config(compression="max", mem_len=4, compression_rate=3)).eval()
    state = model(torch.randint(0, 11, (1, 9))).compressive_mems  # 5 evicted -> 1 slot from the newest 3
    assert [t.shape[1] for t in state.compressed] == [1, 1]
    assert [t.shape[1] for t in state.memories] == [4, 4]


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = CompressiveTransformerLMHeadModel(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    loaded = CompressiveTransformerLMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 11, (2, 5))
    assert torch.allclose(model(ids).logits, loaded(ids).logits)
    assert loaded.config.compressed_mem_len == 4


def test_bad_config_and_state():
    with pytest.raises(ValueError, match="compression must be one of"):
        tiny_config(compression="zip")
    model = CompressiveTransformerLMHeadModel(tiny_config())
    with pytest.raises(ValueError, match="memories for 2 layers"):
        model(torch.zeros(1, 3, dtype=torch.long), compressive_mems=CompressiveMemories([torch.zeros(1, 1, 16)], []))


def test_registered_with_auto_classes():
    from transformers import AutoConfig, AutoModelForCausalLM

    from experiment.models import MODEL_REGISTRY

    assert MODEL_REGISTRY["compressive_transformer"].state_argument == "compressive_mems"
    config = AutoConfig.for_model("compressive_transformer", vocab_size=7, n_embd=8, n_head=2, n_layer=1)
    assert isinstance(AutoModelForCausalLM.from_config(config), CompressiveTransformerLMHeadModel)
