"""Invariants of the memory on random streams (property-based)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memoria import EngramType, Memoria

STAGE = {EngramType.WORKING.value: 1, EngramType.SHORTTERM.value: 2, EngramType.LONGTERM.value: 3}


@st.composite
def streams(draw):
    config = dict(
        num_reminded_stm=draw(st.integers(0, 6)),
        stm_capacity=draw(st.integers(0, 12)),
        ltm_search_depth=draw(st.integers(0, 4)),
        initial_lifespan=draw(st.integers(1, 5)),
        num_final_ltms=draw(st.integers(0, 6)),
    )
    batch = draw(st.integers(1, 3))
    widths = draw(st.lists(st.integers(0, 5), min_size=2, max_size=12))
    return config, batch, widths, draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None)
@given(streams())
def test_invariants_hold_after_every_adjust(stream):
    config, batch, widths, seed = stream
    torch.manual_seed(seed)
    memoria = Memoria(**config, track_id=True, track_age=True)
    last_stage = {}
    for width in widths:
        memoria.add_working_memory(torch.randn(batch, width, 4) * 0.5)
        memories, indices = memoria.remind()
        assert memories.shape[:2] == indices.shape
        delta = torch.rand(indices.shape) * 4
        memoria.adjust_lifespan_and_memories(indices, delta)
        e = memoria.engrams
        types, lifespan, counts = e.engrams_types, e.lifespan, e.induce_counts
        dead = lifespan <= 0
        # padding only on the left: the dead (padding) slots of a row form a prefix
        assert torch.equal(dead, dead.cummin(dim=1).values)
        # no live engram with lifespan <= 0, and padding is NULL
        assert (types[dead] == EngramType.NULL.value).all()
        # short-term count within capacity after an adjust; no working engram survives an adjust
        assert (e.shortterm_memory_mask.sum(dim=1) <= config["stm_capacity"]).all()
        assert not e.working_memory_mask.any()
        # induce counts symmetric; a live engram's fire count (diagonal) >= every entry of its row. Padding and NULL
        # slots are excluded: concatenation gives them 0 (not -1) against new engrams, as in the published package
        assert torch.equal(counts, counts.transpose(1, 2))
        live = types != EngramType.NULL.value
        assert (counts.diagonal(dim1=1, dim2=2).unsqueeze(2) >= counts)[live].all()
        # types only move forward: WORKING -> SHORTTERM -> LONGTERM
        for row in range(batch):
            for engram_id, kind in zip(e.engram_ids[row].tolist(), types[row].tolist()):
                if engram_id < 0 or kind == EngramType.NULL.value:
                    continue
                assert STAGE[kind] >= last_stage.get((row, engram_id), 1)
                last_stage[(row, engram_id)] = STAGE[kind]
