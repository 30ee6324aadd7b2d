"""Load the published ``memoria-pytorch`` package under another module name.

The published package is a test oracle and a benchmark baseline only: it is pip-installed into a
folder of its own (never next to ours) and imported as ``memoria_ref_1_0_0`` / ``memoria_ref_1_1_0``
so that both it and our ``memoria`` can live in one process.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

CACHE_DIR = Path(os.environ.get("MEMORIA_REFERENCE_DIR", Path.home() / ".cache" / "memoria-reference"))


def reference_dir(version: str) -> Path:
    """Folder that holds ``memoria-pytorch==version`` (installed there on first use)."""
    target = CACHE_DIR / version
    if not (target / "memoria" / "__init__.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
        subprocess.run(cmd + [f"memoria-pytorch=={version}"], check=True)
    return target


def load_reference(version: str = "1.0.0") -> ModuleType:
    """Import the published package of ``version`` as ``memoria_ref_<version with underscores>``."""
    name = "memoria_ref_" + version.replace(".", "_")
    if name in sys.modules:
        return sys.modules[name]
    package_dir = reference_dir(version) / "memoria"
    spec = importlib.util.spec_from_file_location(
        name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
