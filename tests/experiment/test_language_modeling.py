"""Language-modelling task: memory carried and reset along streams, evaluation over every token once, and a
short training run of each tiny config through the real CLI."""

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import tiny_lm_overrides

from experiment.data.lm_stream import layout_single_stream
from experiment.scripts import eval as eval_cli
from experiment.scripts import lm_table
from experiment.scripts import train as train_cli
from experiment.tasks.language_modeling import LanguageModelingDataModule, build

FIXTURES = Path(__file__).parent / "fixtures" / "lm"
CONFIGS = Path(__file__).parents[2] / "experiment" / "configs" / "language_modeling"
TINY_MODELS = ["memoria", "transformer_xl", "compressive", "infinity_former", "gpt2"]
SHRINK = tiny_lm_overrides()


def tiny_config(model: str, tmp_path: Path, *extra: str) -> dict:
    return train_cli.load_config(
        str(CONFIGS / f"tiny_{model}.json"), SHRINK + [f"output_dir={tmp_path / model}", *extra]
    )


@pytest.mark.parametrize("model", TINY_MODELS)
def test_two_training_steps_through_the_cli(model, tmp_path):
    metrics = train_cli.main(
        ["--config", str(CONFIGS / f"tiny_{model}.json"), "--override", *SHRINK, f"output_dir={tmp_path}"]
    )
    # The test split of the fixture has 10 bytes: 9 predicted, each exactly once.
    assert metrics["test/tokens"] == 9
    assert math.isclose(metrics["test/bpc"], metrics["test/loss"] / math.log(2), rel_tol=1e-6)
    assert 4.0 < metrics["test/bpc"] < 12.0  # near log2(256) = 8 after two steps
    assert (tmp_path / "model" / "config.json").is_file()
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert "lm_memory" in checkpoint
    config = train_cli.load_config(str(tmp_path / "config.json"))
    again = eval_cli.evaluate(config, str(tmp_path / "checkpoints" / "last.ckpt"))
    assert again["test/tokens"] == 9
    row = lm_table.table([tmp_path]).splitlines()[-1]
    assert row.startswith(f"| {config['model']['model_type']} | tiny_{model} | 2 | 9 |")
    # the memory-removed row: the tested checkpoint again, the memory reset at every segment
    rows = lm_table.main([str(tmp_path), "--memory-removed"]).splitlines()
    if model == "gpt2":
        assert len(rows) == 3 and not (tmp_path / lm_table.MEMORY_REMOVED).exists()
    else:
        assert len(rows) == 4 and rows[-1].startswith(
            f"| {config['model']['model_type']} | tiny_{model}, memory removed |"
        )
        removed = json.loads((tmp_path / lm_table.MEMORY_REMOVED).read_text())
        tested = metrics["checkpoint"] or str(tmp_path / "checkpoints" / "last.ckpt")  # no best one after 2 steps
        assert removed["test/tokens"] == 9 and removed["checkpoint"] == tested


def test_memory_is_carried_along_the_stream_and_reset_periodically(tmp_path):
    torch.manual_seed(0)
    task, _ = build(tiny_config("transformer_xl", tmp_path, "memory_reset_period=3", "model.mem_len=40"))
    layout = layout_single_stream([torch.randint(0, 256, (200,))], batch_size=2, segment_length=16)
    lengths = []
    for step in range(4):
        task.forward_segment(layout.segment(step))
        lengths.append(task.memory_state[0].size(1))
    # Segment 0 starts the stream; the cache then grows segment by segment up to mem_len.
    assert lengths == [16, 32, 40, 40]
    task.forward_segment({**layout.segment(0), "reset": torch.tensor([True, True])})
    assert task.memory_state[0].size(1) == 16  # a new stream in every row empties the memory
    task.forward_segment({**layout.segment(1), "reset": torch.tensor([True, False])})
    assert task.memory_state[0].size(1) == 32  # in one row only: the other row keeps its memory
    assert [step for step in range(10) if task.periodic_reset_due(step)] == [3, 6, 9]


def _state_tensors(state) -> list:
    """Every tensor of a carried state (a tensor, a list of them, or CompressiveMemories)."""
    if torch.is_tensor(state):
        return [state]
    if isinstance(state, list):
        return state
    return state.memories + state.compressed


# Small memories so that a few 16-token segments fill them (and the compressed memory gets slots).
RESET_OVERRIDES = {
    "memoria": [],
    "transformer_xl": ["model.mem_len=24"],
    "compressive": ["model.mem_len=16", "model.compressed_mem_len=8"],
    "infinity_former": ["model.num_basis=8", "model.num_samples=16"],
}


@pytest.mark.parametrize("model", sorted(RESET_OVERRIDES))
def test_a_new_stream_in_one_row_resets_that_row_only(model, tmp_path):
    torch.manual_seed(0)
    task, _ = build(tiny_config(model, tmp_path, "data.batch_size=3", *RESET_OVERRIDES[model]))
    task.eval()
    layout = layout_single_stream([torch.randint(0, 256, (300,))], batch_size=3, segment_length=16)
    with torch.no_grad():
        for step in range(4):
            task.forward_segment(layout.segment(step))
    before = [tensor.clone() for tensor in _state_tensors(task.memory_state)]
    assert all(tensor[0].abs().sum() > 0 for tensor in before if tensor.size(1) > 0)
    if model == "compressive":
        assert all(tensor.size(1) > 0 for tensor in task.memory_state.compressed)
    engram_fields = ("data", "engrams_types", "lifespan", "induce_counts")
    if model == "memoria":
        engrams_before = {name: getattr(task.model.memoria.engrams, name).clone() for name in engram_fields}

    task._apply_reset_flags(torch.tensor([True, False, False]))

    after = _state_tensors(task.memory_state)
    assert [tensor.shape for tensor in after] == [tensor.shape for tensor in before]  # not emptied for all rows
    for old, new in zip(before, after):
        assert (new[0] == 0).all()  # row 0 keeps nothing of its stream
        assert torch.equal(new[1:], old[1:])  # the other rows carry on bit-identical
    if model == "memoria":
        engrams = task.model.memoria.engrams
        assert (engrams.engrams_types[0] == 0).all()
        assert (engrams_before["engrams_types"][0] != 0).any()
        for name in engram_fields:
            assert torch.equal(getattr(engrams, name)[1:], engrams_before[name][1:]), name
    with torch.no_grad():
        task.forward_segment(layout.segment(4))  # the next segment runs on the partly reset memory


@pytest.mark.parametrize("model", ["transformer_xl", "compressive", "infinity_former"])
def test_after_a_row_reset_that_row_no_longer_depends_on_its_past(model, tmp_path):
    torch.manual_seed(0)
    task, _ = build(tiny_config(model, tmp_path, *RESET_OVERRIDES[model]))
    task.eval()
    past = torch.randint(0, 256, (3, 2, 16))
    other_past = past.clone()
    other_past[:, 0] = torch.randint(0, 256, (3, 16))  # row 0 read something else before its new stream
    segment = {"input_ids": torch.randint(0, 256, (2, 16)), "labels": torch.randint(0, 256, (2, 16))}
    logits = []
    with torch.no_grad():
        for history in (past, other_past):
            task.reset_memory()
            for input_ids in history:
                task.forward_segment({"input_ids": input_ids, "labels": input_ids, "reset": torch.tensor([0, 0]) > 0})
            _, _, output = task.forward_segment({**segment, "reset": torch.tensor([True, False])})
            logits.append(output.logits)
    torch.testing.assert_close(logits[0][0], logits[1][0])


def test_eval_walks_every_token_once_and_restores_training_memory(tmp_path):
    config = tiny_config("memoria", tmp_path)
    task, data = build(config)
    layout = data.layout("valid")
    task.eval()
    with torch.no_grad():
        task.memory_state = "training memory"
        task._start_eval()
        for t in range(layout.num_segments):
            task._eval_step(layout.segment(t))
        task._trainer = None
        task.log = lambda *args, **kwargs: None
        metrics = task._end_eval("val")
    assert metrics["val/tokens"] == layout.num_targets == 9
    assert task.memory_state == "training memory"


def _evaluate(task, layout) -> dict:
    task.eval()
    with torch.no_grad():
        task._start_eval()
        for t in range(layout.num_segments):
            task._eval_step(layout.segment(t))
        task._trainer = None
        task.log = lambda *args, **kwargs: None
        return task._end_eval("val")


def test_memory_around_eval_reset_leaves_the_memory_empty_as_the_authors_do(tmp_path):
    task, data = build(tiny_config("transformer_xl", tmp_path, "memory_around_eval=reset"))
    task.memory_state = "training memory"
    metrics = _evaluate(task, data.layout("valid"))
    assert metrics["val/tokens"] == 9 and task.memory_state is None
    with pytest.raises(ValueError, match="memory_around_eval"):
        build(tiny_config("transformer_xl", tmp_path, "memory_around_eval=restore"))


def test_memory_removed_evaluation_reads_every_segment_without_memory(tmp_path):
    torch.manual_seed(0)
    shrink = ["data.eval_batch_size=1", "model.mem_len=16"]
    task, data = build(tiny_config("transformer_xl", tmp_path, *shrink))
    removed_task, _ = build(tiny_config("transformer_xl", tmp_path, *shrink, "eval.reset_every_segment=true"))
    removed_task.model.load_state_dict(task.model.state_dict())
    layout = layout_single_stream([torch.randint(0, 256, (120,))], batch_size=1, segment_length=16)
    with_memory, removed = _evaluate(task, layout), _evaluate(removed_task, layout)
    # by hand: each segment alone, through the model without mems
    total = 0.0
    with torch.no_grad():
        for t in range(layout.num_segments):
            segment = layout.segment(t)
            logits = task.model(segment["input_ids"]).logits
            total += float(torch.nn.functional.cross_entropy(logits[0], segment["labels"][0], reduction="sum"))
    assert removed["val/tokens"] == with_memory["val/tokens"] == 119
    assert math.isclose(removed["val/loss"] * 119, total, rel_tol=1e-5)
    assert not math.isclose(removed["val/loss"], with_memory["val/loss"], rel_tol=1e-4)  # the memory mattered


def test_evaluation_logs_the_engrams_alive_per_type(tmp_path):
    task, _ = build(tiny_config("memoria", tmp_path, "model.stm_capacity=16"))
    metrics = _evaluate(task, layout_single_stream([torch.randint(0, 256, (120,))], batch_size=1, segment_length=16))
    assert set(metrics) >= {f"val/engrams/{kind}" for kind in ("working", "shortterm", "longterm")}
    assert metrics["val/engrams/shortterm"] > 0 and metrics["val/engrams/longterm"] > 0  # 8 segments, room for 16


def test_data_module_caches_tokens(tmp_path):
    config = {
        "dataset": "pg19",
        "path": str(FIXTURES / "pg19"),
        "tokenizer": "bytes",
        "segment_length": 8,
        "batch_size": 2,
        "cache_dir": str(tmp_path),
    }
    layout = LanguageModelingDataModule(config).layout("train")
    assert len(list(tmp_path.glob("lm_tokens_train_*.pt"))) == 1
    again = LanguageModelingDataModule(config).layout("train")
    assert torch.equal(layout.inputs, again.inputs)
    holds_targets = (layout.targets.view(2, -1, 8) != -100).any(dim=-1)
    assert (layout.reset & holds_targets).sum() == 3  # three books start
