"""memoria.integrations.transformers.generation: generate() reads a prompt longer than a segment through the memory,
which advances at segment boundaries exactly as the segment-wise forward of the whole text does."""

import pytest
import torch
from conftest import MEMORY, VOCAB, open_gates, tiny_model

from memoria.integrations.transformers import add_memoria, next_tokens

SEGMENT = 8


def memory_tensors(wrapper) -> dict:
    engrams = wrapper.memory.memoria.engrams
    return {"data": engrams.data, "lifespan": engrams.lifespan, "previous": wrapper.memory.previous_hidden}


def generate_then_forward(wrapper, prompt, attention_mask=None, **options):
    """generate() from an empty memory, then forward() of the generated text from an empty memory, with the same
    global RNG state for remind's tie-breaks; the output, the forward's logits and both memories."""
    wrapper.reset_memory()
    torch.manual_seed(11)
    output = wrapper.generate(prompt, attention_mask, return_dict=True, **options)
    after_generate = memory_tensors(wrapper)
    wrapper.reset_memory()
    torch.manual_seed(11)
    mask = None
    if attention_mask is not None:
        new = output.sequences.size(1) - prompt.size(1)
        mask = torch.cat([attention_mask, attention_mask.new_ones(prompt.size(0), new)], dim=1)
    with torch.no_grad():
        logits = wrapper(output.sequences, attention_mask=mask).logits
    return output, logits, after_generate, memory_tensors(wrapper)


def test_generated_logits_equal_the_segment_wise_forward_across_three_boundaries(family):
    wrapper = add_memoria(tiny_model(family), layers=[0, 2], segment_length=SEGMENT, **MEMORY)
    open_gates(wrapper)
    prompt = torch.randint(3, VOCAB, (2, 13))  # longer than a segment: one boundary inside the prompt
    output, logits, after_generate, after_forward = generate_then_forward(wrapper, prompt, max_new_tokens=20)
    assert output.sequences.shape == (2, 33) and torch.equal(output.sequences[:, :13], prompt)
    # boundaries after tokens 16, 24 and 32 fall inside the generation; new token i comes from position 12 + i
    torch.testing.assert_close(output.logits, logits[:, 12:-1], rtol=0, atol=1e-5)
    assert torch.equal(output.sequences[:, 13:], logits[:, 12:-1].argmax(-1))  # greedy
    assert wrapper.memory.memoria.engrams.memory_length > 0
    for name in after_forward:  # and the memory ends where the forward leaves it
        torch.testing.assert_close(after_generate[name], after_forward[name], rtol=0, atol=1e-5, msg=name)


def test_left_padded_prompts_generate_as_the_forward_with_their_mask():
    wrapper = add_memoria(tiny_model("llama"), segment_length=SEGMENT, **MEMORY)
    open_gates(wrapper)
    prompt = torch.randint(3, VOCAB, (2, 11))
    mask = torch.ones(2, 11, dtype=torch.long)
    mask[0, :9] = 0
    prompt = prompt.masked_fill(mask == 0, 0)
    output, logits, _, _ = generate_then_forward(wrapper, prompt, mask, max_new_tokens=16)
    torch.testing.assert_close(output.logits, logits[:, 10:-1], rtol=0, atol=1e-5)


def test_sampling_draws_within_top_k_and_top_p_and_repeats_with_its_generator():
    wrapper = add_memoria(tiny_model("qwen2"), segment_length=SEGMENT, **MEMORY)
    open_gates(wrapper)
    prompt = torch.randint(3, VOCAB, (2, 10))
    options = dict(max_new_tokens=18, do_sample=True, temperature=0.8, top_k=5, top_p=0.9)
    runs = []
    for _ in range(2):
        output, logits, _, _ = generate_then_forward(
            wrapper, prompt, generator=torch.Generator().manual_seed(4), **options
        )
        runs.append(output.sequences)
        torch.testing.assert_close(output.logits, logits[:, 9:-1], rtol=0, atol=1e-5)
        top = output.logits.topk(5, dim=-1).indices
        assert (top == output.sequences[:, 10:, None]).any(-1).all()
    assert torch.equal(runs[0], runs[1])


def test_next_tokens_top_p_keeps_the_smallest_set_that_holds_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    draws = torch.stack([next_tokens(logits, True, top_p=0.7) for _ in range(200)])
    assert set(draws.flatten().tolist()) == {0, 1}  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7
    assert next_tokens(logits, False).item() == 0
    draws = torch.stack([next_tokens(logits, True, top_k=1) for _ in range(20)])
    assert set(draws.flatten().tolist()) == {0}


def test_rows_stop_at_eos_and_are_padded():
    wrapper = add_memoria(tiny_model("gpt_neox"), segment_length=SEGMENT, **MEMORY)
    prompt = torch.randint(3, VOCAB, (2, 9))
    with torch.no_grad():
        first = wrapper.generate(prompt, max_new_tokens=6)
    wrapper.reset_memory()
    eos = first[0, 11].item()  # row 0 says it third
    with torch.no_grad():
        out = wrapper.generate(prompt, max_new_tokens=6, eos_token_id=[eos], pad_token_id=0)
    row = out[0, 9:].tolist()
    stop = row.index(eos)
    assert stop <= 2 and all(token == 0 for token in row[stop + 1 :])


@pytest.mark.parametrize(
    "options",
    [dict(max_new_tokens=0), dict(temperature=0), dict(top_k=0), dict(top_p=1.5), dict(top_p="0.9")],
)
def test_bad_generation_options_are_refused_before_the_memory_changes(options):
    wrapper = add_memoria(tiny_model("mistral"), segment_length=SEGMENT, **MEMORY)
    with pytest.raises(ValueError):
        wrapper.generate(torch.randint(3, VOCAB, (1, 5)), **options)
    assert wrapper.memory.memoria.engrams.memory_length == 0 and wrapper.memory.previous_hidden is None
