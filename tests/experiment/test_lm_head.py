import math

import pytest
import torch
from torch import nn

from experiment.models.compressive_transformer import CompressiveTransformerConfig, CompressiveTransformerLMHeadModel
from experiment.models.lm_head import causal_lm_loss, init_gpt2_style
from experiment.models.memoria_transformer import MemoriaTransformerConfig, MemoriaTransformerLMHeadModel
from experiment.models.transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel


def test_causal_lm_loss_predicts_the_next_token_and_skips_ignored_labels():
    # Uniform logits over 4 classes: every counted position costs log(4).
    logits = torch.zeros(1, 3, 4)
    assert math.isclose(causal_lm_loss(logits, torch.tensor([[0, 1, 2]])).item(), math.log(4), rel_tol=1e-6)
    # Position 0 predicts label 1 with certainty, position 1's target is ignored.
    logits[0, 0, 1] = 100.0
    assert causal_lm_loss(logits, torch.tensor([[-100, 1, -100]])).item() == pytest.approx(0.0, abs=1e-6)


def test_init_gpt2_style_draws_listed_linears_and_embeddings_and_resets_layer_norms():
    linear, embedding, norm, conv = nn.Linear(64, 64), nn.Embedding(64, 64), nn.LayerNorm(8), nn.Conv1d(4, 4, 2)
    norm.weight.data.fill_(3.0)
    conv_before = conv.weight.detach().clone()
    for module in (linear, embedding, norm, conv):
        init_gpt2_style(module, 0.5)
    assert linear.weight.std().item() == pytest.approx(0.5, rel=0.1) and (linear.bias == 0).all()
    assert embedding.weight.std().item() == pytest.approx(0.5, rel=0.1)
    assert (norm.weight == 1).all() and (norm.bias == 0).all()
    torch.testing.assert_close(conv.weight, conv_before)  # not listed: left alone
    init_gpt2_style(conv, 0.5, (nn.Linear, nn.Conv1d))
    assert (conv.bias == 0).all() and not torch.equal(conv.weight, conv_before)


@pytest.mark.parametrize(
    "build",
    [
        lambda xl, mem: TransformerXLLMHeadModel(TransformerXLConfig(**xl)),
        lambda xl, mem: CompressiveTransformerLMHeadModel(CompressiveTransformerConfig(**xl)),
        lambda xl, mem: MemoriaTransformerLMHeadModel(MemoriaTransformerConfig(**mem)),
    ],
    ids=["transformer_xl", "compressive", "memoria"],
)
def test_head_is_tied_to_the_token_embedding_and_last_in_the_state_dict(build, tiny_xl, tiny_memoria):
    model = build(tiny_xl, tiny_memoria)
    assert model.get_output_embeddings() is model.lm_head
    assert model.lm_head.weight is model.get_input_embeddings().weight is model.transformer.wte.weight
    assert list(model.state_dict())[-1] == "lm_head.weight"
    ids = torch.randint(0, 21, (2, 6))
    out = model(ids, labels=ids)
    assert out.logits.shape == (2, 6, 21)
    torch.testing.assert_close(out.loss, causal_lm_loss(out.logits, ids))
