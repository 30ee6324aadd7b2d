"""MemoryReader: working then reminded pass through one attention, pre- or post-norm, with an optional gate."""

import pytest
import torch

from memoria.nn import MemoryRead, MemoryReader


def a_read(batch: int = 1, working: int = 2, reminded: int = 4, dim: int = 8) -> MemoryRead:
    mask = torch.ones(batch, reminded, dtype=torch.bool)
    mask[:, -1] = False
    indices = torch.arange(reminded).expand(batch, -1).masked_fill(~mask, -1)
    return MemoryRead(torch.randn(batch, working, dim), torch.randn(batch, reminded, dim), mask, indices)


def test_reader_shares_one_attention_between_passes_and_skips_missing_memories():
    reader = MemoryReader(hidden_dim=8, num_heads=2, output_init="default")
    names = [name for name, _ in reader.named_parameters()]
    assert sum(name.startswith("cross_attention.") for name in names) == 6  # one module: 3 linears
    assert {"ln_working.weight", "ln_reminded.weight"} <= set(names) and "gate" not in names
    hidden = torch.randn(1, 3, 8)
    untouched = reader(hidden, MemoryRead())
    assert torch.equal(untouched.hidden_states, hidden) and untouched.reminded_attention is None
    out = reader(hidden, a_read())
    assert out.reminded_attention.shape == (1, 2, 3, 4)
    assert out.reminded_attention[..., -1].abs().max() == 0  # the -1 slot takes no attention
    assert not torch.allclose(out.hidden_states, hidden)
    empty = MemoryRead(torch.zeros(1, 0, 8), torch.zeros(1, 0, 8), torch.zeros(1, 0, dtype=torch.bool))
    assert torch.equal(reader(hidden, empty).hidden_states, hidden)
    with pytest.raises(TypeError, match="MemoryRead"):
        reader(hidden, (torch.randn(1, 2, 8),))


def test_pre_norm_and_post_norm_residuals():
    torch.manual_seed(0)
    pre, post = MemoryReader(8, 2), MemoryReader(8, 2, post_norm=True)
    post.load_state_dict(pre.state_dict())
    hidden, read = torch.randn(2, 3, 8), a_read(batch=2)
    only_working = MemoryRead(working=read.working)
    attended, _ = pre.cross_attention(pre.ln_working(hidden), read.working)
    torch.testing.assert_close(pre(hidden, only_working).hidden_states, hidden + attended)
    attended, _ = post.cross_attention(hidden, read.working)
    torch.testing.assert_close(post(hidden, only_working).hidden_states, post.ln_working(hidden + attended))


def test_a_zero_gate_leaves_the_hidden_states_exactly_and_learns():
    torch.manual_seed(0)
    reader = MemoryReader(8, 2, gate=0.0)
    hidden, read = torch.randn(2, 3, 8, requires_grad=True), a_read(batch=2)
    out = reader(hidden, read)
    assert torch.equal(out.hidden_states, hidden)
    assert out.reminded_attention is not None  # the lifespan gain still has its attention
    (out.hidden_states * torch.randn(2, 3, 8)).sum().backward()
    assert reader.gate.grad.abs().min() > 0  # both passes' gates move off zero


def test_a_gate_of_one_is_the_ungated_reader_and_bad_gates_are_named():
    torch.manual_seed(0)
    plain, gated = MemoryReader(8, 2), MemoryReader(8, 2, gate=1.0)
    gated.load_state_dict({**plain.state_dict(), "gate": torch.ones(2)})
    hidden, read = torch.randn(2, 3, 8), a_read(batch=2)
    torch.testing.assert_close(gated(hidden, read).hidden_states, plain(hidden, read).hidden_states)
    with torch.no_grad():
        gated.gate.fill_(0.5)
        gated.cross_attention.output.weight.mul_(2.0)
    gated.reset_parameters()
    assert torch.equal(gated.gate, torch.ones(2))
    with pytest.raises(TypeError, match="gate"):
        MemoryReader(8, 2, gate="zero")
