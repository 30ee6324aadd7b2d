"""The state dict of a row's history: a few columns of tensors (version 2), read back with every field checked.

Each per-engram field of every kept step is one column, the steps end to end (``lengths`` says where each starts),
so that saving and loading cost a handful of tensors whatever the length of the history; version 1 (one dict of
tensors per step, what earlier versions wrote) is read too. ``read_state`` checks every field before anything
changes (``ValueError`` naming the field and step) and bounds the structure: no object may appear twice in a state
(a small file could otherwise name one record a million times) and no tensor may claim more elements than its
storage holds, so the work of a load grows with the bytes read. What is read is copied: a history never shares a
tensor with a state it gave or took.

Shapes: S steps kept, E the live engrams of every step end to end (the sum of ``lengths``).
"""

import functools
from typing import Any, Optional, Union

import torch

from ..summary import summary_as_plain, summary_from_plain
from .record import CountModel, IdLookup, Record

STATE_VERSION = 2
INT32_MAX = 2**31 - 1
#: The columns of a version 2 state and the kind of each: per step [S] or per entry (end to end).
COLUMNS = {
    "lengths": "integer",  # [S] live engrams of each step
    "ids": "integer",  # [E]
    "types": "integer",  # [E] EngramType values 1..3
    "lifespan": "floating",  # [E]
    "fire_counts": "integer",  # [E]
    "with_age": "bool",  # [S] whether the step tracked ages
    "age": "integer",  # [E of the steps with ages]
    "fire_set_lengths": "integer",  # [S] engrams that fired at each step, -1 where not recorded
    "fire_sets": "integer",  # [their sum] the ids that fired together
    "keyframe_lengths": "integer",  # [S] non-zero co-firing counts kept at each step, -1 where no keyframe
    "keyframe_rows": "integer",  # [their sum] positions among the step's engrams
    "keyframe_cols": "integer",
    "keyframe_counts": "integer",
    "base_steps": "integer",  # [S] the step whose keyframe a step's counts start from, -1 for none
    "events_from": "integer",  # [S] the first step whose fire set adds to them
}
PER_STEP = ("lengths", "with_age", "fire_set_lengths", "keyframe_lengths", "base_steps", "events_from")
MODEL_TENSORS = ("base_i", "base_j", "base_values", "event_steps", "event_ids")
MODEL_KEYS = ("base_step", "events_from") + MODEL_TENSORS
RECORD_KEYS = ("ids", "types", "lifespan", "age", "fire_counts", "summary", "cofired_ids", "keyframe", "base_step")
#: dtypes of a step recorded from a memory (as the memory holds them) and of a hand-made one (``add_summary``)
RECORDED = {"ids": torch.int32, "lifespan": torch.float32, "fire_counts": torch.int32, "age": torch.int32}
HAND_MADE = {"ids": torch.long, "lifespan": torch.float64, "fire_counts": torch.long, "age": torch.long}
FIELDS = ("ids", "lifespan", "fire_counts")


class _Reader:
    """Checks one state, field by field, naming the field in every error; every object it passes is new to it."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.storages: set[int] = set()

    def fail(self, field: str, expected: str, got: Any = None) -> None:
        found = "" if got is None else f", got {got}"
        raise ValueError(f"malformed HistoryManager state: {field} must be {expected}{found}")

    def new(self, value: Any, field: str) -> Any:
        """``value``, refused where the state already holds it elsewhere (a reference that multiplies the work)."""
        if isinstance(value, (dict, list, tuple, torch.Tensor)) and (len(value) if not torch.is_tensor(value) else 1):
            if id(value) in self.seen:
                self.fail(field, "an object of its own (the state names one object in two places)")
            self.seen.add(id(value))
        return value

    def number(self, value: Any, field: str, low: int = 0, high: Optional[int] = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            self.fail(field, f"an int in {low}..{'' if high is None else high}", repr(value)[:80])
        return value

    def tensor(self, value: Any, field: str, kind: str, length: Optional[int] = None) -> torch.Tensor:
        """A 1-D ``kind`` ("integer", "floating" or "bool") tensor of ``length`` entries, as a CPU copy."""
        if not isinstance(value, torch.Tensor):
            self.fail(field, f"a 1-D {kind} tensor", type(value).__name__)
        self.new(value, field)
        if value.layout != torch.strided or value.device.type == "meta":
            self.fail(field, "a dense tensor holding values", f"{value.layout} on {value.device}")
        integer = not value.is_floating_point() and not value.is_complex() and value.dtype != torch.bool
        kind_matches = {"integer": integer, "floating": value.is_floating_point(), "bool": value.dtype == torch.bool}
        if value.dim() != 1 or not kind_matches[kind]:
            self.fail(field, f"a 1-D {kind} tensor", f"{value.dim()}-D {value.dtype}")
        if length is not None and value.numel() != length:
            self.fail(field, f"{length} long", value.numel())
        if value.numel():
            storage = value.untyped_storage()
            if value.numel() * value.element_size() > storage.nbytes() or storage.data_ptr() in self.storages:
                self.fail(field, "a tensor with storage of its own, holding its elements")
            self.storages.add(storage.data_ptr())
        return value.detach().to("cpu", copy=True)

    def items(self, value: Any, field: str, length: Optional[int] = None) -> Union[list, tuple]:
        """A list or tuple (of ``length`` items)."""
        if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
            self.fail(field, "a list" if length is None else f"a tuple of {length}", type(value).__name__)
        return self.new(value, field)

    def integer(self, value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, "an int", repr(value)[:80])
        return value

    def real(self, value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(field, "a number", repr(value)[:80])
        return value

    def first(self, bad: torch.Tensor, step_of: torch.Tensor, field: str, expected: str) -> None:
        """Fail naming the first step where ``bad`` (one entry per entry of ``step_of``, the step of each) holds."""
        if bool(bad.any()):
            self.fail(f"{field} of step {int(step_of[bad][0])}", expected)

    def subset(self, ids: torch.Tensor, of: IdLookup, field: str, where: str) -> None:
        if bool((of.positions(ids) < 0).any()):
            self.fail(field, f"ids of engrams alive at {where}")


def _column(values: list, dtype: Optional[torch.dtype] = None, least: torch.dtype = torch.int32) -> torch.Tensor:
    """The tensors end to end, as a new tensor of ``dtype`` (default: the narrowest from ``least`` up that holds
    every one's)."""
    if dtype is None:
        dtype = functools.reduce(torch.promote_types, (value.dtype for value in values), least)
    return torch.cat([value.to(dtype) for value in values]) if values else torch.zeros(0, dtype=dtype)


def _lengths(values: list) -> torch.Tensor:
    return torch.tensor([-1 if value is None else value.numel() for value in values], dtype=torch.long)


def pack_state(history: Any) -> dict[str, Any]:
    """``history``'s state dict (version 2): new tensors, numbers, strings and lists only."""
    records = history._records
    keyframes = [record.keyframe for record in records if record.keyframe is not None]
    model = history._model
    return {
        "version": STATE_VERSION,
        "max_steps": history.max_steps,
        "hidden": history._hidden,
        "dropped": history._dropped,
        "lengths": _lengths([record.ids for record in records]),
        "ids": _column([record.ids for record in records]),
        "types": _column([record.types for record in records], torch.uint8),
        "lifespan": _column([record.lifespan for record in records], least=torch.float32),
        "fire_counts": _column([record.fire_counts for record in records]),
        "with_age": torch.tensor([record.age is not None for record in records], dtype=torch.bool),
        "age": _column([record.age for record in records if record.age is not None]),
        "fire_set_lengths": _lengths([record.cofired_ids for record in records]),
        "fire_sets": _column([r.cofired_ids for r in records if r.cofired_ids is not None], torch.long),
        "keyframe_lengths": _lengths([None if r.keyframe is None else r.keyframe[0] for r in records]),
        **{name: _column([k[i] for k in keyframes], torch.int32) for i, name in enumerate(KEYFRAME_COLUMNS)},
        "base_steps": torch.tensor([-1 if r.base_step is None else r.base_step for r in records], dtype=torch.long),
        "events_from": torch.tensor([record.events_from for record in records], dtype=torch.long),
        "summaries": [[t, summary_as_plain(r.summary)] for t, r in enumerate(records) if r.summary is not None],
        "model": None if model is None else {name: _copy(getattr(model, name)) for name in MODEL_KEYS},
    }


def _copy(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


KEYFRAME_COLUMNS = ("keyframe_rows", "keyframe_cols", "keyframe_counts")


def _version_1(reader: _Reader, state: dict) -> dict[str, Any]:
    """A version 1 state (a list of per-step dicts), each tensor checked, as the columns of version 2."""
    records = state.get("records")
    if "model" not in state:
        reader.fail("a version 1 state", "a dict holding records and model")
    if not isinstance(records, list):
        reader.fail("records", "a list", type(records).__name__)
    reader.new(records, "records")
    entries = []
    for index, entry in enumerate(records):
        field = f"records[{index}]"
        if not isinstance(entry, dict) or not set(RECORD_KEYS) <= set(entry):
            reader.fail(field, f"a dict of {list(RECORD_KEYS)}", type(entry).__name__)
        reader.new(entry, field)
        ids = reader.tensor(entry["ids"], f"{field}['ids']", "integer")
        found = {"ids": ids, "base_step": entry["base_step"], "events_from": entry.get("events_from", 0)}
        for name, kind in (("types", "integer"), ("lifespan", "floating"), ("fire_counts", "integer")):
            found[name] = reader.tensor(entry[name], f"{field}[{name!r}]", kind, ids.numel())
        found["age"] = None if entry["age"] is None else reader.tensor(entry["age"], f"{field}['age']", "integer")
        fired = entry["cofired_ids"]
        found["cofired_ids"] = None if fired is None else reader.tensor(fired, f"{field}['cofired_ids']", "integer")
        found["keyframe"] = None
        if entry["keyframe"] is not None:
            parts = reader.items(entry["keyframe"], f"{field}['keyframe']", 3)
            found["keyframe"] = [reader.tensor(p, f"{field}['keyframe'][{i}]", "integer") for i, p in enumerate(parts)]
        for name in ("base_step", "events_from"):
            if found[name] is not None:
                reader.number(found[name], f"{field}[{name!r}]", -1)
        entries.append((found, entry["summary"]))
    keyframes = [found["keyframe"] for found, _ in entries if found["keyframe"] is not None]
    if any(not k[0].numel() == k[1].numel() == k[2].numel() for k in keyframes):
        reader.fail("records[...]['keyframe']", "three tensors of one length (rows, columns, counts)")
    steps = [found for found, _ in entries]
    return {
        "max_steps": None,
        "hidden": 0,
        "dropped": 0,
        **{name: _column([s[name] for s in steps], torch.long) for name in ("ids", "fire_counts")},
        "lengths": _lengths([s["ids"] for s in steps]),
        "types": _column([s["types"] for s in steps], torch.long),
        "lifespan": _column([s["lifespan"] for s in steps], torch.float64),
        "with_age": torch.tensor([s["age"] is not None for s in steps], dtype=torch.bool),
        "age": _column([s["age"] for s in steps if s["age"] is not None], torch.long),
        "fire_set_lengths": _lengths([s["cofired_ids"] for s in steps]),
        "fire_sets": _column([s["cofired_ids"] for s in steps if s["cofired_ids"] is not None], torch.long),
        "keyframe_lengths": _lengths([None if s["keyframe"] is None else s["keyframe"][0] for s in steps]),
        **{name: _column([k[i] for k in keyframes], torch.long) for i, name in enumerate(KEYFRAME_COLUMNS)},
        "base_steps": torch.tensor([-1 if s["base_step"] is None else s["base_step"] for s in steps]).long(),
        "events_from": torch.tensor([s["events_from"] for s in steps], dtype=torch.long),
        "summaries": [[t, summary] for t, (_, summary) in enumerate(entries) if summary is not None],
        "model": state["model"],
    }


def read_state(state: Any, make: Any) -> Any:
    """A new history (``make(max_steps=...)``) holding ``state``; ``ValueError`` naming the first bad field."""
    if not isinstance(state, dict) or state.get("version") not in (1, 2):
        raise ValueError("not a HistoryManager state (expected a dict with version 1 or 2)")
    reader = _Reader()
    if state["version"] == 1:
        state, reader = _version_1(reader, state), _Reader()  # the new columns are checked as a version 2 state
    missing = set(COLUMNS) | {"max_steps", "hidden", "dropped", "summaries", "model"}
    if not missing <= set(state):
        reader.fail("a HistoryManager state", f"a dict holding {sorted(missing)}")
    found = {name: reader.tensor(state[name], name, kind) for name, kind in COLUMNS.items()}
    lengths = found["lengths"]
    steps = lengths.numel()
    for name in PER_STEP:
        if found[name].numel() != steps:
            reader.fail(name, f"one entry per step ({steps})", found[name].numel())
    step_index = torch.arange(steps)
    entries = found["ids"].numel()  # the lengths must add up to it before anything is sized by them
    reader.first((lengths < 0) | (lengths > entries), step_index, "lengths", f"in 0..{entries} (the ids there are)")
    if int(lengths.sum()) != entries:
        reader.fail("ids", f"one entry per engram of every step ({int(lengths.sum())})", entries)
    step_of = step_index.repeat_interleave(lengths)  # [E]
    for name in ("types", "lifespan", "fire_counts"):
        if found[name].numel() != entries:
            reader.fail(name, f"one entry per engram of every step ({entries})", found[name].numel())
    types = found["types"]
    reader.first((types < 1) | (types > 3), step_of, "types", "EngramType values 1..3 (WORKING, SHORTTERM, LONGTERM)")
    with_age = found["with_age"]
    if found["age"].numel() != int(lengths[with_age].sum()):
        reader.fail("age", "one entry per engram of every step with ages", found["age"].numel())
    sizes = {}
    for name, column in (("fire_set_lengths", "fire_sets"), ("keyframe_lengths", "keyframe_rows")):
        too_long = found[name] > found[column].numel()
        reader.first((found[name] < -1) | too_long, step_index, name, f"-1 (none) or a length of {column}")
        sizes[name] = found[name].clamp(min=0)
        if found[column].numel() != int(sizes[name].sum()):
            reader.fail(column, f"as long as {name} say", found[column].numel())
    if not found["keyframe_rows"].numel() == found["keyframe_cols"].numel() == found["keyframe_counts"].numel():
        reader.fail("keyframe_rows, keyframe_cols and keyframe_counts", "of one length")

    # ids distinct within a step, fire sets among their step's ids: (step, id) pairs as single keys
    fired_step = step_index.repeat_interleave(sizes["fire_set_lengths"])
    values, inverse = torch.unique(torch.cat([found["ids"], found["fire_sets"]]), return_inverse=True)
    id_keys = step_of * values.numel() + inverse[: step_of.numel()]
    fired_keys = fired_step * values.numel() + inverse[step_of.numel() :]
    for keys, of, name in ((id_keys, step_of, "ids"), (fired_keys, fired_step, "fire_sets")):
        ordered = keys.sort().values
        reader.first(ordered[1:] == ordered[:-1], ordered[1:] // max(values.numel(), 1), name, "distinct")
    reader.first(~torch.isin(fired_keys, id_keys), fired_step, "fire_sets", "ids of engrams alive at that step")
    keyframe_step = step_index.repeat_interleave(sizes["keyframe_lengths"])
    limit = lengths[keyframe_step]
    for name in ("keyframe_rows", "keyframe_cols"):
        reader.first((found[name] < 0) | (found[name] >= limit), keyframe_step, name, "positions of the step's engrams")
    counts = found["keyframe_counts"]
    reader.first((counts < 0) | (counts > INT32_MAX), keyframe_step, "keyframe_counts", f"counts in 0..{INT32_MAX}")

    summaries = _summaries(reader, state["summaries"], steps, found["ids"], lengths)
    recorded = torch.ones(steps, dtype=torch.bool)
    recorded[list(summaries)] = False
    # a step recorded from a memory holds its int32 values (and is read back as such)
    aged_step = step_index[with_age].repeat_interleave(lengths[with_age])
    for name, of in (("ids", step_of), ("fire_counts", step_of), ("age", aged_step)):
        outside = (found[name] < -INT32_MAX - 1) | (found[name] > INT32_MAX)
        reader.first(outside & recorded[of], of, name, "int32 values in a step recorded from a memory")
    base, events_from = found["base_steps"], found["events_from"]
    reader.first(
        (base < -1) | (base > step_index), step_index, "base_steps", "-1 or the index of this or an earlier step"
    )
    has_base = base >= 0
    reader.first(recorded & ~has_base, step_index, "base_steps", "a step's index where the step holds no summary")
    reader.first(
        has_base & (found["keyframe_lengths"][base.clamp(min=0)] < 0), step_index, "base_steps", "a keyframe's step"
    )
    reader.first(has_base & (events_from != base + 1), step_index, "events_from", "its base step + 1")
    without = torch.where(found["fire_set_lengths"] < 0, step_index, -1).cummax(dim=0).values if steps else base
    reader.first(has_base & (without >= events_from), step_index, "fire_set_lengths", "recorded from the base step on")

    max_steps, hidden, dropped = state["max_steps"], state["hidden"], state["dropped"]
    max_steps = None if max_steps is None else reader.number(max_steps, "max_steps", 1)
    hidden, dropped = reader.number(hidden, "hidden", 0, max(steps - 1, 0)), reader.number(dropped, "dropped")
    if max_steps is not None and steps - hidden > max_steps:
        reader.fail("hidden", f"enough to leave at most max_steps ({max_steps}) steps in view", hidden)
    fresh = make(max_steps=max_steps)
    _fill(fresh, found, summaries)
    fresh._model = _read_model(reader, fresh, state["model"])
    fresh._hidden, fresh._dropped = hidden, dropped
    fresh._reset_derived()
    return fresh


def _summaries(reader: _Reader, pairs: Any, steps: int, ids: torch.Tensor, lengths: torch.Tensor) -> dict:
    """Step -> its hand-made summary, checked against the step's ids."""
    starts = ([0] + lengths.cumsum(0).tolist())[:-1]
    found = {}
    for index, pair in enumerate(reader.items(pairs, "summaries")):
        step, encoded = reader.items(pair, f"summaries[{index}]", 2)
        step = reader.number(step, f"summaries[{index}][0]", 0, steps - 1)
        if step in found:
            reader.fail(f"summaries[{index}][0]", "a step without another summary", step)
        found[step] = summary_from_plain(reader, encoded, f"summaries[{index}][1]")
        if list(found[step].engrams) != ids[starts[step] : starts[step] + int(lengths[step])].tolist():
            reader.fail(f"summaries[{index}][1]", "the summary of the step's engrams (its ids, in order)")
    return found


def _fill(fresh: Any, found: dict, summaries: dict) -> None:
    """The records of the checked columns, each field a tensor of its own in the dtype its kind of step has."""
    # whole columns are cast once, each step's fields then being views of them (of this load's own copies)
    sizes, aged = found["lengths"].tolist(), found["lengths"][found["with_age"]].tolist()
    kinds = {"recorded": RECORDED, **({"hand-made": HAND_MADE} if summaries else {})}
    split = {
        kind: {name: found[name].to(dtypes[name]).split(sizes) for name in FIELDS} for kind, dtypes in kinds.items()
    }
    ages = {kind: iter(found["age"].to(dtypes["age"]).split(aged)) for kind, dtypes in kinds.items()}
    types = found["types"].to(torch.uint8).split(sizes)
    present = {name: found[name][found[name] >= 0].tolist() for name in ("fire_set_lengths", "keyframe_lengths")}
    fire_sets = iter(found["fire_sets"].split(present["fire_set_lengths"]))
    keyframe_sizes = present["keyframe_lengths"]
    keyframes = zip(*(iter(found[name].split(keyframe_sizes)) for name in KEYFRAME_COLUMNS))
    for step, (with_age, fired, keyframe, base, events_from) in enumerate(
        zip(
            *(
                found[name].tolist()
                for name in ("with_age", "fire_set_lengths", "keyframe_lengths", "base_steps", "events_from")
            )
        )
    ):
        kind = "recorded" if step not in summaries else "hand-made"
        record = Record()
        record.ids, record.lifespan = split[kind]["ids"][step], split[kind]["lifespan"][step]
        record.types, record.fire_counts = types[step], split[kind]["fire_counts"][step]
        record.age = next(ages[kind]) if with_age else None
        if with_age and len(kinds) == 2:
            next(ages["hand-made" if kind == "recorded" else "recorded"])  # (both walk the steps with ages)
        record.cofired_ids = next(fire_sets).long() if fired >= 0 else None
        record.keyframe = tuple(part.int() for part in next(keyframes)) if keyframe >= 0 else None
        record.summary = summaries.get(step)
        record.base_step, record.events_from = (base, events_from) if base >= 0 else (None, events_from)
        fresh._records.append(record)
    if fresh._records:
        fresh._lookup = IdLookup(fresh._records[-1].ids)


def _read_model(reader: _Reader, fresh: Any, saved: Any) -> Optional[CountModel]:
    """The running count model of a state (of its latest step), checked."""
    if saved is None:
        return None
    if not isinstance(saved, dict) or not set(MODEL_KEYS) <= set(saved):
        reader.fail("model", f"None or a dict of {list(MODEL_KEYS)}", type(saved).__name__)
    reader.new(saved, "model")
    if not fresh._records or fresh._records[-1].base_step is None:
        reader.fail("model", "None where the latest step was not recorded from a memory")
    base = reader.number(saved["base_step"], "model['base_step']", 0, len(fresh._records) - 1)
    if base != fresh._records[-1].base_step:
        reader.fail("model['base_step']", "the latest step's base step", base)
    reader.number(saved["events_from"], "model['events_from']", base + 1, base + 1)
    found = {name: reader.tensor(saved[name], f"model[{name!r}]", "integer").long() for name in MODEL_TENSORS}
    if not found["base_i"].numel() == found["base_j"].numel() == found["base_values"].numel():
        reader.fail("model['base_i'], ['base_j'] and ['base_values']", "of one length")
    if found["event_steps"].numel() != found["event_ids"].numel():
        reader.fail("model['event_steps'] and ['event_ids']", "of one length")
    for name in ("base_i", "base_j", "event_ids"):
        reader.subset(found[name], fresh._lookup, f"model[{name!r}]", "the latest step")
    steps = found["event_steps"]
    if steps.numel() and (int(steps.min()) <= base or int(steps.max()) >= len(fresh._records)):
        reader.fail("model['event_steps']", f"step indices in {base + 1}..{len(fresh._records) - 1}")
    if found["base_values"].numel() and int(found["base_values"].min()) < 0:
        reader.fail("model['base_values']", "non-negative counts")
    model = CountModel(base, (found["base_i"], found["base_j"]), found["base_values"])
    model.event_steps, model.event_ids = steps, found["event_ids"]
    return model
