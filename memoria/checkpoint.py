"""The checkpoint format of ``Memoria.state_dict``: plain tensors, numbers and lists, checked on the way in."""

from typing import Any, Callable, List, NamedTuple, Optional

import torch

from .engram import Engrams, EngramType
from .fields import FIELDS
from .history_manager import HistoryManager
from .similarity import check_values
from .validation import DATA_DTYPES, INT32_MAX

STATE_FORMAT = "memoria-state-1"
#: The constructor arguments a state's ``config`` holds (they shape behaviour; device and generator do not).
CONFIG_NAMES = (
    "num_reminded_stm", "stm_capacity", "ltm_search_depth", "initial_lifespan", "num_final_ltms", "track_age",
    "track_id", "keep_history", "independent_rows",
)  # fmt: skip
#: Largest age or co-firing count a memory holds (they are int32): one more step never wraps them. A state holding
#: more is refused at load, and a step that could take one beyond it is refused (``CounterBounds``).
COUNTER_LIMIT = INT32_MAX - 1


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
    if not bool(torch.isfinite(fields["lifespan"]).all()):
        raise ValueError("Memoria state dict engrams hold NaN or infinite values")
    if fields["data"].numel():
        check_values(fields["data"].float(), "Memoria state dict engram data")
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

    Ids are non-negative and distinct within a row, ages and co-firing counts between live engrams in
    0..COUNTER_LIMIT, and the shapes agree with ``data`` [B, L, D].
    """
    batch_size, length, _ = fields["data"].shape
    for name in ("engrams_types", "lifespan") + (("age",) if track_age else ()) + (("engram_ids",) if track_id else ()):
        if tuple(fields[name].shape) != (batch_size, length):
            raise ValueError(f"Memoria state dict engrams[{name!r}] must be shaped {[batch_size, length]}")
    if tuple(fields["induce_counts"].shape) != (batch_size, length, length):
        raise ValueError(f"Memoria state dict induce_counts must be shaped {[batch_size, length, length]}")
    live = fields["engrams_types"] != EngramType.NULL.value  # [B, M]
    lowest, highest = live_counts_range(fields["induce_counts"], live)
    if lowest < 0 or highest > COUNTER_LIMIT:
        raise ValueError(
            f"Memoria state dict induce counts between live engrams must lie in 0..{COUNTER_LIMIT} (int32 less one "
            f"step), got {lowest}..{highest}"
        )
    if track_age:
        ages = fields["age"][live]
        if ages.numel() and (int(ages.min()) < 0 or int(ages.max()) > COUNTER_LIMIT):
            raise ValueError(
                f"Memoria state dict ages of live engrams must lie in 0..{COUNTER_LIMIT} (int32 less one step), got "
                f"{int(ages.min())}..{int(ages.max())}"
            )
    if track_id:
        ids = fields["engram_ids"].long().masked_fill(~live, -1)  # [B, M]
        if bool((ids[live] < 0).any()):
            raise ValueError("Memoria state dict ids of live engrams must be non-negative")
        ordered = ids.sort(dim=1).values
        if bool(((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any()):
            raise ValueError("Memoria state dict ids of live engrams must be distinct within a row")


def live_counts_range(counts: torch.Tensor, live: torch.Tensor) -> "tuple[int, int]":
    """``(min, max)`` of the co-firing counts [B, M, M] between the ``live`` [B, M] engrams, ``(0, 0)`` without any."""
    between = counts[live.unsqueeze(2) & live.unsqueeze(1)]
    return (int(between.min()), int(between.max())) if between.numel() else (0, 0)


class CounterBounds:
    """Upper bounds, kept on the host, of the live engrams' largest co-firing count and age, so that a step which could
    take one beyond ``COUNTER_LIMIT`` (and wrap its int32 later) is refused before anything changes, at no cost to
    the others: a remind adds at most 1 to a count, an adjust 1 to an age, new engrams start at 0. Only when a bound
    reaches the limit are the true values read (``engrams()``, the memory's snapshot), and the bound lowered to them.
    """

    def __init__(self) -> None:
        self.count = 0
        self.age = 0

    @classmethod
    def of(cls, engrams: Engrams) -> "CounterBounds":
        """The bounds of ``engrams`` as they are (after a load or an assignment)."""
        bounds = cls()
        bounds.reset_to(engrams)
        return bounds

    def reset_to(self, engrams: Engrams) -> None:
        live = engrams.engrams_types != EngramType.NULL.value
        self.count = live_counts_range(engrams.induce_counts, live)[1]
        ages = engrams.age[live] if engrams.age is not None else engrams.lifespan.new_zeros(0)
        self.age = int(ages.max()) if ages.numel() else 0

    def before_remind(self, engrams: Callable[[], Engrams]) -> None:
        """Raise where a remind could take a co-firing count beyond the limit; else count the remind."""
        if self.count >= COUNTER_LIMIT:
            self.reset_to(engrams())
            if self.count >= COUNTER_LIMIT:
                raise ValueError(
                    f"remind would take a co-firing count beyond {COUNTER_LIMIT} (int32): the engrams that fired "
                    "together that often must be forgotten first (reset_memory or reset_memory_rows)"
                )
        self.count += 1

    def before_adjust(self, engrams: Callable[[], Engrams]) -> None:
        """Raise where an adjust could take an age beyond the limit; else count the adjust."""
        if self.age >= COUNTER_LIMIT:
            self.reset_to(engrams())
            if self.age >= COUNTER_LIMIT:
                raise ValueError(
                    f"adjust_lifespan_and_memories would take an engram's age beyond {COUNTER_LIMIT} (int32): "
                    "forget it first (reset_memory or reset_memory_rows)"
                )
        self.age += 1


def max_live_id(fields: dict) -> int:
    """The largest id among live engrams of a state's tensors, -1 when there is none."""
    live = fields["engrams_types"] != EngramType.NULL.value
    ids = fields["engram_ids"][live]
    return int(ids.max()) if ids.numel() else -1


def check_engrams(engrams: Engrams, track_age: bool, track_id: bool) -> "CounterBounds":
    """Engrams assigned to a memory: the memory's tracking flags, and the values a state may hold; returns their
    ``CounterBounds``."""
    for flag, tracked, field in (("track_age", track_age, "age"), ("track_id", track_id, "engram_ids")):
        given = getattr(engrams, "track_engram_id" if field == "engram_ids" else "track_age")
        if bool(given) != bool(tracked) or (tracked and getattr(engrams, field) is None):
            raise ValueError(
                f"the memory has {flag}={tracked}, the engrams {'do' if given else 'do not'} track {field}: "
                "build them with the memory's flags"
            )
    engrams_from_state(engrams._fields(), track_age, track_id)
    return CounterBounds.of(engrams)


def memoria_state(
    config: dict,
    engrams: Engrams,
    timestep: int,
    next_engram_id: int,
    ext_dtype: torch.dtype,
    history: Optional[List[HistoryManager]],
    rows: Optional[dict],
) -> dict:
    """A memory's state dict: its engrams (copies), counters, flags and history; with independent rows also every
    row's own state and generator (``rows``, ``IndependentRows.state()``), ``engrams`` then being the stacked view, for
    reading only."""
    state = {
        "format": STATE_FORMAT,
        "config": config,
        "timestep": timestep,
        "next_engram_id": next_engram_id,
        "ext_dtype": str(ext_dtype).replace("torch.", ""),
        "engrams": {name: getattr(engrams, name).clone() for name in FIELDS if getattr(engrams, name) is not None},
        # with independent rows every row's own state holds its history
        "history": None if history is None or rows is not None else [entry.state_dict() for entry in history],
    }
    if rows is not None:
        state["rows"] = rows
    return state


class LoadedState(NamedTuple):
    """A checked state dict, ready to be taken over by a memory."""

    engrams: Engrams
    timestep: int
    next_engram_id: int
    ext_dtype: torch.dtype
    history: Optional[List[HistoryManager]]
    rows: Optional[List[Any]]  # the row memories, with independent rows
    hidden_dim: int


def read_memoria_state(
    state: Any, config: dict, restore_rows: Optional[Callable[[dict, Any], list]], device: Optional[torch.device]
) -> LoadedState:
    """Check ``state`` against a memory with ``config`` (and, with independent rows, ``restore_rows``, which checks and
    builds the rows of ``state["rows"]``): every field, before anything changes. Raises ``ValueError`` naming what is
    wrong."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"not a Memoria state dict (expected a dict with format {STATE_FORMAT!r})")
    missing = {"config", "timestep", "next_engram_id", "engrams", "history"} - set(state)
    if missing:
        raise ValueError(f"Memoria state dict is missing {sorted(missing)}")
    if not isinstance(state["config"], dict):
        raise ValueError(f"Memoria state dict config must be a dict, got {type(state['config']).__name__}")
    saved_config = {"independent_rows": False, **state["config"]}  # states saved before the flag existed
    if saved_config != config:
        differences = {
            key: (saved_config.get(key), value) for key, value in config.items() if saved_config.get(key) != value
        }
        raise ValueError(f"state was saved by a differently configured memory (saved, this): {differences}")
    track_age, track_id = config["track_age"], config["track_id"]
    engrams = engrams_from_state(state["engrams"], track_age, track_id)
    history = None
    if state["history"] is not None:
        if not isinstance(state["history"], list) or len(state["history"]) != engrams.batch_size:
            raise ValueError("Memoria state dict history must hold one entry per batch row")
        history = []
        for entry in state["history"]:
            manager = HistoryManager()
            manager.load_state_dict(entry)
            history.append(manager)
    counters = [state["timestep"], state["next_engram_id"]]
    if any(isinstance(value, bool) or not isinstance(value, int) or value < 0 for value in counters):
        raise ValueError(f"timestep and next_engram_id must be non-negative ints, got {counters}")
    if counters[1] > INT32_MAX:
        raise ValueError(f"next_engram_id must be at most {INT32_MAX} (ids are int32), got {counters[1]}")
    if track_id and "rows" not in state and max_live_id(state["engrams"]) >= counters[1]:
        raise ValueError(
            f"next_engram_id {counters[1]} is not above the largest stored id {max_live_id(state['engrams'])}: "
            "new engrams would repeat ids"
        )
    ext_dtype = getattr(torch, str(state.get("ext_dtype", "float32")), None)
    if ext_dtype not in DATA_DTYPES:
        raise ValueError(f"ext_dtype must name a floating dtype, got {state.get('ext_dtype')!r}")

    rows, hidden_dim = None, 0
    if restore_rows is not None and "rows" not in state and engrams.batch_size:
        # without them the rows would start with fresh generators and ids counting from 0 again (duplicate ids)
        raise ValueError("an independent-rows state with engrams must hold 'rows' (every row's state and generator)")
    if restore_rows is not None and "rows" in state:
        if not isinstance(state["rows"], dict):
            raise ValueError("Memoria state dict rows must be a dict (IndependentRows.state())")
        rows = restore_rows(state["rows"], device)
        hidden_dim = state["rows"].get("hidden_dim", 0)
        if len(rows) != engrams.batch_size:
            raise ValueError(f"state holds {len(rows)} row states for a batch of {engrams.batch_size}")
    if device is not None:
        engrams = engrams.to(device)
    return LoadedState(engrams, counters[0], counters[1], ext_dtype, history, rows, hidden_dim)
