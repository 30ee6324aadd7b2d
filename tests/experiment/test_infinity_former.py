"""∞-former: a segment reads earlier ones only through its continuous memory, the memory is detached, the
long-term attention is the signal integrated against each query's density, and the model is registered."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from experiment.models import MODEL_REGISTRY, build_model
from experiment.models.continuous_memory import evaluate_signal, truncated_gaussian_pdf
from experiment.models.infinity_former import InfinityFormerConfig, InfinityFormerLMHeadModel, LongTermAttention

TINY = dict(
    vocab_size=21,
    n_positions=16,
    n_embd=16,
    n_layer=2,
    n_head=2,
    num_basis=8,
    num_samples=12,
    sticky_bins=4,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
)


def _model(**overrides) -> InfinityFormerLMHeadModel:
    return InfinityFormerLMHeadModel(InfinityFormerConfig(**{**TINY, **overrides}))


def test_registered_with_the_auto_classes_and_the_task_state_argument():
    assert MODEL_REGISTRY["infinity_former"].state_argument == "long_term_memory"
    config = AutoConfig.for_model("infinity_former", **TINY)
    assert type(AutoModelForCausalLM.from_config(config)) is InfinityFormerLMHeadModel
    assert type(build_model({"model_type": "infinity_former", **TINY})) is InfinityFormerLMHeadModel


def test_memory_shapes_and_what_is_detached():
    model = _model().train()
    embeddings = []
    model.transformer.wte.register_forward_hook(lambda module, inputs, output: embeddings.append(output))
    tokens = torch.randint(0, 21, (3, 10))
    first = model(tokens, labels=tokens)
    assert [m.shape for m in first.long_term_memory] == [(3, 8, 16)] * 2
    assert all(not m.requires_grad and m.dtype == torch.float32 for m in first.long_term_memory)
    second = model(tokens, long_term_memory=first.long_term_memory, labels=tokens)
    # The second segment's loss reaches its own embeddings but not the first segment's: the memory is detached.
    assert torch.autograd.grad(second.loss, embeddings[0], retain_graph=True, allow_unused=True)[0] is None
    assert torch.autograd.grad(second.loss, embeddings[1], retain_graph=True)[0].abs().sum() > 0
    second.loss.backward()
    long_term = {name: p.grad for name, p in model.named_parameters() if ".long_term." in name}
    assert long_term and all(g is not None and g.abs().sum() > 0 for g in long_term.values())  # it trains


def test_without_memory_the_long_term_attention_gets_no_gradient():
    model = _model().train()
    tokens = torch.randint(0, 21, (2, 10))
    model(tokens, labels=tokens).loss.backward()
    for name, parameter in model.named_parameters():
        assert (parameter.grad is None) == (".long_term." in name), name


def test_a_segment_depends_on_earlier_segments_only_through_the_memory():
    model = _model().eval()
    history_a, history_b, segment = torch.randint(0, 21, (3, 2, 10))
    with torch.no_grad():
        memory = model(history_b, long_term_memory=model(history_a).long_term_memory).long_term_memory
        expected = model(segment, long_term_memory=memory).logits
        model(torch.randint(0, 21, (2, 7)))  # unrelated work in between leaves nothing behind
        again = model(segment, long_term_memory=[m.clone() for m in memory]).logits
        copy = _model().eval()
        copy.load_state_dict(model.state_dict())
        in_copy = copy(segment, long_term_memory=memory).logits  # another instance, same weights and memory
        other_history = model(segment, long_term_memory=model(history_b).long_term_memory).logits
        no_memory = model(segment).logits
    torch.testing.assert_close(again, expected, rtol=0, atol=0)
    torch.testing.assert_close(in_copy, expected)
    assert not torch.allclose(other_history, expected, atol=1e-4)  # and the memory does matter
    assert not torch.allclose(no_memory, expected, atol=1e-4)


def test_attention_within_a_segment_is_causal_with_memory():
    model = _model().eval()
    tokens = torch.randint(0, 21, (2, 10))
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 21
    with torch.no_grad():
        memory = model(torch.randint(0, 21, (2, 10))).long_term_memory
        logits = model(tokens, long_term_memory=memory).logits
        logits_changed = model(changed, long_term_memory=memory).logits
    torch.testing.assert_close(logits[:, :-1], logits_changed[:, :-1])
    assert not torch.allclose(logits[:, -1], logits_changed[:, -1])


def test_long_term_attention_integrates_the_signal_against_each_query_density():
    config = InfinityFormerConfig(**TINY)
    model = _model()
    attention: LongTermAttention = model.transformer.h[0].long_term
    torch.nn.init.normal_(attention.location_weight, std=1.0)  # densities away from the initial broad ones
    hidden, coefficients = torch.randn(1, 5, 16), torch.randn(1, 8, 16)
    with torch.no_grad():
        readout = attention(hidden, coefficients)
        grid = torch.linspace(0, 1, 20001)
        signal = evaluate_signal(attention.basis, coefficients, grid[None])[0]  # (grid, D)
        values = (signal @ attention.key_value.weight[16:].T).view(-1, 2, 8)  # (grid, H, hd): V(t) = x(t) W_V
        density = truncated_gaussian_pdf(grid, readout.mean[0], readout.variance[0])  # (H, L, grid)
        context = torch.einsum("hlg,ghd->lhd", density, values) * (grid[1] - grid[0])  # rectangle rule
        expected = attention.output(context.reshape(5, 16))
    torch.testing.assert_close(readout.output[0], expected, atol=2e-3, rtol=2e-3)
    assert readout.bins.shape == (1, config.sticky_bins)
    torch.testing.assert_close(readout.bins.sum(dim=1), torch.ones(1))
    assert (readout.variance > 0).all() and ((readout.mean > 0) & (readout.mean < 1)).all()


def test_evaluation_is_deterministic_and_training_draws_the_sticky_positions():
    model = _model()
    tokens = torch.randint(0, 21, (2, 10))
    with torch.no_grad():
        memory = model.eval()(tokens).long_term_memory
        runs = [model(tokens, long_term_memory=memory).long_term_memory[0] for _ in range(2)]
        torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
        drawn = [model.train()(tokens, long_term_memory=memory).long_term_memory[0] for _ in range(2)]
    assert not torch.equal(drawn[0], drawn[1])


def test_bad_memory_and_config_are_refused():
    model = _model()
    tokens = torch.randint(0, 21, (2, 6))
    memory = model(tokens).long_term_memory
    with pytest.raises(ValueError, match="long_term_memory must hold 2"):
        model(tokens, long_term_memory=memory[:1])
    with pytest.raises(ValueError, match="long_term_memory tensors must be"):
        model(tokens[:1], long_term_memory=memory)
    with pytest.raises(ValueError, match="n_positions"):
        model(torch.randint(0, 21, (1, 17)))
    for field, value in (("tau", 1.0), ("tau", 0.0), ("ridge_penalty", 0.0), ("num_samples", 0)):
        with pytest.raises(ValueError, match=field):
            InfinityFormerConfig(**{**TINY, field: value})
    with pytest.raises(ValueError, match="widths"):
        InfinityFormerConfig(**{**TINY, "basis_widths": [0.1, 0.2, 0.3]})


def test_save_and_load_round_trip(tmp_path):
    model = _model().eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tokens = torch.randint(0, 21, (2, 8))
    with torch.no_grad():
        memory = model(tokens).long_term_memory
        torch.testing.assert_close(
            loaded(tokens, long_term_memory=memory).logits, model(tokens, long_term_memory=memory).logits
        )
