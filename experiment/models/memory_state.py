"""Save and restore a ``Memoria`` object's engrams so that checkpoints carry the memory state."""

from pathlib import Path
from typing import Any, Optional, Union

import torch

from memoria import Memoria

MEMORY_FILE = "memory_state.pt"


def memory_state_dict(memoria: Memoria) -> dict[str, Any]:
    """The memory state of ``memoria`` (``Memoria.state_dict()``), tagged with its format."""
    return {"format": "memoria.state_dict", "state": memoria.state_dict()}


def load_memory_state_dict(memoria: Memoria, state: dict[str, Any]) -> None:
    """Restore what :func:`memory_state_dict` saved into ``memoria`` (same hyper-parameters expected)."""
    if not isinstance(state, dict) or state.get("format") != "memoria.state_dict":
        raise ValueError(f"unknown memory state format {state.get('format') if isinstance(state, dict) else state!r}")
    memoria.load_state_dict(state["state"])


def save_memory(
    memoria: Memoria, directory: Union[str, Path], memory_hidden_states: Optional[torch.Tensor] = None
) -> Path:
    """Write ``memoria``'s state (and the caller's carried ``memory_hidden_states`` [Batch, Length, Dim], if any)
    to ``directory/memory_state.pt``, e.g. beside ``save_pretrained`` weights; returns the file's path.

    This is the state of the documents being read, not weights: ``save_pretrained`` does not write it.
    """
    path = Path(directory) / MEMORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    hidden = None if memory_hidden_states is None else memory_hidden_states.detach().cpu()
    torch.save({"memory": memory_state_dict(memoria), "memory_hidden_states": hidden}, path)
    return path


def load_memory(
    memoria: Memoria, directory: Union[str, Path], map_location: Optional[Union[str, torch.device]] = None
) -> Optional[torch.Tensor]:
    """Restore what :func:`save_memory` wrote into ``memoria`` (built with the same configuration); returns the
    saved ``memory_hidden_states`` (None if none were saved)."""
    path = Path(directory) / MEMORY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no saved memory state at {path} (write one with save_memory)")
    saved = torch.load(path, weights_only=True, map_location=map_location)
    load_memory_state_dict(memoria, saved["memory"])
    return saved["memory_hidden_states"]
