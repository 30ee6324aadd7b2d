"""Configs that extend others: the merge rules, what is refused, overrides after resolution, and the shipped configs."""

import json
from pathlib import Path

import pytest

from experiment.config import ConfigError, deep_merge, load_config, resolve_config
from experiment.scripts import train

CONFIG_ROOT = Path("experiment/configs")
RUNNABLE = sorted(p for p in CONFIG_ROOT.glob("*/*.json") if not p.name.startswith("_"))
PARTS = sorted(p for p in CONFIG_ROOT.glob("*/*.json") if p.name.startswith("_"))


def write(folder: Path, name: str, content: dict) -> Path:
    path = folder / name
    path.write_text(json.dumps(content))
    return path


def test_objects_merge_key_by_key_and_every_other_value_replaces():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1, "c": {"k": 1}}
    patch = {"a": {"y": [3], "z": None}, "b": {"now": "a section"}, "c": None}
    assert deep_merge(base, patch) == {"a": {"x": 1, "y": [3], "z": None}, "b": {"now": "a section"}, "c": None}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1, "c": {"k": 1}}  # inputs untouched


def test_parents_apply_in_order_then_unset_then_own_entries(tmp_path):
    write(tmp_path, "base.json", {"task": "t", "model": {"n": 1, "drop": 0.1, "init": "paper"}, "trainer": {"e": 5}})
    write(tmp_path, "_size.json", {"unset": ["trainer.e"], "model": {"n": 2}, "trainer": {"steps": 3}})
    child = write(
        tmp_path,
        "child.json",
        {"extends": ["base.json", "_size.json"], "unset": ["model.init"], "model": {"drop": 0.0}, "output_dir": "o"},
    )
    assert resolve_config(child) == {
        "task": "t",
        "model": {"n": 2, "drop": 0.0},
        "trainer": {"steps": 3},
        "output_dir": "o",
    }
    # a grandchild sees the resolved child, and a single parent may be a plain string
    grandchild = write(tmp_path, "grandchild.json", {"extends": "child.json", "model": {"n": 7}})
    assert resolve_config(grandchild)["model"] == {"n": 7, "drop": 0.0}


def test_a_cycle_is_refused_with_the_chain(tmp_path):
    write(tmp_path, "a.json", {"extends": "b.json"})
    write(tmp_path, "b.json", {"extends": "a.json"})
    with pytest.raises(ConfigError, match=r"cycle: .*a\.json -> .*b\.json -> .*a\.json"):
        resolve_config(tmp_path / "a.json")
    write(tmp_path, "self.json", {"extends": "self.json"})
    with pytest.raises(ConfigError, match="cycle"):
        resolve_config(tmp_path / "self.json")


def test_a_shared_ancestor_reached_through_two_parents_is_refused(tmp_path):
    write(tmp_path, "root.json", {"x": 1})
    write(tmp_path, "left.json", {"extends": "root.json", "x": 2})
    write(tmp_path, "right.json", {"extends": "root.json"})
    diamond = write(tmp_path, "diamond.json", {"extends": ["left.json", "right.json"]})
    # applying right would re-apply root's x = 1 over left's x = 2 without a word
    with pytest.raises(ConfigError, match=r"root\.json is reached twice"):
        resolve_config(diamond)


def test_missing_parents_and_bad_entries_say_which_file(tmp_path):
    orphan = write(tmp_path, "orphan.json", {"extends": "nowhere.json"})
    with pytest.raises(ConfigError, match=r"nowhere\.json does not exist \(extended by .*orphan\.json\)"):
        resolve_config(orphan)
    with pytest.raises(ConfigError, match=r"missing\.json does not exist$"):
        resolve_config(tmp_path / "missing.json")
    write(tmp_path, "base.json", {"model": {"n": 1}})
    typo = write(tmp_path, "typo.json", {"extends": "base.json", "unset": ["model.m"]})
    with pytest.raises(ConfigError, match=r"typo\.json: unset 'model\.m': the config it extends has no such entry"):
        resolve_config(typo)
    bad = write(tmp_path, "bad.json", {"extends": 3})
    with pytest.raises(ConfigError, match="'extends' must be a string or a list of strings"):
        resolve_config(bad)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve_config(tmp_path / "broken.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        resolve_config(tmp_path / "list.json")


def test_overrides_apply_after_resolution(tmp_path):
    parent = (CONFIG_ROOT / "far_recall" / "gpt2_tiny.json").resolve()
    child = write(tmp_path, "child.json", {"extends": str(parent), "model": {"n_layer": 1}})
    config = load_config(child, ["model.n_layer=3", "data.distance=5", "trainer.max_steps=1"])
    assert config["model"]["n_layer"] == 3 and config["model"]["model_type"] == "gpt2"
    assert config["data"]["distance"] == 5 and config["data"]["num_labels"] == 10  # the rest of data inherited
    with pytest.raises(ValueError, match="no 'task' entry"):
        load_config(CONFIG_ROOT / "language_modeling" / "_pg19.json")  # a part is not a config to train


def test_train_writes_the_resolved_config_with_overrides(tmp_path, capsys):
    parent = (CONFIG_ROOT / "far_recall" / "gpt2_tiny.json").resolve()
    child = write(tmp_path, "child.json", {"extends": str(parent), "model": {"n_layer": 1}})
    overrides = [
        f"output_dir={tmp_path / 'run'}",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]
    train.main(["--config", str(child), "--override", *overrides, "seed=5"])
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written == load_config(child, [*overrides, "seed=5"])
    assert "extends" not in written and written["model"]["n_layer"] == 1 and written["seed"] == 5
    assert written["trainer"]["max_steps"] == 2  # from far_recall/_tiny.json, two parents up
    capsys.readouterr()  # the training run's own output
    assert train.main(["--config", str(child), "--print-config", "--override", "seed=7"]) == {}
    assert json.loads(capsys.readouterr().out)["seed"] == 7


@pytest.mark.parametrize("config", RUNNABLE, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_config_resolves_to_a_runnable_config(config):
    resolved = load_config(config)
    assert resolved["task"] == config.parent.name
    assert resolved["output_dir"].endswith(config.stem)


def test_every_part_is_extended_by_some_config():
    extended = set()
    for path in CONFIG_ROOT.glob("*/*.json"):
        parents = json.loads(path.read_text()).get("extends", [])
        extended |= {(path.parent / p).resolve() for p in ([parents] if isinstance(parents, str) else parents)}
    assert {p.resolve() for p in PARTS} <= extended
