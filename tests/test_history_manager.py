"""HistoryManager: same answers as the published 1.1.0 one, whether fed summaries or recorded from a live memory."""

import dataclasses
import io

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
    del broken["records"][3]["fire_counts"]
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
    assert saved["format"] == "memoria-history-1" and saved["state"]["version"] == 1


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
