"""The bad calls of the API fuzz (``benchmarks/fuzz_api.py``): per public entry point, arguments it must refuse.

A ``Case`` names the entry point, the bad argument and what is wrong with it, and knows how to make the call on a
fresh copy of a live object. ``make_case(seed, index)`` picks one deterministically, so that the worker process that
runs a call can rebuild it from two numbers. Every value here is one that the entry point must refuse with a
``TypeError`` or ``ValueError`` naming the argument (``names``), before anything changes.
"""

import copy
import gzip
import io
import pickle
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch

import memoria
from memoria import Abstractor, Engrams, HistoryManager, Memoria
from memoria.utils import super_unique

BATCH, WIDTH, HIDDEN = 3, 4, 6
CONFIG = dict(num_reminded_stm=4, stm_capacity=6, ltm_search_depth=3, initial_lifespan=3, num_final_ltms=4)
INT32_MAX = 2**31 - 1
# the values of a case are drawn from a generator of their own: the global RNG is part of what a call must not change
_GENERATOR = torch.Generator().manual_seed(0)


def rand(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=_GENERATOR)


@dataclass(frozen=True)
class Case:
    """One bad call: ``call(fixtures)`` runs it on fresh copies and returns the object to compare before and after."""

    target: str  # the entry point, e.g. "Memoria.add_working_memory"
    argument: str  # the bad argument
    what: str  # what is wrong with it
    names: Tuple[str, ...]  # words of which the error message must hold one
    fixture: str  # the live object the call is made on ("" for a constructor or a function)
    call: Callable[[Any], Any]  # called with the fixture's fresh copy
    kinds: Tuple[type, ...] = (TypeError, ValueError)
    setup: Optional[Callable[[Any], None]] = None  # good calls first, on the same copy (what the bad call follows)


class Replace(NamedTuple):
    """A tampered state that replaces the state dict as a whole."""

    value: Any


# ------------------------------------------------------------------ live objects


def build_fixtures() -> Dict[str, Any]:
    """The live objects calls are made on (each call gets a deep copy)."""
    torch.manual_seed(0)
    fixtures: Dict[str, Any] = {}
    for name, kwargs in {
        "batched": dict(keep_history=True, track_id=True, track_age=True),
        "rows": dict(track_id=True, track_age=True, independent_rows=True),
        "plain": {},
    }.items():
        memory = Memoria(**CONFIG, **kwargs)
        for _ in range(6):
            memory.add_working_memory(torch.rand(BATCH, WIDTH, HIDDEN))
            _, indices = memory.remind()
            memory.adjust_lifespan_and_memories(indices, torch.rand(indices.shape) * 3)
        memory.add_working_memory(torch.rand(BATCH, WIDTH, HIDDEN))
        memory.remind()  # between remind and adjust, as a training step is when it adjusts
        fixtures[name] = memory
    fixtures["fresh"] = Memoria(**CONFIG)
    fixtures["engrams"] = fixtures["batched"].engrams.clone()
    fixtures["abstractor"] = Abstractor(4, HIDDEN, 12)
    fixtures["history"] = fixtures["batched"].history[0]
    return fixtures


def indices_of(memory: Memoria) -> torch.Tensor:
    """Indices a remind could have returned for ``memory``: [BatchSize, 3] within its length."""
    return torch.tensor([[0, 1, -1]] * memory.engrams.batch_size)


# ------------------------------------------------------------------ bad values, by kind of argument


def bad_data(good_batch: int = BATCH, good_hidden: int = HIDDEN, fixed: bool = True) -> List[Tuple[str, Callable]]:
    """(what, make) for ``add_working_memory``'s data; ``fixed``: the memory has a batch and hidden size already."""
    good = lambda: rand(good_batch, WIDTH, good_hidden)  # noqa: E731
    values = [
        ("a list", lambda: good().tolist()),
        ("a numpy array", lambda: good().numpy()),
        ("an int", lambda: 3),
        ("None", lambda: None),
        ("a string", lambda: "data"),
        ("rank 1", lambda: rand(good_hidden)),
        ("rank 2", lambda: rand(WIDTH, good_hidden)),
        ("rank 4", lambda: rand(1, good_batch, WIDTH, good_hidden)),
        ("dtype bool", lambda: good() > 0.5),
        ("dtype complex64", lambda: good().to(torch.complex64)),
        ("dtype float8_e4m3fn", lambda: good().to(torch.float8_e4m3fn)),
        ("a NaN", lambda: good().index_fill_(1, torch.tensor([1]), float("nan"))),
        ("an infinity", lambda: good().index_fill_(2, torch.tensor([0]), float("inf"))),
        ("-inf", lambda: good().index_fill_(2, torch.tensor([0]), float("-inf"))),
        ("float64 1e300", lambda: good().double().index_fill_(2, torch.tensor([1]), 1e300)),
        ("float64 3.5e38", lambda: good().double().index_fill_(2, torch.tensor([1]), 3.5e38)),
        ("1e19 (distances overflow)", lambda: good().index_fill_(2, torch.tensor([1]), 1e19)),
        ("-3e38", lambda: good().index_fill_(2, torch.tensor([1]), -3e38)),
        ("a sparse tensor", lambda: good().to_sparse()),
        ("on the meta device", lambda: torch.empty(good_batch, WIDTH, good_hidden, device="meta")),
        ("batch size 0", lambda: rand(0, WIDTH, good_hidden)),
        ("hidden size 0", lambda: rand(good_batch, WIDTH, 0)),
        ("length 10**10 (expanded)", lambda: torch.zeros(()).expand(good_batch, 10**10, good_hidden)),
        ("length 2**31 (expanded)", lambda: torch.zeros(()).expand(good_batch, 2**31, good_hidden)),
        ("hidden 10**12 (expanded)", lambda: torch.zeros(()).expand(good_batch, 1, 10**12)),
    ]
    if not fixed:  # nothing stored: an empty segment of hidden size 4 must not fix the hidden size (checked after)
        values.append(("length 0, hidden size 4", lambda: rand(good_batch, 0, 4)))
    if fixed:
        values += [
            ("batch size 1", lambda: rand(1, WIDTH, good_hidden)),
            ("batch size 4", lambda: rand(good_batch + 1, WIDTH, good_hidden)),
            ("hidden size 5", lambda: rand(good_batch, WIDTH, good_hidden - 1)),
            ("hidden size 12", lambda: rand(good_batch, WIDTH, good_hidden * 2)),
        ]
    return values


def bad_indices(batch: int) -> List[Tuple[str, Callable[[int], Any]]]:
    """(what, make) for per-row indices [BatchSize, K]; ``make(length)`` for a memory of ``length``."""
    return [
        ("float indices", lambda length: torch.zeros(batch, 2)),
        ("bool indices", lambda length: torch.zeros(batch, 2, dtype=torch.bool)),
        ("complex indices", lambda length: torch.zeros(batch, 2, dtype=torch.complex64)),
        ("a list of floats", lambda length: [[0.5, 1.0]] * batch),
        ("a ragged list", lambda length: [[0, 1], [2]] + [[0, 1]] * (batch - 2)),
        ("a string", lambda length: "0, 1"),
        ("None", lambda length: None),
        ("an object", lambda length: object()),
        ("rank 1", lambda length: torch.zeros(2, dtype=torch.long)),
        ("rank 3", lambda length: torch.zeros(batch, 2, 1, dtype=torch.long)),
        ("one row too few", lambda length: torch.zeros(batch - 1, 2, dtype=torch.long)),
        ("one row too many", lambda length: torch.zeros(batch + 1, 2, dtype=torch.long)),
        ("the memory length", lambda length: torch.full((batch, 2), length, dtype=torch.long)),
        ("2**40", lambda length: torch.full((batch, 2), 2**40, dtype=torch.long)),
        ("int64 max (numpy)", lambda length: np.full((batch, 2), 2**63 - 1, dtype=np.int64)),
        ("a Python int beyond int64", lambda length: [[2**70, 0]] * batch),
        ("on the meta device", lambda length: torch.empty(batch, 2, dtype=torch.long, device="meta")),
        ("a sparse tensor", lambda length: torch.zeros(batch, 2, dtype=torch.long).to_sparse()),
    ]


def bad_deltas(shape: Tuple[int, int]) -> List[Tuple[str, Callable]]:
    """(what, make) for lifespan deltas that must broadcast to ``shape`` [BatchSize, K]."""
    batch, width = shape
    return [
        ("a NaN", lambda: torch.full(shape, float("nan"))),
        ("an infinity", lambda: torch.full(shape, float("inf"))),
        ("float64 1e39", lambda: torch.full(shape, 1e39, dtype=torch.float64)),
        ("-1e300", lambda: -1e300),
        ("float('nan') as a number", lambda: float("nan")),
        ("complex", lambda: torch.zeros(shape, dtype=torch.complex64)),
        ("bool", lambda: torch.zeros(shape, dtype=torch.bool)),
        ("True", lambda: True),
        ("a string", lambda: "1.0"),
        ("None", lambda: None),
        ("one column too many", lambda: torch.zeros(batch, width + 1)),
        ("one row too many", lambda: torch.zeros(batch + 1, width)),
        ("rank 3", lambda: torch.zeros(batch, width, 2)),
        ("float8", lambda: torch.zeros(shape).to(torch.float8_e5m2)),
        ("a ragged list", lambda: [[1.0] * width, [1.0]] + [[1.0] * width] * (batch - 2)),
    ]


def bad_rows(batch: int) -> List[Tuple[str, Callable]]:
    return [
        ("the batch size", lambda: batch),
        ("-1", lambda: -1),
        ("a list past the batch", lambda: [0, batch + 2]),
        ("2**40", lambda: 2**40),
        ("a float", lambda: 1.0),
        ("a list of floats", lambda: [0.5]),
        ("a string", lambda: "0"),
        ("None", lambda: None),
        ("an object", lambda: object()),
        ("a mask one too short", lambda: torch.ones(batch - 1, dtype=torch.bool)),
        ("a 2-D mask", lambda: torch.ones(batch, 1, dtype=torch.bool)),
        ("a ragged list", lambda: [[0], [1, 2]]),
        ("complex", lambda: torch.zeros(1, dtype=torch.complex64)),
    ]


def bad_devices() -> List[Tuple[str, Callable]]:
    return [
        ("cuda:9", lambda: "cuda:9"),
        ("meta", lambda: "meta"),
        ("an int", lambda: 3),
        ("nonsense", lambda: "nonsense"),
        ("a list", lambda: ["cpu"]),
        ("mps", lambda: "mps"),
    ]


def bad_counts(maximum: int = INT32_MAX) -> List[Tuple[str, Callable]]:
    return [
        ("-1", lambda: -1),
        ("2**31", lambda: maximum + 1),
        ("2**63", lambda: 2**63),
        ("1.5", lambda: 1.5),
        ("the string '3'", lambda: "3"),
        ("None", lambda: None),
        ("True", lambda: True),
        ("a numpy float", lambda: np.float64(2.0)),
        ("a tensor", lambda: torch.tensor([3])),
    ]


def bad_lifespans() -> List[Tuple[str, Callable]]:
    return [
        ("NaN", lambda: float("nan")),
        ("inf", lambda: float("inf")),
        ("1e39", lambda: 1e39),
        ("-1e300", lambda: -1e300),
        ("the string '1'", lambda: "1"),
        ("None", lambda: None),
        ("True", lambda: True),
        ("a complex", lambda: 1j),
    ]


# ------------------------------------------------------------------ tampered states


def tampered_states(fixture: str) -> List[Tuple[str, Tuple[str, ...], Callable[[dict], Any]]]:
    """(what, names, change) for a memory's own state dict: ``change(state)`` edits a deep copy in place, or returns a
    replacement."""

    def at(path, value):
        def change(state):
            target = state
            for key in path[:-1]:
                target = target[key]
            if value is KeyError:
                del target[path[-1]]
            else:
                target[path[-1]] = value(target[path[-1]]) if callable(value) else value

        return change

    def live_first(state, name, value):
        engrams = state["engrams"]
        row, slot = (engrams["engrams_types"] != 0).nonzero()[0].tolist()
        engrams[name][(row, slot) if name != "induce_counts" else (row, slot, slot)] = value

    states: List[Tuple[str, Tuple[str, ...], Callable]] = [
        ("a list", ("state",), lambda state: Replace([1, 2])),
        ("None", ("state",), lambda state: Replace(None)),
        ("another format", ("state", "format"), at(("format",), "memoria-state-0")),
        ("no engrams", ("engrams",), at(("engrams",), KeyError)),
        ("no config", ("config",), at(("config",), KeyError)),
        ("config a string", ("config",), at(("config",), "gpt2")),
        ("another capacity", ("config", "configured"), at(("config", "stm_capacity"), 99)),
        ("engrams a list", ("engrams",), at(("engrams",), [])),
        ("no lifespan", ("lifespan",), at(("engrams", "lifespan"), KeyError)),
        ("data a list", ("data",), at(("engrams", "data"), [[0.0]])),
        ("int data", ("data",), at(("engrams", "data"), lambda t: t.long())),
        ("NaN data", ("data", "NaN"), at(("engrams", "data"), lambda t: torch.full_like(t, float("nan")))),
        ("data 1e19", ("data",), at(("engrams", "data"), lambda t: t.index_fill(2, torch.tensor([0]), 1e19))),
        ("float64 data 1e300", ("data",), at(("engrams", "data"), lambda t: t.double().fill_(1e300))),
        ("lifespan inf", ("NaN", "lifespan"), at(("engrams", "lifespan"), lambda t: torch.full_like(t, float("inf")))),
        ("a 1x1 lifespan", ("lifespan",), at(("engrams", "lifespan"), torch.zeros(1, 1))),
        ("int64 counts", ("induce_counts",), at(("engrams", "induce_counts"), lambda t: t.long())),
        ("types 7", ("types",), at(("engrams", "engrams_types"), lambda t: torch.full_like(t, 7))),
        ("a sparse lifespan", ("lifespan",), at(("engrams", "lifespan"), lambda t: t.to_sparse())),
        ("timestep -1", ("timestep",), at(("timestep",), -1)),
        ("timestep True", ("timestep",), at(("timestep",), True)),
        ("timestep 1.5", ("timestep",), at(("timestep",), 1.5)),
        ("ext_dtype int64", ("ext_dtype",), at(("ext_dtype",), "int64")),
        ("ext_dtype nonsense", ("ext_dtype",), at(("ext_dtype",), "tensor")),
        ("count 2**31 - 1", ("counts",), lambda state: live_first(state, "induce_counts", INT32_MAX)),
        ("count -3", ("counts",), lambda state: live_first(state, "induce_counts", -3)),
    ]
    if fixture in ("batched", "rows"):
        states += [
            ("next_engram_id 2**40", ("next_engram_id",), at(("next_engram_id",), 2**40)),
            ("age -2", ("ages",), lambda state: live_first(state, "age", -2)),
            ("age 2**31 - 1", ("ages",), lambda state: live_first(state, "age", INT32_MAX)),
            ("id -5", ("ids",), lambda state: live_first(state, "engram_ids", -5)),
        ]
    if fixture == "batched":
        states += [
            ("next_engram_id below the ids", ("next_engram_id",), at(("next_engram_id",), 1)),
            ("history a dict", ("history",), at(("history",), {})),
            ("history too short", ("history",), at(("history",), lambda h: h[:1])),
            ("a history entry None", ("history",), lambda state: state["history"].__setitem__(0, None)),
            ("a history entry a string", ("history",), lambda state: state["history"].__setitem__(0, "x")),
        ]
    if fixture == "rows":
        states += [
            ("rows a list", ("rows",), at(("rows",), [])),
            ("no rows", ("rows",), at(("rows",), KeyError)),
            ("row generators junk", ("generator",), at(("rows", "generators"), lambda g: [torch.zeros(3)] * len(g))),
            ("hidden_dim -1", ("hidden_dim",), at(("rows", "hidden_dim"), -1)),
            ("one row state", ("row",), at(("rows", "rows"), lambda rows: rows[:1])),
            ("generator devices junk", ("generator_devices",), at(("rows", "generator_devices"), "cpu")),
        ]
    return states


def junk_history_files() -> List[Tuple[str, Callable[[Path], Path]]]:
    """(what, write) for files ``HistoryManager.load`` must refuse; ``write(folder)`` makes one, returns its path."""

    def file_with(content: bytes, compress: bool = True) -> Callable[[Path], Path]:
        def write(folder: Path) -> Path:
            path = folder / "history.gz"
            path.write_bytes(gzip.compress(content) if compress else content)
            return path

        return write

    buffer = io.BytesIO()
    torch.save({"format": "nothing"}, buffer)
    return [
        ("random bytes", file_with(bytes(range(256)) * 4, compress=False)),
        ("gzip of random bytes", file_with(bytes(range(256)) * 4)),
        ("a pickle (no opt-in)", file_with(pickle.dumps({"summaries": []}))),
        ("a torch file of the wrong shape", file_with(buffer.getvalue())),
        ("an empty file", file_with(b"", compress=False)),
        ("a folder", lambda folder: folder),
    ]


# ------------------------------------------------------------------ the cases


def _cases() -> List[Callable[[random.Random], Case]]:
    """Makers of one case each, by entry point (a maker picks the bad value with the random source it is given)."""
    makers: List[Callable[[random.Random], Case]] = []

    def pick(rng: random.Random, pool):
        return pool[rng.randrange(len(pool))]

    for fixture in ("batched", "rows", "plain", "fresh"):
        fixed = fixture != "fresh"

        def add(rng, fixture=fixture, fixed=fixed):
            what, make = pick(rng, bad_data(fixed=fixed))
            return Case(
                "Memoria.add_working_memory", "data", what, ("data",), fixture, lambda m: m.add_working_memory(make())
            )

        makers.append(add)
        if not fixed:
            continue

        def adjust_indices(rng, fixture=fixture):
            what, make = pick(rng, bad_indices(BATCH))
            call = lambda m: m.adjust_lifespan_and_memories(make(m.memory_length), torch.ones(BATCH, 2))  # noqa: E731
            return Case("Memoria.adjust_lifespan_and_memories", "indices", what, ("indices",), fixture, call)

        def adjust_deltas(rng, fixture=fixture):
            what, make = pick(rng, bad_deltas((BATCH, 3)))
            call = lambda m: m.adjust_lifespan_and_memories(indices_of(m), make())  # noqa: E731
            return Case(
                "Memoria.adjust_lifespan_and_memories", "lifespan_delta", what, ("lifespan_delta",), fixture, call
            )

        def adjust_twice(rng, fixture=fixture):
            """Finite deltas whose sum is not: the first adjust is good, the second must not make an infinity."""
            delta = rng.choice([3e38, 3.4e38, 2e38])

            def setup(m):
                m.adjust_lifespan_and_memories(indices_of(m), torch.full((BATCH, 3), delta))
                m.add_working_memory(rand(BATCH, WIDTH, HIDDEN))
                m.remind()

            call = lambda m: m.adjust_lifespan_and_memories(indices_of(m), torch.full((BATCH, 3), delta))  # noqa: E731
            what = f"{delta:g} on top of a lifespan of {delta:g}"
            return Case(
                "Memoria.adjust_lifespan_and_memories",
                "lifespan_delta",
                what,
                ("lifespan_delta",),
                fixture,
                call,
                setup=setup,
            )

        def reset_rows(rng, fixture=fixture):
            what, make = pick(rng, bad_rows(BATCH))
            return Case(
                "Memoria.reset_memory_rows", "rows", what, ("rows",), fixture, lambda m: m.reset_memory_rows(make())
            )

        def to_device(rng, fixture=fixture):
            what, make = pick(rng, bad_devices())
            return Case("Memoria.to", "device", what, ("device",), fixture, lambda m: m.to(make()))

        def load(rng, fixture=fixture):
            what, names, change = pick(rng, tampered_states(fixture))

            def call(m):
                state = copy.deepcopy(m.state_dict())
                replaced = change(state)
                return m.load_state_dict(replaced.value if isinstance(replaced, Replace) else state)

            return Case("Memoria.load_state_dict", "state", what, names + ("state",), fixture, call)

        def assign(rng, fixture=fixture):
            options = [
                ("a string", lambda m: "engrams"),
                ("None", lambda m: None),
                ("other tracking flags", lambda m: Engrams(rand(BATCH, 2, HIDDEN), track_age=not m.track_age)),
                (
                    "NaN data",
                    lambda m: Engrams(
                        torch.full((BATCH, 2, HIDDEN), float("nan")), track_age=m.track_age, track_engram_id=m.track_id
                    ),
                ),
                (
                    "data 1e19",
                    lambda m: Engrams(
                        torch.full((BATCH, 2, HIDDEN), 1e19), track_age=m.track_age, track_engram_id=m.track_id
                    ),
                ),
                (
                    "types 9",
                    lambda m: Engrams(
                        rand(BATCH, 2, HIDDEN),
                        engrams_types=torch.full((BATCH, 2), 9),
                        track_age=m.track_age,
                        track_engram_id=m.track_id,
                    ),
                ),
            ]
            what, make = pick(rng, options)
            return Case(
                "Memoria.engrams (assigned)",
                "engrams",
                what,
                ("engrams", "Engrams", "NaN", "types", "data"),
                fixture,
                lambda m: setattr(m, "engrams", make(m)),
            )

        makers += [adjust_indices, adjust_deltas, adjust_twice, reset_rows, to_device, load, assign]

    names = ("num_reminded_stm", "stm_capacity", "ltm_search_depth", "initial_lifespan", "num_final_ltms")
    for position, name in enumerate(names):

        def construct(rng, position=position, name=name):
            pool = (
                bad_lifespans()
                if name == "initial_lifespan"
                else bad_counts(2**20 if name == "ltm_search_depth" else INT32_MAX)
            )
            what, make = pick(rng, pool)

            def call(_):
                arguments = [4, 6, 3, 3, 4]
                arguments[position] = make()
                return Memoria(*arguments)

            return Case("Memoria()", name, what, (name,), "", call)

        makers.append(construct)

    def construct_device(rng):
        what, make = pick(rng, bad_devices() + [("a generator of another device type", lambda: "meta")])
        return Case("Memoria()", "device", what, ("device",), "", lambda _: Memoria(**CONFIG, device=make()))

    def construct_generator(rng):
        what, make = pick(
            rng,
            [("an int", lambda: 3), ("a string", lambda: "g"), ("a numpy generator", lambda: np.random.default_rng(0))],
        )
        return Case("Memoria()", "generator", what, ("generator",), "", lambda _: Memoria(**CONFIG, generator=make()))

    def construct_unallocatable(rng):
        """Accepted sizes whose remind cannot be allocated: refused at construction, or the first step must work."""
        rows = rng.random() < 0.5
        what = f"num_reminded_stm = num_final_ltms = 2**31 - 1{', independent rows' if rows else ''}"
        make = lambda _: Memoria(INT32_MAX, 6, 3, 3, INT32_MAX, independent_rows=rows)  # noqa: E731
        return Case("Memoria()", "num_reminded_stm", what, ("num_reminded_stm", "num_final_ltms"), "", make)

    makers += [construct_device, construct_generator, construct_unallocatable]

    # Engrams
    def engrams_indices(method):
        def maker(rng):
            options = bad_indices(BATCH)
            if method == "select":  # [K] picks the same slots in every row; [B, K] takes -length..-1 as nulls (as
                # published): below that is refused
                options = [option for option in options if option[0] != "rank 1"]
                options += [("below -length", lambda length: torch.full((BATCH, 2), -length - 1))]
                options += [("[K] past the length", lambda length: torch.tensor([0, length]))]
            what, make = pick(rng, options)
            call = lambda e: getattr(e, method)(make(e.memory_length))  # noqa: E731
            return Case(f"Engrams.{method}", "indices", what, ("indices",), "engrams", call)

        return maker

    def engrams_device(rng):
        what, make = pick(rng, bad_devices())
        return Case("Engrams.to", "device", what, ("device",), "engrams", lambda e: e.to(make()))

    makers += [engrams_indices(method) for method in ("select", "get_mask_with_indices", "fire_together_wire_together")]
    makers += [engrams_indices("delete"), engrams_device]

    def engrams_call(method, argument, pool_maker):
        def maker(rng):
            what, make = pick(rng, pool_maker())
            return Case(
                f"Engrams.{method}", argument, what, (argument,), "engrams", lambda e: getattr(e, method)(make())
            )

        return maker

    bad_masks = lambda: [  # noqa: E731
        ("an int tensor", lambda: torch.ones(BATCH, 3, dtype=torch.long)),
        ("one column short", lambda: torch.ones(BATCH, 1, dtype=torch.bool)),
        ("a list of ints", lambda: [[1, 0]] * BATCH),
        ("a string", lambda: "mask"),
        ("None", lambda: None),
        ("rank 1", lambda: torch.ones(BATCH, dtype=torch.bool)),
    ]
    makers += [
        engrams_call("mask_select", "mask", bad_masks),
        engrams_call("get_indices_with_mask", "mask", bad_masks),
    ]

    def local_indices(rng):
        if rng.random() < 0.5:
            what, make = pick(rng, bad_masks())
            call = lambda e: e.get_local_indices_from_global_indices(
                make(), torch.zeros(BATCH, 2, dtype=torch.long)
            )  # noqa: E731
            return Case(
                "Engrams.get_local_indices_from_global_indices",
                "partial_mask",
                what,
                ("partial_mask",),
                "engrams",
                call,
            )
        what, make = pick(rng, bad_indices(BATCH))
        call = lambda e: e.get_local_indices_from_global_indices(
            e.longterm_memory_mask, make(e.memory_length)
        )  # noqa: E731
        return Case(
            "Engrams.get_local_indices_from_global_indices",
            "global_indices",
            what,
            ("global_indices",),
            "engrams",
            call,
        )

    def extend(rng):
        if rng.random() < 0.5:
            what, make = pick(rng, bad_indices(BATCH))
            call = lambda e: e.extend_lifespan(make(e.memory_length), torch.ones(BATCH, 2))  # noqa: E731
            return Case("Engrams.extend_lifespan", "indices", what, ("indices",), "engrams", call)
        what, make = pick(rng, bad_deltas((BATCH, 2)))
        call = lambda e: e.extend_lifespan(torch.zeros(BATCH, 2, dtype=torch.long), make())  # noqa: E731
        return Case("Engrams.extend_lifespan", "lifespan_delta", what, ("lifespan_delta",), "engrams", call)

    def fire_count(rng):
        what, make = pick(
            rng,
            [
                ("one column too many", lambda: torch.ones(BATCH, 99)),
                ("a string", lambda: "3"),
                ("True", lambda: True),
                ("rank 3", lambda: torch.ones(1, BATCH, 1)),
            ],
        )
        return Case(
            "Engrams.fire_count (assigned)",
            "fire_count",
            what,
            ("fire_count",),
            "engrams",
            lambda e: setattr(e, "fire_count", make()),
        )

    def add_engrams(rng):
        what, make = pick(
            rng,
            [
                ("another batch size", lambda: Engrams(rand(BATCH + 1, 2, HIDDEN))),
                ("another hidden size", lambda: Engrams(rand(BATCH, 2, HIDDEN + 1))),
                ("an int", lambda: 3),
            ],
        )
        return Case("Engrams.__add__", "other", what, ("concatenate", "+", "other"), "engrams", lambda e: e + make())

    def construct_engrams(rng):
        options = [
            ("data", "a list", lambda: Engrams([[[0.0]]])),
            ("data", "rank 2", lambda: Engrams(rand(2, 3))),
            (
                "induce_counts",
                "a wrong shape",
                lambda: Engrams(rand(2, 3, 4), induce_counts=torch.zeros(2, 3, 2)),
            ),
            ("engrams_types", "a wrong shape", lambda: Engrams(rand(2, 3, 4), engrams_types=torch.zeros(2, 4))),
            ("lifespan", "a string", lambda: Engrams(rand(2, 3, 4), lifespan="1")),
            ("age", "1.5", lambda: Engrams(rand(2, 3, 4), age=1.5, track_age=True)),
            ("engram_ids", "a string", lambda: Engrams(rand(2, 3, 4), engram_ids="a", track_engram_id=True)),
            ("data", "length 10**10 (expanded)", lambda: Engrams(torch.zeros(()).expand(2, 10**10, 4))),
        ]
        argument, what, make = pick(rng, options)
        return Case("Engrams()", argument, what, (argument,), "", lambda _: make())

    makers += [local_indices, extend, fire_count, add_engrams, construct_engrams]

    # Abstractor, super_unique, HistoryManager
    def abstractor(rng):
        options = [
            ("a list", lambda: [[[0.0] * HIDDEN]]),
            ("rank 2", lambda: rand(2, HIDDEN)),
            ("another hidden size", lambda: rand(2, 3, HIDDEN + 1)),
            ("dtype int64", lambda: torch.ones(2, 3, HIDDEN, dtype=torch.long)),
            ("dtype bool", lambda: torch.ones(2, 3, HIDDEN, dtype=torch.bool)),
            ("dtype float64", lambda: torch.ones(2, 3, HIDDEN, dtype=torch.float64)),
            ("dtype complex64", lambda: torch.ones(2, 3, HIDDEN, dtype=torch.complex64)),
        ]
        what, make = pick(rng, options)
        return Case("Abstractor.forward", "hidden_states", what, ("hidden_states",), "abstractor", lambda a: a(make()))

    def construct_abstractor(rng):
        position = rng.randrange(3)
        name = ("num_memories", "hidden_dim", "feedforward_dim")[position]
        what, make = pick(rng, bad_counts())

        def call(_):
            arguments = [4, HIDDEN, 12]
            arguments[position] = make()
            return Abstractor(*arguments)

        return Case("Abstractor()", name, what, (name,), "", call)

    def unique(rng):
        options = [
            ("t", "a list", lambda: super_unique([[1, 2]])),
            ("dim", "dim 5 of a 2-D tensor", lambda: super_unique(torch.zeros(2, 3, dtype=torch.long), dim=5)),
            ("dim", "dim '1'", lambda: super_unique(torch.zeros(2, 3, dtype=torch.long), dim="1")),
            ("t", "a value range of 2**40", lambda: super_unique(torch.tensor([[0, 2**40]]))),
            ("t", "complex", lambda: super_unique(torch.zeros(2, 3, dtype=torch.complex64))),
        ]
        argument, what, make = pick(rng, options)
        return Case("utils.super_unique", argument, what, (argument,), "", lambda _: make())

    def history_load(rng):
        what, write = pick(rng, junk_history_files())

        def call(_):
            with tempfile.TemporaryDirectory() as folder:
                return HistoryManager.load(write(Path(folder)))

        return Case(
            "HistoryManager.load", "path", what, ("path", "history", "file"), "", call, (TypeError, ValueError, OSError)
        )

    def edited_record(field: str, value: Callable[[Any], Any]) -> Callable[[Any], dict]:
        """A history state with ``field`` changed: of its last step (a state of steps) or of all (a state of columns)."""

        def make(history):
            state = copy.deepcopy(history.state_dict())
            holder = state["records"][-1] if "records" in state else state
            holder[field] = value(holder[field])
            return state

        return make

    def history_state(rng):
        options = [
            ("a list", lambda h: [1]),
            ("None", lambda h: None),
            (
                "a step list a string",
                lambda h: {**h.state_dict(), "records" if "records" in h.state_dict() else "lengths": "x"},
            ),
            ("no keys", lambda h: {}),
            ("ids as a list", edited_record("ids", lambda ids: ids.tolist())),
            ("types 9", edited_record("types", lambda types: torch.full_like(types, 9))),
            ("NaN lifespans", edited_record("lifespan", lambda values: torch.full_like(values, float("nan")))),
            ("ids one short", edited_record("ids", lambda ids: ids[:-1])),
        ]
        what, make = pick(rng, options)
        return Case(
            "HistoryManager.load_state_dict",
            "state",
            what,
            ("state", "history"),
            "history",
            lambda h: h.load_state_dict(make(h)),
        )

    makers += [abstractor, construct_abstractor, unique, history_load, history_state]
    return makers


MAKERS = _cases()


def make_case(seed: int, index: int) -> Case:
    """The ``index``-th case of the fuzz with ``seed`` (the same on every machine and in every process)."""
    rng = random.Random(f"{seed}:{index}")
    return MAKERS[rng.randrange(len(MAKERS))](rng)


__all__ = ["Case", "build_fixtures", "make_case", "memoria"]
