"""Independent rows (``memoria.rows``): a row's results depend on nothing but its own inputs."""

import io

import pytest
import torch

from memoria import EngramType, Memoria

CONFIG = dict(num_reminded_stm=3, stm_capacity=6, ltm_search_depth=3, initial_lifespan=4, num_final_ltms=4)
BATCH, WIDTH, HIDDEN = 4, 3, 6


DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")],
    ),
]


def stream(steps: int, seed: int, device: str = "cpu"):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        data = torch.randn(BATCH, WIDTH, HIDDEN, generator=generator) * 0.4
        logits = torch.randn(BATCH, CONFIG["num_reminded_stm"] + CONFIG["num_final_ltms"] + 1, generator=generator)
        yield data.to(device), logits.to(device)


def step(memory: Memoria, data: torch.Tensor, logits: torch.Tensor):
    memory.add_working_memory(data)
    memories, indices = memory.remind()
    delta = logits[:, : indices.size(1)].softmax(dim=1) * indices.size(1) * 2
    memory.adjust_lifespan_and_memories(indices, delta)
    return memories, indices


def row_state(memory: Memoria, row: int) -> dict:
    """Row ``row`` of the stacked engrams without the NULL slots that stacking put in front of it."""
    engrams = memory._backend.rows[row].engrams()
    return {name: value[0].clone() for name, value in engrams._fields().items() if value is not None}


@pytest.mark.parametrize("device", DEVICES)
def test_reset_leaves_every_other_row_bit_identical(device):
    plain, reset = Memoria(**CONFIG, independent_rows=True), Memoria(**CONFIG, independent_rows=True)
    reset_row, new_document = 1, torch.Generator().manual_seed(99)
    row_differed = False
    for number, (data, logits) in enumerate(stream(30, seed=1, device=device)):
        if number == 12:
            reset.reset_memory_rows([reset_row])
            assert reset._backend.rows[reset_row].memory_length == 0
        other_data = data.clone()
        if number >= 12:  # a new document in the reset row
            other_data[reset_row] = torch.randn(WIDTH, HIDDEN, generator=new_document).to(device) * 0.4
        if number == 0:  # the row generators are seeded from the global RNG at the first add
            torch.manual_seed(0)
        plain_memories, plain_indices = step(plain, data, logits)
        if number == 0:
            torch.manual_seed(0)
        reset_memories, reset_indices = step(reset, other_data, logits)
        assert plain_indices.shape == (BATCH, CONFIG["num_reminded_stm"] + CONFIG["num_final_ltms"] + 1)
        for row in range(BATCH):
            if row == reset_row and number >= 12:
                row_differed |= not torch.equal(plain_indices[row], reset_indices[row])
                continue
            assert torch.equal(plain_indices[row], reset_indices[row])
            assert torch.equal(plain_memories[row], reset_memories[row])
            plain_state, reset_state = row_state(plain, row), row_state(reset, row)
            assert all(torch.equal(plain_state[name], reset_state[name]) for name in plain_state)
    assert row_differed, "the reset row should have gone its own way"
    assert plain.engrams.memory_length > 0 and (plain.engrams.engrams_types == EngramType.LONGTERM.value).any()


def test_each_row_is_the_batch_one_memory_fed_that_row_with_the_row_generator():
    torch.manual_seed(3)
    rows = Memoria(**CONFIG, independent_rows=True)
    singles = [Memoria(**CONFIG) for _ in range(BATCH)]
    for data, logits in stream(20, seed=4):
        rows.add_working_memory(data)
        generator_states = [row.generator.get_state() for row in rows._backend.rows]
        memories, indices = rows.remind()
        delta = logits[:, : indices.size(1)].softmax(dim=1) * indices.size(1) * 2
        for row, single in enumerate(singles):
            single.add_working_memory(data[row : row + 1])
            torch.set_rng_state(generator_states[row])  # the published package draws from the global RNG
            single_memories, single_indices = single.remind()
            width = single_indices.size(1)
            assert torch.equal(indices[row, :width], single_indices[0])
            assert (indices[row, width:] == -1).all() and (memories[row, width:] == 0).all()
            assert torch.equal(memories[row, :width], single_memories[0])
            single.adjust_lifespan_and_memories(single_indices, delta[row : row + 1, :width])
        rows.adjust_lifespan_and_memories(indices, delta)
        for row, single in enumerate(singles):
            assert rows._backend.rows[row].engrams() == single.engrams


def test_the_global_rng_is_drawn_once_for_the_row_seeds():
    torch.manual_seed(5)
    memory = Memoria(**CONFIG, independent_rows=True)
    for data, logits in stream(12, seed=6):
        step(memory, data, logits)
    torch.manual_seed(5)
    torch.randint(0, 2**62, (BATCH,))
    expected = torch.get_rng_state()
    torch.manual_seed(5)
    memory = Memoria(**CONFIG, independent_rows=True)
    for data, logits in stream(12, seed=6):
        step(memory, data, logits)
    assert torch.equal(torch.get_rng_state(), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_state_dict_resumes_every_row_and_generator(device):
    torch.manual_seed(7)
    memory = Memoria(**CONFIG, independent_rows=True, keep_history=True)
    steps = list(stream(24, seed=8, device=device))
    for data, logits in steps[:12]:
        step(memory, data, logits)
    memory.reset_memory_rows(torch.tensor([False, False, True, False]))
    buffer = io.BytesIO()
    torch.save(memory.state_dict(), buffer)
    buffer.seek(0)
    resumed = Memoria(**CONFIG, independent_rows=True, keep_history=True)
    resumed.load_state_dict(torch.load(buffer))
    assert resumed.engrams == memory.engrams and resumed.timestep == memory.timestep
    for data, logits in steps[12:]:
        expected_memories, expected_indices = step(memory, data, logits)
        memories, indices = step(resumed, data, logits)
        assert torch.equal(indices, expected_indices) and torch.equal(memories, expected_memories)
    assert resumed.engrams == memory.engrams
    assert [len(history) for history in resumed.history] == [len(history) for history in memory.history]
    # rows and generators follow a move to the other device type (a generator that cannot is reseeded from itself)
    other = "cpu" if device == "cuda" else ("cuda" if torch.cuda.is_available() else "cpu")
    resumed.to(other)
    assert all(row.generator.device.type == other for row in resumed._backend.rows)
    _, indices = step(resumed, *(value.to(other) for value in steps[-1]))
    assert indices.device.type == other and resumed.engrams.device.type == other


def test_a_generator_saved_on_a_gpu_continues_on_a_cpu_machine():
    """A GPU checkpoint loaded with map_location="cpu": each row generator continues as a CPU generator seeded from
    the saved state, the same way at every load."""
    torch.manual_seed(15)
    memory = Memoria(**CONFIG, independent_rows=True)
    steps = list(stream(10, seed=16))
    for data, logits in steps[:6]:
        step(memory, data, logits)
    state = memory.state_dict()
    # what a CUDA (Philox) generator saves: 16 bytes, seed and offset
    state["rows"]["generators"] = [torch.arange(16, dtype=torch.uint8) + row for row in range(BATCH)]
    state["rows"]["generator_devices"] = ["cuda"] * BATCH
    runs = []
    for _ in range(2):
        resumed = Memoria(**CONFIG, independent_rows=True)
        resumed.load_state_dict(state)
        assert all(row.generator.device.type == "cpu" for row in resumed._backend.rows)
        runs.append([step(resumed, data, logits)[1] for data, logits in steps[6:]])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    state["rows"]["generator_devices"] = ["cuda"] * (BATCH - 1)
    with pytest.raises(ValueError, match="generator_devices"):
        Memoria(**CONFIG, independent_rows=True).load_state_dict(state)


def test_states_of_the_other_mode_are_refused():
    torch.manual_seed(9)
    batched = Memoria(**CONFIG)
    for data, logits in stream(4, seed=10):
        step(batched, data, logits)
    with pytest.raises(ValueError, match="independent_rows"):
        Memoria(**CONFIG, independent_rows=True).load_state_dict(batched.state_dict())
    rows = Memoria(**CONFIG, independent_rows=True)
    for data, logits in stream(4, seed=10):
        step(rows, data, logits)
    state = rows.state_dict()
    state["rows"]["generators"][0] = torch.zeros(3, dtype=torch.uint8)
    fresh = Memoria(**CONFIG, independent_rows=True)
    with pytest.raises(ValueError, match="generator"):
        fresh.load_state_dict(state)
    assert fresh.memory_length == 0 and not fresh._backend.rows


def test_a_bad_index_in_one_row_leaves_every_row_unchanged():
    torch.manual_seed(11)
    memory = Memoria(**CONFIG, independent_rows=True)
    for data, logits in stream(6, seed=12):
        step(memory, data, logits)
    memory.add_working_memory(torch.randn(BATCH, WIDTH, HIDDEN))
    memories, indices = memory.remind()
    before = [row_state(memory, row) for row in range(BATCH)]
    bad = indices.clone()
    bad[2, 0] = memory._backend.rows[2].memory_length  # one past the end of row 2 only
    with pytest.raises(ValueError, match="must lie in"):
        memory.adjust_lifespan_and_memories(bad, torch.ones(bad.shape))
    with pytest.raises(ValueError, match="shaped"):
        memory.adjust_lifespan_and_memories(indices[:2], torch.ones(2, indices.size(1)))
    after = [row_state(memory, row) for row in range(BATCH)]
    assert all(torch.equal(a[name], b[name]) for a, b in zip(before, after) for name in a)
    memory.adjust_lifespan_and_memories(indices, torch.ones(indices.shape))


def test_engrams_view_setter_and_devices():
    torch.manual_seed(13)
    memory = Memoria(**CONFIG, independent_rows=True)
    for data, logits in stream(8, seed=14):
        step(memory, data, logits)
    memory.reset_memory_rows([0])
    view = memory.engrams
    assert view.batch_size == BATCH and view.memory_length == memory.memory_length
    assert (view.engrams_types[0] == EngramType.NULL.value).all()  # the reset row is all padding
    copy = Memoria(**CONFIG, independent_rows=True)
    copy.engrams = view
    assert copy.engrams == view
    step(copy, torch.randn(BATCH, WIDTH, HIDDEN), torch.randn(BATCH, 8))
    memories, indices = memory.remind()
    assert memories.dtype == torch.float32 and memories.shape[:2] == indices.shape
    memory.add_working_memory(torch.randn(BATCH, WIDTH, HIDDEN, dtype=torch.bfloat16))
    memories, _ = memory.remind()
    assert memories.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="batch size"):
        memory.add_working_memory(torch.randn(BATCH + 1, WIDTH, HIDDEN))


def test_a_memory_whose_rows_are_all_reset_checkpoints_and_resumes():
    """Every row reset (issue #27, D6): the stacked view is B rows of length 0, so the checkpoint holds as many rows as
    row states and loads (it used to be refused: "2 row states for a batch of 0"); the resumed memory goes on as the
    original does."""
    torch.manual_seed(17)
    memory = Memoria(**CONFIG, independent_rows=True, keep_history=True)
    steps = list(stream(10, seed=18))
    for data, logits in steps[:5]:
        step(memory, data, logits)
    memory.reset_memory_rows(list(range(BATCH)))
    view = memory.engrams
    assert (view.batch_size, view.memory_length, view.hidden_dim) == (BATCH, 0, HIDDEN) and memory.history is None
    buffer = io.BytesIO()
    torch.save(memory.state_dict(), buffer)
    buffer.seek(0)
    resumed = Memoria(**CONFIG, independent_rows=True, keep_history=True)
    resumed.load_state_dict(torch.load(buffer))
    assert resumed.engrams == view and resumed.timestep == memory.timestep
    for data, logits in steps[5:]:
        expected_memories, expected_indices = step(memory, data, logits)
        memories, indices = step(resumed, data, logits)
        assert torch.equal(indices, expected_indices) and torch.equal(memories, expected_memories)
    assert resumed.engrams == memory.engrams and (resumed.engrams.engrams_types > 0).any()
    assert [len(history) for history in resumed.history] == [len(history) for history in memory.history]


def test_a_remind_width_that_cannot_be_allocated_is_refused_at_the_first_add():
    """With independent rows every remind returns [B, num_reminded_stm + num_final_ltms + 1, D]: at 2**31 - 1 each, no
    machine holds that (issue #27, D13, where every remind raised the allocator's RuntimeError). The first add refuses
    it with a ValueError naming them, and nothing changes, the rows' seeds included; a width beyond int32 is refused
    at construction, like every other size."""
    with pytest.raises(ValueError, match=r"num_reminded_stm \+ num_final_ltms \+ 1 must lie in"):
        Memoria(2**31 - 1, 4, 2, 3, 2**31 - 1, independent_rows=True)
    memory, data = Memoria(2**30 - 1, 4, 2, 3, 2**30 - 1, independent_rows=True), torch.randn(2, 3, 1024)
    before = torch.get_rng_state()
    with pytest.raises(ValueError, match=r"num_reminded_stm \+ num_final_ltms"):
        memory.add_working_memory(data)
    assert torch.equal(torch.get_rng_state(), before) and memory.memory_length == 0 and memory.timestep == 0
    assert not memory._backend.rows
