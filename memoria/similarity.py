"""How strongly a set of working memories points at each key engram.

Scores are ``-||w - k||^2`` combined over working memories ``w``, computed in float32. Stored values are bounded so that
no squared distance can overflow float32 (``largest_value``): past that, distances become infinite or NaN and the
ranking would remind the farthest keys as readily as the nearest.
"""

import math
from typing import NamedTuple

import torch


class Working(NamedTuple):
    """Working memories made ready for scoring keys, once per ``remind`` (both of its scores use them).

    Distances do not change under a common shift; centring keeps the expanded form in ``scores`` from cancelling badly
    when the vectors share a large offset. Working memories and keys come from the same hidden space, so the mean of
    the (few) working memories removes that offset as well as the keys' mean would, at a fraction of the cost.

    Attributes:
        centred: [B, W, D] working memories minus their mean.
        center: [B, 1, D] that mean: keys are centred by subtracting it.
        squared_norms: [B, W] ``||centred||^2``.
    """

    centred: torch.Tensor
    center: torch.Tensor
    squared_norms: torch.Tensor

    @classmethod
    def of(cls, working: torch.Tensor) -> "Working":
        """From working memories [B, W, D]."""
        center = working.mean(dim=1, keepdim=True)
        centred = working - center
        return cls(centred, center, squared_norms(centred))

    def scores(self, centred_keys: torch.Tensor) -> torch.Tensor:
        """``logsumexp`` over working rows of ``-||w - k||^2`` for keys already centred (``keys - self.center``).

        It orders keys exactly like the published 1.0.0's mean (or sum) of ``exp(-||w - k||^2)``, but never underflows,
        so the ranking survives distances where ``exp`` is 0 in float32.

        Args:
            centred_keys: [B, M, D].
        Returns:
            [B, M].
        """
        if centred_keys.size(1) == 0 or self.centred.size(1) == 0:
            return self.centred.new_zeros(centred_keys.shape[:2])
        # [B, W, M]: ||w||^2 + ||k||^2 - 2 w.k, one batched matmul instead of a 4-D difference
        squared = torch.baddbmm(
            self.squared_norms.unsqueeze(2) + squared_norms(centred_keys).unsqueeze(1),
            self.centred,
            centred_keys.transpose(1, 2),
            alpha=-2,
        )
        return torch.logsumexp(squared.clamp_(min=0).neg_(), dim=1)


def squared_norms(vectors: torch.Tensor) -> torch.Tensor:
    """``||v||^2`` over the last axis: [..., D] -> [...] (one fused pass, unlike ``pow(2).sum()``)."""
    return torch.linalg.vector_norm(vectors, dim=-1).square_()


def largest_value(hidden_dim: int) -> float:
    """The largest magnitude a stored value may have, for vectors of ``hidden_dim`` values: ``2**61 / sqrt(D)``.

    Centred on the working memories' mean, each value is at most twice that, so each of ``||w||^2``, ``||k||^2`` and
    ``|2 w.k|`` is at most ``4 * D * largest**2 = 2**124``, and their sum (``scores``' expanded form) at most ``2**126``,
    a quarter of float32's largest finite value (about ``2**128``).
    """
    return 2.0**61 / math.sqrt(max(hidden_dim, 1))


def check_values(values: torch.Tensor, name: str) -> None:
    """Refuse float32 ``values`` [..., D] (non-empty) that hold NaN, an infinity or a magnitude beyond
    ``largest_value``, with a ``ValueError`` naming them. Two reductions and one host read."""
    # the largest and the smallest (NaN in both where there is one): vector_norm's inf norm is ~100x slower on a CPU
    high, low = torch.stack([values.amax(), values.amin()]).tolist()
    largest = max(high, -low) if high == high and low == low else math.nan
    if not math.isfinite(largest):
        raise ValueError(f"{name} contains NaN or infinite values (or values beyond float32's range)")
    bound = largest_value(values.size(-1))
    if largest > bound:
        raise ValueError(
            f"{name} holds a value of magnitude {largest:.3g}, beyond {bound:.3g} (2**61 / sqrt(hidden size "
            f"{values.size(-1)})): squared distances between such engrams could overflow float32, and remind would no "
            "longer find the nearest ones"
        )
