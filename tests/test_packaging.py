"""The distribution's metadata (pyproject.toml) agrees with the code, the experiment requirements and CI."""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from memoria.version import __version__

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def test_version_comes_from_memoria_version_and_the_license_is_spdx():
    assert PROJECT["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "memoria.version.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    assert PROJECT["license"] == "MIT" and not any(c.startswith("License ::") for c in PROJECT["classifiers"])
    versions = {c.rsplit(" ", 1)[-1] for c in PROJECT["classifiers"] if re.search(r"Python :: 3\.\d+$", c)}
    assert versions == {"3.10", "3.11", "3.12", "3.13"}
    assert PYPROJECT["tool"]["cibuildwheel"]["build"] == "cp310-* cp311-* cp312-* cp313-*"


def test_dependencies_and_the_experiment_extra_match_the_requirements_file():
    assert {Requirement(r).name for r in PROJECT["dependencies"]} == {"torch", "numpy"}
    lines = (ROOT / "experiment" / "requirements.txt").read_text().splitlines()
    listed = {str(Requirement(line)) for line in lines if line.strip() and not line.startswith(("#", "-"))}
    assert {str(Requirement(r)) for r in PROJECT["optional-dependencies"]["experiment"]} == listed
    assert set(PROJECT["optional-dependencies"]) == {"dev", "visualize", "experiment"}


def test_pypi_readme_has_only_absolute_links_and_its_example_runs():
    readme = PROJECT["readme"]
    text = (ROOT / readme["file"]).read_text()
    targets = re.findall(r"\]\(([^)]+)\)", text)
    assert targets and all(target.startswith("https://") for target in targets), targets
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], readme["file"], "exec"), {})


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = 'pip install torch==2.13.0 && pip install -e ".[dev,experiment,visualize]"'
    assert f"{install} && python -m pytest" in readme
    assert install.replace("pip install", "pip install -q") in ci and "\npython -m pytest\n" in ci


def test_sdist_leaves_out_what_needs_the_repository():
    manifest = (ROOT / "MANIFEST.in").read_text().splitlines()
    assert {"prune tests", "prune experiment", "prune benchmarks"} <= set(manifest)
    assert {f"include memoria/{name}" for name in ("_mt19937.c", "_walk.c", "_counts.c", "_threads.h")} <= set(manifest)


def test_readme_opens_with_the_tutorial_command_then_the_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert commands[0] == "pip install torch==2.13.0 && pip install . && python examples/tutorial.py"
    assert commands[1].startswith("pip install torch==2.13.0 && pip install -e") and commands[1].endswith("pytest")
    assert (ROOT / "examples" / "tutorial.py").exists()
