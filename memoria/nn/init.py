"""How the abstractor (the memory's learned write) starts: named schemes, ``"scaled"`` by default.

Shapes: B batch, L segment length, W working memories per segment, D hidden.
"""

import torch

from ..abstractor import Abstractor

#: The abstractor initialisations :func:`init_abstractor` knows; the first is the default.
MEMORY_INITS = ("scaled", "paper")


def abstractor_init_stds(abstractor: Abstractor, memory_init: str, std: float) -> list[tuple[torch.Tensor, float]]:
    """The standard deviation each of the abstractor's parameters starts from (0.0: zeros).

    ``"paper"``: every weight and the query embeddings N(0, ``std``), as in the authors' models (GPT-2 / BERT
    initialisation). Its stacked linear layers then shrink the memories with the width: at width 64 they come out
    with a norm of ~0.01 against hidden states of ~8, and every learned query averages the segment alike, so the
    memories are near copies of each other and the attention over them cannot tell them apart.
    ``"scaled"``: each linear layer N(0, 1 / fan_in), which keeps the norm of what passes through it, and query
    embeddings N(0, 1 / D): with keys of unit-size entries their scores are O(1) at every width, so each query
    picks its own positions. Biases start at zero in both.
    """
    if memory_init not in MEMORY_INITS:
        raise ValueError(f"memory_init must be one of {MEMORY_INITS}, got {memory_init!r}")
    if not isinstance(std, (int, float)) or isinstance(std, bool) or not std > 0:
        raise ValueError(f"std must be a positive number, got {std!r}")
    layers = (abstractor.key_transform, abstractor.value_transform, abstractor.feedforward, abstractor.output)
    hidden = abstractor.query_embeddings.size(-1)
    query_std = std if memory_init == "paper" else hidden**-0.5
    stds = [(abstractor.query_embeddings, query_std)]
    for layer in layers:
        stds.append((layer.weight, std if memory_init == "paper" else layer.in_features**-0.5))
        stds.append((layer.bias, 0.0))
    return stds


@torch.no_grad()
def init_abstractor(abstractor: Abstractor, memory_init: str = "scaled", std: float = 0.02) -> Abstractor:
    """Draw ``abstractor``'s parameters afresh as ``memory_init`` says (see :func:`abstractor_init_stds`; ``std`` is
    the ``"paper"`` scheme's, a model's ``initializer_range``); returns it.

    A parameter that ``transformers`` marks as loaded from a checkpoint (``_is_hf_initialized``) is left as it is, so
    that this can be called from a ``PreTrainedModel._init_weights``."""
    for parameter, parameter_std in abstractor_init_stds(abstractor, memory_init, std):
        if not getattr(parameter, "_is_hf_initialized", False):
            parameter.normal_(mean=0.0, std=parameter_std)
    return abstractor
