"""How strongly a set of working memories points at each key engram."""

import torch


def similarity_scores(working: torch.Tensor, keys: torch.Tensor, overwrite_keys: bool = False) -> torch.Tensor:
    """How strongly the working memories as a whole point at each key.

    ``logsumexp`` over working rows of ``-||w - k||^2``: it orders keys exactly like the published 1.0.0's mean (or sum)
    of ``exp(-||w - k||^2)``, but never underflows, so the ranking survives distances where ``exp`` is 0 in float32.

    Args:
        working: [BatchSize, WorkingLength, HiddenDim].
        keys: [BatchSize, KeyLength, HiddenDim].
        overwrite_keys: ``keys`` is a scratch copy that may be changed (saves a copy of the largest operand).
    Returns:
        [BatchSize, KeyLength].
    """
    if keys.size(1) == 0 or working.size(1) == 0:
        return working.new_zeros(keys.shape[:2])
    # Distances do not change under a common shift; centring keeps the expanded form below from cancelling badly
    # when the vectors share a large offset. Working memories and keys come from the same hidden space, so the mean of
    # the (few) working memories removes that offset as well as the keys' mean would, at a fraction of the cost.
    center = working.mean(dim=1, keepdim=True)
    working = working - center
    keys = keys.sub_(center) if overwrite_keys else keys - center
    # [BatchSize, WorkingLength, KeyLength]: ||w||^2 + ||k||^2 - 2 w.k, one batched matmul instead of a 4-D difference
    squared = torch.baddbmm(
        squared_norms(working).unsqueeze(2) + squared_norms(keys).unsqueeze(1),
        working,
        keys.transpose(1, 2),
        alpha=-2,
    )
    return torch.logsumexp(squared.clamp_(min=0).neg_(), dim=1)


def squared_norms(vectors: torch.Tensor) -> torch.Tensor:
    """``||v||^2`` over the last axis: [..., HiddenDim] -> [...] (one fused pass, unlike ``pow(2).sum()``)."""
    return torch.linalg.vector_norm(vectors, dim=-1).square_()
