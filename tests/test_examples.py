"""The README's and the tutorial's examples run as written and show what they print."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

SEED_STEP_6 = """tensor([[ 0,  6,  4,  3,  2, -1],
        [ 0,  7,  6,  5,  4, -1]])"""
SEED_STEP_6_LIFESPAN = """tensor([[6., 1., 6., 6., 6., 1., 6., 1., 2., 2., 2., 2., 2., 2., 2., 2.],
        [6., 1., 1., 1., 6., 6., 6., 6., 2., 2., 2., 2., 2., 2., 2., 2.]])"""


def test_tutorial_script_prints_the_seed_values():
    out = subprocess.run([sys.executable, "examples/tutorial.py"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    step6 = out.stdout.split("## step 6")[1].split("## step 7")[0]
    assert SEED_STEP_6 in step6 and SEED_STEP_6_LIFESPAN in step6
    assert "tensor([], size=(2, 0, 64))" in out.stdout and "<EngramType.SHORTTERM: 2>" in out.stdout


def test_tutorial_page_shows_what_the_script_prints_step_by_step():
    tutorial = (ROOT / "docs" / "tutorial.md").read_text()
    assert SEED_STEP_6 in tutorial and SEED_STEP_6_LIFESPAN in tutorial
    steps = re.findall(r"^\*\*(\d)(?:-(\d))?\. ", tutorial, flags=re.M)
    assert [first for first, _ in steps] == ["1", "3", "4", "5", "6", "7"]  # "1-2" opens, as in the script


@pytest.mark.parametrize("page, example", [("README.md", "quickstart.py"), ("docs/tutorial.md", "model_loop.py")])
def test_page_examples_are_the_tested_files_and_run(page, example):
    text = (ROOT / page).read_text()
    code = (ROOT / "examples" / example).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert code in blocks, f"{page}'s example must be examples/{example} verbatim"
    out = subprocess.run(
        [sys.executable, f"examples/{example}"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "Engrams(batch_size=2" in out.stdout


def test_notebook_runs_top_to_bottom():
    nbformat = pytest.importorskip("nbformat", reason="the dev extra installs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the dev extra installs nbclient")
    notebook = nbformat.read(ROOT / "examples" / "tutorial.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = ENV["PYTHONPATH"]
    try:
        client.execute()
    finally:
        os.environ.pop("PYTHONPATH") if old is None else os.environ.__setitem__("PYTHONPATH", old)
    outputs = "".join(
        output.get("text", "") + output.get("data", {}).get("text/plain", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert SEED_STEP_6 in outputs and SEED_STEP_6_LIFESPAN in outputs
