import torch
from transformers import AutoModelForCausalLM

from experiment.models.transformer_xl import (
    RelativeSelfAttention,
    TransformerXLConfig,
    TransformerXLLMHeadModel,
    sinusoid_positions,
)


def _model(config: dict) -> TransformerXLLMHeadModel:
    return TransformerXLLMHeadModel(TransformerXLConfig(**config)).eval()


def test_forward_backward_and_mems_shape(tiny_xl):
    model = _model(tiny_xl).train()
    tokens = torch.randint(0, 21, (2, 6))
    first = model(tokens, labels=tokens)
    second = model(tokens, mems=first.mems, labels=tokens)
    assert second.logits.shape == (2, 6, 21)
    assert [m.shape for m in second.mems] == [(2, 8, 16)] * 2  # capped at mem_len
    assert all(not m.requires_grad for m in second.mems)
    second.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_memory_changes_the_output(tiny_xl):
    model = _model(tiny_xl)
    a, b = torch.randint(0, 21, (2, 1, 6))
    with torch.no_grad():
        with_memory = model(b, mems=model(a).mems).logits
        without = model(b).logits
    assert not torch.allclose(with_memory, without, atol=1e-5)


def test_attention_is_causal_and_matches_one_long_pass(tiny_xl):
    # With mem_len >= segment length, two segments with recurrence equal one pass over both (no dropout).
    model = _model(tiny_xl)
    tokens = torch.randint(0, 21, (1, 8))
    with torch.no_grad():
        whole = model(tokens).logits
        first = model(tokens[:, :4])
        second = model(tokens[:, 4:], mems=first.mems).logits
    torch.testing.assert_close(torch.cat([first.logits, second], dim=1), whole, atol=1e-5, rtol=1e-5)
    changed = tokens.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 21
    with torch.no_grad():
        torch.testing.assert_close(model(changed).logits[:, :-1], whole[:, :-1])


def test_relative_attention_matches_the_formula_position_by_position(tiny_xl):
    # score(i, j) = (q_i + u) . k_j + (q_i + v) . r_(M+i-j) over keys j <= M + i, written out one pair at a time.
    attention = RelativeSelfAttention(TransformerXLConfig(**tiny_xl)).eval()
    torch.nn.init.normal_(attention.r_w_bias)
    torch.nn.init.normal_(attention.r_r_bias)
    hidden, memory = torch.randn(1, 3, 16), torch.randn(1, 2, 16)
    with torch.no_grad():
        out = attention(hidden, memory)
        context = torch.cat([memory, hidden], dim=1)[0]
        q = attention.query(hidden[0]).view(3, 2, 8)
        k, v = (t.view(5, 2, 8) for t in attention.key_value(context).split(16, dim=-1))
        r = attention.position(sinusoid_positions(5, 16, hidden.device)).view(5, 2, 8)
        expected = torch.zeros(3, 2, 8)
        for i in range(3):
            for h in range(2):
                keys = range(2 + i + 1)
                scores = torch.stack(
                    [
                        (q[i, h] + attention.r_w_bias[h]) @ k[j, h]
                        + (q[i, h] + attention.r_r_bias[h]) @ r[2 + i - j, h]
                        for j in keys
                    ]
                )
                weights = (scores / 8**0.5).softmax(0)
                expected[i, h] = sum(w * v[j, h] for w, j in zip(weights, keys))
        expected = attention.output(expected.reshape(3, 16))
    torch.testing.assert_close(out[0], expected, atol=1e-5, rtol=1e-5)


def test_save_and_load_round_trip(tiny_xl, tmp_path):
    model = _model(tiny_xl)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, TransformerXLLMHeadModel)
    tokens = torch.randint(0, 21, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens).logits, model(tokens).logits)
