import math

import pytest
import torch

from experiment.models.compressive_transformer import CompressiveTransformerConfig, CompressiveTransformerLMHeadModel
from experiment.models.lm_head import causal_lm_loss
from experiment.models.memoria_transformer import MemoriaTransformerConfig, MemoriaTransformerLMHeadModel
from experiment.models.transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel


def test_causal_lm_loss_predicts_the_next_token_and_skips_ignored_labels():
    # Uniform logits over 4 classes: every counted position costs log(4).
    logits = torch.zeros(1, 3, 4)
    assert math.isclose(causal_lm_loss(logits, torch.tensor([[0, 1, 2]])).item(), math.log(4), rel_tol=1e-6)
    # Position 0 predicts label 1 with certainty, position 1's target is ignored.
    logits[0, 0, 1] = 100.0
    assert causal_lm_loss(logits, torch.tensor([[-100, 1, -100]])).item() == pytest.approx(0.0, abs=1e-6)


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
