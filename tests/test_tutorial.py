"""The seed tutorial (SPEC §7): steps 1-6 print exactly the seed's values; step 7 is checked by shape and invariant."""

import torch

from memoria import EngramType, Memoria


def run_tutorial_steps_1_to_6():
    torch.manual_seed(42)
    memoria = Memoria(num_reminded_stm=4, stm_capacity=16, ltm_search_depth=5, initial_lifespan=3, num_final_ltms=4)
    batch_size, sequence_length, hidden_dim = 2, 8, 64
    seen = {}
    data = torch.rand(batch_size, sequence_length, hidden_dim)
    memoria.add_working_memory(data)
    seen["step3"] = (len(memoria.engrams), memoria.engrams.data.shape, memoria.engrams.lifespan.clone())
    reminded_memories, reminded_indices = memoria.remind()
    seen["step4"] = (reminded_memories, reminded_indices)
    memoria.adjust_lifespan_and_memories(reminded_indices, torch.zeros_like(reminded_indices))
    seen["step5"] = (memoria.engrams.lifespan.clone(), memoria.engrams.engrams_types.clone())
    data2 = torch.rand(batch_size, sequence_length, hidden_dim)
    memoria.add_working_memory(data2)
    seen["step6_add"] = (len(memoria.engrams), memoria.engrams.lifespan.clone())
    reminded_memories, reminded_indices = memoria.remind()
    seen["step6_remind"] = (reminded_memories.shape, reminded_indices.clone())
    memoria.adjust_lifespan_and_memories(reminded_indices, torch.full_like(reminded_indices, 5))
    seen["step6_adjust"] = memoria.engrams.lifespan.clone()
    return memoria, seen


def test_steps_1_to_6_match_the_seed_exactly():
    _, seen = run_tutorial_steps_1_to_6()
    length, shape, lifespan = seen["step3"]
    assert length == 16 and shape == torch.Size([2, 8, 64])
    assert torch.equal(lifespan, torch.full((2, 8), 3.0))

    memories, indices = seen["step4"]
    assert memories.shape == (2, 0, 64) and indices.shape == (2, 0) and indices.dtype == torch.int64

    lifespan, types = seen["step5"]
    assert torch.equal(lifespan, torch.full((2, 8), 2.0))
    assert torch.equal(types, torch.full((2, 8), 2, dtype=torch.uint8))
    assert repr(EngramType.SHORTTERM) == "<EngramType.SHORTTERM: 2>"

    length, lifespan = seen["step6_add"]
    assert length == 32
    assert lifespan.tolist() == [[2.0] * 8 + [3.0] * 8] * 2

    shape, indices = seen["step6_remind"]
    assert shape == torch.Size([2, 6, 64])
    assert indices.tolist() == [[0, 6, 4, 3, 2, -1], [0, 7, 6, 5, 4, -1]]

    assert seen["step6_adjust"].tolist() == [
        [6.0, 1.0, 6.0, 6.0, 6.0, 1.0, 6.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0],
        [6.0, 1.0, 1.0, 1.0, 6.0, 6.0, 6.0, 6.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0],
    ]


def test_step_7_shapes_and_invariants():
    memoria, _ = run_tutorial_steps_1_to_6()
    for _ in range(10):
        data = torch.rand(2, 8, 64)
        memoria.add_working_memory(data)
        memories, indices = memoria.remind()
        assert memories.shape == (2, indices.size(1), 64)
        lifespan_delta = torch.randint_like(indices, 0, 6).float()
        memoria.adjust_lifespan_and_memories(indices, lifespan_delta)
    e = memoria.engrams
    assert len(e) == 2 * e.memory_length
    assert (e.engrams_types == EngramType.LONGTERM.value).any(), "after 10 more steps some engrams are long-term"
    assert int(e.shortterm_memory_mask.sum(dim=1).max()) <= 16
    live = e.engrams_types != EngramType.NULL.value
    assert (e.lifespan[live] > 0).all()
    assert not e.working_memory_mask.any()
