"""generate() through the memory against a plain forward pass, segment by segment and token by token."""

import pytest
import torch

from experiment.models.memoria_generation import MemoriaGenerationCache
from experiment.models.memoria_transformer import MemoriaTransformerConfig, MemoriaTransformerLMHeadModel

SEGMENT = 8


@pytest.fixture
def model(tiny_memoria) -> MemoriaTransformerLMHeadModel:
    torch.manual_seed(0)
    # a wide initialisation so that the memory path visibly moves the logits
    return MemoriaTransformerLMHeadModel(MemoriaTransformerConfig(**tiny_memoria, initializer_range=0.3)).eval()


def plain_logits(model: MemoriaTransformerLMHeadModel, tokens: torch.Tensor) -> torch.Tensor:
    """Logits [Batch, Length, Vocab] of the training-time forward: whole segments, memory carried between them."""
    model.reset_memory()
    state, logits = None, []
    with torch.no_grad():
        for start in range(0, tokens.size(1), SEGMENT):
            output = model(tokens[:, start : start + SEGMENT], memory_hidden_states=state)
            state = output.memory_hidden_states
            logits.append(output.logits)
    return torch.cat(logits, dim=1)


def test_greedy_generate_matches_the_plain_forward_at_every_new_token(model):
    prompt = torch.randint(0, 21, (2, 19))  # two full segments and three tokens: the memory is read twice
    model.reset_memory()
    torch.manual_seed(1)
    generated = model.generate(
        prompt,
        max_new_tokens=22,  # crosses the boundaries at 24, 32 and 40
        do_sample=False,
        segment_length=SEGMENT,
        return_dict_in_generate=True,
        output_logits=True,
    )
    sequences = generated.sequences
    assert sequences.shape == (2, 41) and torch.equal(sequences[:, :19], prompt)

    torch.manual_seed(1)  # the same tie-break draws in remind
    reference = plain_logits(model, sequences[:, :-1])  # (B, 40, V)
    step_logits = torch.stack(generated.logits, dim=1)  # (B, 22, V): the logits each new token was chosen from
    torch.testing.assert_close(step_logits, reference[:, 18:], atol=2e-5, rtol=1e-4)
    assert torch.equal(sequences[:, 19:], reference[:, 18:].argmax(-1))

    # the memory matters: the third segment read alone gives other logits
    with torch.no_grad():
        alone = model(sequences[:, 16:24]).logits
    assert (alone - reference[:, 16:24]).abs().max() > 1e-2


def test_cache_fed_token_by_token_matches_whole_segments(model):
    tokens = torch.randint(0, 21, (2, 3 * SEGMENT + 5))
    torch.manual_seed(3)
    reference = plain_logits(model, tokens)
    model.reset_memory()
    torch.manual_seed(3)
    cache, logits = None, []
    with torch.no_grad():
        for position in range(tokens.size(1)):
            output = model(tokens[:, position : position + 1], cache=cache, use_cache=True, segment_length=SEGMENT)
            cache = output.cache
            logits.append(output.logits)
    torch.testing.assert_close(torch.cat(logits, dim=1), reference, atol=2e-5, rtol=1e-4)
    assert cache.get_seq_length() == tokens.size(1) and cache.filled == 5
    # three segments complete and a fourth begun: each segment after the first added working memories once
    assert model.memoria.timestep == 3


def test_generate_continues_from_a_returned_cache(model):
    prompt = torch.randint(0, 21, (2, 11))
    model.reset_memory()
    torch.manual_seed(1)  # the same tie-break draws in both runs
    whole = model.generate(prompt, max_new_tokens=20, do_sample=False, segment_length=SEGMENT)
    model.reset_memory()
    torch.manual_seed(1)
    first = model.generate(
        prompt, max_new_tokens=9, do_sample=False, segment_length=SEGMENT, return_dict_in_generate=True
    )
    assert first.cache.get_seq_length() == 19  # the last token chosen is read by the next call
    rest = model.generate(
        first.sequences, cache=first.cache, max_new_tokens=11, do_sample=False, segment_length=SEGMENT
    )
    assert torch.equal(rest, whole)


def test_sampling_is_reproducible_after_reset_memory(model):
    prompt = torch.randint(0, 21, (2, 11))
    runs = []
    for _ in range(2):
        model.reset_memory()
        torch.manual_seed(7)
        runs.append(model.generate(prompt, max_new_tokens=15, do_sample=True, top_k=0, segment_length=SEGMENT))
    assert torch.equal(runs[0], runs[1])
    model.reset_memory()
    torch.manual_seed(8)
    other = model.generate(prompt, max_new_tokens=15, do_sample=True, top_k=0, segment_length=SEGMENT)
    assert not torch.equal(runs[0], other)


def test_config_answers_to_the_names_generation_reads(model):
    config = model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.hidden_size) == (2, 2, 16)
    assert model.can_generate()


def test_bad_generation_arguments_are_named(model):
    tokens = torch.randint(0, 21, (1, 4))
    with pytest.raises(ValueError, match="attention_mask"):
        model(tokens, attention_mask=torch.tensor([[0, 1, 1, 1]]), use_cache=True)
    with pytest.raises(TypeError, match="cache"):
        model(tokens, cache=(torch.zeros(1),))
    cache = model(tokens, use_cache=True, segment_length=SEGMENT).cache
    with pytest.raises(ValueError, match="segment_length"):
        model(tokens, cache=cache, segment_length=4)
    with pytest.raises(ValueError, match="segment_length"):
        MemoriaGenerationCache(0)
    with pytest.raises(ValueError, match="n_positions"):
        model(tokens, use_cache=True, segment_length=64)
    with pytest.raises(ValueError, match="num_beams"):
        model.generate(tokens, max_new_tokens=2, num_beams=2)
