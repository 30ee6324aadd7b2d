"""Memoria.state_dict / load_state_dict: resuming in a fresh process gives the uninterrupted stream's outputs."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks.fuzz_api import same
from memoria import Memoria

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(num_reminded_stm=6, stm_capacity=12, ltm_search_depth=4, initial_lifespan=4, num_final_ltms=6)

STREAM = """
import sys, torch
sys.path.insert(0, ROOT)
from memoria import Memoria

def step(memoria, generator):
    memoria.add_working_memory(torch.randn(3, 5, 8, generator=generator))
    memories, indices = memoria.remind()
    delta = torch.rand(indices.shape, generator=generator) * 4
    memoria.adjust_lifespan_and_memories(indices, delta)
    return memories, indices
"""

RESUME = STREAM + """
checkpoint = torch.load(sys.argv[1], weights_only=True)
memoria = Memoria(**checkpoint["config"], keep_history=True, track_id=True, track_age=True)
memoria.load_state_dict(checkpoint["memoria"])
torch.set_rng_state(checkpoint["rng"])
generator = torch.Generator().manual_seed(0)
generator.set_state(checkpoint["generator"])
outputs = [step(memoria, generator) for _ in range(50)]
torch.save({"outputs": outputs, "memoria": memoria.state_dict()}, sys.argv[2])
"""


def run_steps(memoria, generator, count):
    namespace = {}
    exec(STREAM.replace("ROOT", repr(str(ROOT))), namespace)
    return [namespace["step"](memoria, generator) for _ in range(count)]


def test_resume_in_a_fresh_process_matches_the_uninterrupted_stream(tmp_path):
    torch.manual_seed(3)
    generator = torch.Generator().manual_seed(0)
    memoria = Memoria(**CONFIG, keep_history=True, track_id=True, track_age=True)
    run_steps(memoria, generator, 25)
    checkpoint = {
        "config": CONFIG,
        "memoria": memoria.state_dict(),
        "rng": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    expected = run_steps(memoria, generator, 50)

    script = tmp_path / "resume.py"
    script.write_text(RESUME.replace("ROOT", repr(str(ROOT))))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "checkpoint.pt"), str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    resumed = torch.load(tmp_path / "out.pt", weights_only=True)
    assert len(resumed["outputs"]) == 50
    for (memories, indices), (their_memories, their_indices) in zip(expected, resumed["outputs"]):
        assert torch.equal(indices, their_indices) and torch.equal(memories, their_memories)
    final = memoria.state_dict()
    for name, value in final["engrams"].items():
        assert torch.equal(value, resumed["memoria"]["engrams"][name]), name
    assert final["timestep"] == resumed["memoria"]["timestep"] == 75
    # the history survived the trip too: 75 recorded steps per row
    restored = Memoria(**CONFIG, keep_history=True, track_id=True, track_age=True)
    restored.load_state_dict(resumed["memoria"])
    assert [len(h) for h in restored.history] == [len(h) for h in memoria.history] == [75, 75, 75]
    assert restored.history[0][74] == memoria.history[0][74]


def test_state_dict_is_plain_and_loads_with_map_location(tmp_path):
    memoria = Memoria(**CONFIG, track_id=True, track_age=True)
    for _ in range(3):
        memoria.add_working_memory(torch.rand(2, 4, 8))
        _, indices = memoria.remind()
        memoria.adjust_lifespan_and_memories(indices, torch.ones(indices.shape))
    torch.save(memoria.state_dict(), tmp_path / "m.pt")
    state = torch.load(tmp_path / "m.pt", map_location="cpu", weights_only=True)
    other = Memoria(**CONFIG, track_id=True, track_age=True)
    other.load_state_dict(state)
    assert other.engrams == memoria.engrams
    assert (other.timestep, other.next_engram_id) == (memoria.timestep, memoria.next_engram_id)


def bad_states(good):
    def edit(path, value):
        state = {**good, "engrams": dict(good["engrams"]), "config": dict(good["config"])}
        target = state
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return state

    data = good["engrams"]["data"]
    return [
        ("not a dict", [1, 2]),
        ("wrong format", edit(("format",), "other")),
        ("missing engrams", edit(("engrams",), KeyError)),
        ("config not a dict", edit(("config",), "gpt2")),
        ("other capacity", edit(("config", "stm_capacity"), 99)),
        ("other tracking", edit(("config", "track_id"), False)),
        ("missing field", edit(("engrams", "lifespan"), KeyError)),
        ("data not a tensor", edit(("engrams", "data"), [[0.0]])),
        ("int data", edit(("engrams", "data"), data.long())),
        ("nan data", edit(("engrams", "data"), torch.full_like(data, float("nan")))),
        ("bad shape", edit(("engrams", "lifespan"), torch.zeros(1, 1))),
        ("bad counts dtype", edit(("engrams", "induce_counts"), good["engrams"]["induce_counts"].long())),
        ("bad type value", edit(("engrams", "engrams_types"), torch.full_like(good["engrams"]["engrams_types"], 7))),
        ("negative timestep", edit(("timestep",), -1)),
        ("history of wrong length", edit(("history",), [])),
        ("bad dtype name", edit(("ext_dtype",), "int64")),
    ]


def test_malformed_or_mismatched_state_is_rejected_and_memory_untouched():
    source = Memoria(**CONFIG, track_id=True, track_age=True)
    source.add_working_memory(torch.rand(2, 4, 8))
    good = source.state_dict()
    target = Memoria(**CONFIG, track_id=True, track_age=True)
    target.add_working_memory(torch.rand(2, 3, 8))
    before = target.engrams.clone()
    for name, state in bad_states(good):
        with pytest.raises(ValueError):
            target.load_state_dict(state)
        assert target.engrams == before and target.timestep == 1, name


# ---------------------------------------------------------------------- no aliasing (issue 27 D3)


def stepped(independent_rows: bool, steps: int = 6) -> Memoria:
    torch.manual_seed(5)
    memoria = Memoria(**CONFIG, track_id=True, track_age=True, independent_rows=independent_rows)
    generator = torch.Generator().manual_seed(1)
    run_steps(memoria, generator, steps)
    return memoria


def edit_in_place(engrams) -> None:
    """What a reader might do to the snapshot: every field changed in place."""
    engrams.data.mul_(2)
    engrams.induce_counts.add_(3)
    engrams.engrams_types.fill_(1)
    engrams.lifespan.add_(100)
    engrams.age.add_(7)
    engrams.engram_ids.add_(1000)


@pytest.mark.parametrize("independent_rows", [False, True], ids=["batched", "independent rows"])
def test_editing_the_engrams_snapshot_changes_neither_the_state_dict_nor_later_steps(independent_rows):
    """An in-place edit of ``memoria.engrams`` used to be saved by ``state_dict()`` (one step later the restored memory
    held other engrams than the live one)."""
    edited, untouched = stepped(independent_rows), stepped(independent_rows)
    edit_in_place(edited.engrams)
    assert same(edited.state_dict(), untouched.state_dict())

    restored = Memoria(**CONFIG, track_id=True, track_age=True, independent_rows=independent_rows)
    restored.load_state_dict(edited.state_dict())
    rng = torch.get_rng_state()
    for memoria in (edited, restored):
        torch.set_rng_state(rng)
        run_steps(memoria, torch.Generator().manual_seed(2), 1)
    assert edited.engrams == restored.engrams
    assert same(edited.state_dict(), restored.state_dict())


@pytest.mark.parametrize("independent_rows", [False, True], ids=["batched", "independent rows"])
def test_the_state_dict_and_the_loaded_state_share_no_tensor_with_the_memory(independent_rows):
    memoria = stepped(independent_rows)
    expected = memoria.state_dict()
    returned = memoria.state_dict()
    edit_in_place(SimpleNamespace(**returned["engrams"]))  # what the caller does with its state dict
    assert same(memoria.state_dict(), expected)

    loaded_from = stepped(independent_rows).state_dict()
    restored = Memoria(**CONFIG, track_id=True, track_age=True, independent_rows=independent_rows)
    restored.load_state_dict(loaded_from)
    edit_in_place(SimpleNamespace(**loaded_from["engrams"]))
    for row in loaded_from.get("rows", {}).get("rows", []):
        edit_in_place(SimpleNamespace(**row["engrams"]))
    assert same(restored.state_dict(), expected)


def test_reading_the_snapshot_between_remind_and_adjust_does_not_change_the_history():
    """The snapshot read before an adjust was what the adjust recorded into the history."""

    def history(read: bool) -> list:
        torch.manual_seed(0)
        memoria = Memoria(**CONFIG, keep_history=True, track_id=True, track_age=True)
        for _ in range(5):
            memoria.add_working_memory(torch.rand(2, 3, 8))
            _, indices = memoria.remind()
            if read:
                memoria.engrams
            memoria.adjust_lifespan_and_memories(indices, torch.ones(indices.shape))
        return memoria.state_dict()["history"]

    assert same(history(read=True), history(read=False))


# ---------------------------------------------------------------------- counters that cannot wrap (issue 27 D7)

INT32_MAX = 2**31 - 1


def at_counters(age: int, count: int) -> dict:
    """A stepped memory's state with every live engram's age and every co-firing count between live engrams set."""
    state = stepped(False).state_dict()
    engrams = state["engrams"]
    live = engrams["engrams_types"] != 0
    engrams["age"][live] = age
    engrams["induce_counts"][live.unsqueeze(2) & live.unsqueeze(1)] = count
    return state


def loaded(state: dict) -> Memoria:
    memoria = Memoria(**CONFIG, track_id=True, track_age=True)
    memoria.load_state_dict(state)
    return memoria


def fingerprint(memoria: Memoria) -> tuple:
    return memoria.state_dict(), torch.get_rng_state()


@pytest.mark.parametrize("age, count", [(INT32_MAX, 0), (0, INT32_MAX)], ids=["age", "count"])
def test_a_state_whose_counters_wrap_within_a_step_is_refused_at_load(age, count):
    """Age 2**31 - 1 used to load and wrap to -2**31 at the next adjust (the memory's own checkpoint then refused)."""
    memoria = stepped(False)
    before = fingerprint(memoria)
    with pytest.raises(ValueError, match="ages" if age else "induce counts"):
        memoria.load_state_dict(at_counters(age, count))
    assert same(fingerprint(memoria), before)


@pytest.mark.parametrize("kind", ["age", "count"])
def test_a_memory_at_its_counter_limit_refuses_the_step_that_would_pass_it_and_goes_on_after_a_reset(kind):
    limit = INT32_MAX - 1
    memoria = loaded(at_counters(limit - 1, 0) if kind == "age" else at_counters(0, limit - 1))
    refused = None
    for _ in range(4):  # one step reaches the limit; then the call that would pass it is refused, nothing changed
        memoria.add_working_memory(torch.rand(3, 5, 8))
        for call in ("remind", "adjust"):
            before = fingerprint(memoria)
            try:
                if call == "remind":
                    _, indices = memoria.remind()
                else:
                    memoria.adjust_lifespan_and_memories(indices, torch.full(indices.shape, 9.0))
            except ValueError as error:
                refused = call, str(error)
                assert same(fingerprint(memoria), before)
                break
        if refused:
            break
        state = memoria.state_dict()
        live = state["engrams"]["engrams_types"] != 0
        assert int(state["engrams"]["age"][live].min()) >= 0 and int(state["engrams"]["induce_counts"].min()) >= -1
        loaded(state)  # every state the memory reaches loads again
    assert refused is not None and refused[0] == ("adjust" if kind == "age" else "remind"), refused
    assert ("age" if kind == "age" else "co-firing count") in refused[1]
    memoria.reset_memory_rows([0, 1, 2])  # the old engrams are gone: the memory goes on
    for _ in range(3):
        memoria.add_working_memory(torch.rand(3, 5, 8))
        _, indices = memoria.remind()
        memoria.adjust_lifespan_and_memories(indices, torch.ones(indices.shape))
    loaded(memoria.state_dict())


def test_counter_bounds_cost_no_read_far_from_the_limit(monkeypatch):
    """The bounds are host integers: a step far from the limit never builds the snapshot to read the true values."""
    memoria = stepped(False)
    monkeypatch.setattr(type(memoria), "engrams", property(lambda self: pytest.fail("the snapshot was read")))
    memoria.add_working_memory(torch.rand(3, 5, 8))
    _, indices = memoria.remind()
    memoria.adjust_lifespan_and_memories(indices, torch.ones(indices.shape))


def test_an_independent_rows_state_without_its_rows_is_refused():
    """Loaded from its stacked engrams alone, every row started again with ids from 0: duplicate ids at the next add."""
    state = stepped(True).state_dict()
    del state["rows"]
    memoria = stepped(True)
    before = fingerprint(memoria)
    with pytest.raises(ValueError, match="'rows'"):
        memoria.load_state_dict(state)
    assert same(fingerprint(memoria), before)
    empty = Memoria(**CONFIG, track_id=True, track_age=True, independent_rows=True).state_dict()
    assert "rows" not in empty
    memoria.load_state_dict(empty)  # a memory that holds nothing has no rows to save
    assert memoria.memory_length == 0
