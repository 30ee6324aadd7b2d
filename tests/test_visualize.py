"""memoria.visualize: the timeline image by hand, the files it writes, the CLI, and the missing-matplotlib error."""

import sys

import pytest
import torch
from PIL import Image

from memoria import visualize
from memoria.history_manager import HistoryManager
from memoria.types import EngramInfo, EngramsInfo


def small_history() -> HistoryManager:
    """Step 0: one short-term engram (lifespan 4). Step 1: it became long-term (lifespan 2), plus a new one (4)."""
    history = HistoryManager()
    history.add_summary(EngramsInfo({0: EngramInfo(0, "SHORTTERM", 4.0, 1, 1, (), ())}, {}, (), (0,), ()))
    engrams = {0: EngramInfo(0, "LONGTERM", 2.0, 2, 1, (), ()), 1: EngramInfo(1, "SHORTTERM", 4.0, 1, 1, (), ())}
    history.add_summary(EngramsInfo(engrams, {}, (), (1,), (0,)))
    return history


def test_timeline_array_by_hand():
    image = visualize.timeline_array(small_history(), max_lifespan=4.0)
    assert image.shape == (2, 2, 3)
    blue, orange = torch.tensor(visualize.TYPE_COLOURS[2]), torch.tensor(visualize.TYPE_COLOURS[3])
    torch.testing.assert_close(image[0, 0], blue)  # full lifespan: full colour
    assert torch.equal(image[1, 0], torch.ones(3))  # nothing there: background
    strength = 0.2 + 0.8 * 0.5  # lifespan 2 of 4
    torch.testing.assert_close(image[0, 1], (1 - strength) + orange * strength)  # long-term stacks at the bottom
    torch.testing.assert_close(image[1, 1], blue)


def test_render_all_writes_png_and_gif(tmp_path):
    paths = visualize.render_all(small_history(), str(tmp_path), prefix="x_")
    assert [p.name for p in paths] == ["x_timeline.png", "x_timeline.gif", "x_analysis.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[2].read_bytes()[:4] == b"\x89PNG"
    with Image.open(paths[1]) as gif:
        assert gif.n_frames == 2 and gif.size == (2 * 2, 2 * 2)  # one frame per step, 2 px per cell


def test_cli_renders_a_saved_history(tmp_path, capsys):
    saved = tmp_path / "history.gz"
    small_history().save(str(saved))
    visualize.main([str(saved), "--out", str(tmp_path / "out")])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["analysis.png", "timeline.gif", "timeline.png"]
    assert "timeline.png" in capsys.readouterr().out


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an environment without it looks like to import
    with pytest.raises(ImportError, match="pip install matplotlib"):
        visualize.plot_timeline(small_history(), "unused.png")


def test_cli_refuses_a_pickle_unless_asked(tmp_path, capsys):
    import gzip
    import pickle

    from tests.test_history_manager import _RunsCode

    marker = tmp_path / "code-ran"
    crafted = tmp_path / "crafted.gz"
    with gzip.open(crafted, "wb") as file:
        pickle.dump(_RunsCode(marker), file)
    with pytest.raises(SystemExit) as exit_info:
        visualize.main([str(crafted), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "pass --allow-pickle only for a file you trust" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()

    legacy = tmp_path / "legacy.gz"
    with gzip.open(legacy, "wb") as file:
        pickle.dump(small_history(), file)
    with pytest.raises(SystemExit):
        visualize.main([str(legacy), "--out", str(tmp_path / "out")])
    with pytest.warns(UserWarning, match="unpickling"):
        visualize.main([str(legacy), "--out", str(tmp_path / "out"), "--allow-pickle"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["analysis.png", "timeline.gif", "timeline.png"]


def test_cli_refuses_a_missing_file(tmp_path):
    with pytest.raises(SystemExit):
        visualize.main([str(tmp_path / "absent.gz"), "--out", str(tmp_path / "out")])


def run_cli(*argv: str) -> "subprocess.CompletedProcess":
    """``python -m memoria.visualize ARGV`` in a process of its own, as a user runs it."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "memoria.visualize", *argv], capture_output=True, text=True)


def test_d16_a_history_without_steps_is_a_one_line_error(tmp_path):
    saved = tmp_path / "empty.gz"
    HistoryManager().save(saved)
    result = run_cli(str(saved), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "python -m memoria.visualize: error: the history holds no steps: nothing to draw"
    ]
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="no steps"):
        visualize.render_all(HistoryManager(), str(tmp_path / "out"))


def test_d16_an_out_path_naming_a_file_is_a_one_line_error(tmp_path):
    saved, taken = tmp_path / "history.gz", tmp_path / "taken"
    small_history().save(saved)
    taken.write_text("keep me")
    result = run_cli(str(saved), "--out", str(taken))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "is a file, not a folder" in result.stderr and "Traceback" not in result.stderr
    assert taken.read_text() == "keep me"


def test_d16_file_errors_are_one_line_too(tmp_path):
    import gzip

    big = tmp_path / "big.gz"
    small_history().save(big)
    for argv, words in [
        ([str(tmp_path / "absent.gz")], "No such file"),
        ([str(big), "--max-bytes", "100"], "more than --max-bytes=100 bytes"),
    ]:
        result = run_cli(*argv, "--out", str(tmp_path / "out"))
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and words in result.stderr, result
    broken = tmp_path / "broken.gz"
    with gzip.open(broken, "wb") as file:
        file.write(b"PK\x03\x04 truncated")
    result = run_cli(str(broken), "--out", str(tmp_path / "out"))
    assert (
        result.returncode == 2
        and len(result.stderr.splitlines()) == 1
        and "not a readable history file" in result.stderr
    )
