"""memoria.types: frozen, slotted records with the published 1.1.0 field names."""

import dataclasses
import pickle

import pytest

from benchmarks.reference import load_reference
from memoria import types

RECORDS = ["EngramConnection", "EngramInfo", "EngramsInfo", "Firing", "EngramHistory"]


@pytest.mark.parametrize("name", RECORDS)
def test_same_fields_as_reference(name):
    ref = load_reference("1.1.0")
    ours, theirs = getattr(types, name), getattr(ref.types, name)
    assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(theirs)]
    assert ours.__dataclass_params__.frozen and "__slots__" in vars(ours)


def test_records_are_frozen_comparable_and_picklable():
    edge = types.EngramConnection(source_id=1, target_id=2, weight=0.5, cofire_count=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        edge.weight = 1.0
    info = types.EngramInfo(1, "SHORTTERM", 2.0, 4, 6, (edge,), ())
    assert info.cofire_counts == {2: 3}
    assert pickle.loads(pickle.dumps(info)) == info
    assert types.Firing(3, 1, 2.5) == types.Firing(timestep=3, engram_id=1, lifespan_gain=2.5)
    assert hash(edge) == hash(types.EngramConnection(1, 2, 0.5, 3))
