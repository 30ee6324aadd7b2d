import pytest
import torch


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
