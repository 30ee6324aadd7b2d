"""Load the published ``memoria-pytorch`` package under another module name.

The published package is a test oracle and a benchmark baseline only: it is pip-installed into a folder of its own
(never next to ours) and imported as ``memoria_ref_1_0_0`` / ``memoria_ref_1_1_0`` so that both it and our ``memoria``
can live in one process. The 1.1.0 sdist provides its test suite (``tests/test_published_suite.py``).

Everything is kept in one cache folder, ``.cache/memoria-reference`` in this repository (git-ignored), or the folder
``MEMORIA_REFERENCE_DIR`` names. Fill it where the package registry can be reached::

    python -m benchmarks.reference          # 1.0.0 and 1.1.0 installed, the 1.1.0 sdist's tests unpacked

A run that finds a package missing fetches it the same way. Where a package is neither in the cache nor can be
fetched, ``ReferenceUnavailable`` says so, once per process (the tests that need it then skip with that reason,
``tests/conftest.py``). pip runs without its own cache, so nothing is written outside the cache folder and the temp dir.
"""

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(os.environ.get("MEMORIA_REFERENCE_DIR") or ROOT / ".cache" / "memoria-reference")
#: The published versions the tests and benchmarks use.
VERSIONS = ("1.0.0", "1.1.0")
SDIST_VERSION = "1.1.0"


class ReferenceUnavailable(RuntimeError):
    """A published package is not in the cache folder and could not be fetched (no package registry)."""


# what could not be fetched in this process, and why: pip is not asked twice (each try waits out its retries)
_unavailable: Dict[str, str] = {}


def _fetch(what: str, pip_args: List[str], folder_option: str, into: Path) -> None:
    """Run ``pip <pip_args> <folder_option> <a fresh temporary folder>``, then move that folder to ``into`` (so an
    interrupted fetch never leaves a half-filled folder that looks complete). ``ReferenceUnavailable`` if pip fails."""
    if what in _unavailable:
        raise ReferenceUnavailable(_unavailable[what])
    into.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{into.name}-", dir=into.parent))
    command = [sys.executable, "-m", "pip", *pip_args, "-q", "--no-deps", "--no-cache-dir"]
    command += ["--disable-pip-version-check", folder_option, str(partial)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
        shutil.rmtree(into, ignore_errors=True)
        partial.rename(into)
    except (subprocess.CalledProcessError, OSError) as error:
        shutil.rmtree(partial, ignore_errors=True)
        said = (getattr(error, "stderr", None) or str(error)).strip().splitlines()
        _unavailable[what] = (
            f"{what} is not in the cache folder {CACHE_DIR} and pip could not fetch it (no package registry?): "
            f"{said[-1] if said else type(error).__name__}. Fill the cache with `python -m benchmarks.reference` "
            "where the registry can be reached"
        )
        raise ReferenceUnavailable(_unavailable[what]) from None


def reference_dir(version: str) -> Path:
    """Folder that holds ``memoria-pytorch==version`` (installed there on first use)."""
    target = CACHE_DIR / version
    if not (target / "memoria" / "__init__.py").exists():
        _fetch(f"memoria-pytorch {version}", ["install", f"memoria-pytorch=={version}"], "--target", target)
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


def published_tests_dir(version: str = SDIST_VERSION) -> Path:
    """Folder holding the ``tests/`` of the published sdist of ``memoria-pytorch==version`` (fetched on first use).

    Only the tests are unpacked, never the sdist's ``memoria`` package, so that ``import memoria`` in them finds ours.
    """
    target = CACHE_DIR / f"tests-{version}"
    if (target / "tests").is_dir():
        return target
    download = CACHE_DIR / f"sdist-{version}"
    archive = download / f"memoria_pytorch-{version}.tar.gz"
    if not archive.exists():
        what = f"the memoria-pytorch {version} sdist"
        _fetch(what, ["download", f"memoria-pytorch=={version}", "--no-binary", ":all:"], "--dest", download)
    unpacked = Path(tempfile.mkdtemp(prefix=f".tests-{version}-", dir=CACHE_DIR))
    with tarfile.open(archive) as sdist:
        members = [m for m in sdist.getmembers() if m.isfile() and m.name.split("/")[1:2] == ["tests"]]
        for member in members:
            member.name = member.name.split("/", 1)[1]  # drop the sdist's top folder
        sdist.extractall(unpacked, members=members, filter="data")
    shutil.rmtree(target, ignore_errors=True)
    unpacked.rename(target)
    return target


def fill(versions: Sequence[str] = VERSIONS, sdist_version: Optional[str] = SDIST_VERSION) -> List[Path]:
    """Everything the tests and benchmarks use, in the cache folder; the folders filled."""
    folders = [reference_dir(version) for version in versions]
    return folders + ([published_tests_dir(sdist_version)] if sdist_version else [])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    try:
        folders = fill()
    except ReferenceUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(f"{folder}" for folder in folders))
    return 0


if __name__ == "__main__":
    sys.exit(main())
