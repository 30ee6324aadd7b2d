"""The per-engram fields of a memory and what a padding (NULL) slot holds in each, shared by the logical layout
(``memoria.engram.Engrams``) and the slot store (``memoria.store``)."""

from typing import Iterable

import torch

from .ops import gather_slots

#: The fields of an ``Engrams``, in the order of its constructor.
FIELDS = ("data", "induce_counts", "engrams_types", "lifespan", "age", "engram_ids")
#: What a padding (NULL) position holds in each per-engram field (``engrams_types`` 0 is ``EngramType.NULL``).
PADDING = {"data": 0.0, "engrams_types": 0, "lifespan": -1.0, "age": -1, "engram_ids": -1}


def gather_fields(engrams, indices: torch.Tensor, names: Iterable[str] = tuple(PADDING)) -> dict:
    """The per-engram fields ``names`` of ``engrams`` (an ``Engrams`` or the store) at ``indices`` [B, K],
    padding at -1; an untracked field (``None``) stays ``None``."""
    values = {name: getattr(engrams, name) for name in names}
    return {
        name: None if value is None else gather_slots(value, indices, PADDING[name]) for name, value in values.items()
    }
