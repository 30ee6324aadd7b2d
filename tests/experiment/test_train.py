import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_run_overrides
from transformers import AutoConfig, AutoModelForCausalLM

from experiment.scripts import train
from experiment.scripts.train import load_config, parse_override, set_by_path

CONFIGS = sorted(Path("experiment/configs/sorting").glob("*.json"))


def test_every_model_has_paper_tiny_and_cpu_configs():
    names = {path.stem for path in CONFIGS}
    assert names == {f"{m}{s}" for m in ("memoria", "transformer_xl", "gpt2") for s in ("", "_tiny", "_cpu")}
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
    metrics = train.main(["--config", str(config), "--override", *tiny_run_overrides(tmp_path, sorting_data_dir)])
    assert 0.0 <= metrics["test/accuracy"] <= 1.0 and metrics["test/loss"] > 0
    model_type = json.loads(config.read_text())["model"]["model_type"]
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
    assert memory["format"] in ("memoria.state_dict", "engram_fields")
    model = AutoModelForCausalLM.from_pretrained(output_dir / "model")
    assert type(model).__name__ == "MemoriaTransformerLMHeadModel"
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(checkpoint["state_dict"][f"model.{name}"], tensor, msg=name)
