"""How strongly a set of working memories points at each key engram."""

import torch


def similarity_scores(working: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """How strongly the working memories as a whole point at each key.

    ``logsumexp`` over working rows of ``-||w - k||^2``: it orders keys exactly like the published 1.0.0's mean (or sum)
    of ``exp(-||w - k||^2)``, but never underflows, so the ranking survives distances where ``exp`` is 0 in float32.

    Args:
        working: [BatchSize, WorkingLength, HiddenDim].
        keys: [BatchSize, KeyLength, HiddenDim].
    Returns:
        [BatchSize, KeyLength].
    """
    if keys.size(1) == 0 or working.size(1) == 0:
        return working.new_zeros(keys.shape[:2])
    # distances do not change under a common shift; centring keeps the expanded form below from cancelling badly
    center = keys.mean(dim=1, keepdim=True)
    working, keys = working - center, keys - center
    # [BatchSize, WorkingLength, KeyLength]: ||w||^2 + ||k||^2 - 2 w.k, one batched matmul instead of a 4-D difference
    squared = torch.baddbmm(
        working.pow(2).sum(dim=2, keepdim=True) + keys.pow(2).sum(dim=2).unsqueeze(1),
        working,
        keys.transpose(1, 2),
        alpha=-2,
    )
    return torch.logsumexp(squared.clamp_(min=0).neg_(), dim=1)
