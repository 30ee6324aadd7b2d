"""status_summary: equal to the published 1.1.0 ``Engrams.status_summary`` on the same states."""

import dataclasses

import pytest
import torch

from benchmarks.reference import load_reference
from memoria.summary import engrams_info_from_arrays, status_summary
from memoria.types import EngramConnection


def reference_states(seed: int, steps: int, batch: int = 3, track_age: bool = True):
    """Yield the published Memoria's engrams after each adjust of a short random stream."""
    ref = load_reference("1.1.0")
    torch.manual_seed(seed)
    memoria = ref.Memoria(
        num_reminded_stm=3,
        stm_capacity=6,
        ltm_search_depth=3,
        initial_lifespan=3,
        num_final_ltms=4,
        track_age=track_age,
        track_id=True,
    )
    for _ in range(steps):
        memoria.add_working_memory(torch.randn(batch, 4, 8) * 0.3)
        _, indices = memoria.remind()
        delta = torch.rand(indices.shape) * 3
        memoria.adjust_lifespan_and_memories(indices, delta)
        yield memoria.engrams


def plain(value):
    """Recursively turn dataclasses into (class name, fields) so ours and the reference's compare with ==."""
    if dataclasses.is_dataclass(value):
        return (type(value).__name__,) + tuple(plain(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, (int, float)):
        return (type(value).__name__, value)  # 1 == 1.0, but an int where the reference has a float is a change
    return value


@pytest.mark.parametrize("seed,track_age", [(0, True), (1, False), (2, True)])
def test_status_summary_equals_reference(seed, track_age):
    n_edges = 0
    for engrams in reference_states(seed, steps=12, track_age=track_age):
        ours = status_summary(engrams)
        theirs = engrams.status_summary()
        assert plain(ours) == plain(theirs)
        n_edges += sum(len(s.edges) for s in ours)
        # Key order is observable when a user iterates; keep it too.
        for a, b in zip(ours, theirs):
            assert list(a.engrams) == list(b.engrams) and list(a.edges) == list(b.edges)
    assert n_edges > 100  # the states exercised real graphs, not empty ones


def test_status_summary_needs_ids():
    engrams = next(reference_states(0, steps=1))
    engrams.track_engram_id = False
    with pytest.raises(ValueError, match="engram ids"):
        status_summary(engrams)


def test_engrams_info_by_hand():
    # Three engrams: ids 7 (SHORTTERM, fired 2x), 9 (LONGTERM, fired 4x), 4 (LONGTERM, never fired).
    counts = torch.tensor([[2, 1, 0], [1, 4, 0], [0, 0, 0]], dtype=torch.int32)
    info = engrams_info_from_arrays(
        torch.tensor([7, 9, 4]), torch.tensor([2, 3, 3]), torch.tensor([1.5, 2.0, 0.5]), None, counts
    )
    assert info.shortterm == (7,) and info.longterm == (9, 4) and info.working == ()
    assert info.edges == {(7, 9): EngramConnection(7, 9, 0.5, 1), (9, 7): EngramConnection(9, 7, 0.25, 1)}
    assert info.engrams[7].outgoings == (EngramConnection(7, 9, 0.5, 1),)
    assert info.engrams[7].incoming == (EngramConnection(9, 7, 0.25, 1),)
    assert info.engrams[9].cofire_counts == {7: 1}
    assert info.engrams[4].outgoings == () and info.engrams[4].fire_count == 0 and info.engrams[4].age is None
