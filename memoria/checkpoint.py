"""The checkpoint format of ``Memoria.state_dict``: plain tensors, numbers and lists, checked on the way in."""

import torch

from .engram import Engrams, EngramType

STATE_FORMAT = "memoria-state-1"
#: Largest co-firing count a state may hold: it leaves 2**30 steps before the int32 counts could wrap.
MAX_COUNT = 2**30


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
        if value.layout != torch.strided or value.device.type == "meta":
            raise ValueError(f"Memoria state dict engrams[{name!r}] must be a dense tensor holding values")
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
    check_live_fields(fields, track_age, track_id)
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


def check_live_fields(fields: dict, track_age: bool, track_id: bool) -> None:
    """Values a memory can reach, among the live (non-NULL) engrams of a state's tensors.

    Ids are non-negative and distinct within a row, ages non-negative, co-firing counts between live engrams in
    0..MAX_COUNT, and the shapes agree with ``data`` [BatchSize, Length, HiddenDim].
    """
    batch_size, length, _ = fields["data"].shape
    for name in ("engrams_types", "lifespan") + (("age",) if track_age else ()) + (("engram_ids",) if track_id else ()):
        if tuple(fields[name].shape) != (batch_size, length):
            raise ValueError(f"Memoria state dict engrams[{name!r}] must be shaped {[batch_size, length]}")
    if tuple(fields["induce_counts"].shape) != (batch_size, length, length):
        raise ValueError(f"Memoria state dict induce_counts must be shaped {[batch_size, length, length]}")
    live = fields["engrams_types"] != EngramType.NULL.value  # [B, M]
    pairs = live.unsqueeze(2) & live.unsqueeze(1)  # [B, M, M]
    counts = fields["induce_counts"][pairs]
    if counts.numel() and (int(counts.min()) < 0 or int(counts.max()) > MAX_COUNT):
        raise ValueError(f"Memoria state dict induce counts between live engrams must lie in 0..{MAX_COUNT}")
    if track_age and bool((fields["age"][live] < 0).any()):
        raise ValueError("Memoria state dict ages of live engrams must be non-negative")
    if track_id:
        ids = fields["engram_ids"].long().masked_fill(~live, -1)  # [B, M]
        if bool((ids[live] < 0).any()):
            raise ValueError("Memoria state dict ids of live engrams must be non-negative")
        ordered = ids.sort(dim=1).values
        if bool(((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any()):
            raise ValueError("Memoria state dict ids of live engrams must be distinct within a row")


def max_live_id(fields: dict) -> int:
    """The largest id among live engrams of a state's tensors, -1 when there is none."""
    live = fields["engrams_types"] != EngramType.NULL.value
    ids = fields["engram_ids"][live]
    return int(ids.max()) if ids.numel() else -1


def check_engrams(engrams: Engrams, track_age: bool, track_id: bool) -> None:
    """Engrams assigned to a memory: the memory's tracking flags, and the values a state may hold."""
    for flag, tracked, field in (("track_age", track_age, "age"), ("track_id", track_id, "engram_ids")):
        given = getattr(engrams, "track_engram_id" if field == "engram_ids" else "track_age")
        if bool(given) != bool(tracked) or (tracked and getattr(engrams, field) is None):
            raise ValueError(
                f"the memory has {flag}={tracked}, the engrams {'do' if given else 'do not'} track {field}: "
                "build them with the memory's flags"
            )
    engrams_from_state(engrams._fields(), track_age, track_id)
