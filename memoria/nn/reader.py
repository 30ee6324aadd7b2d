"""The per-layer memory read: cross-attention over the working memories, then over the reminded memories.

Shapes: B batch, L segment length, W working memories, R reminded memories, D hidden, H heads.
"""

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .attention import MemoryCrossAttention
from .read import MemoryRead

#: How :class:`MemoryReader`'s output projection starts; the first is the default.
OUTPUT_INITS = ("zero", "default")


@dataclass
class MemoryReaderOutput:
    """What :class:`MemoryReader` returns: the updated hidden states [B, L, D] and the attention the reminded
    memories received [B, H, L, R] (None when no reminded pass ran), for :meth:`MemoriaMemory.adjust`."""

    hidden_states: torch.Tensor
    reminded_attention: Optional[torch.Tensor]


class MemoryReader(nn.Module):
    """Working-memory pass then reminded-memory pass, each a residual, through one shared cross-attention.

    ``post_norm=False`` (GPT style, the Memoria Transformer's): ``h + g * attention(norm(h))`` per pass.
    ``post_norm=True`` (BERT style, Memoria BERT's): ``norm(h + g * attention(h))`` per pass. Each pass has its own
    layer norm. Reminded memories whose index is -1 take no attention; a row with nothing to read gets zero.

    Args:
        hidden_dim: width D of the hidden states and the memories.
        num_heads: attention heads H; must divide ``hidden_dim``.
        dropout: dropout on the attention weights and on the output.
        layer_norm_eps: the layer norms' epsilon.
        post_norm: BERT-style post-norm residuals instead of GPT-style pre-norm.
        gate: None (default): no gate, ``g = 1``. A number: a learned gate ``g`` per pass (working, reminded) that
            starts at this value; ``0.0`` makes the read start as exactly nothing in pre-norm (the hidden states
            pass through unchanged, so a pretrained model's outputs are kept at initialisation), and in post-norm
            leaves only the layer norm.
        output_init: ``"zero"``: the cross-attention's output projection starts at zero, so the read adds nothing
            until it has learned to (its own gradient is not zero); this keeps a new memory from adding the same
            loud vector to every position. ``"default"``: PyTorch's initialisation (the paper's form; a model may
            draw it again, e.g. GPT-2's N(0, 0.02)). None (default): ``"zero"``, except with ``gate=0.0``, which
            already silences the read and needs a non-zero projection to learn (a zero gate times a zero projection
            gives neither a gradient; asking for both is refused).

    Example::

        reader = MemoryReader(hidden_dim=64, num_heads=4)
        read = memory(previous_hidden)          # a MemoryRead from MemoriaMemory
        out = reader(hidden, read)              # out.hidden_states [B, L, D]
        memory.adjust(read, [out.reminded_attention])
    """

    def __init__(
        self,
        hidden_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
        post_norm: bool = False,
        gate: Optional[float] = None,
        output_init: Optional[str] = None,
    ) -> None:
        super().__init__()
        if output_init is not None and output_init not in OUTPUT_INITS:
            raise ValueError(f"output_init must be None or one of {OUTPUT_INITS}, got {output_init!r}")
        if gate is not None and (not isinstance(gate, (int, float)) or isinstance(gate, bool)):
            raise TypeError(f"gate must be None or a number (its initial value), got {type(gate).__name__}")
        self.cross_attention = MemoryCrossAttention(hidden_dim, num_heads, dropout)
        self.ln_working = nn.LayerNorm(hidden_dim, eps=layer_norm_eps)
        self.ln_reminded = nn.LayerNorm(hidden_dim, eps=layer_norm_eps)
        self.post_norm = bool(post_norm)
        self.initial_gate = None if gate is None else float(gate)
        # gate[0] scales the working pass, gate[1] the reminded pass
        self.gate = None if gate is None else nn.Parameter(torch.full((2,), float(gate)))
        if output_init is None:
            output_init = "default" if gate is not None and float(gate) == 0.0 else "zero"
        elif output_init == "zero" and gate is not None and float(gate) == 0.0:
            raise ValueError("gate=0.0 with output_init='zero' can never learn (each blocks the other's gradient)")
        self.output_init = output_init
        self.init_output()

    @torch.no_grad()
    def init_output(self) -> None:
        """Zero the output projection when ``output_init="zero"`` (a model that draws its linear layers again calls
        this after them). A parameter that ``transformers`` marks as loaded from a checkpoint is left as it is."""
        if self.output_init != "zero":
            return
        for parameter in (self.cross_attention.output.weight, self.cross_attention.output.bias):
            if not getattr(parameter, "_is_hf_initialized", False):
                parameter.zero_()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """PyTorch's default initialisation for the attention and the norms; the gate back to its initial value."""
        for module in (self.cross_attention.query, self.cross_attention.key_value, self.cross_attention.output):
            module.reset_parameters()
        self.ln_working.reset_parameters()
        self.ln_reminded.reset_parameters()
        if self.gate is not None:
            self.gate.fill_(self.initial_gate)
        self.init_output()

    def _pass(
        self,
        hidden: torch.Tensor,
        norm: nn.LayerNorm,
        memories: torch.Tensor,
        mask: Optional[torch.Tensor],
        gate: Optional[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        attended, weights = self.cross_attention(hidden if self.post_norm else norm(hidden), memories, mask)
        if gate is not None:
            attended = gate.to(attended.dtype) * attended
        return (norm(hidden + attended) if self.post_norm else hidden + attended), weights

    def forward(self, hidden_states: torch.Tensor, read: MemoryRead) -> MemoryReaderOutput:
        """Read ``read``'s memories into ``hidden_states`` [B, L, D].

        A pass whose memories are missing (None) or empty (zero width) is skipped: a :class:`MemoryRead` with
        nothing in it leaves the hidden states as they are.
        """
        if not isinstance(read, MemoryRead):
            raise TypeError(f"read must be a MemoryRead (from MemoriaMemory), got {type(read).__name__}")
        hidden = hidden_states
        working_gate, reminded_gate = (None, None) if self.gate is None else (self.gate[0], self.gate[1])
        if read.working is not None and read.working.size(1) > 0:
            hidden, _ = self._pass(hidden, self.ln_working, read.working, None, working_gate)
        reminded_attention = None
        if read.reminded is not None and read.reminded.size(1) > 0:
            hidden, reminded_attention = self._pass(
                hidden, self.ln_reminded, read.reminded, read.reminded_mask, reminded_gate
            )
        return MemoryReaderOutput(hidden, reminded_attention)
