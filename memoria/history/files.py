"""A row's history as a state dict and as a file: plain tensors, numbers, strings and lists, checked on the way in.

``state_dict`` gives copies and ``load_state_dict`` takes copies, so that a history never shares a tensor with what it
gave or was given (a checkpoint loaded with ``torch.load(mmap=True)`` and then overwritten cannot pull the history's
memory away). Every field of a state is checked before anything changes, and its structure is bounded: no object may
appear twice in it (a small file could otherwise name one record a million times) and no tensor may claim more
elements than its storage holds, so the work of a load grows with the bytes read. Files are gzip-compressed
``torch.save`` archives read with ``weights_only=True`` and a bound on their decompressed size (``MAX_FILE_BYTES``).
"""

import gzip
import io
import os
import pickle
import warnings
import zlib
from typing import Any, Optional, Union

import torch

from ..summary import summary_as_plain
from ..types import EngramConnection, EngramInfo, EngramsInfo
from .record import TYPE_VALUES, CountModel, IdLookup

#: ``state_dict``'s format: 1 for a history that keeps every step, 2 adds the window (``max_steps``, ``hidden``,
#: ``dropped``).
STATE_VERSION = 2
#: Marks a file written by ``HistoryManager.save``.
FILE_FORMAT = "memoria-history-1"
#: Most bytes a history file may decompress to before ``load`` refuses it (256 MiB; ``max_bytes`` raises it).
MAX_FILE_BYTES = 2**28
RECORD_TENSORS = ("ids", "types", "lifespan", "age", "fire_counts", "cofired_ids")
MODEL_TENSORS = ("base_i", "base_j", "base_values", "event_steps", "event_ids")


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
        """A 1-D ``kind`` ("integer" or "floating") tensor of ``length`` entries, as a CPU copy."""
        if not isinstance(value, torch.Tensor):
            self.fail(field, f"a 1-D {kind} tensor", type(value).__name__)
        self.new(value, field)
        if value.layout != torch.strided or value.device.type == "meta":
            self.fail(field, "a dense tensor holding values", f"{value.layout} on {value.device}")
        integer = not value.is_floating_point() and not value.is_complex() and value.dtype != torch.bool
        if (
            value.dim() != 1
            or (kind == "integer" and not integer)
            or (kind == "floating" and not value.is_floating_point())
        ):
            self.fail(field, f"a 1-D {kind} tensor", f"{value.dim()}-D {value.dtype}")
        if length is not None and value.numel() != length:
            self.fail(field, f"{length} long (one entry per live engram of its step)", value.numel())
        if value.numel():
            storage = value.untyped_storage()
            if value.numel() * value.element_size() > storage.nbytes() or storage.data_ptr() in self.storages:
                self.fail(field, "a tensor with storage of its own, holding its elements")
            self.storages.add(storage.data_ptr())
        return value.detach().to("cpu", copy=True)

    def ids(self, value: Any, field: str, length: Optional[int] = None) -> torch.Tensor:
        """Distinct engram ids."""
        ids = self.tensor(value, field, "integer", length)
        if ids.numel() and bool((ids.long().sort().values.diff() == 0).any()):
            self.fail(field, "distinct engram ids")
        return ids

    def subset(self, ids: torch.Tensor, of: IdLookup, field: str, where: str) -> None:
        if bool((of.positions(ids) < 0).any()):
            self.fail(field, f"ids of engrams alive at {where}")


def _items(reader: _Reader, value: Any, field: str, length: Optional[int] = None) -> Union[list, tuple]:
    if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
        reader.fail(field, "a list" if length is None else f"a tuple of {length}", type(value).__name__)
    return reader.new(value, field)


def _integer(reader: _Reader, value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        reader.fail(field, "an int", repr(value)[:80])
    return value


def _real(reader: _Reader, value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        reader.fail(field, "a number", repr(value)[:80])
    return value


def _connection(reader: _Reader, value: Any, field: str) -> EngramConnection:
    source, target, weight, cofire_count = _items(reader, value, field, 4)
    return EngramConnection(
        _integer(reader, source, field), _integer(reader, target, field), _real(reader, weight, field),
        _integer(reader, cofire_count, field),
    )  # fmt: skip


def summary_from_plain(reader: _Reader, encoded: Any, field: str) -> EngramsInfo:
    """The ``EngramsInfo`` of ``summary_as_plain``'s output, every entry checked."""
    names = ("engrams", "edges", "edge_keys", "working", "shortterm", "longterm")
    if not isinstance(encoded, dict) or not set(names) <= set(encoded):
        reader.fail(field, f"None or a dict of {list(names)}", type(encoded).__name__)
    reader.new(encoded, field)
    engrams = {}
    for index, entry in enumerate(_items(reader, encoded["engrams"], f"{field}['engrams']")):
        where = f"{field}['engrams'][{index}]"
        engram_id, type_name, lifespan, age, fire_count, outgoings, incoming = _items(reader, entry, where, 7)
        if not isinstance(type_name, str) or type_name not in TYPE_VALUES:
            reader.fail(f"{where} type", f"one of {list(TYPE_VALUES)}", repr(type_name)[:80])
        engrams[_integer(reader, engram_id, where)] = EngramInfo(
            id=engram_id,
            type=type_name,
            lifespan=_real(reader, lifespan, where),
            age=None if age is None else _integer(reader, age, where),
            fire_count=_integer(reader, fire_count, where),
            outgoings=tuple(_connection(reader, e, where) for e in _items(reader, outgoings, where)),
            incoming=tuple(_connection(reader, e, where) for e in _items(reader, incoming, where)),
        )
    edges, keys = _items(reader, encoded["edges"], f"{field}['edges']"), encoded["edge_keys"]
    if len(_items(reader, keys, f"{field}['edge_keys']")) != len(edges):
        reader.fail(f"{field}['edge_keys']", "as long as its edges")
    by_type = {
        name: tuple(_integer(reader, i, f"{field}[{name!r}]") for i in _items(reader, encoded[name], field))
        for name in ("working", "shortterm", "longterm")
    }
    return EngramsInfo(
        engrams=engrams,
        edges={
            tuple(_integer(reader, i, f"{field}['edge_keys']") for i in _items(reader, key, field, 2)): _connection(
                reader, edge, f"{field}['edges']"
            )
            for key, edge in zip(keys, edges)
        },
        **by_type,
    )


RECORD_KEYS = ("ids", "types", "lifespan", "age", "fire_counts", "summary", "cofired_ids", "keyframe", "base_step")
MODEL_KEYS = ("base_step", "events_from") + MODEL_TENSORS
INT32_MAX = 2**31 - 1


def _read_record(reader: _Reader, fresh: Any, entry: Any, index: int, last_without_fire_set: int) -> int:
    """Append ``entry`` (``records[index]`` of a state) to ``fresh``, checked; returns the index of the latest record
    without a fire set (steps after a keyframe must all have one: their counts replay them)."""
    field = f"records[{index}]"
    if not isinstance(entry, dict) or not set(RECORD_KEYS) <= set(entry):
        reader.fail(field, f"a dict of {list(RECORD_KEYS)}", type(entry).__name__)
    reader.new(entry, field)
    ids = reader.ids(entry["ids"], f"{field}['ids']")
    length = ids.numel()
    types = reader.tensor(entry["types"], f"{field}['types']", "integer", length)
    if length and (int(types.min()) < 1 or int(types.max()) > 3):
        reader.fail(f"{field}['types']", "EngramType values 1..3 (WORKING, SHORTTERM, LONGTERM)")
    lifespan = reader.tensor(entry["lifespan"], f"{field}['lifespan']", "floating", length)
    age = None if entry["age"] is None else reader.tensor(entry["age"], f"{field}['age']", "integer", length)
    fire_counts = reader.tensor(entry["fire_counts"], f"{field}['fire_counts']", "integer", length)
    record, _ = fresh._append(ids, types.to(torch.uint8), lifespan, age, fire_counts)
    if entry["summary"] is not None:
        record.summary = summary_from_plain(reader, entry["summary"], f"{field}['summary']")
        if list(record.summary.engrams) != ids.tolist():
            reader.fail(f"{field}['summary']", "the summary of the step's engrams (its ids, in order)")
    if entry["cofired_ids"] is not None:
        record.cofired_ids = reader.ids(entry["cofired_ids"], f"{field}['cofired_ids']")
        reader.subset(record.cofired_ids, fresh._lookup, f"{field}['cofired_ids']", "that step")
    else:
        last_without_fire_set = index
    if entry["keyframe"] is not None:
        parts = _items(reader, entry["keyframe"], f"{field}['keyframe']", 3)
        rows, cols, values = (reader.tensor(p, f"{field}['keyframe'][{k}]", "integer") for k, p in enumerate(parts))
        if not rows.numel() == cols.numel() == values.numel():
            reader.fail(f"{field}['keyframe']", "three tensors of one length (rows, columns, counts)")
        if rows.numel() and (int(torch.cat([rows, cols]).min()) < 0 or int(torch.cat([rows, cols]).max()) >= length):
            reader.fail(
                f"{field}['keyframe']", f"rows and columns in 0..{length - 1} (positions of the step's engrams)"
            )
        if values.numel() and (int(values.min()) < 0 or int(values.max()) > INT32_MAX):
            reader.fail(f"{field}['keyframe'][2]", f"counts in 0..{INT32_MAX}")
        record.keyframe = (rows.int(), cols.int(), values.int())
    if entry["base_step"] is None:
        if record.summary is None:
            reader.fail(f"{field}['base_step']", "the index of a step with a keyframe where the step holds no summary")
        return last_without_fire_set
    base = reader.number(entry["base_step"], f"{field}['base_step']", 0, index)
    if fresh._records[base].keyframe is None:
        reader.fail(f"{field}['base_step']", "the index of a step with a keyframe", base)
    record.base_step = base
    record.events_from = reader.number(entry.get("events_from"), f"{field}['events_from']", base + 1, base + 1)
    if last_without_fire_set >= record.events_from:
        reader.fail(f"{field}['base_step']", f"a step after which every step has a fire set (step {index} has not)")
    return last_without_fire_set


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


def read_state(state: Any, make: Any) -> Any:
    """A new history (``make(max_steps=...)``) holding ``state``; ``ValueError`` naming the first bad field."""
    if not isinstance(state, dict) or state.get("version") not in (1, 2) or not isinstance(state.get("records"), list):
        raise ValueError("not a HistoryManager state (expected a dict with version 1 or 2 and a list of records)")
    reader = _Reader()
    records = reader.new(state["records"], "records")
    max_steps, hidden, dropped = None, 0, 0
    if state["version"] == 2:
        if not {"max_steps", "hidden", "dropped"} <= set(state):
            reader.fail("a version 2 state", "a dict holding max_steps, hidden and dropped")
        if state["max_steps"] is not None:
            max_steps = reader.number(state["max_steps"], "max_steps", 1)
        hidden = reader.number(state["hidden"], "hidden", 0, max(len(records) - 1, 0))
        dropped = reader.number(state["dropped"], "dropped")
        if max_steps is not None and len(records) - hidden > max_steps:
            reader.fail(
                "records", f"at most max_steps ({max_steps}) steps after the hidden ones", len(records) - hidden
            )
    if "model" not in state:
        reader.fail("model", "present (None or the count model)")
    fresh = make(max_steps=max_steps)
    last_without_fire_set = -1
    for index, entry in enumerate(records):
        last_without_fire_set = _read_record(reader, fresh, entry, index, last_without_fire_set)
    fresh._model = _read_model(reader, fresh, state["model"])
    fresh._hidden, fresh._dropped = hidden, dropped
    fresh._reset_derived()
    return fresh


def read_gzip(path: Union[str, "os.PathLike[str]"], max_bytes: Optional[int]) -> bytes:
    """The decompressed bytes of a gzip file, refused past ``max_bytes`` (None: no bound) without reading further."""
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)):
        raise TypeError(f"max_bytes must be None or an int, got {type(max_bytes).__name__}")
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
    try:
        with gzip.open(path, "rb") as file:
            content = file.read() if max_bytes is None else file.read(max_bytes + 1)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is not a gzip-compressed history file: {error}") from None
    if max_bytes is not None and len(content) > max_bytes:
        raise ValueError(
            f"{path} decompresses to more than max_bytes={max_bytes} bytes ({max_bytes / 2**20:g} MiB): refused; "
            "for a larger history file you trust, raise max_bytes"
        )
    if not content:
        raise ValueError(f"{path} is empty")
    return content


class Files:
    """The persistence half of ``HistoryManager``: state dicts, pickles and gzip files."""

    def state_dict(self) -> dict[str, Any]:
        """Copies of the history as plain tensors, numbers and lists (safe for ``torch.load(weights_only=True)``)."""
        records = []
        for record in self._records:
            records.append(
                {
                    **{name: _copy(getattr(record, name)) for name in RECORD_TENSORS},
                    "summary": None if record.summary is None else summary_as_plain(record.summary),
                    "keyframe": None if record.keyframe is None else [part.clone() for part in record.keyframe],
                    "base_step": record.base_step,
                    "events_from": record.events_from,
                }
            )
        model = None
        if self._model is not None:
            model = {name: _copy(getattr(self._model, name)) for name in MODEL_KEYS}
        state = {"version": 1, "records": records, "model": model}
        if self.max_steps is not None or self._hidden or self._dropped:
            state.update(version=STATE_VERSION, max_steps=self.max_steps, hidden=self._hidden, dropped=self._dropped)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace this history with one saved by ``state_dict`` (copied; checked before anything changes, with a
        ``ValueError`` naming the first bad field)."""
        self.__dict__.update(read_state(state, type(self)).__dict__)

    def __getstate__(self) -> dict[str, Any]:
        return self.state_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()
        if isinstance(state, dict) and "records" in state:
            self.load_state_dict(state)
        elif isinstance(state, dict) and isinstance(state.get("summaries"), list):
            for summary in state["summaries"]:  # a pickle of the published 1.1.0 HistoryManager: replay its summaries
                self.add_summary(summary)
        else:
            raise ValueError("not a pickled HistoryManager (neither a state dict nor the published one's summaries)")

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Save to a gzip-compressed ``torch.save`` of ``state_dict()``: tensors, numbers, strings and lists only, so
        that ``load`` reads it with ``torch.load(weights_only=True)`` and a history file can never run code."""
        buffer = io.BytesIO()
        torch.save({"format": FILE_FORMAT, "state": self.state_dict()}, buffer)
        with gzip.open(path, "wb") as file:
            file.write(buffer.getvalue())

    @classmethod
    def load(
        cls,
        path: Union[str, "os.PathLike[str]"],
        allow_pickle: bool = False,
        max_bytes: Optional[int] = MAX_FILE_BYTES,
    ) -> Any:
        """Load a history written by ``save``.

        Args:
            path: the gzip file.
            allow_pickle: also read a gzip-compressed pickle (what the published package and earlier versions of this
                one wrote). Unpickling runs whatever code the file names, so pass it only for a file you trust; it
                warns. Without it such a file is refused with a ``ValueError``.
            max_bytes: most bytes the file may decompress to (``MAX_FILE_BYTES``, 256 MiB); a larger file is refused
                with a ``ValueError`` before more is read. None: no bound, for a file you trust.
        """
        content = read_gzip(path, max_bytes)
        if content[:2] == b"PK":  # torch.save's zip container
            try:
                saved = torch.load(io.BytesIO(content), weights_only=True, map_location="cpu")
            except Exception as error:  # the unpickler refuses anything but data with pickle.UnpicklingError and kin
                raise ValueError(f"{path} is not a readable history file: {error}") from None
            if not isinstance(saved, dict) or saved.get("format") != FILE_FORMAT:
                raise ValueError(f"{path} is not a history file (expected format {FILE_FORMAT!r})")
            return read_state(saved.get("state"), cls)
        if not allow_pickle:
            raise ValueError(
                f"{path} is a pickle (written by memoria-pytorch 1.x or an older version of this package). Unpickling "
                "can run any code the file names: pass allow_pickle=True only for a file you trust, then save() it "
                "again to get a data-only file"
            )
        warnings.warn(f"unpickling {path}: this runs whatever code the file names; save() it again to stop needing it")
        loaded = pickle.loads(content)
        if not isinstance(loaded, cls):
            raise ValueError(f"{path} holds a {type(loaded).__name__}, not a HistoryManager")
        return loaded


def _copy(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value
