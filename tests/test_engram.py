import pytest
import torch

from memoria import Engrams, EngramType


def make(types, lifespan=None, counts=None, hidden=2):
    """Engrams from a nested list of type values, one row per batch element."""
    types = torch.tensor(types, dtype=torch.uint8)
    batch, length = types.shape
    data = torch.arange(batch * length * hidden, dtype=torch.float32).view(batch, length, hidden)
    lifespan = torch.ones(batch, length) if lifespan is None else torch.tensor(lifespan, dtype=torch.float32)
    counts = torch.zeros(batch, length, length, dtype=torch.int32) if counts is None else torch.tensor(counts)
    return Engrams(data, counts, types, lifespan, track_age=True, track_engram_id=True)


def test_new_engrams_defaults():
    e = Engrams(torch.rand(2, 3, 4), lifespan=5, engram_ids=10, track_age=True, track_engram_id=True)
    assert (e.batch_size, e.memory_length, e.hidden_dim, len(e)) == (2, 3, 4, 6)
    assert e.engrams_types.dtype == torch.uint8 and (e.engrams_types == EngramType.WORKING.value).all()
    assert e.lifespan.tolist() == [[5.0] * 3] * 2
    assert e.induce_counts.dtype == torch.int32 and not e.induce_counts.any()
    assert e.age.tolist() == [[0] * 3] * 2
    assert e.engram_ids.tolist() == [[10, 11, 12]] * 2
    plain = Engrams(torch.rand(1, 2, 3))
    assert plain.age is None and plain.engram_ids is None


def test_data_is_detached_float32():
    source = torch.rand(1, 2, 3, dtype=torch.float64, requires_grad=True)
    e = Engrams(source)
    assert e.data.dtype == torch.float32 and not e.data.requires_grad


def test_empty_and_shape_checks():
    e = Engrams.empty()
    assert (e.batch_size, e.memory_length, e.hidden_dim, len(e)) == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="lifespan"):
        Engrams(torch.rand(1, 2, 3), lifespan=torch.ones(1, 3))
    with pytest.raises(ValueError, match="HiddenDim"):
        Engrams(torch.rand(2, 3))


def test_equality_compares_every_field_and_flag():
    a = make([[1, 2]])
    assert a == a.clone()
    b = a.clone()
    b.lifespan[0, 1] = 9
    assert a != b
    c = a.clone()
    c.engram_ids[0, 0] = 7
    assert a != c
    untracked = Engrams(a.data, a.induce_counts, a.engrams_types, a.lifespan)
    assert a != untracked


def test_concatenation_is_block_diagonal_and_empty_returns_other():
    a = make([[1, 2]], counts=[[[2, 1], [1, 3]]])
    b = make([[1]], counts=[[[4]]])
    c = a + b
    assert c.memory_length == 3
    assert c.induce_counts.tolist() == [[[2, 1, 0], [1, 3, 0], [0, 0, 4]]]
    assert c.engrams_types.tolist() == [[1, 2, 1]]
    assert torch.equal(c.data[:, :2], a.data) and torch.equal(c.data[:, 2:], b.data)
    assert (Engrams.empty() + a) is a and (a + Engrams.empty()) is a


def test_concatenation_with_different_tracking_warns_and_drops_it():
    a = make([[1]])
    b = Engrams(torch.rand(1, 1, 2))
    with pytest.warns(UserWarning):
        c = a + b
    assert c.age is None and c.engram_ids is None


def test_iteration_yields_single_rows():
    e = make([[1, 2], [3, 0]])
    rows = list(e)
    assert len(rows) == 2 and all(r.batch_size == 1 for r in rows)
    assert rows[1].engrams_types.tolist() == [[3, 0]]


def test_type_masks_and_fire_count():
    e = make([[0, 1, 2, 3]], counts=[[[-1, -1, -1, -1], [-1, 5, 1, 0], [-1, 1, 2, 0], [-1, 0, 0, 7]]])
    assert e.working_memory_mask.tolist() == [[False, True, False, False]]
    assert e.shortterm_memory_mask.tolist() == [[False, False, True, False]]
    assert e.longterm_memory_mask.tolist() == [[False, False, False, True]]
    assert e.fire_count.tolist() == [[-1, 5, 2, 7]]
    e.fire_count = torch.tensor([[0, 1, 2, 3]])
    assert e.induce_counts.diagonal(dim1=1, dim2=2).tolist() == [[0, 1, 2, 3]]
    assert e.induce_counts[0, 1, 2] == 1


def test_fire_count_setter_broadcasts_and_refuses_what_does_not_fit_naming_it():
    e = make([[1, 2, 3], [3, 2, 1]], counts=[[[1, 2, 3], [2, 4, 5], [3, 5, 6]]] * 2)
    e.fire_count = torch.tensor([[7, 8, 9]])  # a [1, M] row: every batch row
    assert e.induce_counts.diagonal(dim1=1, dim2=2).tolist() == [[7, 8, 9], [7, 8, 9]]
    e.fire_count = 5
    assert e.fire_count.tolist() == [[5, 5, 5], [5, 5, 5]] and e.induce_counts[0, 0, 1] == 2
    before = e.induce_counts.clone()
    for bad, error in [
        (torch.ones(2, 4), ValueError),
        (torch.ones(3, 3), ValueError),
        (torch.ones(1, 2, 3), ValueError),
        ("3", TypeError),
        (True, TypeError),
        (torch.ones(2, 3, dtype=torch.bool), TypeError),
    ]:
        with pytest.raises(error, match="fire_count"):
            e.fire_count = bad
        assert torch.equal(e.induce_counts, before)


def test_a_padding_slot_holds_the_null_type():
    from memoria.fields import FIELDS, PADDING

    assert PADDING["engrams_types"] == EngramType.NULL.value
    assert set(PADDING) == set(FIELDS) - {"induce_counts"}


def test_get_working_shortterm_longterm_memory():
    e = make([[1, 2, 1, 3], [2, 2, 3, 1]])
    wm, wm_indices = e.get_working_memory()
    assert wm_indices.tolist() == [[0, 2], [-1, 3]]
    assert wm.engrams_types.tolist() == [[1, 1], [0, 1]]
    assert wm.lifespan.tolist() == [[1.0, 1.0], [-1.0, 1.0]]
    assert wm.data[1, 0].tolist() == [0.0, 0.0]
    _, stm_indices = e.get_shortterm_memory()
    assert stm_indices.tolist() == [[-1, 1], [0, 1]]
    _, ltm_indices = e.get_longterm_memory()
    assert ltm_indices.tolist() == [[3], [2]]


def test_select_one_and_two_dimensional():
    counts = [[[1, 2, 3], [2, 4, 5], [3, 5, 6]]]
    e = make([[1, 2, 3]], counts=counts)
    same = e.select(torch.tensor([2, 0]))
    assert same.induce_counts.tolist() == [[[6, 3], [3, 1]]]
    per_row = e.select(torch.tensor([[-1, 2, 1]]))
    assert per_row.induce_counts.tolist() == [[[-1, -1, -1], [-1, 6, 5], [-1, 5, 4]]]
    assert per_row.engrams_types.tolist() == [[0, 3, 2]]
    assert per_row.lifespan.tolist() == [[-1.0, 1.0, 1.0]]
    assert per_row.age.tolist() == [[-1, 0, 0]] and per_row.engram_ids.tolist() == [[-1, 2, 1]]
    with pytest.raises(ValueError):
        e.select(torch.zeros(1, 1, 1, dtype=torch.long))


FORM_SWITCHES = {
    "c": {"MEMORIA_NATIVE": "1"},
    "cpu": {"MEMORIA_NATIVE": "0"},
    "gpu": {"MEMORIA_FORCE_GPU_BRANCHES": "1"},
    "plain": {"MEMORIA_FORMS": "plain"},
}


@pytest.mark.parametrize("form", sorted(FORM_SWITCHES))
def test_select_per_row_negative_indices_are_null_down_to_minus_the_length_on_every_form(form, monkeypatch):
    """Issue 27 D15: the C form raised ``_counts.pair_gather`` for -2 and below, the torch forms gave nulls. The
    published package (1.0.0 and 1.1.0) gives nulls from -length to -1 and an IndexError below; so does every form."""
    for name, value in FORM_SWITCHES[form].items():
        monkeypatch.setenv(name, value)
    counts = [[[1, 2, 3], [2, 4, 5], [3, 5, 6]], [[7, 0, 0], [0, 8, 0], [0, 0, 9]]]
    e = make([[1, 2, 3], [3, 2, 1]], counts=counts)
    before = [field.clone() for field in fields(e)]
    for negative in (-1, -2, -3):
        picked = e.select(torch.tensor([[negative, 2], [1, negative]]))
        assert picked.induce_counts.tolist() == [[[-1, -1], [-1, 6]], [[8, -1], [-1, -1]]]
        assert picked.engrams_types.tolist() == [[0, 3], [2, 0]]
        assert picked.lifespan.tolist() == [[-1.0, 1.0], [1.0, -1.0]]
        assert picked.engram_ids.tolist() == [[-1, 2], [1, -1]] and picked.age.tolist() == [[-1, 0], [0, -1]]
        assert picked.data[0, 0].tolist() == [0.0, 0.0]
    for below in (-4, -5, -(2**40)):
        with pytest.raises(IndexError, match="indices must lie in -3..2") as raised:
            e.select(torch.tensor([[below, 0], [0, 1]]))
        assert isinstance(raised.value, ValueError)
    assert all(torch.equal(a, b) for a, b in zip(before, fields(e)))


def test_mask_select_compacts_with_left_padding():
    counts = torch.arange(2 * 9, dtype=torch.int32).view(2, 3, 3)
    e = make([[1, 2, 3], [1, 2, 3]], counts=counts.tolist())
    kept = e.mask_select(torch.tensor([[True, False, True], [False, True, False]]))
    assert kept.engrams_types.tolist() == [[1, 3], [0, 2]]
    assert kept.induce_counts[0].tolist() == [[0, 2], [6, 8]]
    assert kept.induce_counts[1].tolist() == [[-1, -1], [-1, 13]]
    assert kept.engram_ids.tolist() == [[0, 2], [-1, 1]]


def test_local_indices_from_global_indices():
    e = make([[3, 2, 3, 3], [2, 3, 2, 2]])
    ltm = e.longterm_memory_mask
    # row 0: LTM list [0, 2, 3]; row 1: LTM list [-1, -1, 1] (left padding)
    local = e.get_local_indices_from_global_indices(ltm, torch.tensor([[3, -1, 1], [1, 0, -1]]))
    assert local.tolist() == [[2], [2]]
    local = e.get_local_indices_from_global_indices(ltm, torch.tensor([[3, 0], [2, -1]]))
    # row 1: global 2 is not long-term and -1 is ignored, so nothing is found there
    assert local.tolist() == [[0, 2], [-1, -1]]


def test_fire_together_wire_together_counts_each_distinct_pair_once():
    e = make([[1, 1, 1, 1]])
    e.fire_together_wire_together(torch.tensor([[2, 0, -1, 2, 0]]))
    expected = torch.zeros(4, 4, dtype=torch.int32)
    expected[0, 0] = expected[0, 2] = expected[2, 0] = expected[2, 2] = 1
    assert torch.equal(e.induce_counts[0], expected)
    e.fire_together_wire_together(torch.tensor([[-1, -1]]))
    assert torch.equal(e.induce_counts[0], expected)


def test_extend_decrease_lifespan_and_age():
    e = make([[1, 1, 1]], lifespan=[[1.0, 2.0, 3.0]])
    e.extend_lifespan(torch.tensor([[2, -1, 0, 2]]), torch.tensor([[0.5, 9.0, 1.0, 0.25]]))
    # -1 skipped, a repeated index receives both amounts
    assert e.lifespan.tolist() == [[2.0, 2.0, 3.75]]
    e.decrease_lifespan()
    e.increase_age()
    assert e.lifespan.tolist() == [[1.0, 1.0, 2.75]] and e.age.tolist() == [[1, 1, 1]]


def test_delete_removes_and_compacts():
    e = make([[1, 2, 3], [1, 2, 3]])
    e.delete(torch.tensor([[1, -1], [0, 2]]))
    assert e.engrams_types.tolist() == [[1, 3], [0, 2]]
    assert e.memory_length == 2


def test_to_and_clone_are_copies():
    e = make([[1, 2]])
    c = e.clone()
    c.lifespan += 1
    assert e.lifespan.tolist() == [[1.0, 1.0]]
    assert e.to("cpu") is e


# ---------------------------------------------------------------------- drop-in: inputs the published package accepts


def pair(types=((0, 1, 2, 3, 3, 2), (1, 3, 3, 2, 0, 1))):
    """The same engrams in ours and in the published 1.1.0 package."""
    from benchmarks.reference import load_reference

    counts = torch.randint(0, 5, (2, 6, 6), generator=torch.Generator().manual_seed(3), dtype=torch.int32)
    ours = make([list(row) for row in types], counts=counts.tolist())
    published = load_reference("1.1.0").Engrams(
        ours.data.clone(),
        ours.induce_counts.clone(),
        ours.engrams_types.clone(),
        ours.lifespan.clone(),
        ours.age.clone(),
        ours.engram_ids.clone(),
        track_age=True,
        track_engram_id=True,
    )
    return ours, published


def fields(engrams):
    return [
        engrams.data,
        engrams.induce_counts,
        engrams.engrams_types,
        engrams.lifespan,
        engrams.age,
        engrams.engram_ids,
    ]


def assert_same_fields(ours, published):
    for mine, theirs in zip(fields(ours), fields(published)):
        assert torch.equal(mine, theirs)


def as_kinds(value):
    """The value as a tensor, a list, a tuple of tuples and a numpy array."""
    import numpy as np

    return {
        "tensor": torch.tensor(value),
        "list": value,
        "tuple": tuple(tuple(row) for row in value) if isinstance(value[0], list) else tuple(value),
        "numpy": np.array(value),
    }


@pytest.mark.parametrize("kind", ["tensor", "list", "tuple", "numpy"])
def test_index_methods_take_lists_tuples_and_numpy_like_the_published_package(kind):
    ours, published = pair()
    mask = ours.longterm_memory_mask
    # the published suite's call, with a Python list
    indices = as_kinds([[0, 4, 5, -1], [1, 2, -1, -1]])[kind]
    assert torch.equal(
        ours.get_local_indices_from_global_indices(mask, indices),
        published.get_local_indices_from_global_indices(mask, torch.tensor([[0, 4, 5, -1], [1, 2, -1, -1]])),
    )
    fired = as_kinds([[0, 3, -1], [5, 1, 1]])[kind]
    assert torch.equal(
        ours.get_mask_with_indices(fired), published.get_mask_with_indices(torch.tensor([[0, 3, -1], [5, 1, 1]]))
    )
    ours.fire_together_wire_together(fired)
    published.fire_together_wire_together(torch.tensor([[0, 3, -1], [5, 1, 1]]))
    assert_same_fields(ours, published)
    assert_same_fields(ours.select(as_kinds([4, 0, 2])[kind]), published.select(torch.tensor([4, 0, 2])))
    ours.delete(as_kinds([[1, -1], [0, 4]])[kind])
    published.delete(torch.tensor([[1, -1], [0, 4]]))
    assert_same_fields(ours, published)


def test_select_per_row_negative_indices_like_the_published_package():
    ours, published = pair()
    for negative in range(-1, -7, -1):
        indices = torch.tensor([[negative, 3, 0], [5, negative, negative]])
        assert_same_fields(ours.select(indices), published.select(indices))
    below = [[-7, 3, 0], [5, 1, 2]]  # below -length: an IndexError in both (ours is a ValueError too)
    with pytest.raises(IndexError):
        published.select(torch.tensor(below))
    for kind in ("tensor", "list"):
        with pytest.raises(IndexError):
            ours.select(as_kinds(below)[kind])


@pytest.mark.parametrize(
    "delta",
    [2.5, 3, torch.tensor(1.5), torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0], [4.0]]), [[1, 2, 3], [4, 5, 6]]],
    ids=["float", "int", "0-dim", "[1, K] row", "[B, 1] column", "list"],
)
def test_extend_lifespan_broadcasts_deltas_like_the_published_package(delta):
    ours, published = pair()
    indices = torch.tensor([[0, 2, -1], [5, 1, 3]])  # distinct per row: with repeats the two differ (see README)
    ours.extend_lifespan(indices, delta)
    published.extend_lifespan(indices.clone(), torch.as_tensor(delta, dtype=torch.float32))
    assert torch.equal(ours.lifespan, published.lifespan)


def test_extend_lifespan_adds_every_delta_of_a_repeated_index():
    ours, published = pair()
    ours.extend_lifespan([[2, 2, -1], [0, 0, 0]], torch.tensor([[1.0, 2.0, 9.0], [1.0, 1.0, 1.0]]))
    published.extend_lifespan(torch.tensor([[2, 2, -1], [0, 0, 0]]), torch.tensor([[1.0, 2.0, 9.0], [1.0, 1.0, 1.0]]))
    before = make([[0, 1, 2, 3, 3, 2], [1, 3, 3, 2, 0, 1]]).lifespan
    assert ours.lifespan[0, 2] == before[0, 2] + 3.0 and ours.lifespan[1, 0] == before[1, 0] + 3.0
    # the published package keeps one delta per position (which one is up to the indexing kernel)
    assert published.lifespan[0, 2] - before[0, 2] in (1.0, 2.0) and published.lifespan[1, 0] == before[1, 0] + 1.0


def test_records_are_importable_where_the_published_package_defined_them():
    import memoria
    from memoria.engram import EngramConnection, EngramInfo, EngramsInfo
    from memoria.memoria import HistoryManager

    assert (EngramInfo, EngramsInfo, EngramConnection) == (
        memoria.types.EngramInfo,
        memoria.types.EngramsInfo,
        memoria.types.EngramConnection,
    )
    assert HistoryManager is memoria.history_manager.HistoryManager is memoria.HistoryManager
    assert memoria.abstractor.Abstractor is memoria.Abstractor
    assert memoria.sparse_tensor.SparseTensor is memoria.SparseTensor


def test_submodules_are_reachable_after_a_plain_import():
    import subprocess
    import sys

    names = "abstractor history_manager types sparse_tensor utils engram"
    script = f"import memoria; print([getattr(memoria, n).__name__ for n in {names.split()!r}])"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == str([f"memoria.{n}" for n in names.split()])
