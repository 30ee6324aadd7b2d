"""MemoriaLayer: one memory read for a model of your own, with the memory and the previous segment kept inside.

Shapes: B batch, L segment length, D hidden.
"""

from contextlib import contextmanager
from typing import Any, Iterator, Optional, Union

import torch
from torch import nn

from .memory import MemoriaMemory
from .reader import MemoryReader

LAYER_STATE_FORMAT = "memoria.nn.MemoriaLayer"


class MemoriaLayer(nn.Module):
    """A :class:`MemoriaMemory` and one :class:`MemoryReader`, wired for a model that reads memory at one place.

        Each call takes the hidden states of one segment [B, L, D]: the memory writes what the layer received on the
        previous call (so a document's first segment reads nothing), reminds, the reader reads the working and reminded
        memories, and the lifespans are adjusted from the attention. The hidden states received are kept (detached) for
        the next call's write (detached, except inside :func:`memoria.nn.unrolled`, where a training loop that
    backpropagates once over several segments lets the loss reach the earlier segments through the memory). Call
    :meth:`reset` between documents.

        Args:
            hidden_dim: width D.
            num_heads: the reader's attention heads.
            num_working_memories: working memories written per segment.
            dropout, layer_norm_eps, post_norm, gate, output_init: the reader's (see :class:`MemoryReader`); by
                default its output projection starts at zero, so the layer starts as the identity and learns to read.
            **memory_options: :class:`MemoriaMemory`'s keyword arguments (``num_reminded_stm``, ``stm_capacity``,
                ``ltm_search_depth``, ``initial_lifespan``, ``num_final_ltms``, ``memory_init`` ...).

        Example::

            layer = MemoriaLayer(hidden_dim=64, num_heads=4, num_working_memories=8, num_reminded_stm=16,
                                 stm_capacity=64, ltm_search_depth=4, initial_lifespan=5, num_final_ltms=16)
            for tokens in segments:                 # consecutive segments of one batch of documents
                hidden = embed(tokens)              # [B, L, D]
                hidden = layer(hidden)              # + what the memory holds of the earlier segments
                loss = loss_fn(head(hidden), ...)
            layer.reset()                           # new documents
    """

    def __init__(
        self,
        hidden_dim: int,
        num_heads: int,
        num_working_memories: int = 128,
        *,
        dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
        post_norm: bool = False,
        gate: Optional[float] = None,
        output_init: Optional[str] = None,
        **memory_options: Any,
    ) -> None:
        super().__init__()
        self.memory = MemoriaMemory(hidden_dim, num_working_memories, **memory_options)
        self.reader = MemoryReader(hidden_dim, num_heads, dropout, layer_norm_eps, post_norm, gate, output_init)
        self.previous_hidden: Optional[torch.Tensor] = None  # [B, L, D] the last segment received, to write next
        self.previous_mask: Optional[torch.Tensor] = None  # [B, L] its mask (None: all real)

    def forward(self, hidden_states: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``hidden_states`` [B, L, D] (``mask`` [B, L]: True at real positions) -> [B, L, D] with the memory read."""
        if not isinstance(hidden_states, torch.Tensor) or hidden_states.dim() != 3:
            raise ValueError("hidden_states must be a [B, L, D] tensor")
        if self.previous_hidden is not None and self.previous_hidden.size(0) != hidden_states.size(0):
            raise ValueError(
                f"hidden_states hold {hidden_states.size(0)} rows but the memory holds {self.previous_hidden.size(0)}:"
                " call reset() before a new batch of documents"
            )
        if mask is not None and mask.shape != hidden_states.shape[:2]:
            raise ValueError(f"mask must be [B, L] = {list(hidden_states.shape[:2])}, got {list(mask.shape)}")
        read = self.memory(self.previous_hidden, self.previous_mask)
        out = self.reader(hidden_states, read)
        self.memory.adjust(read, [out.reminded_attention], query_mask=mask)
        # kept in the graph inside memoria.nn.unrolled(): the next segment's loss then reaches this one
        self.previous_hidden = hidden_states if self.memory.keeps_written_graph else hidden_states.detach()
        self.previous_mask = None if mask is None else mask.detach().to(torch.bool)
        return out.hidden_states

    @contextmanager
    def unrolled(self) -> Iterator[None]:
        """The memory's :meth:`MemoriaMemory.unrolled`; when it ends, the kept segment is detached (its graph is the
        finished step's). :func:`memoria.nn.unrolled` opens this for every layer of a model."""
        try:
            with self.memory.unrolled():
                yield
        finally:
            if self.previous_hidden is not None:
                self.previous_hidden = self.previous_hidden.detach()

    def reset(self) -> None:
        """Forget everything (call between documents)."""
        self.memory.reset()
        self.previous_hidden = self.previous_mask = None

    def reset_rows(self, rows: Union[torch.Tensor, list[int]]) -> None:
        """Forget the batch rows ``rows`` (bool mask [B] or row indices) only; the kept segment of those rows is
        masked out, so their next write abstracts nothing of the old document."""
        self.memory.reset_rows(rows)
        if self.previous_hidden is not None:
            batch, length = self.previous_hidden.shape[:2]
            device = self.previous_hidden.device
            mask = torch.ones(batch, length, dtype=torch.bool, device=device)
            if self.previous_mask is not None:
                mask = self.previous_mask.clone()
            mask[torch.as_tensor(rows, device=device)] = False
            self.previous_mask = mask

    def memory_state_dict(self) -> dict[str, Any]:
        """The memory's engrams and the kept segment: per-document state, not weights."""
        return {
            "format": LAYER_STATE_FORMAT,
            "memory": self.memory.memory_state_dict(),
            "previous_hidden": None if self.previous_hidden is None else self.previous_hidden.detach(),
            "previous_mask": self.previous_mask,
        }

    def load_memory_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`memory_state_dict` returned (same arguments), onto this layer's device."""
        if not isinstance(state, dict) or state.get("format") != LAYER_STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"state must be a MemoriaLayer.memory_state_dict() ({LAYER_STATE_FORMAT!r}), got {found!r}"
            )
        hidden, mask = state.get("previous_hidden"), state.get("previous_mask")
        dim = self.memory.hidden_dim
        if hidden is not None and (not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or hidden.size(2) != dim):
            raise ValueError(f"state['previous_hidden'] must be None or a [B, L, {dim}] tensor")
        if mask is not None and (
            hidden is None or not isinstance(mask, torch.Tensor) or mask.shape != hidden.shape[:2]
        ):
            raise ValueError("state['previous_mask'] must be None or a [B, L] tensor beside previous_hidden")
        self.memory.load_memory_state_dict(state["memory"])
        device = self.memory.abstractor.query_embeddings.device
        self.previous_hidden = None if hidden is None else hidden.to(device)
        self.previous_mask = None if mask is None else mask.to(device=device, dtype=torch.bool)

    def _apply(self, fn: Any, recurse: bool = True) -> "MemoriaLayer":
        super()._apply(fn, recurse)
        if self.previous_hidden is not None and self.memory.abstractor.query_embeddings.device.type != "meta":
            with torch.no_grad():
                self.previous_hidden = fn(self.previous_hidden)
            if self.previous_mask is not None:
                self.previous_mask = self.previous_mask.to(self.previous_hidden.device)
        return self
