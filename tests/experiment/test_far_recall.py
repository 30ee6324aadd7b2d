"""The far-recall set and task: what the examples hold, determinism, the distance knob, and tiny CLI runs."""

import json
from pathlib import Path

import pytest
import torch

from experiment.data.far_recall import IGNORE_INDEX, FarRecallConfig, FarRecallDataset, generate_far_recall
from experiment.models import UNAVAILABLE_MODELS, build_model
from experiment.scripts import train
from experiment.tasks import far_recall
from experiment.tasks.base import run_segments

CONFIGS = sorted(p for p in Path("experiment/configs/far_recall").glob("*.json") if not p.name.startswith("_"))


def test_evidence_is_in_segment_zero_only_and_the_label_is_asked_at_sep():
    config = FarRecallConfig(num_labels=10, vocab_size=32, segment_length=32, distance=3, evidence_fraction=0.5)
    tokens, labels = generate_far_recall(config, count=200, seed=1)
    assert tokens.shape == (200, 4 * 32 + 1) and config.length == 129
    assert (tokens[:, -1] == config.sep_id).all() and (tokens[:, :-1] != config.sep_id).all()
    is_label_token = tokens[:, :-1] < config.num_labels
    assert not is_label_token[:, 32:].any()  # noise segments never show a label token
    assert (is_label_token[:, :32].sum(dim=1) == 16).all()  # half of segment 0
    assert (tokens[:, :32][is_label_token[:, :32]] == labels.repeat_interleave(16)).all()
    assert set(labels.tolist()) == set(range(10))


def test_generation_is_deterministic_and_distance_sets_the_length():
    config = FarRecallConfig(segment_length=8, distance=2)
    first, labels = generate_far_recall(config, 5, seed=3)
    again, labels_again = generate_far_recall(config, 5, seed=3)
    other, _ = generate_far_recall(config, 5, seed=4)
    assert torch.equal(first, again) and torch.equal(labels, labels_again) and not torch.equal(first, other)
    assert generate_far_recall(FarRecallConfig(segment_length=8, distance=5), 1, 0)[0].size(1) == 6 * 8 + 1
    dataset = FarRecallDataset(config, 5, seed=3)
    item = dataset[2]
    assert (item["labels"][:-1] == IGNORE_INDEX).all() and item["labels"][-1] == labels[2]


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(num_labels=1), "num_labels"),
        (dict(vocab_size=11), "vocab_size"),
        (dict(distance=-1), "distance"),
        (dict(evidence_fraction=0.0), "evidence_fraction"),
    ],
)
def test_bad_sizes_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        FarRecallConfig(**fields)


def test_a_model_without_memory_cannot_see_the_evidence(tiny_xl):
    """Changing segment 0 changes nothing for GPT-2 (skips unlabelled segments) or for a Transformer-XL whose memory
    is shorter than the distance, and changes the Memoria Transformer's prediction."""
    config = FarRecallConfig(vocab_size=21, segment_length=8, distance=2)
    tokens, labels = generate_far_recall(config, 4, seed=0)
    changed = tokens.clone()
    changed[:, :8] = (changed[:, :8] + 1) % config.num_labels  # other labels in the evidence
    target = torch.full_like(tokens, IGNORE_INDEX)
    target[:, -1] = labels
    gpt2 = dict(model_type="gpt2", vocab_size=21, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    memoria = dict(
        model_type="memoria_transformer",
        vocab_size=21,
        n_positions=8,
        n_embd=16,
        n_layer=1,
        n_head=2,
        num_working_memories=4,
        num_reminded_stm=8,
        stm_capacity=8,
        ltm_search_depth=2,
        num_final_ltms=4,
        memory_output_init="normal",  # the default starts silent: at initialisation it would not see the evidence
    )
    losses = {}
    for name, fields in (("gpt2", gpt2), ("xl", {"model_type": "transformer_xl", **tiny_xl}), ("memoria", memoria)):
        model = build_model(fields).eval()
        with torch.no_grad():
            losses[name] = [run_segments(model, ids, target, 8, train=False).loss.item() for ids in (tokens, changed)]
    assert losses["gpt2"][0] == losses["gpt2"][1]
    assert losses["xl"][0] == losses["xl"][1]  # mem_len 8: sees the last noise segment only
    assert losses["memoria"][0] != losses["memoria"][1]
    # the same Memoria with its memory removed (reset at every segment) no longer sees the evidence
    model = build_model(memoria).eval()
    with torch.no_grad():
        removed = [
            run_segments(model, ids, target, 8, False, reset_every_segment=True).loss for ids in (tokens, changed)
        ]
    assert removed[0] == removed[1]


def test_engram_counts_per_segment_show_long_term_engrams_when_the_short_term_store_is_small():
    config = FarRecallConfig(num_labels=4, vocab_size=21, segment_length=8, distance=4, evidence_fraction=0.5)
    tokens, labels = generate_far_recall(config, 3, seed=0)
    target = torch.full_like(tokens, IGNORE_INDEX)
    target[:, -1] = labels
    fields = dict(vocab_size=21, n_positions=8, n_embd=16, n_layer=1, n_head=2, num_working_memories=4)
    log, small = [], []
    with torch.no_grad():
        model = build_model({"model_type": "memoria_transformer", **fields, "stm_capacity": 64}).eval()
        run_segments(model, tokens, target, 8, train=False, engram_log=log)
        model = build_model({"model_type": "memoria_transformer", **fields, "stm_capacity": 4}).eval()
        run_segments(model, tokens, target, 8, train=False, engram_log=small)
    assert len(log) == len(small) == config.distance + 2  # every segment, the [SEP] one included
    assert all(set(counts) == {"working", "shortterm", "longterm"} for counts in log)
    # after a segment its working memories are short-term already (the model adds the next ones at the next segment)
    assert [counts["shortterm"] for counts in log] == [0, 4, 8, 12, 16, 20]
    assert all(counts["working"] == 0 and counts["longterm"] == 0 for counts in log)  # it all fits short-term
    # with room for one segment's working memories only, older ones are promoted to the long-term store
    assert max(counts["shortterm"] for counts in small) <= 4 and small[-1]["longterm"] > 0
    no_memory = []
    run_segments(build_model({"model_type": "gpt2", **fields}).eval(), tokens, target, 8, False, engram_log=no_memory)
    assert no_memory == []  # a model without a Memoria logs nothing


def test_build_checks_the_vocabulary():
    config = train.load_config("experiment/configs/far_recall/gpt2_tiny.json")
    config["model"]["vocab_size"] = 8
    with pytest.raises(ValueError, match="vocab_size"):
        far_recall.build(config)


def test_every_model_has_tiny_and_cpu_configs_and_the_long_term_setting():
    models = ("memoria", "transformer_xl", "gpt2", "infinity_former", "infinity_former_xl", "rmt", "titans_mac")
    long_term = {f"{m}_longterm_cpu" for m in models if m != "gpt2"}
    ablations = {"memoria_longterm_no_ltm_cpu", "memoria_longterm_no_walk_cpu"}
    assert {path.stem for path in CONFIGS} == {
        f"{m}_{s}" for m in models for s in ("tiny", "cpu")
    } | long_term | ablations
    memoria = train.load_config("experiment/configs/far_recall/memoria_cpu.json")
    xl = train.load_config("experiment/configs/far_recall/transformer_xl_cpu.json")
    # the table's claim: Transformer-XL's memory is shorter than the distance to the evidence
    assert xl["model"]["mem_len"] < memoria["data"]["distance"] * memoria["segment_length"]
    assert memoria["model"].get("memory_init", "scaled") == "scaled"


def test_the_long_term_setting_keeps_the_evidence_out_of_the_short_term_store_at_equal_budget():
    memoria = train.load_config("experiment/configs/far_recall/memoria_longterm_cpu.json")["model"]
    for distance in (3, 6, 12, 24):  # the working memories written between the evidence and the question
        assert memoria["stm_capacity"] < memoria["num_working_memories"] * distance
    xl = train.load_config("experiment/configs/far_recall/transformer_xl_longterm_cpu.json")
    read = memoria["num_working_memories"] + memoria["num_reminded_stm"] + memoria["num_final_ltms"]
    assert xl["model"]["mem_len"] == read == 32  # the same memory budget in vectors
    for name, change in (("no_ltm", {"num_final_ltms": 0}), ("no_walk", {"ltm_search_depth": 0})):
        ablation = train.load_config(f"experiment/configs/far_recall/memoria_longterm_{name}_cpu.json")["model"]
        assert ablation == {**memoria, **change}  # one change each
    for path in Path("experiment/configs/far_recall").glob("*_longterm*_cpu.json"):
        assert train.load_config(path)["data"]["distance"] == 12, path  # the headline distance; others by override


def test_a_short_long_term_run_shows_long_term_engrams_at_the_question(tmp_path):
    shrink = [
        "model.n_embd=16",
        "model.n_head=2",
        "data.distance=3",
        'data.num_examples={"train": 8, "dev": 4, "test": 4}',
    ]
    shrink += ["batch_size=4", "eval_batch_size=4", "trainer.max_steps=2", "trainer.val_check_interval=2"]
    overrides = [f"output_dir={tmp_path}", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    config = "experiment/configs/far_recall/memoria_longterm_cpu.json"
    metrics = train.main(["--config", config, "--override", *shrink, *overrides])
    # segments 0..4: the evidence's working memories (added at segment 1) left the 8-engram short-term store
    assert metrics["test/engrams/shortterm/segment_4"] <= 8
    assert metrics["test/engrams/longterm/segment_4"] > 0 and metrics["test/engrams/longterm/segment_1"] == 0


@pytest.mark.parametrize("config", [p for p in CONFIGS if p.stem.endswith("_tiny")], ids=lambda p: p.stem)
def test_two_step_training_run_of_every_tiny_config(config, tmp_path):
    model_type = train.load_config(config)["model"]["model_type"]
    if model_type in UNAVAILABLE_MODELS:
        pytest.skip(f"{UNAVAILABLE_MODELS[model_type]} is not installed (experiment/requirements-peers.txt)")
    overrides = [f"output_dir={tmp_path}", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    metrics = train.main(["--config", str(config), "--override", *overrides])
    assert 0.0 <= metrics["test/accuracy"] <= 1.0 and metrics["test/loss"] > 0


def test_engram_analysis_of_a_trained_model_writes_the_history_pictures_and_summary(tmp_path):
    from experiment.scripts import engram_analysis

    config = "experiment/configs/far_recall/memoria_tiny.json"
    overrides = [
        f"output_dir={tmp_path / 'run'}",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]
    train.main(["--config", config, "--override", *overrides])
    out = tmp_path / "analysis"
    summary = engram_analysis.main(
        [
            "--model",
            str(tmp_path / "run" / "model"),
            "--config",
            config,
            "--documents",
            "3",
            "--batch",
            "2",
            "--out",
            str(out),
        ]
    )
    assert {p.name for p in out.iterdir()} == {
        "history.gz",
        "timeline.png",
        "timeline.gif",
        "analysis.png",
        "summary.json",
    }
    assert json.loads((out / "summary.json").read_text()) == summary
    distance = train.load_config(config)["data"]["distance"]
    assert summary["stream_steps_row0"] == 3 * (distance + 2) - 1  # every segment of the stream but the first
    # every part read at [SEP] (the working memories made there are not reminded yet)
    gains = summary["lifespan_gained_at_sep_by_part"]
    assert list(gains) == ["evidence"] + [f"noise {i}" for i in range(1, distance)]
    # a gain is an attention share times the number reminded times the scale: never negative, and on average
    # near the scale (exactly the scale, were every part the same size)
    assert all(value >= 0 for value in gains.values())
    assert sum(gains.values()) / len(gains) <= summary["lifespan_extend_scale"] * 1.5
    assert 0.0 <= summary["accuracy_reset_per_document"] <= 1.0 and 0.0 <= summary["stream_accuracy"] <= 1.0
    from memoria import HistoryManager

    assert len(HistoryManager.load(str(out / "history.gz"))) == summary["stream_steps_row0"]


def test_the_cost_script_times_steps_and_projects_the_run(capsys):
    from experiment.scripts import cost

    config = train.load_config("experiment/configs/far_recall/memoria_cpu.json")
    # 9,600 examples at batch 32: 300 steps; a validation every 100 steps on 200 / 100 = 2 batches; 10 test batches
    assert cost.run_shape(config, 300, 2, 10) == {"train_steps": 300, "eval_batches": 3 * 2 + 10}
    sorting = train.load_config("experiment/configs/sorting/memoria_cpu.json")
    assert cost.run_shape(sorting, 125, 7, 25) == {"train_steps": 250, "eval_batches": 2 * 7 + 25}  # once an epoch
    result = cost.main(
        ["--config", "experiment/configs/far_recall/gpt2_tiny.json", "--steps", "1", "--eval-batches", "1"]
    )
    assert result["train_steps"] == 2 and result["eval_batches"] == 1 + 1  # max_steps 2; one validation, one test
    assert result["seconds_per_train_step"] > 0 and result["seconds_per_eval_batch"] > 0
    expected = 2 * result["seconds_per_train_step"] + 2 * result["seconds_per_eval_batch"]
    assert result["projected_seconds"] == pytest.approx(expected, abs=0.2)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_writes_within_reach_of_the_loss_are_trained_when_the_model_asks_for_it():
    # write_gradient_segments=K: the K segments before the labelled one build their graph too, so the question's loss
    # reaches the abstractor through the engrams written there (with K=0 only through the last segment's own write)
    config = FarRecallConfig(num_labels=4, vocab_size=21, segment_length=8, distance=2)
    tokens, labels = generate_far_recall(config, 4, seed=0)
    target = torch.full_like(tokens, IGNORE_INDEX)
    target[:, -1] = labels
    fields = dict(model_type="memoria_transformer", vocab_size=21, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    fields.update(num_working_memories=4, stm_capacity=16, num_reminded_stm=16, unroll_segments=0)
    fields.update(memory_output_init="normal")  # a silent read would pass the abstractor no gradient at all
    gradients = {}
    for reach in (0, 3):
        torch.manual_seed(0)
        model = build_model({**fields, "write_gradient_segments": reach}).train()
        run_segments(model, tokens, target, 8, train=True).loss.backward()
        query = next(p for name, p in model.named_parameters() if name.endswith("abstractor.query_embeddings"))
        gradients[reach] = query.grad.clone()
    assert not torch.allclose(gradients[0], gradients[3])  # the earlier writes added their share


def test_an_unrolled_training_step_reaches_the_evidence_segment_through_the_memory():
    # unroll_segments=K (the default): run_segments walks a training example inside model.unrolled(), so the
    # question's loss reaches the embedding of tokens seen only in the evidence segment, K + 1 segments back; with the
    # paper's detached write (0) it cannot. Evaluation (train=False) is unchanged by it.
    config = FarRecallConfig(num_labels=4, vocab_size=21, segment_length=8, distance=2)
    tokens, labels = generate_far_recall(config, 4, seed=0)
    target = torch.full_like(tokens, IGNORE_INDEX)
    target[:, -1] = labels
    fields = dict(model_type="memoria_transformer", vocab_size=21, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    fields.update(num_working_memories=4, stm_capacity=16, num_reminded_stm=16, memory_output_init="normal")
    fields.update(tie_word_embeddings=False)  # a tied head would hand every token's embedding a gradient
    evidence = tokens[:, :8].unique()
    only_evidence = evidence[~torch.isin(evidence, tokens[:, 8:].unique())]
    assert len(only_evidence) > 0
    reached, losses = {}, {}
    for unroll in (0, 3):
        torch.manual_seed(0)
        model = build_model({**fields, "unroll_segments": unroll}).train()
        with torch.no_grad():
            torch.manual_seed(1)
            losses[unroll] = run_segments(model, tokens, target, 8, train=False).loss
        torch.manual_seed(1)
        stats = run_segments(model, tokens, target, 8, train=True)
        stats.loss.backward()
        embedding = model.get_input_embeddings().weight.grad
        reached[unroll] = bool(embedding[only_evidence].abs().max() > 0)
        assert not model.transformer.memory.keeps_written_graph  # the context closed with the walk
        assert torch.allclose(stats.loss, losses[unroll])  # the same values, only the gradient differs
    assert reached == {0: False, 3: True}
