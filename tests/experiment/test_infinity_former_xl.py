"""The ∞-former in its original form: recent states read exactly through the Transformer-XL cache, only the
states that left it in the continuous memory, the gate and the KL term as the original has them, registered."""

import math

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from experiment.models import MODEL_REGISTRY, build_model
from experiment.models.continuous_memory import GaussianBasis, evaluate_signal, expected_basis_untruncated
from experiment.models.infinity_former_xl import (
    InfinityFormerXLConfig,
    InfinityFormerXLLMHeadModel,
    memory_positions,
    padding_positions,
)
from experiment.models.transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel
from experiment.tasks.base import run_segments

TINY = dict(vocab_size=21, n_embd=16, n_layer=2, n_head=2, mem_len=8, num_basis=8, num_samples=12)
TINY_XL = dict(dropout=0.0, attn_dropout=0.0)


def _model(**overrides) -> InfinityFormerXLLMHeadModel:
    return InfinityFormerXLLMHeadModel(InfinityFormerXLConfig(**{**TINY, **TINY_XL, **overrides})).eval()


def _stream(model, segments):
    memory, outputs = None, []
    for segment in segments:
        output = model(segment, infinity_memory=memory)
        memory = output.infinity_memory
        outputs.append(output)
    return outputs


def test_defaults_are_the_original_sorting_run():
    config = InfinityFormerXLConfig()
    assert (config.tau, config.ridge_penalty, config.basis_widths) == (0.75, 1.0, [0.01, 0.05])
    assert (config.num_basis, config.num_samples, config.kl_sigma_0, config.kl_weight) == (512, 512, 0.05, 1e-6)
    assert config.memory_gate and config.kl_regularizer and config.kl_mu_0 is None
    for bad, message in (({"tau": 1.0}, "tau"), ({"ridge_penalty": 0}, "ridge_penalty"), ({"num_samples": 0}, "num")):
        with pytest.raises(ValueError, match=message):
            InfinityFormerXLConfig(**bad)
    with pytest.raises(ValueError, match="widths"):
        InfinityFormerXLConfig(num_basis=9)  # 9 basis functions cannot be split between two widths


def test_registered_with_the_auto_classes_and_the_task_state_argument():
    assert MODEL_REGISTRY["infinity_former_xl"].state_argument == "infinity_memory"
    config = AutoConfig.for_model("infinity_former_xl", **TINY)
    assert type(AutoModelForCausalLM.from_config(config)) is InfinityFormerXLLMHeadModel
    assert type(build_model({"model_type": "infinity_former_xl", **TINY})) is InfinityFormerXLLMHeadModel


def test_cache_evicted_states_and_memory_shapes_along_a_stream():
    model = _model()
    segments = [torch.randint(0, 21, (3, 5)) for _ in range(5)]
    outputs = _stream(model, segments)
    caches = [[c.size(1) for c in o.infinity_memory.cache] for o in outputs]
    evicted = [[e.size(1) for e in o.infinity_memory.evicted] for o in outputs]
    assert caches == [[5, 5], [8, 8], [8, 8], [8, 8], [8, 8]]  # the XL cache fills up to mem_len
    assert evicted == [[0, 0], [2, 2], [5, 5], [5, 5], [5, 5]]  # what left the cache, waiting for the memory
    has_memory = [[c is not None for c in o.infinity_memory.coefficients] for o in outputs]
    assert has_memory == [[False, False], [False, False], [True, True], [True, True], [True, True]]
    assert all(c.shape == (3, 8, 16) for c in outputs[-1].infinity_memory.coefficients)
    assert [o.auxiliary_loss is None for o in outputs] == [True, True, False, False, False]
    assert outputs[-1].logits.shape == (3, 5, 21)


def _xl_twin(model: InfinityFormerXLLMHeadModel) -> TransformerXLLMHeadModel:
    """A Transformer-XL with the ∞-former's weights for every part the two share."""
    fields = {k: v for k, v in TINY.items() if k not in ("num_basis", "num_samples")}
    twin = TransformerXLLMHeadModel(TransformerXLConfig(**fields, **TINY_XL)).eval()
    twin.load_state_dict({k: v for k, v in model.state_dict().items() if ".long_term." not in k}, strict=True)
    return twin


def test_recent_states_are_read_exactly_through_the_xl_cache():
    torch.manual_seed(0)
    model = _model()
    twin = _xl_twin(model)
    segments = [torch.randint(0, 21, (2, 4)) for _ in range(5)]  # mem_len 8: two segments fit in the cache
    ours = _stream(model, segments)
    mems, theirs = None, []
    for segment in segments:
        output = twin(segment, mems=mems)
        mems = output.mems
        theirs.append(output.logits)
    # Until something has left the cache, the ∞-former is exactly a Transformer-XL of the same weights ...
    for step in range(3):
        torch.testing.assert_close(ours[step].logits, theirs[step], rtol=0, atol=0)
    # ... and from then on the continuous memory adds its reading.
    assert not torch.allclose(ours[3].logits, theirs[3])
    # With the long-term reading's output map at zero, it equals the Transformer-XL at every segment.
    for block in model.transformer.h:
        block.long_term.output.weight.data.zero_()
    for ours_step, theirs_step in zip(_stream(model, segments), theirs):
        torch.testing.assert_close(ours_step.logits, theirs_step, rtol=0, atol=0)


def test_the_continuous_memory_holds_only_states_older_than_the_cache():
    torch.manual_seed(0)
    model = _model(mem_len=4)
    segments = [torch.randint(0, 21, (2, 4)) for _ in range(4)]  # mem_len = segment length: one segment cached
    base = _stream(model, segments)[-1].infinity_memory
    # Changing the last segment (in the cache) or the one before (evicted, not fitted yet) leaves the memory as it is.
    for changed in (3, 2):
        altered = [s.clone() for s in segments]
        altered[changed] = (altered[changed] + 1) % 21
        memory = _stream(model, altered)[-1].infinity_memory
        for ours, theirs in zip(memory.coefficients, base.coefficients):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    # Changing segment 1, which left the cache two segments ago, changes it: it is in the memory.
    altered = [s.clone() for s in segments]
    altered[1] = (altered[1] + 1) % 21
    memory = _stream(model, altered)[-1].infinity_memory
    assert not torch.allclose(memory.coefficients[0], base.coefficients[0])


def test_the_first_states_are_fitted_at_centred_positions_with_zeros_beyond_the_ends():
    model = _model(num_basis=32, memory_gate=False, ridge_penalty=1e-4)  # the original's widths, 0.01 and 0.05
    long_term = model.transformer.h[0].long_term
    t = (torch.arange(32) + 0.5) / 32
    states = torch.stack([torch.sin(3 * t), t - 0.5], dim=-1)[None].repeat(1, 1, 8)  # (1, 32, 16)
    coefficients = long_term.update(None, states)
    fitted = evaluate_signal(long_term.basis, coefficients, t[None])[0]
    error = (fitted - states[0]).abs().amax(dim=-1)  # (32,)
    # measured: 0.021 inside, 0.12 at the ends, which the zeros just beyond them pull down
    assert error[4:-4].max() < 0.03 and error.max() < 0.2
    outside = evaluate_signal(long_term.basis, coefficients, torch.tensor([[-0.4, -0.2, 1.2, 1.4]]))[0]
    assert outside.abs().max() < 1e-3  # the signal is zero beyond [0, 1]
    assert torch.equal(padding_positions(4, torch.device("cpu")), torch.tensor([-0.375, -0.125, 1.125, 1.375]))
    assert torch.equal(memory_positions(4, 0.75, torch.device("cpu")), torch.tensor([0.8125, 0.875, 0.9375, 1.0]))


def test_the_gate_scales_what_enters_and_learns_through_the_fit():
    model = _model()
    long_term = model.transformer.h[0].long_term
    states = torch.randn(2, 5, 16)
    ungated = long_term.update(None, states)
    long_term.gate.weight.data.zero_()  # a gate of exactly 1/2: a fit is linear in its targets, so it halves it
    long_term.gate.bias.data.zero_()
    model_off = _model(memory_gate=False)
    model_off.load_state_dict({k: v for k, v in model.state_dict().items() if ".gate." not in k})
    plain = model_off.transformer.h[0].long_term.update(None, states)
    torch.testing.assert_close(long_term.update(None, states), 0.5 * plain, rtol=1e-5, atol=1e-6)
    assert ungated.shape == plain.shape
    # The gate is trained by the loss of the segment that reads what it let in (the old memory is detached).
    model.train()
    segments = [torch.randint(0, 21, (2, 4)) for _ in range(4)]
    output = _stream(model, segments)[-1]
    (output.logits.logsumexp(-1).mean() + output.auxiliary_loss).backward()
    assert all(block.long_term.gate.weight.grad.abs().sum() > 0 for block in model.transformer.h)
    assert model.transformer.wte.weight.grad is not None


def test_the_reading_integrates_normalised_basis_functions_over_the_real_line():
    basis = GaussianBasis(8, widths=[0.01, 0.05], normalized=True)
    grid = torch.linspace(-3.0, 4.0, 400001, dtype=torch.float64)
    centers, widths = basis.grid(grid)
    values = basis(grid)  # (P, N): densities, each integrates to 1
    torch.testing.assert_close(
        torch.trapezoid(values, grid, dim=0), torch.ones(8, dtype=torch.float64), atol=1e-6, rtol=0
    )
    mean, variance = torch.tensor([0.3, 0.9], dtype=torch.float64), torch.tensor([0.01, 0.2], dtype=torch.float64)
    density = torch.exp(-0.5 * (grid[:, None] - mean) ** 2 / variance) / torch.sqrt(2 * math.pi * variance)  # (P, 2)
    quadrature = torch.trapezoid(density[:, :, None] * values[:, None, :], grid, dim=0)  # (2, N)
    torch.testing.assert_close(expected_basis_untruncated(basis, mean, variance), quadrature, atol=1e-6, rtol=1e-5)
    unnormalised = GaussianBasis(8, widths=[0.01, 0.05])
    scale = widths * math.sqrt(2 * math.pi)
    torch.testing.assert_close(expected_basis_untruncated(unnormalised, mean, variance), quadrature * scale)


def test_the_kl_term_and_the_auxiliary_loss_the_tasks_add():
    model = _model(kl_weight=0.5)
    long_term = model.transformer.h[0].long_term
    mean, variance = torch.tensor([0.2, 0.6]), torch.tensor([0.0025, 0.01])
    assert torch.allclose(long_term.kl_term(mean, variance), torch.tensor([0.0, 0.5 * (4 - math.log(4) - 1)]))
    with_mean = _model(kl_mu_0=0.5).transformer.h[0].long_term
    expected = 0.5 * (4 - math.log(4) - 1) + 0.5 * 0.01 / 0.0025
    assert math.isclose(float(with_mean.kl_term(torch.tensor(0.6), torch.tensor(0.01))), expected, rel_tol=1e-5)
    tokens = torch.randint(0, 21, (2, 16))
    labels = torch.full_like(tokens, -100)
    labels[:, -4:] = tokens[:, -4:]
    stats = run_segments(model, tokens, labels, segment_length=4, train=True)
    assert stats.auxiliary.requires_grad and float(stats.auxiliary.detach()) > 0  # the last segment read the memory
    no_kl = run_segments(_model(kl_regularizer=False), tokens, labels, segment_length=4, train=False)
    assert float(no_kl.auxiliary) == 0.0
