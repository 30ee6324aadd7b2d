"""Save and restore a ``Memoria`` object's engrams so that checkpoints carry the memory state."""

from typing import Any

import torch

from memoria import Memoria

ENGRAM_FIELDS = ("data", "induce_counts", "engrams_types", "lifespan", "age", "engram_ids")
ENGRAM_SIZES = ("batch_size", "memory_length", "hidden_dim")


def memory_state_dict(memoria: Memoria) -> dict[str, Any]:
    """The memory state of ``memoria`` as plain tensors and numbers (CPU copies).

    Uses ``Memoria.state_dict()`` where the library offers it; otherwise reads the engram fields of the
    public ``Engrams`` contract.
    """
    if hasattr(memoria, "state_dict"):
        return {"format": "memoria.state_dict", "state": memoria.state_dict()}
    engrams = memoria.engrams
    fields = {name: getattr(engrams, name) for name in ENGRAM_FIELDS}
    return {
        "format": "engram_fields",
        "fields": {
            name: value.detach().cpu().clone() if torch.is_tensor(value) else value for name, value in fields.items()
        },
        "sizes": {name: getattr(engrams, name) for name in ENGRAM_SIZES},
        "next_engram_id": memoria.next_engram_id,
        "timestep": memoria.timestep,
    }


def load_memory_state_dict(memoria: Memoria, state: dict[str, Any]) -> None:
    """Restore what :func:`memory_state_dict` saved into ``memoria`` (same hyper-parameters expected)."""
    if state["format"] == "memoria.state_dict":
        memoria.load_state_dict(state["state"])
        return
    if state["format"] != "engram_fields":
        raise ValueError(f"unknown memory state format {state['format']!r}")
    memoria.reset_memory()
    engrams = memoria.engrams
    for name, value in state["fields"].items():
        setattr(engrams, name, value)
    for name, value in state["sizes"].items():
        derived = getattr(type(engrams), name, None)
        if not (isinstance(derived, property) and derived.fset is None):  # read-only sizes follow the tensors
            setattr(engrams, name, value)
    memoria.next_engram_id = state["next_engram_id"]
    memoria.timestep = state["timestep"]
