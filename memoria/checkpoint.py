"""The checkpoint format of ``Memoria.state_dict``: plain tensors, numbers and lists, checked on the way in."""

import torch

from .engram import Engrams, EngramType

STATE_FORMAT = "memoria-state-1"


def engrams_from_state(fields: dict, track_age: bool, track_id: bool) -> Engrams:
    """Engrams from a state dict's tensors, with every dtype, shape and value range checked."""
    expected = {
        "data": "floating",
        "induce_counts": torch.int32,
        "engrams_types": torch.uint8,
        "lifespan": torch.float32,
        "age": torch.int32,
        "engram_ids": torch.int32,
    }
    required = {"data", "induce_counts", "engrams_types", "lifespan"}
    required |= {"age"} if track_age else set()
    required |= {"engram_ids"} if track_id else set()
    if not isinstance(fields, dict) or not required <= set(fields):
        raise ValueError(f"Memoria state dict engrams must hold {sorted(required)}")
    for name in required:
        value = fields[name]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"Memoria state dict engrams[{name!r}] must be a tensor, got {type(value).__name__}")
        wanted = expected[name]
        if (wanted == "floating" and not value.is_floating_point()) or (wanted != "floating" and value.dtype != wanted):
            raise ValueError(f"Memoria state dict engrams[{name!r}] has dtype {value.dtype}, expected {wanted}")
    if fields["data"].dim() != 3:
        raise ValueError(
            f"Memoria state dict engram data must be [BatchSize, Length, HiddenDim], got {list(fields['data'].shape)}"
        )
    if not bool(torch.isfinite(fields["data"]).all()) or not bool(torch.isfinite(fields["lifespan"]).all()):
        raise ValueError("Memoria state dict engrams hold NaN or infinite values")
    if bool((fields["engrams_types"] > EngramType.LONGTERM.value).any()):
        raise ValueError("Memoria state dict engram types must lie in 0..3")
    return Engrams(
        data=fields["data"],
        induce_counts=fields["induce_counts"],
        engrams_types=fields["engrams_types"],
        lifespan=fields["lifespan"],
        age=fields.get("age") if track_age else None,
        engram_ids=fields.get("engram_ids") if track_id else None,
        track_age=track_age,
        track_engram_id=track_id,
    )
