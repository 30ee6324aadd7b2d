import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_lm_overrides, tiny_run_overrides
from transformers import AutoConfig, AutoModelForCausalLM

from experiment.scripts import train
from experiment.scripts.train import load_config, parse_override, set_by_path

CONFIGS = sorted(p for p in Path("experiment/configs/sorting").glob("*.json") if not p.name.startswith("_"))


def test_every_model_has_paper_tiny_and_cpu_configs():
    names = {path.stem for path in CONFIGS}
    assert names == {
        f"{m}{s}"
        for m in ("memoria", "transformer_xl", "infinity_former", "infinity_former_xl", "gpt2")
        for s in ("", "_tiny", "_cpu")
    }
    paper = load_config("experiment/configs/sorting/memoria.json")
    assert paper["data"]["sequence_length"] == 32768 and paper["segment_length"] == 1024
    assert paper["model"]["num_working_memories"] == 128 and paper["model"]["num_final_ltms"] == 640


def test_overrides_parse_json_and_create_sections(tmp_path):
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("name=memoria tiny") == ("name", "memoria tiny")
    assert parse_override('d={"x": [1, 2]}') == ("d", {"x": [1, 2]})
    with pytest.raises(ValueError, match="key.path=value"):
        parse_override("novalue")
    config = {"a": {"b": 1}, "c": 2}
    set_by_path(config, "a.d.e", None)
    assert config == {"a": {"b": 1, "d": {"e": None}}, "c": 2}
    with pytest.raises(ValueError, match="not a section"):
        set_by_path(config, "c.x", 1)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"task": "sorting", "model": {}}))
    with pytest.raises(ValueError, match="output_dir"):
        load_config(str(path))


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    assert "--config" in out and "--override" in out and "DDP" in out


@pytest.mark.parametrize("config", [p for p in CONFIGS if not p.stem.startswith("memoria_tiny")], ids=lambda p: p.stem)
def test_two_step_training_run_of_every_config(config, tmp_path, sorting_data_dir):
    # memoria_tiny runs once for the whole session in the tiny_memoria_run fixture (checked below).
    overrides = tiny_run_overrides(tmp_path, sorting_data_dir)
    if config.stem in ("infinity_former", "infinity_former_xl"):  # 1024 / 512 basis functions: big refits
        overrides += ["model.num_basis=32", "model.num_samples=32"]
    metrics = train.main(["--config", str(config), "--override", *overrides])
    assert 0.0 <= metrics["test/accuracy"] <= 1.0 and metrics["test/loss"] > 0
    model_type = load_config(config)["model"]["model_type"]
    assert AutoConfig.from_pretrained(tmp_path / "model").model_type == model_type


def test_tiny_memoria_run_writes_logs_checkpoints_model_and_metrics(tiny_memoria_run):
    output_dir, metrics = tiny_memoria_run
    assert json.loads((output_dir / "test_metrics.json").read_text())["test/accuracy"] == metrics["test/accuracy"]
    assert json.loads((output_dir / "config.json").read_text())["data"]["sequence_length"] == 40
    rows = list(csv.DictReader(open(next(output_dir.glob("csv/*/metrics.csv")))))
    assert any(row.get("train/loss_step") for row in rows) and any(row.get("val/accuracy") for row in rows)
    assert list(output_dir.glob("tensorboard/*/events.out.tfevents.*"))
    checkpoint = torch.load(output_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 2
    memory = checkpoint["memory_state"]
    assert memory["format"] == "memoria.state_dict"
    model = AutoModelForCausalLM.from_pretrained(output_dir / "model")
    assert type(model).__name__ == "MemoriaTransformerLMHeadModel"
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(checkpoint["state_dict"][f"model.{name}"], tensor, msg=name)
    # generate() reads in the training segments (16 tokens), which the saved config records
    assert model.config.segment_length == 16
    model.eval().reset_memory()
    prompt = torch.randint(0, model.config.vocab_size, (1, 20))
    assert model.generate(prompt, max_new_tokens=4, do_sample=False).shape == (1, 24)
    assert model.memoria.timestep == 1  # the second segment read the first through the memory


def test_start_up_prints_no_litlogger_tip_flops_or_lightning_deprecations(
    tmp_path, sorting_data_dir, capfd, caplog, recwarn
):
    config = "experiment/configs/sorting/gpt2_tiny.json"
    overrides = [*tiny_run_overrides(tmp_path, sorting_data_dir), "trainer.enable_progress_bar=false"]
    with caplog.at_level("INFO"):
        train.main(["--config", config, "--override", *[o for o in overrides if "enable_model_summary" not in o]])
    # Lightning's log lines (caught by pytest's log capture here), stdout / stderr, and the warnings raised
    output = caplog.text + "".join(capfd.readouterr()) + "".join(str(w.message) for w in recwarn)
    assert "Trainable params" in output  # the model summary is still there
    for noise in ("litlogger", "FLOPs", "LeafSpec", "Skipping setting a default", "Writing model shards"):
        assert noise not in output, noise


LM_CONFIGS = sorted(p for p in Path("experiment/configs/language_modeling").glob("*.json") if p.name[0] != "_")


def test_checkpoint_metric_defaults_to_accuracy_and_is_read_from_the_config(tmp_path):
    default = train.make_checkpoint_callback({}, tmp_path)
    assert (default.monitor, default.mode, default.filename) == (
        "val/accuracy",
        "max",
        "step{step}-accuracy{val/accuracy:.4f}",
    )
    chosen = train.make_checkpoint_callback(
        {"checkpoint": {"monitor": "val/ppl", "mode": "min", "save_top_k": 2}}, tmp_path
    )
    assert (chosen.monitor, chosen.mode, chosen.save_top_k, chosen.save_last) == ("val/ppl", "min", 2, True)
    assert chosen.dirpath == str(tmp_path / "checkpoints")


@pytest.mark.parametrize("config", LM_CONFIGS, ids=lambda p: p.stem)
def test_language_modeling_configs_keep_the_lowest_bpc_or_perplexity(config):
    checkpoint = load_config(str(config))["checkpoint"]
    assert checkpoint["mode"] == "min"
    assert checkpoint["monitor"] == ("val/ppl" if config.stem.split("_")[0] in ("wikitext103", "pg19") else "val/bpc")


def test_cli_without_progress_bar_keeps_the_lowest_bpc_checkpoint(tmp_path):
    # Two validations (one per step) so that "best" is a real choice between two values of val/bpc.
    overrides = [
        *tiny_lm_overrides(),
        "trainer.val_check_interval=1",
        "trainer.enable_progress_bar=false",
        f"output_dir={tmp_path}",
    ]
    metrics = train.main(["--config", "experiment/configs/language_modeling/tiny_gpt2.json", "--override", *overrides])
    rows = list(csv.DictReader(open(next(tmp_path.glob("csv/*/metrics.csv")))))
    val_bpc = [(float(row["val/bpc"]), int(row["step"])) for row in rows if row.get("val/bpc")]
    assert len(val_bpc) == 2
    best_bpc, best_step = min(val_bpc)
    best = Path(metrics["checkpoint"])
    assert best.name == f"step{best_step + 1}-bpc{best_bpc:.4f}.ckpt"
    assert torch.load(best, weights_only=False)["callbacks"]  # a real Lightning checkpoint, tested after fit
    assert 4.0 < metrics["test/bpc"] < 12.0


def test_resume_continues_steps_and_memory_from_the_last_checkpoint(tmp_path):
    """A language-modelling run stopped after 2 steps and resumed with --resume goes on to step 4 from its checkpoint."""
    config = "experiment/configs/language_modeling/tiny_memoria.json"
    base = [*tiny_lm_overrides(), "trainer.max_epochs=20", "trainer.enable_progress_bar=false", "test_after_fit=false"]
    train.main(["--config", config, "--override", *base, "trainer.max_steps=2", f"output_dir={tmp_path / 'first'}"])
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert saved["global_step"] == 2 and saved["lm_memory"]["model"] is not None  # the Memoria state rides along
    overrides = [*base, "trainer.max_steps=4", f"output_dir={tmp_path / 'resumed'}"]
    train.main(["--config", config, "--override", *overrides, "--resume", str(last)])
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == 4
    # the optimiser went on from the saved state (Adam's step count reaches 4; a fresh start would stop at 2)
    steps = [float(state["step"]) for state in resumed["optimizer_states"][0]["state"].values()]
    assert max(steps) == 4.0


SMALL_CONFIGS = sorted(
    path
    for path in Path("experiment/configs").glob("*/*.json")
    if not path.name.startswith("_")
    and path.stem.endswith(("_tiny", "_cpu"))
    or path.stem.startswith(("tiny_", "long_range_"))
)


@pytest.mark.parametrize("config", SMALL_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_small_config_runs_on_one_thread(config):
    # at torch's default thread count a tiny run on a busy 2-core machine went ~40x slower than on one thread
    assert load_config(str(config))["num_threads"] == 1


PAPER_MEMORY_CONFIGS = [
    "experiment/configs/sorting/memoria.json",
    *(f"experiment/configs/language_modeling/{name}_memoria.json" for name in ("wikitext103", "enwik8", "pg19")),
    *(f"experiment/configs/classification/hyperpartisan_memoria_{name}.json" for name in ("bert", "roberta")),
]


@pytest.mark.parametrize("config", PAPER_MEMORY_CONFIGS)
def test_paper_size_configs_state_the_authors_memory_initialisation(config):
    model = load_config(config)["model"]
    assert model["memory_init"] == "paper"
    if "classification" in config:
        assert model["memory_placement"] == "inside"


PAPER_TRANSFORMER_CONFIGS = [
    "experiment/configs/sorting/memoria.json",
    *(f"experiment/configs/language_modeling/{name}_memoria.json" for name in ("wikitext103", "enwik8", "pg19")),
]


@pytest.mark.parametrize("config", PAPER_TRANSFORMER_CONFIGS)
def test_paper_size_configs_use_the_authors_abstractor_width(config):
    # theirs: Abstractor(feedforward_dim=4 * n_embd); a null width (older configs, the CPU ones) still means n_embd
    model = load_config(config)["model"]
    assert model["abstractor_feedforward_dim"] == 4 * model["n_embd"]


def test_small_configs_keep_the_measured_abstractor_width_and_the_authors_settings_hold_elsewhere():
    for config in ("sorting/memoria_cpu.json", "far_recall/memoria_cpu.json", "language_modeling/tiny_memoria.json"):
        assert "abstractor_feedforward_dim" not in load_config(f"experiment/configs/{config}")["model"], config
    for config in ("sorting/memoria.json", "sorting/transformer_xl.json", "sorting/gpt2.json"):
        assert load_config(f"experiment/configs/{config}")["model"]["n_head"] == 4  # their sorting models: 4 heads
    enwik8 = load_config("experiment/configs/language_modeling/enwik8_memoria.json")
    assert enwik8["memory_reset_period"] == 500 and enwik8["memory_around_eval"] == "reset"  # as the authors
    tiny = load_config("experiment/configs/language_modeling/tiny_memoria.json")
    assert tiny["memory_around_eval"] == "keep"  # the measured CPU runs keep the training memory across validation
