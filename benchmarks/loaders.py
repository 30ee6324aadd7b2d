"""The implementations the benchmark times: an older ``memoria`` beside ours (``--before``), a published version, or a
module by name."""

import importlib
import importlib.util
import os
import sys
from types import ModuleType

from benchmarks.reference import load_reference


def load_package(path: str, name: str = "memoria_before") -> ModuleType:
    """The ``memoria`` package inside ``path`` (e.g. a git worktree of an older commit, its C extensions built in
    place), imported as ``name`` so that it runs beside ours in one process."""
    init = os.path.join(os.path.abspath(path), "memoria", "__init__.py")
    if not os.path.isfile(init):
        raise SystemExit(f"--before {path}: no memoria package there ({init} is missing)")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[os.path.dirname(init)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_module(spec: str) -> ModuleType:
    """``reference:1.1.0`` loads a published version, anything else is imported as a module name."""
    if spec.startswith("reference:"):
        return load_reference(spec.split(":", 1)[1])
    return importlib.import_module(spec)
