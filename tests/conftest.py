import atexit
import os
import shutil
import tempfile

import pytest
import torch

from benchmarks.reference import ReferenceUnavailable

# The tests write nowhere but the repository and the temp dir: the caches that matplotlib (its font list) and IPython
# (the notebook's kernel profile) would make in the home folder go to a temporary folder, unless the user names one.
_caches = tempfile.mkdtemp(prefix="memoria-tests-")
atexit.register(shutil.rmtree, _caches, ignore_errors=True)
for _name in ("MPLCONFIGDIR", "IPYTHONDIR"):
    os.environ.setdefault(_name, os.path.join(_caches, _name.lower()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """A test (or fixture) that needs a published package the cache folder lacks, offline, skips saying so."""
    try:
        return (yield)
    except ReferenceUnavailable as error:
        pytest.skip(str(error))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except ReferenceUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state."""
    torch.manual_seed(0)


def engram_state(engrams) -> dict:
    """The observable tensors of an engram container, for comparisons."""
    return {
        "data": engrams.data,
        "induce_counts": engrams.induce_counts,
        "engrams_types": engrams.engrams_types,
        "lifespan": engrams.lifespan,
    }
