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


def same(a, b) -> bool:
    """Bit-for-bit equality of nested state (tensors by dtype, shape and every bit; dicts, lists, tuples, numbers)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or (a.dtype, a.shape) != (
            b.dtype,
            b.shape,
        ):
            return False
        bits = (lambda t: t.reshape(-1).view(torch.uint8)) if a.numel() else (lambda t: t)
        return torch.equal(bits(a.contiguous()), bits(b.contiguous()))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
