import torch
from conftest import tiny_encoder_fields, tiny_encoder_memory_fields, token_segments
from transformers import AutoModelForSequenceClassification, RobertaConfig, RobertaModel

from experiment.models.memoria_roberta import MemoriaRobertaConfig, MemoriaRobertaForSequenceClassification

TINY = tiny_encoder_fields(max_position_embeddings=20)
MEMORY = tiny_encoder_memory_fields(memory_layer_index=1)


def tiny_model(**overrides) -> MemoriaRobertaForSequenceClassification:
    return MemoriaRobertaForSequenceClassification(MemoriaRobertaConfig(**{**TINY, **MEMORY, **overrides})).eval()


def segments(count: int, batch: int = 2, length: int = 8) -> list[torch.Tensor]:
    return token_segments(count, TINY["vocab_size"], batch, length)


def test_roberta_defaults():
    config = MemoriaRobertaConfig()
    assert (config.pad_token_id, config.layer_norm_eps, config.max_position_embeddings) == (1, 1e-5, 514)
    assert (config.memory_layer_index, config.num_working_memories, config.memoria_initial_lifespan) == (9, 64, 12)


def test_forward_backward():
    model = tiny_model().train()
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[0, 6:] = 0
    for ids in segments(2):
        out = model(ids, mask, labels=torch.tensor([1, 0]))
    assert out.logits.shape == (2, 2) and out.reminded_indices.shape[1] > 0
    out.loss.backward()
    assert model.roberta.abstractor.query_embeddings.grad.abs().sum() > 0
    assert model.roberta.memory_blocks[0].ln_reminded.weight.grad.abs().sum() > 0
    assert model.classifier.out_proj.weight.grad.abs().sum() > 0


def test_memory_carried_across_segments_changes_the_output():
    model = tiny_model(initializer_range=0.5)
    first, second = segments(2)
    with torch.no_grad():
        model(first)
        carried = model(second).logits
        model.reset_memory()
        fresh = model(second).logits
    assert (carried - fresh).abs().max() > 1e-3


def test_loads_plain_roberta_weights_and_round_trips(tmp_path):
    roberta = RobertaModel(RobertaConfig(**TINY), add_pooling_layer=False).eval()
    roberta.save_pretrained(tmp_path / "plain")
    model = MemoriaRobertaForSequenceClassification.from_pretrained(tmp_path / "plain", **MEMORY).eval()
    for name, weight in roberta.state_dict().items():
        torch.testing.assert_close(model.roberta.state_dict()[name], weight, msg=name)
    ids = segments(1)[0]
    with torch.no_grad():
        expected = model(ids).logits
    model.save_pretrained(tmp_path / "memoria")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "memoria").eval()
    assert isinstance(loaded, MemoriaRobertaForSequenceClassification)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, expected)
