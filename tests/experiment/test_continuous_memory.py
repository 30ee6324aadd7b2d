"""The ∞-former's continuous memory: ridge fit onto radial basis functions, the truncated Gaussian density and its
closed-form expectations, sticky resampling and the unbounded update."""

import math

import pytest
import torch

from experiment.models.continuous_memory import (
    GaussianBasis,
    bin_masses,
    evaluate_signal,
    expected_basis,
    fit_signal,
    normal_interval_mass,
    sample_positions,
    truncated_gaussian_pdf,
    update_memory,
)

GRID = torch.linspace(0.0, 1.0, 100001, dtype=torch.float64)
MEANS = torch.tensor([0.02, 0.5, 0.97, 0.3, 0.8], dtype=torch.float64)
VARIANCES = torch.tensor([1e-4, 0.5, 0.01, 2.0, 0.003], dtype=torch.float64)


def smooth(t: torch.Tensor) -> torch.Tensor:
    """A smooth 3-dimensional signal over [0, 1]: [P] -> [P, 3]."""
    return torch.stack([torch.sin(2 * math.pi * t), torch.cos(3 * t), t**2 - 0.5], dim=-1)


def centred(count: int) -> torch.Tensor:
    return (torch.arange(count, dtype=torch.float32) + 0.5) / count


# Measured: 0.031 / 0.0093 (16 functions), 0.018 / 0.0043 (64); the edges, with data on one side only, fit worst.
@pytest.mark.parametrize("num_basis, bound, interior_bound", [(16, 0.05, 0.02), (64, 0.03, 0.008)])
def test_the_fit_reconstructs_a_smooth_signal_it_was_fitted_on(num_basis, bound, interior_bound):
    basis = GaussianBasis(num_basis)
    positions = centred(256)
    coefficients = fit_signal(basis, positions[None], smooth(positions)[None], ridge=1e-3)  # (1, N, 3)
    assert coefficients.shape == (1, num_basis, 3)
    dense = torch.linspace(positions[0].item(), positions[-1].item(), 2001)  # between the first and last point
    error = (evaluate_signal(basis, coefficients, dense[None])[0] - smooth(dense)).abs().amax(dim=-1)  # (2001,)
    assert error.max() < bound and error[100:-100].max() < interior_bound
    # A signal the basis cannot follow (a step) is reconstructed far worse: the bound is not trivially met.
    step = (positions > 0.5).float()[:, None].repeat(1, 3)
    rough = fit_signal(basis, positions[None], step[None], ridge=1e-3)
    assert (evaluate_signal(basis, rough, positions[None])[0] - step).abs().max() > 5 * bound


def test_basis_widths_split_the_basis_and_bad_widths_are_refused():
    basis = GaussianBasis(8, widths=[0.01, 0.1])
    assert basis.num_basis == 8
    centers, widths = basis.grid(torch.zeros(()))
    assert torch.equal(widths, torch.tensor([0.01] * 4 + [0.1] * 4))
    assert torch.allclose(centers, torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]).repeat(2))
    for bad in ([0.1, 0.2, 0.3], [0.0], []):  # 3 does not divide 8; a width must be positive; none given
        with pytest.raises(ValueError, match="widths"):
            GaussianBasis(8, widths=bad)
    with pytest.raises(ValueError, match="num_basis"):
        GaussianBasis(1)


def test_the_attention_density_integrates_to_one_over_the_memory():
    density = truncated_gaussian_pdf(GRID, MEANS, VARIANCES)  # (5, grid)
    torch.testing.assert_close(torch.trapezoid(density, GRID, dim=-1), torch.ones(5, dtype=torch.float64))
    outside = truncated_gaussian_pdf(torch.tensor([-0.1, 1.1], dtype=torch.float64), MEANS, VARIANCES)
    assert (outside == 0).all()


def test_closed_form_expectations_of_the_basis_match_quadrature():
    basis = GaussianBasis(12, widths=[0.02, 0.2])  # evaluated in float64, the dtype of GRID
    density = truncated_gaussian_pdf(GRID, MEANS, VARIANCES)  # (5, grid)
    quadrature = torch.trapezoid(density[..., None] * basis(GRID), GRID, dim=-2)  # (5, N)
    torch.testing.assert_close(expected_basis(basis, MEANS, VARIANCES), quadrature, atol=1e-6, rtol=1e-5)


def test_bin_masses_are_the_density_integrated_over_each_bin():
    masses = bin_masses(MEANS, VARIANCES, 4)  # (5, 4)
    density = truncated_gaussian_pdf(GRID, MEANS, VARIANCES)
    quarter = GRID.numel() // 4
    pieces = [slice(i * quarter, (i + 1) * quarter + 1) for i in range(4)]
    quadrature = torch.stack([torch.trapezoid(density[:, p], GRID[p], dim=-1) for p in pieces], dim=-1)
    torch.testing.assert_close(masses, quadrature, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(masses.sum(-1), torch.ones(5, dtype=torch.float64))


def test_interval_mass_keeps_its_precision_in_both_tails():
    # Phi(9) - Phi(8) is about 6.2e-16: 1 - 1 in float64 if taken naively on the right tail.
    exact = 0.5 * (math.erfc(8 / math.sqrt(2)) - math.erfc(9 / math.sqrt(2)))
    bounds = torch.tensor([[8.0, 9.0], [-9.0, -8.0]], dtype=torch.float64)
    torch.testing.assert_close(normal_interval_mass(bounds[:, 0], bounds[:, 1]), torch.tensor([exact, exact]).double())
    assert math.isclose(normal_interval_mass(torch.tensor(-1.0), torch.tensor(2.0)).item(), 0.8185946, rel_tol=1e-6)


def test_sticky_positions_follow_the_attention_histogram():
    weights = torch.tensor([[0.0, 0.0, 1.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    even = sample_positions(weights, 8, random=False)
    assert even.shape == (2, 8)
    assert (even[0] >= 0.5).all() and (even[0] < 0.75).sum() == 2  # a quarter in bin 2, the rest in bin 3
    torch.testing.assert_close(even[1], centred(8))  # a flat histogram gives evenly spaced points
    drawn = sample_positions(weights, 20000, random=True)
    assert (drawn.diff(dim=1) >= 0).all() and drawn.min() >= 0 and drawn.max() <= 1
    shares = torch.stack([row.histc(4, 0, 1) for row in drawn]) / 20000
    torch.testing.assert_close(shares, weights / weights.sum(1, keepdim=True), atol=0.02, rtol=0)


def test_the_unbounded_update_contracts_the_old_signal_and_appends_the_new_states():
    # A history smooth(u), u in [0, 1], seen in two halves: the memory of the first half is smooth(t / 2) over
    # [0, 1]; the second half arrives as 128 states. With tau = 0.5 the update must hold all of smooth(u).
    basis = GaussianBasis(64)
    old_positions = centred(256)
    old = fit_signal(basis, old_positions[None], smooth(old_positions / 2)[None], ridge=1e-3)
    new_states = smooth(0.5 + 0.5 * centred(128))[None]  # [1, 128, 3]
    updated = update_memory(basis, old, new_states, tau=0.5, num_samples=256, ridge=1e-3)
    assert updated.shape == (1, 64, 3) and not updated.requires_grad
    inside = torch.linspace(0.02, 0.98, 500)
    torch.testing.assert_close(evaluate_signal(basis, updated, inside[None])[0], smooth(inside), atol=0.01, rtol=0)
    # Without an old signal the new states span all of [0, 1].
    first = update_memory(basis, None, new_states, tau=0.5, num_samples=256, ridge=1e-3)
    expected = smooth(0.5 + 0.5 * inside)
    torch.testing.assert_close(evaluate_signal(basis, first, inside[None])[0], expected, atol=0.01, rtol=0)


def test_sticky_resampling_keeps_the_attended_region_more_faithfully():
    # Few resampling points: drawn where attention went (the first quarter of the old signal), they hold that
    # region better than the same number spread evenly over the whole old signal.
    basis = GaussianBasis(64)
    positions = centred(512)
    wiggly = torch.stack([torch.sin(12 * positions), torch.cos(17 * positions)], dim=-1)
    old = fit_signal(basis, positions[None], wiggly[None], ridge=1e-3)
    states = torch.zeros(1, 32, 2)
    attended = torch.tensor([[1.0] * 4 + [0.0] * 12])  # all the attention on [0, 0.25]
    region = torch.linspace(0.01, 0.24, 300)
    truth = evaluate_signal(basis, old, region[None])[0]
    errors = []
    for bins in (attended, None):
        updated = update_memory(basis, old, states, 0.5, num_samples=16, ridge=1e-3, attention_bins=bins)
        errors.append((evaluate_signal(basis, updated, 0.5 * region[None])[0] - truth).abs().mean())
    sticky_error, even_error = errors
    assert sticky_error < 0.5 * even_error
