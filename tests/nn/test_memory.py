"""MemoriaMemory: write, remind, adjust; padding; dtype and device; state beside the weights; the write gradient."""

import pytest
import torch

from memoria.nn import MemoriaMemory, MemoryRead, MemoryReader, lifespan_delta

SMALL = dict(num_reminded_stm=8, stm_capacity=16, ltm_search_depth=2, initial_lifespan=4, num_final_ltms=4)


def small_memory(dim: int = 8, working: int = 2, **options) -> MemoriaMemory:
    return MemoriaMemory(dim, working, **{**SMALL, **options})


def run(memory: MemoriaMemory, reader: MemoryReader, segments: torch.Tensor) -> list:
    """Feed segments [S, B, L, D] through memory and reader as a model does; the reads and reader outputs."""
    previous, results = None, []
    for hidden in segments:
        read = memory(previous)
        out = reader(hidden, read)
        memory.adjust(read, [out.reminded_attention])
        previous = out.hidden_states.detach()
        results.append((read, out))
    return results


def test_the_protocol_writes_reminds_and_adjusts():
    memory, reader = small_memory(), MemoryReader(8, 2)
    assert memory(None).working is None  # a first segment reads nothing and writes nothing
    assert memory.adjust(MemoryRead(), [None]) is None and memory.memoria.timestep == 0
    results = run(memory, reader, torch.randn(4, 2, 5, 8))
    read, out = results[-1]
    assert read.working.shape == (2, 2, 8) and read.working.requires_grad
    assert read.reminded.shape[:2] == read.reminded_mask.shape == read.reminded_indices.shape
    assert torch.equal(read.reminded_mask, read.reminded_indices >= 0) and read.reminded_mask.any()
    assert not read.reminded.requires_grad  # engrams are stored detached (the paper's form)
    assert memory.memoria.timestep == 3  # segments 2, 3 and 4 wrote
    assert "memory" not in "".join(memory.state_dict()) and set(memory.state_dict()) == {
        f"abstractor.{name}" for name, _ in memory.abstractor.named_parameters()
    } | {"write_norm.weight", "write_norm.bias"}


def test_adjust_gives_the_reminded_memories_the_attention_based_gain():
    memory, reader = small_memory(), MemoryReader(8, 2)
    run(memory, reader, torch.randn(3, 2, 5, 8))
    read = memory(torch.randn(2, 5, 8))
    out = reader(torch.randn(2, 5, 8), read)
    before = memory.memoria.engrams
    delta = memory.adjust(read, [out.reminded_attention, None])
    torch.testing.assert_close(delta, lifespan_delta([out.reminded_attention], 8.0))
    # each reminded engram gained its delta and lost 1 (the memory is compacted: find the engrams by their data)
    after = memory.memoria.engrams
    checked = 0
    for row in range(2):
        for position in read.reminded_mask[row].nonzero().flatten().tolist():
            index = read.reminded_indices[row, position]
            expected = before.lifespan[row, index] + delta[row, position] - 1
            if expected > 0:
                found = (after.data[row] == before.data[row, index]).all(dim=-1).nonzero().flatten()
                torch.testing.assert_close(after.lifespan[row, found], expected.expand(len(found)))
                checked += 1
    assert checked > 0
    no_attention = memory.adjust(memory(torch.randn(2, 5, 8)), [])
    assert no_attention is not None and (no_attention == 0).all()


def test_padding_in_the_written_segment_is_not_abstracted():
    memory = small_memory()
    hidden = torch.randn(2, 6, 8)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False
    changed = hidden.clone()
    changed[0, 4:] = 50.0
    working = memory.write(hidden, mask)
    torch.testing.assert_close(memory.write(changed, mask), working)
    torch.testing.assert_close(working[0], memory.write(hidden[:1, :4])[0])
    stored = memory(changed, mask).working
    torch.testing.assert_close(stored, working)
    torch.testing.assert_close(memory.memoria.engrams.data, working.detach())
    with pytest.raises(ValueError, match="mask"):
        memory(hidden, mask[:, :5])


@pytest.mark.parametrize("width", [64, 768])
def test_the_default_init_keeps_the_memories_as_large_as_the_states_at_every_width(width):
    """Layer-normed hidden states (norm sqrt(D)) of a segment: the default write keeps ~0.2 of their norm at every
    width, and distinct memories; the authors' form shrinks them with the width (and the library Abstractor's own
    N(0, 0.02) queries give 0.10 / 0.036 at 64 / 768)."""
    torch.manual_seed(0)
    hidden = torch.nn.functional.layer_norm(torch.randn(4, 64, width), (width,))

    def measure(memory_init: str) -> tuple[float, float]:
        working = MemoriaMemory(width, 8, memory_init=memory_init).abstractor(hidden).detach()
        size = working.norm(dim=-1).mean()
        return (size / hidden.norm(dim=-1).mean()).item(), (torch.cdist(working, working).mean() / size).item()

    ratio, spread = measure("scaled")
    assert 0.12 < ratio < 0.35 and spread > 0.5
    paper_ratio, paper_spread = measure("paper")
    assert paper_ratio < ratio / 8 and paper_spread < spread
    if width == 64:
        assert paper_ratio < 0.002


def test_dtype_follows_the_hidden_states_and_the_engrams_stay_float32():
    memory, reader = small_memory().to(torch.float64), MemoryReader(8, 2).to(torch.float64)
    run(memory, reader, torch.randn(3, 2, 5, 8, dtype=torch.float64))
    read = memory(torch.randn(2, 5, 8, dtype=torch.float64))
    assert read.working.dtype == read.reminded.dtype == torch.float64
    assert memory.memoria.engrams.data.dtype == torch.float32
    memory.to(torch.float32)  # .to() reaches the memory, and the engrams are left as they are
    assert memory.memoria.engrams.data.dtype == torch.float32 and memory.memoria.device == torch.device("cpu")


def test_bfloat16_reads_are_bfloat16():
    memory = small_memory().to(torch.bfloat16)
    memory(torch.randn(2, 5, 8, dtype=torch.bfloat16))
    memory.adjust(memory(torch.randn(2, 5, 8, dtype=torch.bfloat16)), [])
    read = memory(torch.randn(2, 5, 8, dtype=torch.bfloat16))
    assert read.reminded.dtype == torch.bfloat16 and read.reminded.size(1) > 0


@pytest.mark.cuda
def test_to_cuda_moves_the_engrams():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    memory, reader = small_memory(), MemoryReader(8, 2)
    run(memory, reader, torch.randn(3, 2, 5, 8))
    memory.cuda()
    assert memory.memoria.engrams.data.is_cuda
    read = memory(torch.randn(2, 5, 8, device="cuda"))
    assert read.reminded.is_cuda and read.reminded_indices.is_cuda


def test_reset_and_reset_rows():
    memory, reader = small_memory(), MemoryReader(8, 2)
    run(memory, reader, torch.randn(3, 3, 5, 8))
    before = memory.memoria.engrams
    memory.reset_rows(torch.tensor([False, True, False]))
    after = memory.memoria.engrams
    assert (after.engrams_types[1] == 0).all()
    assert torch.equal(after.data[[0, 2]], before.data[[0, 2]])
    memory.reset()
    assert memory.memoria.memory_length == 0 and memory.memoria.timestep == 0


def test_the_memory_state_round_trips_apart_from_the_weights():
    torch.manual_seed(0)
    memory, reader = small_memory(), MemoryReader(8, 2)
    segments = torch.randn(5, 2, 5, 8)
    results = run(memory, reader, segments[:3])
    state = memory.memory_state_dict()
    other = small_memory()
    other.load_state_dict(memory.state_dict())
    other.load_memory_state_dict(state)
    assert other.memoria.engrams == memory.memoria.engrams
    previous = results[-1][1].hidden_states.detach()
    torch.manual_seed(3)
    expected = memory(previous).reminded
    torch.manual_seed(3)
    torch.testing.assert_close(other(previous).reminded, expected)

    kept = other.memoria.engrams
    for bad in ({"format": "other"}, {"format": "memoria.state_dict", "state": {"config": {}}}, [1, 2]):
        with pytest.raises(ValueError):
            other.load_memory_state_dict(bad)
        assert other.memoria.engrams == kept


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="memory_init"):
        small_memory(memory_init="xavier")
    with pytest.raises(ValueError, match="write_gradient_segments"):
        small_memory(write_gradient_segments=-1)
    with pytest.raises(ValueError, match="num_working_memories"):
        small_memory(working=0)
    with pytest.raises(TypeError, match="write_gradient_segments"):
        small_memory(write_gradient_segments=1.5)
    with pytest.raises(TypeError, match="read"):
        small_memory().adjust((torch.zeros(1, 1),), [])


def test_lifespan_delta_is_mean_attention_times_count_times_scale():
    uniform = torch.full((2, 2, 3, 4), 0.25)  # [B, H, L, R]
    torch.testing.assert_close(lifespan_delta([uniform, uniform], 8.0), torch.full((2, 4), 8.0))
    focused = torch.zeros(1, 1, 2, 4)
    focused[..., 1] = 1.0
    layer_two = torch.zeros(1, 1, 2, 4)
    layer_two[..., 3] = 1.0
    torch.testing.assert_close(lifespan_delta([focused, layer_two], 2.0), torch.tensor([[0.0, 4.0, 0.0, 4.0]]))
    with pytest.raises(ValueError):
        lifespan_delta([], 8.0)


def test_lifespan_delta_ignores_masked_query_positions():
    attention = torch.rand(2, 2, 5, 3).softmax(dim=-1)  # [B, H, L, R]
    query_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    delta = lifespan_delta([attention], 8.0, query_mask)
    # Whatever the padding positions attend to, the deltas stay those of the real positions alone.
    changed = attention.clone()
    changed[0, :, 3:] = torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(lifespan_delta([changed], 8.0, query_mask), delta)
    torch.testing.assert_close(delta[0], lifespan_delta([attention[:1, :, :3]], 8.0)[0])
    torch.testing.assert_close(delta[1], lifespan_delta([attention[1:]], 8.0)[0])
    torch.testing.assert_close(delta.sum(dim=1), torch.full((2,), 3 * 8.0))  # each real query spreads 1 over R
    torch.testing.assert_close(lifespan_delta([attention], 8.0, torch.ones(2, 5)), lifespan_delta([attention], 8.0))
    nothing_real = lifespan_delta([attention], 8.0, torch.zeros(2, 5, dtype=torch.bool))
    assert (nothing_real == 0).all()
    with pytest.raises(ValueError, match=r"query_mask must be \[2, 5\]"):
        lifespan_delta([attention], 8.0, torch.ones(2, 4))
