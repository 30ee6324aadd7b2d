"""Model-wide memory helpers: every memory of a model found, saved and loaded at once, all or nothing."""

import pytest
import torch
from torch import nn

from memoria.nn import MemoriaLayer, MemoriaMemory, load_memory, load_memory_state_dict, memory_modules, save_memory

SMALL = dict(num_reminded_stm=4, stm_capacity=8, ltm_search_depth=2, initial_lifespan=4, num_final_ltms=4)


def two_memories() -> nn.Module:
    model = nn.Module()
    model.first = MemoriaLayer(8, 2, 2, **SMALL)
    model.blocks = nn.ModuleList([nn.Linear(8, 8), nn.Sequential(MemoriaMemory(8, 2, **SMALL))])
    return model


def fill(model: nn.Module) -> None:
    with torch.no_grad():
        for hidden in torch.randn(3, 2, 4, 8):
            model.first(hidden)
            memory = model.blocks[1][0]
            memory.adjust(memory(hidden), [])


def test_memory_modules_are_the_outermost_ones_by_name():
    model = two_memories()
    assert list(memory_modules(model)) == ["first", "blocks.1.0"]
    assert list(memory_modules(model.first)) == [""]


def test_a_refused_state_leaves_every_memory_as_it_was(tmp_path):
    model = two_memories()
    fill(model)
    path = save_memory(model, tmp_path / "memories.pt")
    other = two_memories()
    fill(other)
    before = (other.first.memory.memoria.engrams, other.blocks[1][0].memoria.engrams)
    state = torch.load(path, weights_only=True)
    state["modules"]["blocks.1.0"]["state"]["config"]["stm_capacity"] = 99  # another memory's state
    with pytest.raises(ValueError):
        load_memory_state_dict(other, state)
    assert (other.first.memory.memoria.engrams, other.blocks[1][0].memoria.engrams) == before
    with pytest.raises(ValueError, match="memories"):
        load_memory_state_dict(nn.Sequential(MemoriaMemory(8, 2, **SMALL)), torch.load(path, weights_only=True))
    with pytest.raises(FileNotFoundError, match="save_memory"):
        load_memory(other, tmp_path / "none.pt")
    load_memory(other, path)
    assert other.blocks[1][0].memoria.engrams == model.blocks[1][0].memoria.engrams
