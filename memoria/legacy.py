"""Objects pickled by the published ``memoria-pytorch`` (1.0.0, 1.1.0), unpickled into this package.

A pickle holds an object's attributes and the path of its class (``memoria.memoria.Memoria``,
``memoria.engram.Engrams``), which names this package's class once this package is installed in the published one's
place. The attributes are the published package's, so ``Memoria.__setstate__`` and ``Engrams.__setstate__`` read them
through this module: what it knows becomes a working object (checked as an assigned state is), anything else is a
``ValueError`` at load. ``Memoria.state_dict`` is the format meant to travel; a pickle can run code, so load one only
from a source you trust.
"""

from typing import Any, NamedTuple, Optional

import torch

#: The published ``Memoria``'s constructor arguments that every pickled one holds.
PUBLISHED_CONFIG = ("num_reminded_stm", "stm_capacity", "ltm_search_depth", "initial_lifespan", "num_final_ltms")
#: Those 1.1.0 added.
PUBLISHED_FLAGS = ("track_age", "track_id", "keep_history")
#: ``Engrams``' tensors, with the dtype each is stored in (``age`` and ``engram_ids`` only where tracked).
ENGRAM_TENSORS = {
    "data": torch.float32,
    "induce_counts": torch.int32,
    "engrams_types": torch.uint8,
    "lifespan": torch.float32,
    "age": torch.int32,
    "engram_ids": torch.int32,
}


class PublishedMemoria(NamedTuple):
    """What a pickled published ``Memoria`` holds, as this package's constructor arguments and state."""

    config: dict
    engrams: Any  # an Engrams (converted by its own __setstate__) or None
    ext_device: Optional[torch.device]
    timestep: int
    next_engram_id: int
    history: Optional[list]


def _refuse(what: str) -> ValueError:
    return ValueError(
        f"cannot unpickle this {what}: it is neither one of this package's nor one pickled by memoria-pytorch 1.0.0 or "
        "1.1.0 (save a memory with state_dict() and torch.save instead)"
    )


def published_memoria(state: Any) -> PublishedMemoria:
    """A pickled published ``Memoria``'s attributes (``state``); ``ValueError`` for anything else."""
    if not isinstance(state, dict) or not set(PUBLISHED_CONFIG) <= set(state):
        raise _refuse("Memoria")
    config = {name: state[name] for name in PUBLISHED_CONFIG}
    config.update({name: state[name] for name in PUBLISHED_FLAGS if name in state})
    if state.get("device") is not None:
        config["device"] = state["device"]
    counters = [state.get("timestep") or 0, state.get("next_engram_id") or 0]
    if any(isinstance(value, bool) or not isinstance(value, int) or value < 0 for value in counters):
        raise _refuse("Memoria (its timestep and next_engram_id must be non-negative ints)")
    ext_device = state.get("ext_device")
    if ext_device is not None and not isinstance(ext_device, torch.device):
        raise _refuse("Memoria (its ext_device must be a torch.device)")
    history = state.get("history")
    if history is not None and not isinstance(history, list):
        raise _refuse("Memoria (its history must be a list)")
    return PublishedMemoria(config, state.get("engrams"), ext_device, *counters, history)


def engrams_state(state: Any) -> dict:
    """The attributes of an ``Engrams`` from a pickled one's (this package's, or the published one's, which has no
    tracking flags before 1.1.0 and keeps its sizes as attributes); ``ValueError`` for anything else. Shapes are
    checked by the caller."""
    if not isinstance(state, dict) or not {"data", "induce_counts", "engrams_types", "lifespan"} <= set(state):
        raise _refuse("Engrams")
    flags = {"track_age": bool(state.get("track_age", False)), "track_engram_id": bool(state.get("track_engram_id"))}
    tracked = {"age": flags["track_age"], "engram_ids": flags["track_engram_id"]}
    fields = {}
    for name, dtype in ENGRAM_TENSORS.items():
        value = state.get(name) if tracked.get(name, True) else None
        if value is None and tracked.get(name, True):
            raise _refuse(f"Engrams (it tracks {name} but holds none)")
        if value is not None and (not isinstance(value, torch.Tensor) or value.is_complex()):
            raise _refuse(f"Engrams (its {name} must be a real tensor)")
        fields[name] = None if value is None else value.detach().to(dtype)
    if fields["data"].dim() != 3:
        raise _refuse("Engrams (its data must be shaped [B, M, D])")
    return {**fields, **flags}
