"""Tiny random-initialised causal LMs of every family the transformers integration supports (nothing downloaded)."""

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the transformers integration needs transformers")

FAMILIES = ("gpt2", "llama", "qwen2", "mistral", "gpt_neox")
VOCAB = 61
# a small memory that fills within a few segments, so that reminded memories (short- and long-term) are read
MEMORY = dict(
    num_working_memories=4, num_reminded_stm=4, stm_capacity=8, ltm_search_depth=2, initial_lifespan=3, num_final_ltms=4
)


def tiny_config(family: str):
    """A 3-layer, 32-wide config of ``family`` with 64 positions."""
    common = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    if family == "gpt2":
        return transformers.GPT2Config(
            vocab_size=VOCAB,
            n_embd=32,
            n_layer=3,
            n_head=4,
            n_positions=64,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
    if family == "llama":
        return transformers.LlamaConfig(**common, num_key_value_heads=2)
    if family == "qwen2":
        return transformers.Qwen2Config(**common, num_key_value_heads=2)
    if family == "mistral":
        return transformers.MistralConfig(**common, num_key_value_heads=2, sliding_window=16)
    if family == "gpt_neox":
        return transformers.GPTNeoXConfig(**common)
    raise ValueError(family)


def tiny_model(family: str, seed: int = 0):
    """A random-initialised causal LM of ``family`` in eval mode (no dropout), the same for the same seed."""
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(tiny_config(family)).eval()


def open_gates(wrapper, value: float = 0.5) -> None:
    """Give every memory read a non-zero gate, as training does after its first step."""
    with torch.no_grad():
        for reader in wrapper.readers:
            reader.gate.fill_(value)


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param
