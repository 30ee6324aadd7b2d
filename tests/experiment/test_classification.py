import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from experiment.config import load_config
from experiment.scripts import eval as eval_script
from experiment.scripts import train as train_script
from experiment.tasks.classification import (
    SpecialTokens,
    build,
    collate_segments,
    document_logits,
    document_loss,
    macro_f1,
    segment_document,
    segment_logits,
)

CONFIGS = Path(__file__).parents[2] / "experiment" / "configs" / "classification"


def test_segment_document_adds_cls_sep_and_pads():
    ids, mask = segment_document([5, 6, 7, 8, 9], segment_length=5, max_segments=None, special=SpecialTokens(1, 2, 0))
    assert ids.tolist() == [[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    truncated, _ = segment_document([5, 6, 7, 8, 9], 5, max_segments=1, special=SpecialTokens(1, 2, 0))
    assert truncated.tolist() == [[1, 5, 6, 7, 2]]
    with pytest.raises(ValueError, match="at least 3"):
        segment_document([5], 2, None, SpecialTokens())


def test_collate_pads_segment_count_and_marks_real_segments():
    special = SpecialTokens(1, 2, 0)
    long = (*segment_document(list(range(3, 9)), 4, None, special), 1)  # 3 segments
    short = (*segment_document([3], 4, None, special), 0)  # 1 segment
    batch = collate_segments([long, short])
    assert batch["input_ids"].shape == (2, 3, 4)
    assert batch["segment_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["labels"].tolist() == [1, 0]
    assert batch["input_ids"][1, 1].tolist() == [0, 0, 0, 0]


def test_losses_and_predictions_by_hand():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]], [[0.0, 3.0], [1.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    labels = torch.tensor([1, 0])
    ce = lambda row, label: F.cross_entropy(row[None], torch.tensor([label])).item()  # noqa: E731
    expected_mean = (
        (ce(logits[0, 0], 1) + ce(logits[0, 1], 1)) / 2 + sum(ce(logits[1, s], 0) for s in range(3)) / 3
    ) / 2
    assert document_loss(logits, labels, mask, "segment_mean").item() == pytest.approx(expected_mean)
    assert document_loss(logits, labels, mask, "last").item() == pytest.approx(
        (ce(logits[0, 1], 1) + ce(logits[1, 2], 0)) / 2
    )
    assert document_logits(logits, mask, "last").tolist() == [[0.0, 1.0], [0.0, 0.0]]
    torch.testing.assert_close(document_logits(logits, mask, "logit_mean"), torch.tensor([[1.0, 0.5], [1 / 3, 1.0]]))
    with pytest.raises(ValueError, match="unknown train_loss"):
        document_loss(logits, labels, mask, "sum")


def test_macro_f1_by_hand():
    predictions = torch.tensor([1, 1, 0, 0, 1, 0])
    labels = torch.tensor([1, 0, 0, 0, 1, 1])
    # class 1: tp 2, fp 1, fn 1 -> 4/6; class 0: tp 2, fp 1, fn 1 -> 4/6
    assert macro_f1(predictions, labels, 2) == pytest.approx(2 / 3)
    assert macro_f1(torch.tensor([0, 0]), torch.tensor([0, 1]), 2) == pytest.approx((2 / 3 + 0) / 2)


def test_memory_is_reset_per_batch_so_evaluation_repeats():
    config = load_config(CONFIGS / "tiny_memoria_bert.json")
    task, data = build(config)
    data.setup()
    task.eval()
    batch = next(iter(data.val_dataloader()))
    with torch.no_grad():
        first = document_logits(segment_logits(task.model, batch), batch["segment_mask"], "last")
        second = document_logits(segment_logits(task.model, batch), batch["segment_mask"], "last")
    torch.testing.assert_close(first, second)


def test_long_range_needs_pad_id_zero():
    config = load_config(CONFIGS / "tiny_roberta.json")
    config["model"]["pad_token_id"] = 1
    with pytest.raises(ValueError, match="pads with id 0"):
        build(config)


@pytest.mark.parametrize(
    "name", ["memoria_bert", "memoria_roberta", "bert", "bert_segment_mean", "roberta", "longformer", "bigbird"]
)
def test_tiny_config_trains_two_steps_through_the_cli(tmp_path, name):
    metrics = train_script.main(
        [
            "--config",
            str(CONFIGS / f"tiny_{name}.json"),
            "--override",
            f"output_dir={tmp_path}",
            "trainer.enable_model_summary=false",
        ]
    )
    assert 0.0 <= metrics["test/f1"] <= 1.0 and 0.0 <= metrics["test/accuracy"] <= 1.0
    assert math.isfinite(metrics["test/loss"])
    assert (tmp_path / "model" / "config.json").is_file()
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ("memory_state" in checkpoint) == name.startswith("memoria")
    if name == "memoria_bert":  # eval CLI on the saved model gives a metric in range
        again = eval_script.main(
            ["--config", str(tmp_path / "config.json"), "--checkpoint", str(tmp_path / "model"), "--split", "test"]
        )
        assert 0.0 <= again["test/f1"] <= 1.0


def test_paper_configs_are_complete():
    for path in sorted(CONFIGS.glob("hyperpartisan_*.json")):
        config = load_config(path)
        assert config["task"] == "classification" and config["batch_size"] == 8, path
        assert config["optimizer"]["learning_rate"] == 3e-5 and config["trainer"]["max_epochs"] == 20, path
        if config["model"]["model_type"].startswith("memoria"):
            assert config["segment_length"] == 512 and config["model"]["memory_layer_index"] == 9, path
            assert config["model"]["memoria_initial_lifespan"] == 12 and config["model"]["num_working_memories"] == 64
