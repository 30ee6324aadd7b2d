"""memoria.integrations.transformers.segment_memory: the finished segment waiting to be written is per-document state
beside the engrams: reset, reset per row, saved, loaded and moved with them (memoria.nn's model-wide helpers too)."""

import pytest
import torch

from memoria.integrations.transformers import SegmentMemory
from memoria.nn import memory_modules, memory_state_dict, reset_memory

SMALL = dict(num_reminded_stm=4, stm_capacity=8, ltm_search_depth=2, initial_lifespan=3, num_final_ltms=4)


def filled_memory() -> SegmentMemory:
    memory = SegmentMemory(16, 4, **SMALL)
    for _ in range(3):
        read = memory.next_read()
        memory.adjust(read, [] if read.reminded is None else [torch.rand(2, 2, 5, read.reminded.size(1))])
        memory.keep(torch.randn(2, 5, 16), None)
    return memory


def test_next_read_writes_the_kept_segment_and_reminds():
    memory = SegmentMemory(16, 4, **SMALL)
    assert memory.next_read().working is None and memory.batch_size is None  # nothing kept yet
    memory.keep(torch.randn(2, 5, 16, requires_grad=True), torch.ones(2, 5))
    assert not memory.previous_hidden.requires_grad and memory.previous_mask.dtype == torch.bool
    read = memory.next_read()
    assert read.working.shape == (2, 4, 16) and read.working.requires_grad and memory.batch_size == 2


def test_a_row_reset_masks_that_rows_kept_segment_only():
    memory = filled_memory()
    memory.reset_rows([1])
    assert memory.previous_mask.tolist() == [[True] * 5, [False] * 5]
    reset_memory(memory)  # memoria.nn's helper finds it as a MemoriaMemory
    assert memory.previous_hidden is None and memory.previous_mask is None
    assert memory.memoria.engrams.memory_length == 0


def test_the_state_round_trips_and_bad_states_change_nothing():
    memory = filled_memory()
    state = memory.memory_state_dict()
    other = SegmentMemory(16, 4, **SMALL)
    other.load_memory_state_dict(state)
    assert torch.equal(other.previous_hidden, memory.previous_hidden)
    assert torch.equal(other.memoria.engrams.data, memory.memoria.engrams.data)
    assert set(memory_state_dict(memory)["modules"]) == {""} and list(memory_modules(memory)) == [""]
    for bad in (
        {**state, "format": "memoria.state_dict"},
        {**state, "previous_hidden": torch.randn(2, 5, 8)},
        {**state, "previous_mask": torch.ones(2, 4, dtype=torch.bool)},
        {**state, "memory": {"format": "nothing"}},
    ):
        with pytest.raises(ValueError):
            other.load_memory_state_dict(bad)
        assert torch.equal(other.previous_hidden, memory.previous_hidden)


def test_the_kept_segment_follows_the_modules_dtype():
    memory = filled_memory().to(torch.float64)
    assert memory.previous_hidden.dtype == torch.float64 and memory.memoria.engrams.data.dtype == torch.float32
    assert memory.next_read().working.dtype == torch.float64
