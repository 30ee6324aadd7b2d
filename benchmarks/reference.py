"""Load the published ``memoria-pytorch`` package under another module name.

The published package is a test oracle and a benchmark baseline only: it is pip-installed into a
folder of its own (never next to ours) and imported as ``memoria_ref_1_0_0`` / ``memoria_ref_1_1_0``
so that both it and our ``memoria`` can live in one process.
"""

import importlib.util
import os
import subprocess
import sys
import tarfile
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


def published_tests_dir(version: str = "1.1.0") -> Path:
    """Folder holding the ``tests/`` of the published sdist of ``memoria-pytorch==version`` (fetched on first use).

    Only the tests are unpacked, never the sdist's ``memoria`` package, so that ``import memoria`` in them finds ours.
    """
    target = CACHE_DIR / f"tests-{version}"
    if not (target / "tests").is_dir():
        download = CACHE_DIR / f"sdist-{version}"
        download.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", str(download)]
        subprocess.run(cmd + [f"memoria-pytorch=={version}"], check=True)
        (archive,) = download.glob(f"memoria_pytorch-{version}.tar.gz")
        unpacked = CACHE_DIR / f"tests-{version}.partial"
        with tarfile.open(archive) as sdist:
            members = [m for m in sdist.getmembers() if m.isfile() and m.name.split("/")[1:2] == ["tests"]]
            for member in members:
                member.name = member.name.split("/", 1)[1]  # drop the sdist's top folder
            sdist.extractall(unpacked, members=members, filter="data")
        unpacked.rename(target)
    return target
