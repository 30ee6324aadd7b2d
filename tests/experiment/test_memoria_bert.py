import pytest
import torch
from conftest import tiny_encoder_fields, tiny_encoder_memory_fields, token_segments
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, BertConfig, BertModel

from experiment.models.memoria_bert import (
    MemoriaBertConfig,
    MemoriaBertForSequenceClassification,
    MemoriaBertModel,
)
from memoria.nn import lifespan_delta

TINY = tiny_encoder_fields()
MEMORY = tiny_encoder_memory_fields()


def tiny_model(**overrides) -> MemoriaBertForSequenceClassification:
    return MemoriaBertForSequenceClassification(MemoriaBertConfig(**{**TINY, **MEMORY, **overrides})).eval()


def segments(count: int = 3, batch: int = 2, length: int = 8) -> list[torch.Tensor]:
    return token_segments(count, TINY["vocab_size"], batch, length)


def test_paper_defaults():
    config = MemoriaBertConfig()
    assert (config.num_hidden_layers, config.memory_layer_index, config.num_working_memories) == (12, 9, 64)
    assert (config.memoria_stm_capacity, config.memoria_num_reminded_stm, config.memoria_num_final_ltms) == (
        128,
        64,
        64,
    )
    assert (config.memoria_initial_lifespan, config.lifespan_extend_scale, config.memoria_ltm_search_depth) == (
        12,
        8,
        10,
    )


def test_memory_layer_must_leave_a_later_layer():
    with pytest.raises(ValueError, match="memory_layer_index must be in 0..1"):
        MemoriaBertForSequenceClassification(MemoriaBertConfig(**TINY, memory_layer_index=2))


def test_forward_backward_reaches_memory_modules():
    model = tiny_model().train()
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    for ids in segments(2):
        out = model(ids, mask, labels=torch.tensor([0, 1]))
    assert out.logits.shape == (2, 2) and out.loss.ndim == 0
    assert out.reminded_indices.shape[0] == 2 and out.reminded_indices.shape[1] > 0
    out.loss.backward()
    assert model.bert.abstractor.query_embeddings.grad.abs().sum() > 0
    assert model.bert.memory_blocks[0].cross_attention.query.weight.grad.abs().sum() > 0
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_memory_carried_across_segments_changes_the_output():
    # A wide initialisation: at BERT's 0.02 the memory path starts ~1e-7 small (it grows in training).
    model = tiny_model(initializer_range=0.5)
    first, second = segments(2)
    with torch.no_grad():
        model(first)
        carried = model(second).logits
        model.reset_memory()
        fresh = model(second).logits
        model.reset_memory()
        again = model(second).logits
    assert (carried - fresh).abs().max() > 1e-3
    torch.testing.assert_close(fresh, again)


def test_use_memory_false_leaves_memoria_untouched():
    model = tiny_model()
    with torch.no_grad():
        model(segments(1)[0], use_memory=False)
    assert model.memoria.engrams.data.numel() == 0
    with torch.no_grad():
        model(segments(1)[0])
    assert model.memoria.engrams.data.shape == (2, 3, 16)  # 3 working memories per row


def test_lifespan_gain_sums_to_scale_times_reminded():
    model = tiny_model()
    with torch.no_grad():
        for ids in segments(3):
            out = model.bert(ids)
    valid = out.reminded_indices >= 0
    assert valid.any(dim=1).all()
    expected = valid.shape[1] * model.config.lifespan_extend_scale
    torch.testing.assert_close(out.lifespan_delta.sum(dim=1), torch.full((2,), float(expected)))
    assert (out.lifespan_delta[~valid] == 0).all()


def test_padding_positions_do_not_change_the_lifespan_gain():
    model = tiny_model(initializer_range=0.5)  # far from uniform attention, so that padding would show
    captured = []
    for block in model.bert.memory_blocks:
        block.register_forward_hook(lambda module, args, out: captured.append(out.reminded_attention))
    first, second = segments(2)
    attention_mask = torch.ones_like(second)
    attention_mask[0, 5:] = 0  # row 0 of the second segment ends in padding
    with torch.no_grad():
        model(first)
        captured.clear()
        out = model.bert(second, attention_mask)
    assert out.lifespan_delta.shape == out.reminded_indices.shape and (out.reminded_indices[0] >= 0).any()
    # The gain of row 0 is that of its 5 real positions; the padding positions' attention is left out.
    real_only = lifespan_delta([attention[:, :, :5] for attention in captured], model.config.lifespan_extend_scale)
    all_positions = lifespan_delta(captured, model.config.lifespan_extend_scale)
    torch.testing.assert_close(out.lifespan_delta[0], real_only[0])
    torch.testing.assert_close(out.lifespan_delta[1], all_positions[1])
    assert not torch.allclose(all_positions[0], real_only[0])


def test_save_load_round_trip_and_auto_classes(tmp_path):
    model = tiny_model()
    ids = segments(1)[0]
    with torch.no_grad():
        expected = model(ids).logits
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "memoria_bert"
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MemoriaBertForSequenceClassification)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, expected)
    assert isinstance(AutoModel.from_config(model.config), MemoriaBertModel)


def test_loads_plain_bert_weights(tmp_path):
    bert = BertModel(BertConfig(**TINY)).eval()
    bert.save_pretrained(tmp_path)
    model = MemoriaBertForSequenceClassification.from_pretrained(tmp_path, **MEMORY)
    for name, weight in bert.state_dict().items():
        torch.testing.assert_close(model.bert.state_dict()[name], weight, msg=name)
    # The memory parts are freshly initialised as memory_init says, not left empty.
    hidden = TINY["hidden_size"]
    assert 0.7 * hidden**-0.5 < model.bert.abstractor.query_embeddings.std() < 1.3 * hidden**-0.5
    paper = MemoriaBertForSequenceClassification.from_pretrained(tmp_path, **MEMORY, memory_init="paper")
    assert 0.01 < paper.bert.abstractor.query_embeddings.std() < 0.03


def _call_order(model: MemoriaBertForSequenceClassification, segments_: list[torch.Tensor]) -> list[str]:
    """Names of the modules of the last memory layer in the order they ran on the last segment."""
    layer = model.bert.encoder.layer[-1]
    block = model.bert.memory_blocks[-1]
    order: list[str] = []
    watched = {
        "self-attention": layer.attention,
        "memory cross-attention": block.cross_attention,
        "feed-forward": layer.intermediate,
        "feed-forward output": layer.output,
    }
    hooks = [m.register_forward_hook(lambda *_, n=name: order.append(n)) for name, m in watched.items()]
    with torch.no_grad():
        for segment in segments_:
            order.clear()
            model(segment)
    for hook in hooks:
        hook.remove()
    return order


def test_memory_attention_sits_between_self_attention_and_feed_forward_as_in_the_authors_model():
    torch.manual_seed(0)
    segs = segments()
    inside = _call_order(tiny_model(), segs)
    # working pass then reminded pass, both after the layer's self-attention and before its feed-forward
    assert inside == [
        "self-attention",
        "memory cross-attention",
        "memory cross-attention",
        "feed-forward",
        "feed-forward output",
    ]
    after = _call_order(tiny_model(memory_placement="after"), segs)
    assert after == [
        "self-attention",
        "feed-forward",
        "feed-forward output",
        "memory cross-attention",
        "memory cross-attention",
    ]


def test_inside_placement_is_post_norm_and_changes_the_output_with_the_memory():
    torch.manual_seed(0)
    model = tiny_model()
    captured = {}
    block = model.bert.memory_blocks[-1]
    block.register_forward_hook(lambda m, i, o: captured.update(out=o.hidden_states))
    with torch.no_grad():
        for segment in segments():
            model(segment)
    out = captured["out"]
    # post-norm: what leaves the block is layer-normed (unit gain and zero bias at initialisation)
    torch.testing.assert_close(out.mean(-1), torch.zeros(out.shape[:-1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(out.shape[:-1]), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="memory_placement"):
        tiny_model(memory_placement="before")
