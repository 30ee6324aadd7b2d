"""write_gradient_segments: a later segment's loss reaches the abstractor through the engrams of the last K writes."""

from typing import Optional

import pytest
import torch

from memoria.nn import MemoriaMemory, MemoryReader

SMALL = dict(num_reminded_stm=8, stm_capacity=16, ltm_search_depth=2, initial_lifespan=6, num_final_ltms=4)
WIDTH = 2  # working memories per write: write s (from 0) makes engram ids 2s and 2s + 1


def third_segment(segments: int) -> tuple[MemoriaMemory, object, torch.Tensor, torch.Tensor]:
    """Three writes (the first two under no_grad), then the read of the third; its reminded engrams' ids [B, R]."""
    torch.manual_seed(0)
    memory = MemoriaMemory(8, WIDTH, write_gradient_segments=segments, **SMALL)
    hidden = torch.randn(3, 2, 5, 8)
    with torch.no_grad():
        for segment in hidden[:2]:
            memory.adjust(memory(segment), [])
    read = memory(hidden[2])
    if not segments:
        return memory, read, None, hidden  # no engram ids without it
    ids = memory.memoria.engrams.engram_ids.long()
    reminded_ids = ids.gather(1, read.reminded_indices.clamp(min=0)).masked_fill(~read.reminded_mask, -1)
    return memory, read, reminded_ids, hidden


def gradients(memory: MemoriaMemory, loss: torch.Tensor) -> Optional[torch.Tensor]:
    """The abstractor's gradient of ``loss``, flattened (None where nothing reaches it)."""
    memory.abstractor.zero_grad(set_to_none=True)
    if not loss.requires_grad:
        return None
    loss.backward(retain_graph=True)  # the tests take several losses of one read
    grads = [p.grad.flatten() for p in memory.abstractor.parameters() if p.grad is not None]
    return torch.cat(grads) if grads else None


def loss_on_write(read, reminded_ids: torch.Tensor, write: int, weights: torch.Tensor) -> torch.Tensor:
    """A loss on the reminded memories that write ``write`` made, and only on them."""
    made = (reminded_ids // WIDTH == write) & (reminded_ids >= 0)
    assert made.any(), f"write {write}'s engrams are among those reminded"
    return (read.reminded * weights * made[..., None]).sum()


def test_without_write_gradient_the_reminded_memories_carry_no_gradient():
    memory, read, _, _ = third_segment(0)
    assert not read.reminded.requires_grad and read.reminded_mask.sum() == 2 * 2 * WIDTH  # writes 0 and 1, 2 rows
    _, read, reminded_ids, _ = third_segment(2)
    assert set((reminded_ids[reminded_ids >= 0] // WIDTH).tolist()) == {0, 1}


@pytest.mark.parametrize("segments", [1, 2])
def test_the_gradient_reaches_the_writes_within_k_segments_and_no_further(segments):
    memory, read, reminded_ids, hidden = third_segment(segments)
    weights = torch.randn_like(read.reminded)
    last = gradients(memory, loss_on_write(read, reminded_ids, 1, weights))  # the write one segment back
    assert last is not None and last.abs().max() > 0
    earlier = gradients(memory, loss_on_write(read, reminded_ids, 0, weights))  # two segments back
    if segments == 1:
        assert earlier is None or earlier.abs().max() == 0
    else:
        assert earlier.abs().max() > 0

    # the gradient is that of the abstractor run on write 1's input, at the reminded positions
    made = (reminded_ids // WIDTH == 1) & (reminded_ids >= 0)
    working = memory.write(hidden[1])  # (B, W, D): the abstractor, then the write norm
    picked = working.gather(1, (reminded_ids - WIDTH).clamp(0, WIDTH - 1)[..., None].expand(-1, -1, 8))
    expected = gradients(memory, (picked * weights * made[..., None]).sum())
    torch.testing.assert_close(last, expected)


def test_the_values_read_are_the_same_with_and_without_it():
    reads = [third_segment(segments)[1] for segments in (0, 1, 3)]
    for read in reads[1:]:
        assert torch.equal(read.reminded, reads[0].reminded)
        assert torch.equal(read.reminded_indices, reads[0].reminded_indices)


def test_every_segment_may_have_its_own_backward():
    torch.manual_seed(0)
    memory, reader = MemoriaMemory(8, WIDTH, write_gradient_segments=2, **SMALL), MemoryReader(
        8, 2, output_init="default"
    )
    previous = None
    for segment in torch.randn(5, 2, 5, 8):
        read = memory(previous)
        out = reader(segment, read)
        memory.adjust(read, [out.reminded_attention])
        if read.working is not None:  # the first segment reads nothing: no parameter in its loss
            out.hidden_states.pow(2).mean().backward()
        previous = out.hidden_states.detach()
    assert memory.abstractor.query_embeddings.grad.abs().max() > 0
    assert len(memory.recent_writes.writes) == 2
    memory.reset()
    assert memory.recent_writes.writes == []
