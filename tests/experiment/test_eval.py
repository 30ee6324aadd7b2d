import json

import pytest
import torch
from conftest import tiny_run_overrides

from experiment.scripts import eval as eval_script


def test_eval_of_checkpoint_and_of_saved_model_agree(tiny_memoria_run, sorting_data_dir, tmp_path):
    output_dir, _ = tiny_memoria_run
    config = "experiment/configs/sorting/memoria_tiny.json"
    overrides = tiny_run_overrides(tmp_path, sorting_data_dir)
    from_checkpoint = eval_script.main(
        ["--config", config, "--checkpoint", str(output_dir / "checkpoints" / "last.ckpt"), "--override", *overrides]
    )
    out = tmp_path / "metrics.json"
    torch.set_num_threads(2)
    try:
        from_model = eval_script.main(
            [
                "--config",
                config,
                "--checkpoint",
                str(output_dir / "model"),
                "--output",
                str(out),
                "--override",
                *overrides,
            ]
        )
        assert torch.get_num_threads() == 1  # the config's num_threads, applied as train applies it
    finally:
        torch.set_num_threads(1)
    assert from_checkpoint == pytest.approx(from_model)
    assert json.loads(out.read_text()) == from_model
    dev = eval_script.main(
        ["--config", config, "--checkpoint", str(output_dir / "model"), "--split", "dev", "--override", *overrides]
    )
    assert {"val/loss", "val/accuracy", "val/exact_match"} <= set(dev)
    # the engrams alive after each segment: 40 symbols + the 21-token tail in 16-token segments = 4 segments
    assert {key for key in dev if "/engrams/" in key} == {
        f"val/engrams/{kind}/segment_{i}" for kind in ("working", "shortterm", "longterm") for i in range(4)
    }
    removed = eval_script.main(
        ["--config", config, "--checkpoint", str(output_dir / "model"), "--memory-removed", "--override", *overrides]
    )
    assert removed["test/loss"] != from_model["test/loss"]  # the same weights read the target without memory
    assert removed["test/engrams/shortterm/segment_3"] == 0  # emptied before the last segment, which adds none


def test_help(capsys):
    with pytest.raises(SystemExit):
        eval_script.main(["--help"])
    assert "--checkpoint" in capsys.readouterr().out
