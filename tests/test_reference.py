"""benchmarks/reference.py: the published packages come from a cache folder, and where they cannot be had (offline, an
empty cache) the tests that need them skip, saying why, after one try of pip per package."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import reference

ROOT = Path(__file__).resolve().parents[1]


def offline_env(cache: Path, empty: Path) -> dict:
    """pip with no index and nothing to find: what it meets without the package registry (it fails at once)."""
    return {
        **os.environ,
        "MEMORIA_REFERENCE_DIR": str(cache),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(empty),
        "PIP_EXTRA_INDEX_URL": "",
    }


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty cache folder, pip offline, and a fresh record of what could not be fetched."""
    cache, empty = tmp_path / "cache", tmp_path / "empty"
    empty.mkdir()
    for name, value in offline_env(cache, empty).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(reference, "CACHE_DIR", cache)
    monkeypatch.setattr(reference, "_unavailable", {})
    return cache


def test_a_package_that_cannot_be_fetched_is_reported_once_and_leaves_no_partial_folder(empty_cache, monkeypatch):
    with pytest.raises(reference.ReferenceUnavailable) as raised:
        reference.reference_dir("1.0.0")
    message = str(raised.value)
    assert "memoria-pytorch 1.0.0" in message and str(empty_cache) in message
    assert "python -m benchmarks.reference" in message
    assert list(empty_cache.iterdir()) == []  # the temporary folder pip wrote into is gone
    with pytest.raises(reference.ReferenceUnavailable, match="sdist"):
        reference.published_tests_dir("1.1.0")
    assert not (empty_cache / "tests-1.1.0").exists()

    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: pytest.fail("pip was asked again"))
    for _ in range(2):
        with pytest.raises(reference.ReferenceUnavailable, match="memoria-pytorch 1.0.0"):
            reference.reference_dir("1.0.0")
        with pytest.raises(reference.ReferenceUnavailable, match="sdist"):
            reference.published_tests_dir("1.1.0")


def test_a_filled_cache_is_used_without_pip(tmp_path, monkeypatch):
    """What ``python -m benchmarks.reference`` leaves is all a later run needs: pip is not called."""
    cache = reference.CACHE_DIR
    if not (cache / "1.0.0" / "memoria" / "__init__.py").exists():
        pytest.skip(f"the cache folder {cache} is not filled (python -m benchmarks.reference)")
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: pytest.fail("pip was called"))
    assert reference.reference_dir("1.0.0") == cache / "1.0.0"


def test_tests_that_need_the_published_package_skip_offline_with_the_reason(tmp_path):
    """The whole path a user meets offline: a test file that needs 1.1.0 (and one test that does not) run in a child
    pytest with an empty cache folder and no package registry."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = offline_env(tmp_path / "cache", empty)
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_types.py"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 skipped" in result.stdout and "passed" in result.stdout and "failed" not in result.stdout
    assert "memoria-pytorch 1.1.0 is not in the cache folder" in result.stdout
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
