"""HistoryManager: same answers as the published 1.1.0 one, whether fed summaries or recorded from a live memory."""

import dataclasses
import io
from pathlib import Path

import pytest
import torch

from benchmarks.reference import load_reference
from memoria.history_manager import HistoryManager, SummaryList, record_history
from memoria.summary import status_summary
from memoria.types import EngramHistory, EngramInfo, EngramsInfo, Firing

DERIVED = [
    "engram_creation_times",
    "engram_deletion_times",
    "engram_durations",
    "engram_firing_times",
    "engram_firings",
    "firings_per_time",
    "alive_engram_ids",
    "deleted_engram_ids",
    "timestep",
    "engram_ids",
    "engram_fire_counts",
    "engram_lastest_alive_timestep",
    "latest_engram_infos",
]


def plain(value):
    """Recursively turn dataclasses and summary views into plain values comparable across packages."""
    if dataclasses.is_dataclass(value):
        return (type(value).__name__,) + tuple(plain(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return [(plain(k), plain(v)) for k, v in value.items()]  # a list keeps the key order in the comparison
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, (list, SummaryList)):
        return [plain(v) for v in value]
    if isinstance(value, (int, float)):
        return (type(value).__name__, value)
    return value


def run_reference(seed: int, steps: int, batch: int = 3, double_remind_at: int = -1):
    """Run the published Memoria with its own history; yield its engrams after every adjust, then its history."""
    ref = load_reference("1.1.0")
    torch.manual_seed(seed)
    memoria = ref.Memoria(
        num_reminded_stm=3, stm_capacity=6, ltm_search_depth=3, initial_lifespan=3, num_final_ltms=4, keep_history=True
    )
    for step in range(steps):
        memoria.add_working_memory(torch.randn(batch, 4, 8) * 0.3)
        _, indices = memoria.remind()
        if step == double_remind_at:  # a second fire-together step before the adjust
            _, indices = memoria.remind()
        memoria.adjust_lifespan_and_memories(indices, torch.rand(indices.shape) * 3)
        yield memoria.engrams
    yield memoria.history


def assert_same_history(ours: HistoryManager, theirs) -> None:
    for name in DERIVED:
        assert plain(getattr(ours, name)) == plain(getattr(theirs, name)), name
    assert len(ours) == len(theirs)
    for timestep in range(len(theirs)):
        assert plain(ours[timestep]) == plain(theirs[timestep]), timestep
    for engram_id in theirs.engram_ids:
        mine, reference = ours.inspect(engram_id), theirs.inspect(engram_id)
        # Every step's summary was compared above: here the steps an engram lived must be the same ones.
        assert plain(dataclasses.replace(mine, summaries=[])) == plain(dataclasses.replace(reference, summaries=[]))
        start = reference.creation_timestep
        assert len(mine.summaries) == len(reference.summaries)
        assert all(a == ours[start + i] for i, a in enumerate(list(mine.summaries)[:2]))


@pytest.mark.parametrize("seed,double_remind_at", [(0, -1), (1, 7)])
def test_recorded_and_fed_histories_equal_reference(seed, double_remind_at):
    recorded = [HistoryManager() for _ in range(2)]
    fed = [HistoryManager() for _ in range(2)]
    for item in run_reference(seed, steps=14, batch=2, double_remind_at=double_remind_at):
        if isinstance(item, list):
            reference_histories = item
            break
        record_history(recorded, item)
        for history, summary in zip(fed, status_summary(item)):
            history.add_summary(summary)
    for ours_fast, ours_fed, theirs in zip(recorded, fed, reference_histories):
        assert_same_history(ours_fast, theirs)
        assert_same_history(ours_fed, theirs)
        assert sum(len(summary.edges) for summary in theirs.summaries) > 300
        # The count matrix is stored at the first step only, unless a second remind broke the one-fire-per-step rule.
        keyframes = [t for t, record in enumerate(ours_fast._records) if record.keyframe is not None]
        assert keyframes == ([0] if double_remind_at < 0 else [0, double_remind_at])


def handmade(engrams: dict[int, tuple[str, float, int]]) -> EngramsInfo:
    """Summary without edges from id -> (type, lifespan, fire count)."""
    infos = {i: EngramInfo(i, kind, life, None, fires, (), ()) for i, (kind, life, fires) in engrams.items()}
    by_type = {kind: tuple(i for i, (k, _, _) in engrams.items() if k == kind) for kind in ("WORKING", "SHORTTERM")}
    return EngramsInfo(infos, {}, by_type["WORKING"], by_type["SHORTTERM"], ())


def test_handmade_history_by_hand():
    history = HistoryManager()
    history.add_summary(handmade({0: ("SHORTTERM", 2.0, 1), 1: ("SHORTTERM", 2.0, 1)}))
    history.add_summary(handmade({0: ("SHORTTERM", 4.5, 2), 1: ("SHORTTERM", 1.0, 1), 2: ("WORKING", 3.0, 0)}))
    history.add_summary(handmade({0: ("SHORTTERM", 3.5, 2), 2: ("SHORTTERM", 2.0, 0)}))
    assert history.engram_creation_times == {0: 0, 1: 0, 2: 1}
    assert history.engram_deletion_times == {1: 2}
    assert history.engram_durations == {0: 3, 1: 2, 2: 2}
    assert history.engram_firings == {0: [Firing(timestep=1, engram_id=0, lifespan_gain=3.5)]}
    assert history.firings_per_time == [[], [Firing(1, 0, 3.5)], []]
    assert history.engram_fire_counts == {0: 1}
    assert history.engram_lastest_alive_timestep == {0: 2, 1: 1, 2: 2}
    assert history.alive_engram_ids == [0, 2] and history.deleted_engram_ids == [1]
    assert history.latest_engram_infos[1].lifespan == 1.0
    inspected = history.inspect(1)
    assert isinstance(inspected, EngramHistory) and inspected.deletion_timestep == 2 and inspected.duration == 2
    assert list(inspected.summaries) == [history[0], history[1]]
    step = history.step(1)
    assert step.ids.tolist() == [0, 1, 2] and step.created.tolist() == [False, False, True]
    assert step.reminded.tolist() == [True, False, False]


def recorded_history(seed: int = 3) -> HistoryManager:
    histories = [HistoryManager() for _ in range(2)]
    for item in run_reference(seed, steps=10, batch=2):
        if isinstance(item, list):
            break
        record_history(histories, item)
    return histories[1]


def test_save_load_and_state_dict_round_trip(tmp_path):
    history = recorded_history()
    history.add_summary(history[-1])  # a hand-made step (unchanged memory) travels too
    path = tmp_path / "history.gz"
    history.save(str(path))
    loaded = HistoryManager.load(str(path))
    buffer = io.BytesIO()
    torch.save(history.state_dict(), buffer)
    buffer.seek(0)
    restored = HistoryManager()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for other in (loaded, restored):
        assert_same_history(other, history)


def test_load_state_dict_rejects_garbage_and_keeps_state():
    history = recorded_history()
    before = plain(history.engram_creation_times)
    with pytest.raises(ValueError, match="HistoryManager state"):
        history.load_state_dict({"records": []})
    broken = history.state_dict()
    del broken["fire_counts"]
    with pytest.raises(ValueError, match="malformed"):
        history.load_state_dict(broken)
    assert plain(history.engram_creation_times) == before and len(history) == 10


def test_published_pickle_state_is_replayed():
    reference_history = recorded_history()
    legacy = {"summaries": list(reference_history.summaries)}  # what a 1.1.0 pickle carries
    history = HistoryManager.__new__(HistoryManager)
    history.__setstate__(legacy)
    assert_same_history(history, reference_history)


def test_record_history_checks_its_arguments():
    engrams = next(iter(run_reference(0, steps=1, batch=2)))
    with pytest.raises(ValueError, match="one history per batch row"):
        record_history([HistoryManager()], engrams)
    engrams.track_engram_id = False
    with pytest.raises(ValueError, match="engram ids"):
        record_history([HistoryManager(), HistoryManager()], engrams)


def test_summary_list_slices_and_bounds():
    history = recorded_history()
    view = history.summaries[2:5]
    assert len(view) == 3 and view[0] == history[2] and view[-1] == history[4]
    assert history.summaries[::3] == [history[0], history[3], history[6], history[9]]
    with pytest.raises(IndexError):
        view[3]


def test_memoria_keep_history_matches_eager_summaries():
    import warnings

    from memoria import Memoria

    torch.manual_seed(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        memoria = Memoria(3, 6, 3, 3, 4, keep_history=True)
    eager = [HistoryManager() for _ in range(2)]
    for _ in range(10):
        memoria.add_working_memory(torch.randn(2, 4, 8) * 0.3)
        _, indices = memoria.remind()
        memoria.adjust_lifespan_and_memories(indices, torch.rand(indices.shape) * 3)
        for history, summary in zip(eager, status_summary(memoria.engrams)):
            history.add_summary(summary)
    for recorded, fed in zip(memoria.history, eager):
        assert list(recorded.summaries) == list(fed.summaries)
        assert recorded.engram_firings == fed.engram_firings
        assert [t for t, r in enumerate(recorded._records) if r.keyframe is not None] == [0]


# ---------------------------------------------------------------------- a step without engrams, files that run code


def test_a_step_without_engrams_then_one_with_engrams_matches_the_published_history():
    """The step after an empty one has nothing to compare with: every engram is new, nothing fired."""
    import warnings

    from memoria import Memoria

    histories = []
    for make in (Memoria, load_reference("1.1.0").Memoria):
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            memoria = make(2, 2, 1, initial_lifespan=1, num_final_ltms=1, keep_history=True)
        memoria.add_working_memory(torch.rand(1, 2, 3))
        memoria.remind()
        memoria.adjust_lifespan_and_memories(torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0))
        memoria.add_working_memory(torch.rand(1, 2, 3))
        memoria.remind()
        memoria.adjust_lifespan_and_memories(torch.tensor([[0, 1]]), torch.ones(1, 2))
        histories.append(memoria.history[0])
    ours, published = histories
    assert ours.alive_engram_ids == [2, 3] and len(ours[0].engrams) == 0
    assert_same_history(ours, published)


class _RunsCode:
    """Unpickling this calls os.mkdir(marker): what a crafted history file can do to a pickle loader."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


def _crafted_pickle(tmp_path):
    import gzip
    import pickle

    marker = tmp_path / "code-ran"
    path = tmp_path / "crafted.gz"
    with gzip.open(path, "wb") as file:
        pickle.dump(_RunsCode(marker), file)
    return path, marker


def test_a_crafted_pickle_cannot_run_code_on_load(tmp_path):
    path, marker = _crafted_pickle(tmp_path)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        HistoryManager.load(str(path))
    assert not marker.exists()
    # the explicit opt-in does unpickle (and says so): the refusal above is what kept the code from running
    with pytest.warns(UserWarning, match="unpickling"), pytest.raises(ValueError, match="not a HistoryManager"):
        HistoryManager.load(str(path), allow_pickle=True)
    assert marker.exists()


def test_a_crafted_data_file_cannot_run_code_either(tmp_path):
    """A torch.save file naming a callable is refused by the data-only unpickler."""
    import gzip

    marker = tmp_path / "code-ran"
    buffer = io.BytesIO()
    torch.save({"format": "memoria-history-1", "state": _RunsCode(marker)}, buffer)
    path = tmp_path / "crafted.gz"
    with gzip.open(path, "wb") as file:
        file.write(buffer.getvalue())
    with pytest.raises(ValueError, match="not a readable history file"):
        HistoryManager.load(str(path))
    assert not marker.exists()


def test_a_legacy_pickle_loads_only_by_opt_in(tmp_path):
    import gzip
    import pickle

    history = recorded_history()
    path = tmp_path / "legacy.gz"
    with gzip.open(path, "wb") as file:
        pickle.dump(history, file)  # what save() wrote before, and the published package still writes
    with pytest.raises(ValueError, match="is a pickle"):
        HistoryManager.load(path)
    with pytest.warns(UserWarning, match="unpickling"):
        loaded = HistoryManager.load(path, allow_pickle=True)
    assert_same_history(loaded, history)


def test_saved_file_is_data_only(tmp_path):
    import gzip

    path = tmp_path / "history.gz"
    recorded_history().save(path)
    with gzip.open(path, "rb") as file:
        saved = torch.load(io.BytesIO(file.read()), weights_only=True)
    assert saved["format"] == "memoria-history-1" and saved["state"]["version"] == 2
    # a few columns whatever the length of the history (one tensor per field and step took seconds to load)
    assert sum(isinstance(value, torch.Tensor) for value in saved["state"].values()) == 15


def test_a_version_1_file_still_loads():
    """What earlier versions saved (one dict of tensors per step): the README's example history."""
    history = HistoryManager.load(EXAMPLE)
    assert len(history) == 120 and history.state_dict()["version"] == 2
    restored = HistoryManager()
    restored.load_state_dict(history.state_dict())
    assert plain_state(restored.state_dict()) == plain_state(history.state_dict())
    for name in ("engram_creation_times", "engram_deletion_times", "engram_firings", "alive_engram_ids"):
        assert getattr(restored, name) == getattr(history, name)
    assert [restored[t] for t in (0, 59, 119)] == [history[t] for t in (0, 59, 119)]
    assert sum(len(info.edges) for info in (history[t] for t in (0, 59, 119))) > 1000


@pytest.mark.parametrize(
    "content, words",
    [(b"not gzip at all", "not a gzip"), (None, "not a readable history file"), (b"", "is empty")],
    ids=["not gzip", "broken zip", "empty"],
)
def test_bad_history_files_are_value_errors(tmp_path, content, words):
    import gzip

    path = tmp_path / "bad.gz"
    if content == b"not gzip at all":
        path.write_bytes(content)
    else:
        with gzip.open(path, "wb") as file:
            file.write(b"PK\x03\x04 truncated" if content is None else content)
    with pytest.raises(ValueError, match=words):
        HistoryManager.load(path)


# ---------------------------------------------------------------------- issue 27: D1, D2, D4, D8, D17


def live_memory(seed: int = 0, steps: int = 6, batch: int = 2, width: int = 3, **flags):
    """Our Memoria with keep_history after ``steps`` steps of a random stream (no published package needed)."""
    import warnings

    from memoria import Memoria

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # keep_history turns id and age tracking on, as it says
        memoria = Memoria(3, 4, 2, 3, 3, **{"keep_history": True, **flags})
    for _ in range(steps):
        step(memoria, torch.randn(batch, width, 8) * 0.3)
    return memoria


def step(memoria, data: torch.Tensor) -> None:
    memoria.add_working_memory(data)
    _, indices = memoria.remind()
    memoria.adjust_lifespan_and_memories(indices, torch.rand(indices.shape) * 3)


def snapshot(memoria) -> dict:
    """Everything a memory holds, as plain values (engrams, counters, every history's state)."""
    state = memoria.state_dict()
    return plain_state(state)


def plain_state(value):
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dtype, tuple(value.shape), value.tolist())
    if isinstance(value, dict):
        return {key: plain_state(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_state(item) for item in value]
    return value


def test_d1_a_new_batch_size_is_refused_before_anything_changes():
    """D1: once every row is empty the memory takes a new batch size; its history of the old rows cannot follow."""
    memoria = live_memory(steps=0)
    step(memoria, torch.rand(2, 0, 4))  # two rows, nothing in them: one empty step recorded per row
    assert len(memoria.history) == 2 and memoria.memory_length == 0
    before = snapshot(memoria)
    with pytest.raises(ValueError, match=r"one history per batch row \(3\), got 2.*memoria.history = None"):
        memoria.add_working_memory(torch.rand(3, 2, 4))
    assert snapshot(memoria) == before
    step(memoria, torch.rand(2, 2, 4))  # the batch size it kept still works
    assert [len(history) for history in memoria.history] == [2, 2]

    # the way out the message names: a new history for the new batch size
    emptied = live_memory(steps=0)
    step(emptied, torch.rand(2, 0, 4))
    emptied.history = None
    step(emptied, torch.rand(3, 2, 4))
    assert [len(history) for history in emptied.history] == [1, 1, 1]


def test_d1_engrams_of_another_batch_size_are_refused_at_the_adjust_before_it_changes_them():
    memoria = live_memory(steps=3)
    memoria.engrams = live_memory(seed=1, steps=3, batch=3).engrams  # assigning replaces the state, not the history
    with pytest.raises(ValueError, match="one history per batch row"):
        memoria.add_working_memory(torch.rand(3, 2, 8))
    _, indices = memoria.remind()
    before = snapshot(memoria)
    with pytest.raises(ValueError, match="one history per batch row"):
        memoria.adjust_lifespan_and_memories(indices, torch.ones(indices.shape))
    assert snapshot(memoria) == before


def every_tensor(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from every_tensor(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from every_tensor(item)


def test_d2_the_state_dict_and_the_history_share_no_tensor():
    memoria = live_memory()
    before = [plain_state(history.state_dict()) for history in memoria.history]
    state = memoria.state_dict()
    restored = live_memory(steps=0)
    restored.load_state_dict(state)
    assert [plain_state(history.state_dict()) for history in restored.history] == before
    edited = 0
    for tensor in every_tensor(state["history"]):
        tensor.fill_(7)  # what an in-place edit of the saved state, or a memory-mapped file going away, does
        edited += tensor.numel()
    assert edited > 100
    assert [plain_state(history.state_dict()) for history in memoria.history] == before
    assert [plain_state(history.state_dict()) for history in restored.history] == before
    for tensor in every_tensor(restored.history[0].state_dict()):
        tensor.fill_(7)
    assert plain_state(restored.history[0].state_dict()) == before[0]


def test_d2_a_history_loaded_from_a_memory_mapped_checkpoint_survives_overwriting_the_file(tmp_path):
    """Loading with mmap=True, then saving to the same path, used to pull the history's memory away (SIGBUS)."""
    import subprocess
    import sys

    script = f"""
import sys, torch
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from tests.test_history_manager import live_memory
memoria = live_memory(steps=10, width=10)
path = {str(tmp_path / "memory.pt")!r}
torch.save(memoria.state_dict(), path)
expected = [memoria.history[0][t] for t in range(10)]
restored = live_memory(steps=0)
restored.load_state_dict(torch.load(path, mmap=True, weights_only=True))
torch.save(restored.state_dict(), path)
torch.save({{"something": torch.zeros(1)}}, path)
assert [restored.history[0][t] for t in range(10)] == expected
print("same history")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "same history" in result.stdout, (result.returncode, result.stderr[-2000:])


EXAMPLE = Path(__file__).parent.parent / "docs" / "images" / "history_example.gz"


def version_1_state() -> dict:
    """The state inside the README's example history file, written by an earlier version (format 1)."""
    import gzip

    with gzip.open(EXAMPLE, "rb") as file:
        state = torch.load(io.BytesIO(file.read()), weights_only=True)["state"]
    assert state["version"] == 1
    return state


def step_slice(state: dict, step: int) -> slice:
    """Where a step's engrams lie in a version 2 state's per-engram columns."""
    start = int(state["lengths"][:step].sum())
    return slice(start, start + int(state["lengths"][step]))


def edit(change):
    """A function that applies ``change`` to a state and returns it."""
    return lambda state: (change(state), state)[1]


def repeat_ids(state):
    where = step_slice(state, 2)
    assert where.stop - where.start >= 2
    state["ids"][where] = 4


def keyframe_to_lose(state):
    assert state["keyframe_lengths"][3] < 0
    state["base_steps"][4] = 3


BAD_STATES = {
    "ids as a list": (edit(lambda s: s.update(ids=s["ids"].tolist())), r"ids must be a 1-D integer tensor, got list"),
    "NaN ids": (edit(lambda s: s.update(ids=s["ids"].double().fill_(float("nan")))), r"ids must be a 1-D integer"),
    "repeated ids": (edit(repeat_ids), r"ids of step 2 must be distinct"),
    "type 9": (edit(lambda s: s["types"][step_slice(s, 1)].fill_(9)), r"types of step 1 must be EngramType values"),
    "keyframe row out of range": (
        edit(lambda s: s["keyframe_rows"].add_(1000)),
        r"keyframe_rows of step 0 .*positions",
    ),
    "lifespan too short": (edit(lambda s: s.update(lifespan=s["lifespan"][:-1])), r"lifespan must be one entry per"),
    "base without keyframe": (edit(keyframe_to_lose), r"base_steps of step 4 must be a keyframe's step"),
    "count model lengths differ": (
        edit(lambda s: s["model"].update(event_ids=s["model"]["event_ids"][:-1])),
        r"model\['event_steps'\] and \['event_ids'\] must be of one length",
    ),
    "count model of dead engrams": (
        edit(lambda s: s["model"]["event_ids"].add_(10**6)),
        r"model\['event_ids'\] must be ids of engrams alive at the latest step",
    ),
    "fired ids of another step": (edit(lambda s: s["fire_sets"].add_(10**6)), r"fire_sets of step \d+ must be ids"),
    "fire set lengths that do not add up": (
        edit(lambda s: s["fire_set_lengths"][5].add_(1)),
        r"fire_sets must be as long as fire_set_lengths say",
    ),
    "a length that would size a huge tensor": (
        edit(lambda s: s["lengths"][0].fill_(2**40)),
        r"lengths of step 0 must be in 0\.\.",
    ),
    "a column short of a step": (edit(lambda s: s.update(with_age=s["with_age"][:-1])), r"with_age must be one entry"),
    "an id beyond int32 in a recorded step": (
        edit(lambda s: (s.update(ids=s["ids"].long()), s["ids"][0].fill_(2**40))),
        r"ids of step 0 must be int32",
    ),
    "a window hiding too little": (edit(lambda s: s.update(max_steps=2)), r"hidden must be enough to leave at most"),
    "summary of a wrong kind": (edit(lambda s: s.update(summaries=[[1, [1, 2]]])), r"summaries\[0\]\[1\] must be"),
}
VERSION_1_BAD_STATES = {
    "ids as a list": (edit(lambda s: s["records"][0].update(ids=[0, 1])), r"records\[0\]\['ids'\] must be a 1-D"),
    "NaN ids": (
        edit(lambda s: s["records"][2].update(ids=s["records"][2]["ids"].double().fill_(float("nan")))),
        r"records\[2\]\['ids'\] must be a 1-D integer tensor",
    ),
    "type 9": (edit(lambda s: s["records"][1]["types"].fill_(9)), r"types of step 1 must be EngramType values"),
    "keyframe of two parts": (
        edit(lambda s: s["records"][0].update(keyframe=s["records"][0]["keyframe"][:2])),
        r"records\[0\]\['keyframe'\] must be a tuple of 3",
    ),
    "count model lengths differ": (
        edit(lambda s: s["model"].update(event_steps=s["model"]["event_steps"][:-1])),
        r"model\['event_steps'\] and \['event_ids'\] must be of one length",
    ),
}


@pytest.mark.parametrize("name", list(VERSION_1_BAD_STATES))
def test_d4_a_version_1_state_is_checked_too(name):
    change, words = VERSION_1_BAD_STATES[name]
    history = HistoryManager.load(EXAMPLE)
    before = plain_state(history.state_dict())
    with pytest.raises(ValueError, match=words):
        history.load_state_dict(change(version_1_state()))
    assert plain_state(history.state_dict()) == before


@pytest.mark.parametrize("name", list(BAD_STATES))
def test_d4_every_field_of_a_loaded_history_is_checked_before_anything_changes(name):
    edit, words = BAD_STATES[name]
    memoria = live_memory(steps=8)
    assert memoria.history[0]._model.event_ids.numel() > 0  # the model holds events to tamper with
    history = memoria.history[0]
    before = plain_state(history.state_dict())
    with pytest.raises(ValueError, match=words):
        history.load_state_dict(edit(history.state_dict()))
    assert plain_state(history.state_dict()) == before

    # through a memory: the load is refused, and the memory it was loaded into still steps
    state = memoria.state_dict()
    state["history"][0] = edit(state["history"][0])
    restored = live_memory(steps=0)
    with pytest.raises(ValueError, match=words):
        restored.load_state_dict(state)
    assert restored.history is None and restored.memory_length == 0
    step(restored, torch.rand(2, 3, 8))


def test_d4_a_valid_state_still_loads_and_a_hand_made_summary_travels(tmp_path):
    memoria = live_memory(steps=8)
    history = memoria.history[1]
    history.add_summary(history[-1])
    restored = HistoryManager()
    restored.load_state_dict(history.state_dict())
    assert list(restored.summaries) == list(history.summaries) and restored.engram_firings == history.engram_firings


def _history_file(path, state):
    import gzip

    buffer = io.BytesIO()
    torch.save({"format": "memoria-history-1", "state": state}, buffer)
    with gzip.open(path, "wb") as file:
        file.write(buffer.getvalue())
    return path


def test_d8_a_file_that_decompresses_past_the_bound_is_refused_before_it_is_read(tmp_path):
    import gzip

    from memoria.history_manager import MAX_FILE_BYTES

    bomb = tmp_path / "bomb.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as file:
        chunk = b"PK" + bytes(2**24 - 2)
        for _ in range(MAX_FILE_BYTES // 2**24 + 1):
            file.write(chunk)
            chunk = bytes(2**24)
    assert bomb.stat().st_size < 2**21  # a 1 MB file, 256 MiB and more inside
    with pytest.raises(ValueError, match=r"decompresses to more than max_bytes=268435456 .*raise max_bytes"):
        HistoryManager.load(bomb)
    with pytest.raises(ValueError, match="max_bytes=1048576"):
        HistoryManager.load(bomb, max_bytes=2**20)
    saved = tmp_path / "history.gz"
    live_memory().history[0].save(saved)
    assert len(HistoryManager.load(saved, max_bytes=2**20)) == 6
    with pytest.raises(ValueError, match="max_bytes"):
        HistoryManager.load(saved, max_bytes=100)
    with pytest.raises(TypeError, match="max_bytes"):
        HistoryManager.load(saved, max_bytes=1.5)


def test_d8_a_small_file_cannot_name_one_object_many_times(tmp_path):
    import time

    entry = version_1_state()["records"][0]
    crafted = {"version": 1, "records": [entry] * 100_000, "model": None}
    path = _history_file(tmp_path / "refs.gz", crafted)
    assert path.stat().st_size < 20_000
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"records\[1\].*one object in two places"):
        HistoryManager.load(path)
    assert time.perf_counter() - start < 5  # refused at the second record, not after reading 100,000

    # one summary naming one engram 1,000 times over
    history = HistoryManager()
    history.add_summary(live_memory().history[0][-1])
    state = history.state_dict()
    engrams = state["summaries"][0][1]["engrams"]
    state["summaries"][0][1]["engrams"] = [engrams[0]] * 1000
    with pytest.raises(ValueError, match=r"summaries\[0\]\[1\]\['engrams'\]\[1\].*one object in two places"):
        HistoryManager.load(_history_file(tmp_path / "summary.gz", state))


def test_d8_tensors_must_hold_their_own_elements(tmp_path):
    old = version_1_state()  # what earlier versions wrote, and still read
    length = old["records"][0]["ids"].numel()
    old["records"][0]["fire_counts"] = torch.zeros(1, dtype=torch.int32).expand(length)
    with pytest.raises(ValueError, match=r"records\[0\]\['fire_counts'\] must be a tensor with storage of its own"):
        HistoryManager.load(_history_file(tmp_path / "expanded_1.gz", old))
    state = live_memory().history[0].state_dict()
    state["fire_counts"] = torch.zeros(1, dtype=torch.long).expand(state["ids"].numel())
    with pytest.raises(ValueError, match=r"fire_counts must be a tensor with storage of its own, holding its elements"):
        HistoryManager.load(_history_file(tmp_path / "expanded.gz", state))
    shared = live_memory().history[0].state_dict()
    shared["age"] = shared["ids"][: shared["age"].numel()]  # a second view of one storage
    with pytest.raises(ValueError, match=r"age must be a tensor with storage of its own"):
        HistoryManager().load_state_dict(shared)


def test_d17_a_window_reads_as_a_history_that_started_at_its_first_kept_step():
    window = 4
    full, bounded = HistoryManager(), HistoryManager(max_steps=window)
    for item in run_reference(0, steps=15, batch=1, double_remind_at=9):
        if isinstance(item, list):
            break
        record_history([full], item)
        record_history([bounded], item)
        fed = HistoryManager()
        for summary in list(full.summaries)[-window:]:
            fed.add_summary(summary)
        assert_same_history(bounded, fed)
        assert bounded.first_step == len(full) - len(bounded)
        assert len(bounded._records) < 2 * window  # hidden steps (the counts' base) stay under the window
    assert len(bounded) == window and bounded.first_step == 11


def test_d17_keep_history_n_keeps_each_rows_last_n_steps_through_checkpoints(tmp_path):
    full = live_memory(seed=3, steps=14, batch=2)
    bounded = live_memory(seed=3, steps=9, batch=2, keep_history=5)
    restored = live_memory(steps=0, keep_history=5)
    restored.load_state_dict(bounded.state_dict())
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    for memoria in (bounded, restored):
        torch.set_rng_state(rng)
        for _ in range(5):
            step(memoria, torch.randn(2, 3, 8) * 0.3)
    for row in range(2):
        assert len(bounded.history[row]) == 5 and bounded.history[row].first_step == 9
        assert list(bounded.history[row].summaries) == list(restored.history[row].summaries)
        path = tmp_path / f"row{row}.gz"
        bounded.history[row].save(path)
        loaded = HistoryManager.load(path)
        assert loaded.max_steps == 5 and loaded.first_step == 9
        assert list(loaded.summaries) == list(bounded.history[row].summaries)
    assert [len(h) for h in full.history] == [14, 14]
    with pytest.raises(ValueError, match="keep_history"):
        live_memory(steps=0, keep_history=-1)
    with pytest.raises(TypeError, match="keep_history"):
        live_memory(steps=0, keep_history="all")
    with pytest.raises(TypeError, match="max_steps"):
        HistoryManager(max_steps=2.5)
