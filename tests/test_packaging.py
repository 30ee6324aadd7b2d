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


def test_every_extra_installs_what_a_shipped_module_or_the_checks_use():
    """No ``experiment`` extra: no experiment code ships (the sdist prunes it); its requirements file installs it."""
    assert {Requirement(r).name for r in PROJECT["dependencies"]} == {"torch", "numpy"}
    extras = PROJECT["optional-dependencies"]
    assert set(extras) == {"dev", "visualize", "transformers"}
    assert {Requirement(r).name for r in extras["transformers"]} == {"transformers"}
    assert {Requirement(r).name for r in extras["visualize"]} == {"matplotlib", "pillow"}
    assert "import matplotlib" in (ROOT / "memoria" / "visualize.py").read_text()
    dev = {Requirement(r).name: Requirement(r) for r in extras["dev"]}
    assert {"pytest", "hypothesis", "black", "isort", "build", "twine"} <= set(dev)
    assert dev["black"].extras == {"jupyter"}  # so that black checks the notebook
    assert (ROOT / "examples" / "tutorial.ipynb").exists()
    lines = (ROOT / "experiment" / "requirements.txt").read_text().splitlines()
    assert "-e ." in lines and any(line.startswith("transformers") for line in lines)


def test_the_distribution_says_whose_it_is_and_what_state_it_is_in():
    names = [person["name"] for person in PROJECT["authors"] + PROJECT["maintainers"]]
    assert names and all(names)
    urls = PROJECT["urls"]
    # this project's own addresses, apart from the authors' reference implementation and the paper
    assert {"Homepage", "Source", "Issues", "Paper", "Reference implementation"} <= set(urls)
    assert all(
        urls[name].startswith("https://") and "cosmoquester" not in urls[name]
        for name in ("Homepage", "Source", "Issues")
    )
    statuses = [c for c in PROJECT["classifiers"] if c.startswith("Development Status ::")]
    assert statuses == ["Development Status :: 4 - Beta"]


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
    install = (
        'pip install torch==2.13.0 && pip install -e ".[dev,visualize]" && pip install -r experiment/requirements.txt'
    )
    assert f"{install} && python -m pytest" in readme
    assert install.replace("pip install", "pip install -q") in ci and "\npython -m pytest\n" in ci
    # CI also builds the sdist and the wheel and checks them, and CircleCI runs this very script
    assert "python -m build" in ci and "twine check --strict dist/*" in ci
    assert "command: bash .ci/run" in (ROOT / ".circleci" / "config.yml").read_text()
    assert "black --check -l 120 memoria tests experiment benchmarks examples" in ci


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


def test_a_wheel_built_without_a_compiler_is_pure_python_and_passes_twine(tmp_path):
    """No C compiler (``CC=/bin/false``): the build goes on, and the wheel, holding no compiled code, is tagged
    ``py3-none-any`` (setuptools would tag it for this platform); sdist and wheel pass ``twine check``."""
    import os
    import subprocess
    import sys
    import zipfile

    env = {**os.environ, "CC": "/bin/false"}
    command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)]
    built = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    assert "no C extension built" in built.stdout + built.stderr
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name == f"memoria_pytorch-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"memoria_pytorch-{__version__}.dist-info/WHEEL").decode()
    assert "Root-Is-Purelib: true" in metadata and "memoria/memoria.py" in names
    assert not [name for name in names if name.endswith((".so", ".pyd", ".c", ".h"))]
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, tmp_path.iterdir())],
                             capture_output=True, text=True)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_readme_dates_its_gpu_figures():
    """They were measured on an H200 before the GPU forms were rewritten (issue #16); benchmarks/README.md says when."""
    readme = (ROOT / "README.md").read_text()
    speed = " ".join(readme[readme.index("## Speed") : readme.index("## Inside a training run")].split())
    assert "H200" in speed and "2026-11-26" in speed and "before the GPU forms were rewritten" in speed
    assert "2026-11-26" in (ROOT / "benchmarks" / "README.md").read_text()
