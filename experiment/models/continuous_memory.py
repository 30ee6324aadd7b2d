"""The ∞-former's continuous memory (Martins et al., 2022): a signal over [0, 1] fitted to hidden states.

A sequence of vectors ``x_1 .. x_P`` placed at positions ``t_1 .. t_P`` in [0, 1] is summarised by the
coefficients ``B`` [NumBasis, Dim] of ``N`` Gaussian radial basis functions
``psi_j(t) = exp(-(t - c_j)^2 / (2 w_j^2))``, fitted by ridge regression::

    B = (F^T F + lambda I)^-1 F^T X,   F[p, j] = psi_j(t_p),   signal(t) = psi(t)^T B

Queries read the signal through a Gaussian density ``N(t; mu, sigma^2)`` truncated to [0, 1] (so it integrates
to 1 over the memory's domain); the context is ``E_p[psi(t)]^T V``, and ``E_p[psi_j(t)]`` has a closed form
(:func:`expected_basis`) since the product of two Gaussians is a scaled Gaussian. The density's mass per bin of
[0, 1] (:func:`bin_masses`) says where attention went; :func:`sample_positions` draws the positions at which
the old signal is resampled in proportion to it ("sticky memories").

The original ∞-former's form (``experiment/models/infinity_former_xl.py``) uses the same pieces differently: its
basis functions are normalised Gaussian densities (``GaussianBasis(normalized=True)``), the density is not
truncated (:func:`expected_basis_untruncated`), and the fit also pulls the signal to zero just outside [0, 1]
(:func:`fit_signal_padded`).
"""

import math
from typing import Optional, Sequence

import torch
from torch import nn

_SQRT_HALF = math.sqrt(0.5)


def normal_interval_mass(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """``Phi(upper) - Phi(lower)`` for standardised bounds, computed on the tail that keeps its precision."""
    # Phi(x) = erfc(-x / sqrt 2) / 2. For bounds right of 0 both Phi values round towards 1, so the mirrored
    # tails are subtracted instead: Phi(u) - Phi(l) = Phi(-l) - Phi(-u).
    sign = torch.where(lower > 0, 1.0, -1.0)
    return 0.5 * sign * (torch.erfc(sign * lower * _SQRT_HALF) - torch.erfc(sign * upper * _SQRT_HALF))


class GaussianBasis(nn.Module):
    """``N`` Gaussian radial basis functions over [0, 1].

    Args:
        num_basis: ``N``.
        widths: the standard deviations to use; the basis is split evenly among them (``N`` must be divisible by
            their number), each group with evenly spaced centres over [0, 1]. None: one width, the spacing of
            ``N`` evenly spaced centres.
        normalized: each function is the density ``N(t; c_j, w_j^2)`` (the original ∞-former's), instead of peaking
            at 1.
    """

    def __init__(self, num_basis: int, widths: Optional[Sequence[float]] = None, normalized: bool = False) -> None:
        super().__init__()
        if num_basis < 2:
            raise ValueError(f"num_basis must be at least 2, got {num_basis}")
        widths = [1.0 / (num_basis - 1)] if widths is None else list(widths)
        if not widths or num_basis % len(widths) != 0 or any(w <= 0 for w in widths):
            raise ValueError(f"widths must be positive and their number must divide num_basis, got {widths}")
        per_width = num_basis // len(widths)
        if per_width < 2:
            raise ValueError(f"num_basis ({num_basis}) gives fewer than 2 centres per width ({len(widths)} widths)")
        self.per_width = per_width
        self.width_values = widths
        self.single_width = len(set(widths)) == 1
        self.normalized = normalized

    @property
    def num_basis(self) -> int:
        return self.per_width * len(self.width_values)

    def grid(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(centres [N], widths [N]) on ``like``'s device and dtype.

        Built per call from plain numbers rather than kept as buffers: ``from_pretrained`` materialises a model
        from the meta device and would leave non-persistent buffers uninitialised.
        """
        centers = torch.linspace(0.0, 1.0, self.per_width, device=like.device, dtype=like.dtype)
        widths = torch.tensor(self.width_values, device=like.device, dtype=like.dtype)
        return centers.repeat(len(self.width_values)), widths.repeat_interleave(self.per_width)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """positions [..., P] -> design matrix ``F`` [..., P, N]."""
        centers, widths = self.grid(positions)
        offset = positions[..., None] - centers
        values = torch.exp(-0.5 * (offset / widths) ** 2)
        return values / (widths * math.sqrt(2 * math.pi)) if self.normalized else values


def fit_signal(basis: GaussianBasis, positions: torch.Tensor, values: torch.Tensor, ridge: float) -> torch.Tensor:
    """Ridge regression of ``values`` onto the basis.

    Args:
        positions: [Batch, P] in [0, 1]; values: [Batch, P, Dim].
        ridge: ``lambda`` > 0.
    Returns:
        coefficients ``B`` [Batch, N, Dim] (float32).
    """
    design = basis(positions.float())  # (B, P, N)
    gram = design.transpose(1, 2) @ design  # (B, N, N)
    gram = gram + ridge * torch.eye(basis.num_basis, device=gram.device, dtype=gram.dtype)
    return torch.linalg.solve(gram, design.transpose(1, 2) @ values.float())  # (B, N, D)


def fit_signal_padded(
    basis: GaussianBasis, positions: torch.Tensor, values: torch.Tensor, ridge: float, padding: torch.Tensor
) -> torch.Tensor:
    """:func:`fit_signal` with zero targets at the positions ``padding`` [Pad] (outside [0, 1]), as the original
    ∞-former fits: the signal is pulled to zero beyond the memory's ends instead of being left free there.

    positions [Batch, P]; values [Batch, P, Dim] -> coefficients [Batch, N, Dim] (float32).
    """
    batch, _, dim = values.shape
    pad_positions = padding.to(positions.dtype).expand(batch, padding.numel())
    zeros = values.new_zeros(batch, padding.numel(), dim)
    return fit_signal(basis, torch.cat([positions, pad_positions], 1), torch.cat([values, zeros], 1), ridge)


def evaluate_signal(basis: GaussianBasis, coefficients: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The signal ``psi(t)^T B`` at positions [Batch, P] for coefficients [Batch, N, Dim] -> [Batch, P, Dim]."""
    return basis(positions.to(coefficients.dtype)) @ coefficients


def truncated_normalizer(mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Mass of ``N(mean, variance)`` on [0, 1] (any matching shapes), floored away from 0."""
    std = variance.sqrt()
    return normal_interval_mass(-mean / std, (1 - mean) / std).clamp(min=1e-12)


def truncated_gaussian_pdf(positions: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Density at ``positions`` [..., P] of ``N(mean, variance)`` truncated to [0, 1]; mean, variance [...]."""
    mean, variance = mean[..., None], variance[..., None]
    density = torch.exp(-0.5 * (positions - mean) ** 2 / variance) / torch.sqrt(2 * math.pi * variance)
    inside = (positions >= 0) & (positions <= 1)
    return torch.where(inside, density / truncated_normalizer(mean, variance), 0.0)


def expected_basis(basis: GaussianBasis, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """``E_p[psi_j(t)]`` for ``p`` = ``N(mean, variance)`` truncated to [0, 1], in closed form.

    mean, variance: [...] -> [..., N]. With ``v = variance + w_j^2``, the product of the density and the basis
    function is ``(w_j / sqrt v) exp(-(mean - c_j)^2 / 2v)`` times a Gaussian of mean
    ``(mean w_j^2 + c_j variance) / v`` and standard deviation ``s = sqrt(variance w_j^2 / v)``, whose mass on
    [0, 1] is a CDF difference; dividing by the truncated density's own mass on [0, 1] normalises it.
    """
    # Everything that depends on the query only (and on the width, when the basis has one) is computed at
    # [..., 1]: the [..., N] work is what the integral needs per basis function and nothing more.
    centers, widths = basis.grid(mean)
    widths = widths[:1] if basis.single_width else widths
    mean, variance = mean[..., None], variance[..., None]
    width_sq = widths**2
    total = variance + width_sq  # (..., 1 or N)
    offset = mean - centers  # (..., N)
    overlap = torch.exp(offset * offset * (-0.5 / total))
    # product mean m = mean - offset * variance / total; bounds (0 - m) / s and (1 - m) / s, scaled by 1/sqrt 2.
    inverse_std = _SQRT_HALF * torch.sqrt(total / (variance * width_sq))
    lower = (offset * (variance / total) - mean) * inverse_std  # (..., N)
    upper = lower + inverse_std
    sign = torch.where(lower > 0, 1.0, -1.0)
    inside = torch.erfc(sign * lower) - torch.erfc(sign * upper)  # 2 * the mass on [0, 1], times sign
    scale = torch.sqrt(width_sq / total) * 0.5 / truncated_normalizer(mean, variance)
    return overlap * inside * (sign * scale)


def expected_basis_untruncated(basis: GaussianBasis, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """``E_p[psi_j(t)]`` for ``p = N(mean, variance)`` over the whole real line (the original ∞-former's reading).

    mean, variance: [...] -> [..., N]. With ``s^2 = variance + w_j^2``, the integral of the product of two
    Gaussians is ``exp(-(mean - c_j)^2 / 2 s^2) / sqrt(2 pi s^2)`` for a normalised basis function; a basis function
    that peaks at 1 is that times ``w_j sqrt(2 pi)``.
    """
    centers, widths = basis.grid(mean)
    total = variance[..., None] + widths**2  # (..., N)
    offset = mean[..., None] - centers  # (..., N)
    density = torch.exp(offset * offset * (-0.5 / total)) / torch.sqrt(2 * math.pi * total)
    return density if basis.normalized else density * (widths * math.sqrt(2 * math.pi))


def bin_masses(mean: torch.Tensor, variance: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Mass of the truncated density in each of ``num_bins`` equal bins of [0, 1]: [...] -> [..., num_bins]."""
    edges = torch.linspace(0.0, 1.0, num_bins + 1, device=mean.device, dtype=mean.dtype)
    scaled = (edges - mean[..., None]) * (_SQRT_HALF / variance.sqrt()[..., None])  # (..., num_bins + 1)
    cdf = 0.5 * torch.erfc(-scaled)  # a histogram has no use for the far tails' precision
    return cdf.diff(dim=-1) / truncated_normalizer(mean, variance)[..., None]


def sample_positions(weights: torch.Tensor, count: int, random: bool) -> torch.Tensor:
    """``count`` sorted positions in [0, 1] distributed as the histogram ``weights`` [Batch, Bins] (uniform inside
    a bin): drawn at random, or (``random=False``) at the evenly spaced quantiles ``(m + 0.5) / count``.

    Returns [Batch, count].
    """
    batch, num_bins = weights.shape
    weights = weights.float().clamp(min=0) + 1e-12  # a row with no mass anywhere becomes uniform
    weights = weights / weights.sum(dim=1, keepdim=True)
    cdf = weights.cumsum(dim=1)  # (B, Bins)
    if random:
        quantiles = torch.rand(batch, count, device=weights.device).sort(dim=1).values
    else:
        quantiles = ((torch.arange(count, device=weights.device) + 0.5) / count).expand(batch, count)
    quantiles = quantiles.contiguous() * cdf[:, -1:]
    index = torch.searchsorted(cdf, quantiles).clamp(max=num_bins - 1)  # (B, count)
    below = torch.where(index > 0, cdf.gather(1, (index - 1).clamp(min=0)), 0.0)
    fraction = ((quantiles - below) / weights.gather(1, index)).clamp(0.0, 1.0)
    return (index + fraction) / num_bins


def segment_positions(length: int, start: float, device: torch.device) -> torch.Tensor:
    """Positions of ``length`` new states spread evenly over [start, 1] (bin centres), [length]."""
    return start + (1.0 - start) * (torch.arange(length, device=device, dtype=torch.float32) + 0.5) / length


@torch.no_grad()
def update_memory(
    basis: GaussianBasis,
    coefficients: Optional[torch.Tensor],
    states: torch.Tensor,
    tau: float,
    num_samples: int,
    ridge: float,
    attention_bins: Optional[torch.Tensor] = None,
    random: bool = False,
) -> torch.Tensor:
    """The unbounded memory update: the old signal contracted to [0, tau], the new states on [tau, 1], refitted.

    Args:
        coefficients: the old signal [Batch, N, Dim], or None (the new states then span all of [0, 1]).
        states: the new segment's vectors [Batch, Length, Dim].
        num_samples: points at which the old signal is resampled.
        attention_bins: [Batch, Bins] attention mass per region of the old signal ("sticky memories"); None
            resamples evenly.
        random: draw the sticky positions at random (training) instead of at the histogram's quantiles.
    Returns:
        the new coefficients [Batch, N, Dim], float32, outside any autograd graph.
    """
    batch, length, _ = states.shape
    if coefficients is None:
        positions = segment_positions(length, 0.0, states.device).expand(batch, length)
        return fit_signal(basis, positions, states, ridge)
    if attention_bins is None:
        attention_bins = torch.ones(batch, 1, device=states.device)
    old_positions = sample_positions(attention_bins, num_samples, random)  # (B, M), in [0, 1]
    old_values = evaluate_signal(basis, coefficients.float(), old_positions)  # (B, M, D)
    new_positions = segment_positions(length, tau, states.device).expand(batch, length)
    positions = torch.cat([tau * old_positions, new_positions], dim=1)  # (B, M + L)
    return fit_signal(basis, positions, torch.cat([old_values, states.float()], dim=1), ridge)
