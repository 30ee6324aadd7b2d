import pytest
import torch

from memoria import Memoria
from memoria.similarity import Working, check_values, largest_value


def similarity_scores(working: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """What remind computes for one key set: the working memories prepared, the keys centred by their mean."""
    prepared = Working.of(working)
    return prepared.scores(keys - prepared.center)


def test_orders_keys_like_the_mean_of_exp_negative_squared_distance():
    torch.manual_seed(0)
    working, keys = torch.randn(3, 5, 8) * 0.4, torch.randn(3, 12, 8) * 0.4
    reference = (working.double().unsqueeze(2) - keys.double().unsqueeze(1)).pow(2).sum(-1).neg().exp().mean(1)
    ours = similarity_scores(working, keys)
    assert ours.shape == (3, 12)
    assert torch.equal(ours.argsort(dim=1, descending=True), reference.argsort(dim=1, descending=True))
    # logsumexp of -d^2 is log(sum exp(-d^2)): equal up to float32 rounding
    assert torch.allclose(ours.double(), reference.mul(5).log(), atol=1e-4)


def test_ranks_correctly_where_exp_underflows_and_is_shift_invariant():
    working = torch.full((1, 2, 4), 100.0)
    keys = torch.tensor([[[130.0] * 4, [112.0] * 4, [150.0] * 4]])
    assert torch.exp(-(working.unsqueeze(2) - keys.unsqueeze(1)).pow(2).sum(-1)).eq(0).all()
    assert similarity_scores(working, keys).argsort(dim=1, descending=True).tolist() == [[1, 0, 2]]
    shifted = similarity_scores(working - 100, keys - 100)
    assert torch.allclose(shifted, similarity_scores(working, keys))


def test_empty_sides_give_zero_scores_of_the_right_shape():
    assert similarity_scores(torch.rand(2, 0, 3), torch.rand(2, 4, 3)).shape == (2, 4)
    assert similarity_scores(torch.rand(2, 3, 3), torch.rand(2, 0, 3)).shape == (2, 0)


def test_large_common_offset_keeps_float64_accuracy():
    # hidden states of real models share large offsets in a few dimensions; the spread is small
    generator = torch.Generator().manual_seed(1)
    offset = torch.zeros(64)
    offset[:4] = torch.tensor([300.0, -150.0, 80.0, 40.0])
    working = offset + torch.randn(4, 6, 64, generator=generator) * 0.1
    keys = offset + torch.randn(4, 300, 64, generator=generator) * 0.1
    exact = (working.double().unsqueeze(2) - keys.double().unsqueeze(1)).pow(2).sum(-1).neg().logsumexp(1)
    ours = similarity_scores(working, keys)
    assert torch.allclose(ours.double(), exact, atol=2e-4)
    assert torch.equal(ours.topk(20, dim=1).indices, exact.topk(20, dim=1).indices)


def test_working_prepared_once_scores_like_similarity_scores():
    generator = torch.Generator().manual_seed(4)
    working = torch.randn(3, 6, 10, generator=generator) + 5.0
    prepared = Working.of(working)
    assert torch.allclose(prepared.center, working.mean(dim=1, keepdim=True))
    assert torch.allclose(prepared.squared_norms, (working - prepared.center).pow(2).sum(dim=2))
    # the same prepared working memories score two key sets (as remind does: short-term, then long-term)
    centred = working - working.mean(dim=1, keepdim=True)
    for width in (9, 4):
        keys = torch.randn(3, width, 10, generator=generator) + 5.0
        expected = torch.logsumexp(-torch.cdist(centred.double(), (keys - prepared.center).double()).square(), dim=1)
        assert torch.allclose(prepared.scores(keys - prepared.center).double(), expected, atol=1e-4)
    assert prepared.scores(torch.zeros(3, 0, 10)).shape == (3, 0)


# ---------------------------------------------------------------------- values whose distances could overflow (D10)


def nearest_in_float64(working: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """[B, K] scores of keys by logsumexp over working rows of -||w - k||^2, in float64 (never overflows here)."""
    return (working.double().unsqueeze(2) - keys.double().unsqueeze(1)).pow(2).sum(-1).neg().logsumexp(1)


@pytest.mark.parametrize("hidden", [1, 4, 768])
def test_at_the_largest_accepted_value_scores_stay_finite_and_rank_like_float64(hidden):
    bound = largest_value(hidden)
    generator = torch.Generator().manual_seed(hidden)
    # working memories and keys at the bound, of both signs: the worst case for every term of the expanded form
    working = torch.randint(0, 2, (2, 3, hidden), generator=generator).float().mul_(2).sub_(1).mul_(bound)
    keys = torch.randint(0, 2, (2, 6, hidden), generator=generator).float().mul_(2).sub_(1).mul_(bound)
    keys[:, 0] = working[:, 0]  # one key is a working memory itself: the nearest
    scores = similarity_scores(working, keys)
    assert torch.isfinite(scores).all()
    exact = nearest_in_float64(working, keys)
    assert torch.equal(scores.argmax(dim=1), exact.argmax(dim=1))
    check_values(torch.cat([working, keys], dim=1), "data")  # accepted


def test_values_beyond_the_bound_are_refused_naming_them():
    for hidden in (1, 4, 768):
        over = torch.full((1, 1, hidden), largest_value(hidden) * 1.001)
        with pytest.raises(ValueError, match=r"^data holds a value of magnitude .* overflow float32"):
            check_values(over, "data")
        with pytest.raises(ValueError, match="NaN or infinite"):
            check_values(torch.full((1, 1, hidden), float("nan")), "data")


def test_working_memories_at_plus_minus_1e19_are_refused_and_the_memory_is_unchanged():
    """Issue 27 D10: at +-1e19 the squared distances overflowed to inf and NaN, every score tied, and remind chose the
    first key (here the farthest) instead of the nearest."""
    memoria = Memoria(num_reminded_stm=1, stm_capacity=8, ltm_search_depth=0, initial_lifespan=5, num_final_ltms=0)
    keys = torch.tensor([[[-3e19, 3e19, -3e19, 3e19], [1e19, -1e19, 1e19, -1e19]]])  # key 1 is the nearest
    working = torch.tensor([[[1.1e19, -1e19, 1e19, -1e19], [-1e19, 1e19, -1e19, 1e19]]])
    with pytest.raises(ValueError, match="^data holds a value of magnitude 3e\\+19"):
        memoria.add_working_memory(keys)
    assert memoria.memory_length == 0 and memoria.timestep == 0
    # scaled into the accepted range (2**61 / sqrt(4) = 2**60), the same geometry reminds the nearest key
    scale = 2**60 / 3e19
    memoria.add_working_memory(keys * scale)
    memoria.adjust_lifespan_and_memories(torch.full((1, 0), -1), torch.zeros(1, 0))
    memoria.add_working_memory(working * scale)
    _, indices = memoria.remind()
    expected = nearest_in_float64(working * scale, keys * scale).argmax(dim=1)
    assert indices[indices >= 0].tolist() == expected.tolist() == [1]
