"""experiment/requirements.txt lists every third-party package the experiment code imports (the optional peers from
PyPI: experiment/requirements-peers.txt)."""

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).parents[2]
# torch: installed first, by hand (README); memoria: the `-e .` line; datasets: optional, imported only when
# reading from the hub, and named in a comment.
NOT_LISTED = {"torch", "memoria", "experiment", "datasets"}


def imported_top_level_modules() -> set[str]:
    modules = set()
    for path in (ROOT / "experiment").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - NOT_LISTED


def listed_requirements(name: str = "requirements.txt") -> list[Requirement]:
    lines = (ROOT / "experiment" / name).read_text().splitlines()
    return [Requirement(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith(("#", "-"))]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_listed_and_torch_is_not():
    peers = {normalise(requirement.name) for requirement in listed_requirements("requirements-peers.txt")}
    listed = {normalise(requirement.name) for requirement in listed_requirements()} | peers
    distributions = importlib.metadata.packages_distributions()
    for module in sorted(imported_top_level_modules()):
        assert {normalise(name) for name in distributions.get(module, [module])} & listed, module
    assert "torch" not in listed
    text = (ROOT / "experiment" / "requirements.txt").read_text()
    assert "-e ." in text and "datasets" in text


def test_installed_versions_satisfy_the_ranges():
    for requirement in listed_requirements():
        assert requirement.specifier.contains(importlib.metadata.version(requirement.name)), requirement
    for requirement in listed_requirements("requirements-peers.txt"):  # optional: checked where installed
        try:
            assert requirement.specifier.contains(importlib.metadata.version(requirement.name)), requirement
        except importlib.metadata.PackageNotFoundError:
            pass
    ranges = {normalise(r.name): r.specifier for r in listed_requirements()}
    assert ranges["transformers"] == SpecifierSet(">=5.0,<6") and ranges["lightning"] == SpecifierSet(">=2.4,<3")
