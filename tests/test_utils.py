import pytest
import torch

from memoria.utils import gather_slots, indices_with_mask, mask_with_indices, super_unique


def test_super_unique_pads_with_minus_one_and_keeps_topk_order():
    t = torch.tensor([[3, 1, 3, 1], [2, 2, 2, 2]])
    out = super_unique(t, dim=1)
    assert out.shape == (2, 2)
    assert sorted(out[0].tolist()) == [1, 3]
    assert out[1].tolist()[0] == 2 and out[1].tolist()[1] == -1
    # the order is the one topk gives on the occupancy mask over the value range min..max
    occupancy = torch.zeros(2, 3, dtype=torch.int32)
    occupancy[0, [0, 2]] = 1
    occupancy[1, 1] = 1
    present, values = occupancy.topk(2, dim=1)
    expected = (values + 1).masked_fill(present == 0, -1)
    assert torch.equal(out, expected)


def test_super_unique_counts_minus_one_as_a_value():
    out = super_unique(torch.tensor([[0, 6, -1, 4, 3, 2, 0, 6]]), dim=1)
    assert out.shape == (1, 6)
    assert sorted(out[0].tolist()) == [-1, 0, 2, 3, 4, 6]


def test_super_unique_along_first_axis_and_empty_input():
    t = torch.tensor([[1, 5], [1, 7], [2, 5]])
    out = super_unique(t, dim=0)
    assert out.shape == (2, 2)
    assert sorted(out[:, 0].tolist()) == [1, 2] and sorted(out[:, 1].tolist()) == [5, 7]
    empty = torch.zeros(2, 0, dtype=torch.long)
    assert super_unique(empty, dim=1) is empty


def test_indices_with_mask_left_pads_shorter_rows():
    mask = torch.tensor([[True, False, True, True], [False, True, False, False], [False, False, False, False]])
    assert indices_with_mask(mask).tolist() == [[0, 2, 3], [-1, -1, 1], [-1, -1, -1]]
    assert indices_with_mask(torch.zeros(2, 3, dtype=torch.bool)).shape == (2, 0)


def test_mask_with_indices_ignores_negatives():
    mask = mask_with_indices(torch.tensor([[-1, 2, 0], [-1, -1, 1]]), 4)
    assert mask.tolist() == [[True, False, True, False], [False, True, False, False]]


def test_gather_slots_fills_null_entries():
    values = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    out = gather_slots(values, torch.tensor([[2, -1], [0, 1]]), fill_value=-7)
    assert out.tolist() == [[[4.0, 5.0], [-7.0, -7.0]], [[6.0, 7.0], [8.0, 9.0]]]


@pytest.mark.parametrize("seed", range(5))
def test_indices_with_mask_matches_a_sort_based_definition(seed):
    torch.manual_seed(seed)
    mask = torch.rand(4, 9) > 0.5
    mask[seed % 4] = seed % 2 == 0  # a row all true or all false
    width = int(mask.sum(1).max())
    valued = torch.where(mask, torch.arange(9), -1)
    expected = valued.sort(dim=1).values[:, 9 - width :]
    assert torch.equal(indices_with_mask(mask), expected)


def test_all_finite_catches_nan_inf_and_survives_overflowing_sums():
    from memoria.utils import all_finite

    values = torch.rand(3, 50, 7)
    assert all_finite(values)
    for bad in (float("nan"), float("inf"), float("-inf")):
        spoiled = values.clone()
        spoiled[2, 49, 6] = bad
        assert not all_finite(spoiled)
    huge = torch.full((4, 4), 3e38)  # the sum overflows to inf, every element is finite
    assert not torch.isfinite(huge.sum()) and all_finite(huge)
    assert all_finite(torch.full((2, 3), 60000.0, dtype=torch.float16))
    assert not all_finite(torch.tensor([float("inf"), float("-inf")]))


def test_indices_with_mask_of_empty_and_non_contiguous_masks():
    assert indices_with_mask(torch.zeros(0, 5, dtype=torch.bool)).shape == (0, 0)
    assert indices_with_mask(torch.zeros(3, 0, dtype=torch.bool)).shape == (3, 0)
    mask = torch.tensor([[True, False], [False, False], [True, True]]).t()  # a transposed view
    assert indices_with_mask(mask).tolist() == [[0, 2], [-1, 2]]
    assert indices_with_mask(mask).is_contiguous()
