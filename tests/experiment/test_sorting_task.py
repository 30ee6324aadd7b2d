import pytest
import torch
import torch.nn.functional as F

from experiment.data.sorting import SortingDataset, write_sorting_file
from experiment.models import build_model
from experiment.tasks import sorting
from experiment.tasks.base import SegmentedTask, run_segments


def _batch(tmp_path, length=40, count=2):
    dataset = SortingDataset(write_sorting_file(tmp_path / "d.bin", count, length, seed=3, progress=False))
    items = [dataset[i] for i in range(count)]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def _gpt2():
    fields = dict(vocab_size=21, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=None, eos_token_id=None)
    return build_model({"model_type": "gpt2", **fields}).eval()


def test_loss_and_accuracy_cover_target_tokens_only(tmp_path):
    batch = _batch(tmp_path)  # 40 symbols + separator + 20 targets = 61 tokens: segments 0-15, ..., 48-60
    model = _gpt2()
    stats = run_segments(model, batch["input_ids"], batch["labels"], segment_length=16, train=False)
    assert stats.num_targets == 40
    # GPT-2 carries nothing across segments, so only the segments holding labels matter.
    pieces = [(model(batch["input_ids"][:, s : s + 16]).logits, batch["labels"][:, s : s + 16]) for s in (32, 48)]
    logits = torch.cat([p[0] for p in pieces], dim=1)
    labels = torch.cat([p[1] for p in pieces], dim=1)
    expected = F.cross_entropy(logits.reshape(-1, 21), labels.reshape(-1), ignore_index=-100, reduction="sum")
    torch.testing.assert_close(stats.loss, expected)
    hits = ((logits.argmax(-1) == labels) & (labels != -100)).sum()
    assert stats.correct == hits and 0 <= stats.exact <= 2


def test_memory_is_carried_within_an_example_and_reset_between_examples(tmp_path, tiny_memoria, tiny_xl):
    batch = _batch(tmp_path)
    changed = batch["input_ids"].clone()
    changed[:, :16] = (changed[:, :16] + 1) % 20  # only the first segment differs; it holds no label
    for config in ({"model_type": "memoria_transformer", **tiny_memoria}, {"model_type": "transformer_xl", **tiny_xl}):
        model = build_model(config).eval()
        with torch.no_grad():
            first = run_segments(model, batch["input_ids"], batch["labels"], 16, train=False)
            again = run_segments(model, batch["input_ids"], batch["labels"], 16, train=False)
            other = run_segments(model, changed, batch["labels"], 16, train=False)
        torch.testing.assert_close(first.loss, again.loss, msg=config["model_type"])
        assert first.loss.item() != other.loss.item(), config["model_type"]  # small at init, but never zero


def test_training_builds_a_graph_only_where_labels_are(tmp_path, tiny_memoria):
    batch = _batch(tmp_path)
    model = build_model({"model_type": "memoria_transformer", **tiny_memoria}).train()
    stats = run_segments(model, batch["input_ids"], batch["labels"], 16, train=True)
    (stats.loss / stats.num_targets).backward()
    assert model.transformer.abstractor.query_embeddings.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="differ in shape"):
        run_segments(model, batch["input_ids"], batch["labels"][:, :-1], 16, train=False)


def test_build_checks_vocabulary_and_checkpoints_carry_memory(tmp_path, tiny_memoria):
    config = {
        "task": "sorting",
        "model": {"model_type": "memoria_transformer", **tiny_memoria},
        "segment_length": 16,
        "batch_size": 2,
        "data": {"dir": str(tmp_path), "sequence_length": 40, "num_examples": {"train": 2, "dev": 1, "test": 1}},
    }
    task, data = sorting.build(config)
    assert isinstance(task, SegmentedTask) and data.batch_size == 2
    with pytest.raises(FileNotFoundError, match="data.generate"):
        data.setup("fit")
        data.train_dataloader()
    batch = _batch(tmp_path)
    with torch.no_grad():
        run_segments(task.model, batch["input_ids"], batch["labels"], 16, train=False)
    checkpoint = {}
    task.on_save_checkpoint(checkpoint)
    restored, _ = sorting.build(config)
    restored.on_load_checkpoint(checkpoint)
    assert restored.model.memoria.engrams == task.model.memoria.engrams
    config["model"]["vocab_size"] = 20
    with pytest.raises(ValueError, match="vocab_size"):
        sorting.build(config)
