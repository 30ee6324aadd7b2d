import pytest
import torch

from benchmarks.reference import ReferenceUnavailable


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
