"""How strongly a set of working memories points at each key engram."""

from typing import NamedTuple

import torch


class Working(NamedTuple):
    """Working memories made ready for scoring keys, once per ``remind`` (both of its scores use them).

    Distances do not change under a common shift; centring keeps the expanded form in ``scores`` from cancelling badly
    when the vectors share a large offset. Working memories and keys come from the same hidden space, so the mean of
    the (few) working memories removes that offset as well as the keys' mean would, at a fraction of the cost.

    Attributes:
        centred: [BatchSize, WorkingLength, HiddenDim] working memories minus their mean.
        center: [BatchSize, 1, HiddenDim] that mean: keys are centred by subtracting it.
        squared_norms: [BatchSize, WorkingLength] ``||centred||^2``.
    """

    centred: torch.Tensor
    center: torch.Tensor
    squared_norms: torch.Tensor

    @classmethod
    def of(cls, working: torch.Tensor) -> "Working":
        """From working memories [BatchSize, WorkingLength, HiddenDim]."""
        center = working.mean(dim=1, keepdim=True)
        centred = working - center
        return cls(centred, center, squared_norms(centred))

    def scores(self, centred_keys: torch.Tensor) -> torch.Tensor:
        """``logsumexp`` over working rows of ``-||w - k||^2`` for keys already centred (``keys - self.center``).

        It orders keys exactly like the published 1.0.0's mean (or sum) of ``exp(-||w - k||^2)``, but never underflows,
        so the ranking survives distances where ``exp`` is 0 in float32.

        Args:
            centred_keys: [BatchSize, KeyLength, HiddenDim].
        Returns:
            [BatchSize, KeyLength].
        """
        if centred_keys.size(1) == 0 or self.centred.size(1) == 0:
            return self.centred.new_zeros(centred_keys.shape[:2])
        # [BatchSize, WorkingLength, KeyLength]: ||w||^2 + ||k||^2 - 2 w.k, one batched matmul instead of a 4-D difference
        squared = torch.baddbmm(
            self.squared_norms.unsqueeze(2) + squared_norms(centred_keys).unsqueeze(1),
            self.centred,
            centred_keys.transpose(1, 2),
            alpha=-2,
        )
        return torch.logsumexp(squared.clamp_(min=0).neg_(), dim=1)


def squared_norms(vectors: torch.Tensor) -> torch.Tensor:
    """``||v||^2`` over the last axis: [..., HiddenDim] -> [...] (one fused pass, unlike ``pow(2).sum()``)."""
    return torch.linalg.vector_norm(vectors, dim=-1).square_()
