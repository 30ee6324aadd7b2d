"""MemoriaMemory: a ``Memoria`` and its ``Abstractor`` as one module that runs the paper's per-segment protocol.

Per segment of a document:

1. **write**: the hidden states given (e.g. the previous segment's, [B, L, D], with an optional padding mask [B, L])
   become W working memories through the abstractor, added to ``Memoria``;
2. **remind**: ``Memoria`` returns the R engrams the working memories call up;
3. the model reads the working and reminded memories (:class:`~memoria.nn.MemoryReader`, one per layer);
4. **adjust**: the attention the reminded memories received becomes their lifespan gain, and ``Memoria`` ages,
   promotes and forgets engrams.

``read = memory(hidden_states, mask)`` does 1–2 and returns a :class:`~memoria.nn.MemoryRead`;
``memory.adjust(read, attentions)`` does 4. The host-side work of the memory (``Memoria``'s calls) sits behind
``torch.compiler.disable``: a compiled model breaks its graph there (once per call of each) and nowhere else in the
memory. The abstractor and the lifespan arithmetic are traced with the model.

Shapes: B batch, L segment length, W working memories, R reminded memories, D hidden, H heads.
"""

from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from torch import nn

from ..abstractor import Abstractor
from ..memoria import Memoria
from .init import MEMORY_INITS, init_abstractor
from .read import MemoryRead
from .recent_writes import RecentWrites

#: ``MemoriaMemory.memory_state_dict()``'s format tag (the experiment models' memory files carry it too).
STATE_FORMAT = "memoria.state_dict"


def lifespan_delta(
    reminded_attentions: Sequence[torch.Tensor],
    lifespan_extend_scale: float,
    query_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Lifespan gain of each reminded memory from the attention it received.

    The attention is averaged over layers, heads and real query positions, then multiplied by the number of
    reminded memories (so that uniform attention gives a gain of ``lifespan_extend_scale``) and by the scale.

    Args:
        reminded_attentions: one [B, H, L, R] tensor per layer.
        lifespan_extend_scale: the paper's configs use 8.
        query_mask: [B, L], True (or 1) at real tokens; padding positions then add nothing to the mean.
            None means every position is real. A row with no real position gets zero deltas.
    Returns:
        [B, R] lifespan deltas, float32, detached.
    """
    if len(reminded_attentions) == 0:
        raise ValueError("lifespan_delta needs the attention weights of at least one layer")
    stacked = torch.stack([attention.detach().float() for attention in reminded_attentions])  # (Ly, B, H, L, R)
    if query_mask is None:
        mean_attention = stacked.mean(dim=(0, 2, 3))  # (B, R)
    else:
        batch, length = stacked.shape[1], stacked.shape[3]
        if query_mask.shape != (batch, length):
            raise ValueError(f"query_mask must be [{batch}, {length}], got {list(query_mask.shape)}")
        real = query_mask.to(device=stacked.device, dtype=torch.bool)[..., None]  # (B, L, 1)
        per_query = torch.where(real, stacked.mean(dim=(0, 2)), 0.0)  # (B, L, R)
        mean_attention = per_query.sum(dim=1) / real.sum(dim=1).clamp(min=1)  # (B, R)
    return mean_attention * mean_attention.size(1) * lifespan_extend_scale


def _count(value: Any, name: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class MemoriaMemory(nn.Module):
    """One ``Memoria`` and its ``Abstractor``: write, remind, then adjust, once per segment.

    The memory's state (the engrams) is per-document state, not weights: it is not in ``state_dict()``; save it
    with :meth:`memory_state_dict` (or :func:`memoria.nn.save_memory`). It moves with the module (``.to()``,
    ``.cuda()``), is kept in float32 whatever the model's dtype, and reads come back in the hidden states' dtype
    and device. Call :meth:`reset` between documents, or :meth:`reset_rows` where a new document starts in some
    batch rows.

    Args:
        hidden_dim: width D of the hidden states and the memories.
        num_working_memories: W, working memories the abstractor writes per segment.
        abstractor_feedforward_dim: the abstractor's inner width (None: ``hidden_dim``).
        num_reminded_stm, stm_capacity, ltm_search_depth, initial_lifespan, num_final_ltms: ``Memoria``'s
            arguments (see :class:`memoria.Memoria`); the defaults are the paper's language-modelling settings.
        lifespan_extend_scale: a reminded memory gains ``mean attention * R * scale`` lifespan (the paper: 8).
        memory_init: how the abstractor starts: ``"scaled"`` (default; distinct memories whose size does not shrink
            with the width) or ``"paper"`` (the authors' N(0, ``init_std``), which shrinks them at small widths);
            see :func:`memoria.nn.abstractor_init_stds`.
        init_std: the ``"paper"`` scheme's standard deviation (a model's ``initializer_range``).
        write_norm: True (default): a layer norm on what the abstractor writes, so that every engram (stored,
            searched by ``remind`` and read) has the same scale; False: the paper's raw abstractor output.
        layer_norm_eps: that layer norm's epsilon.
        unroll_segments: K >= 0 (default 4). Inside :meth:`unrolled` (opened by a loop that backpropagates once
            over several segments, e.g. :func:`memoria.nn.unrolled`), a reminded engram written by one of the last K
            writes is read from that write's live output, and the hidden states written are kept in the graph by
            their owner (:class:`MemoriaLayer`, a model: see :attr:`keeps_written_graph`): the loss of a segment
            reaches the writes, and the forward passes, of the K segments before it (truncated backpropagation
            through the memory). The values read are unchanged. 0, or outside the context: the paper's detached
            engrams.
        write_gradient_segments: K >= 0, for loops that backpropagate every segment. 0 (default, the paper's form):
            engrams are stored detached, and only the working memories of the current segment carry a gradient to
            the abstractor. K > 0: a reminded engram written by one of the last K writes carries the gradient of
            the loss back to the abstractor, which is run again on the kept inputs of that write (see
            ``memoria.nn.recent_writes``); its value is unchanged.
        independent_rows, keep_history, generator: passed to ``Memoria``.

    Example::

        memory = MemoriaMemory(hidden_dim=64, num_working_memories=8, num_reminded_stm=16, stm_capacity=64,
                               ltm_search_depth=4, initial_lifespan=5, num_final_ltms=16)
        reader = MemoryReader(hidden_dim=64, num_heads=4)
        previous = None
        for segment in document:                      # hidden states [B, L, D] of consecutive segments
            read = memory(previous)                   # write the previous segment, remind (empty the first time)
            out = reader(segment, read)
            memory.adjust(read, [out.reminded_attention])
            previous = out.hidden_states.detach()
        memory.reset()                                # before the next document
    """

    def __init__(
        self,
        hidden_dim: int,
        num_working_memories: int = 128,
        *,
        abstractor_feedforward_dim: Optional[int] = None,
        num_reminded_stm: int = 256,
        stm_capacity: int = 512,
        ltm_search_depth: int = 10,
        initial_lifespan: float = 5,
        num_final_ltms: int = 640,
        lifespan_extend_scale: float = 8.0,
        memory_init: str = "scaled",
        init_std: float = 0.02,
        write_norm: bool = True,
        layer_norm_eps: float = 1e-5,
        unroll_segments: int = 4,
        write_gradient_segments: int = 0,
        independent_rows: bool = False,
        keep_history: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__()
        if memory_init not in MEMORY_INITS:
            raise ValueError(f"memory_init must be one of {MEMORY_INITS}, got {memory_init!r}")
        if not isinstance(lifespan_extend_scale, (int, float)) or isinstance(lifespan_extend_scale, bool):
            raise TypeError(f"lifespan_extend_scale must be a number, got {type(lifespan_extend_scale).__name__}")
        self.write_gradient_segments = _count(write_gradient_segments, "write_gradient_segments", minimum=0)
        self.unroll_segments = _count(unroll_segments, "unroll_segments", minimum=0)
        if not isinstance(write_norm, bool):
            raise TypeError(f"write_norm must be a bool, got {type(write_norm).__name__}")
        self.lifespan_extend_scale = float(lifespan_extend_scale)
        self.memory_init = memory_init
        self.abstractor = Abstractor(
            _count(num_working_memories, "num_working_memories"),
            _count(hidden_dim, "hidden_dim"),
            _count(abstractor_feedforward_dim or hidden_dim, "abstractor_feedforward_dim"),
        )
        init_abstractor(self.abstractor, memory_init, init_std)
        self.write_norm = nn.LayerNorm(hidden_dim, eps=layer_norm_eps) if write_norm else None
        self._unrolled = False
        # A plain attribute, not a module: the engrams are state, not parameters. Engram ids find the recent writes.
        self.memoria = Memoria(
            num_reminded_stm=num_reminded_stm,
            stm_capacity=stm_capacity,
            ltm_search_depth=ltm_search_depth,
            initial_lifespan=initial_lifespan,
            num_final_ltms=num_final_ltms,
            track_id=self.write_gradient_segments > 0 or self.unroll_segments > 0,
            keep_history=keep_history,
            independent_rows=independent_rows,
            generator=generator,
        )
        self.recent_writes = RecentWrites(max(self.write_gradient_segments, self.unroll_segments))

    @property
    def hidden_dim(self) -> int:
        return self.abstractor.query_embeddings.size(-1)

    @property
    def num_working_memories(self) -> int:
        return self.abstractor.query_embeddings.size(1)

    def extra_repr(self) -> str:
        config = self.memoria.config()
        names = ("num_reminded_stm", "stm_capacity", "ltm_search_depth", "initial_lifespan", "num_final_ltms")
        memoria = ", ".join(f"{name}={config[name]}" for name in names)
        return (
            f"{memoria}, lifespan_extend_scale={self.lifespan_extend_scale}, memory_init={self.memory_init!r}, "
            f"write_norm={self.write_norm is not None}, unroll_segments={self.unroll_segments}, "
            f"write_gradient_segments={self.write_gradient_segments}"
        )

    # ------------------------------------------------------------------ backpropagation through segments

    @contextmanager
    def unrolled(self) -> Iterator[None]:
        """Within this context, with grad enabled, the last ``unroll_segments`` writes are read live (see the class
        docstring). Open it around the segments of one example whose losses are backpropagated together; a loop
        that steps the optimiser after every segment must not (it would reach into a freed graph)."""
        self.recent_writes.clear()
        self._unrolled = self.unroll_segments > 0
        try:
            yield
        finally:
            self._unrolled = False
            self.recent_writes.clear()

    @property
    def keeps_written_graph(self) -> bool:
        """True inside :meth:`unrolled` (``unroll_segments`` > 0, grad enabled): whoever carries the hidden states
        to write next keeps them in the graph instead of detaching them."""
        return self._unrolled and torch.is_grad_enabled()

    def write(self, hidden_states: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The working memories [B, W, D] that ``hidden_states`` [B, L, D] (``mask`` [B, L]) abstract to: the
        abstractor, then the write norm."""
        working = self.abstractor(hidden_states, mask)
        return working if self.write_norm is None else self.write_norm(working)

    # ------------------------------------------------------------------ the protocol

    def forward(self, hidden_states: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None) -> MemoryRead:
        """Write ``hidden_states`` [B, L, D] (``mask`` [B, L]: True at real positions; None: all real) and remind.

        Returns the :class:`MemoryRead` of the segment: working [B, W, D] (with the abstractor's gradient),
        reminded [B, R, D], reminded_mask [B, R] and reminded_indices [B, R], in ``hidden_states``' dtype and on its
        device. ``hidden_states=None`` writes nothing and returns an empty read (a document's first segment).
        """
        if hidden_states is None:
            return MemoryRead()
        working = self.write(hidden_states, mask)  # (B, W, D)
        live = self.keeps_written_graph
        with_ids = live or self.write_gradient_segments > 0
        reminded, indices, ids, first_id = self._write_and_remind(working.detach(), with_ids)  # (B, R, D), (B, R)
        reminded = reminded.to(working.dtype)
        if live:
            reminded = self.recent_writes.with_gradient(self.write, reminded, ids)
            live_working = working if working.requires_grad else None
            self.recent_writes.add(hidden_states, mask, first_id, live=live_working, keep=self.unroll_segments)
        elif self.write_gradient_segments:
            if torch.is_grad_enabled():
                reminded = self.recent_writes.with_gradient(self.write, reminded, ids)
            self.recent_writes.add(hidden_states, mask, first_id, keep=self.write_gradient_segments)
        return MemoryRead(working, reminded, indices >= 0, indices)

    def adjust(
        self,
        read: MemoryRead,
        reminded_attentions: Sequence[Optional[torch.Tensor]],
        query_mask: Optional[torch.Tensor] = None,
    ) -> Optional[torch.Tensor]:
        """Give the reminded memories of ``read`` their lifespan gain (:func:`lifespan_delta` of the attention they
        received, one [B, H, L, R] tensor per layer; None entries are skipped), then age, promote and forget.

        ``query_mask`` [B, L]: True at real tokens (padding adds nothing to the gain). Call it once per segment,
        after the forward pass that read ``read``. Returns the deltas [B, R] (zeros when no layer attended), or
        None for a read without reminded memories (nothing to adjust).
        """
        if not isinstance(read, MemoryRead):
            raise TypeError(f"read must be the MemoryRead the memory returned, got {type(read).__name__}")
        if read.reminded_indices is None:
            return None
        attentions = [attention for attention in reminded_attentions if attention is not None]
        if attentions:
            delta = lifespan_delta(attentions, self.lifespan_extend_scale, query_mask)
        else:
            delta = torch.zeros(read.reminded_indices.shape, device=read.reminded_indices.device)
        self._adjust(read.reminded_indices, delta)
        return delta

    # The memory boundary: host-side work that dynamo must not trace (data-dependent shapes, C extensions).

    @torch.compiler.disable
    def _write_and_remind(
        self, working: torch.Tensor, with_ids: bool
    ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Add ``working`` [B, W, D] to ``Memoria`` and remind: memories [B, R, D], indices [B, R], and with
        ``with_ids`` the reminded engrams' ids [B, R] (-1: none) and the first new engram's id."""
        first_id = ids = None
        if with_ids:  # a tensor: a compiled model would recompile for each new int
            first_id = torch.tensor(self.memoria.next_engram_id, device=working.device)
        self.memoria.add_working_memory(working)
        reminded, indices = self.memoria.remind()
        indices = indices.to(working.device)
        if with_ids:
            engram_ids = self.memoria.engrams.engram_ids.to(working.device)  # (B, M)
            ids = engram_ids.gather(1, indices.clamp(min=0)).long().masked_fill(indices < 0, -1)
        return reminded, indices, ids, first_id

    @torch.compiler.disable
    def _adjust(self, indices: torch.Tensor, delta: torch.Tensor) -> None:
        self.memoria.adjust_lifespan_and_memories(indices, delta)

    # ------------------------------------------------------------------ state

    @torch.compiler.disable
    def reset(self) -> None:
        """Forget everything (call between documents)."""
        self.memoria.reset_memory()
        self.recent_writes.clear()

    @torch.compiler.disable
    def reset_rows(self, rows: Union[torch.Tensor, list[int]]) -> None:
        """Forget the batch rows ``rows`` (bool mask [B] or row indices) only: a new document starts there."""
        self.memoria.reset_memory_rows(rows)
        if self.recent_writes.writes:
            batch = self.recent_writes.writes[0].rows.size(0)
            mask = torch.zeros(batch, dtype=torch.bool)
            mask[torch.as_tensor(rows).cpu()] = True
            self.recent_writes.clear_rows(mask)

    def memory_state_dict(self) -> dict[str, Any]:
        """The engrams held now (``Memoria.state_dict()``), tagged with their format: plain tensors and numbers."""
        return {"format": STATE_FORMAT, "state": self.memoria.state_dict()}

    def load_memory_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`memory_state_dict` returned (from a memory with the same arguments), onto this
        module's device; checked before anything changes."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state must be a MemoriaMemory.memory_state_dict() ({STATE_FORMAT!r}), got {found!r}")
        self.memoria.load_state_dict(state["state"])
        self.recent_writes.clear()

    def _apply(self, fn: Any, recurse: bool = True) -> "MemoriaMemory":
        """``.to()``, ``.cuda()``, ``.half()``... move the engrams with the parameters (they stay float32)."""
        super()._apply(fn, recurse)
        device = self.abstractor.query_embeddings.device
        if device.type != "meta":
            self.memoria.to(device)
            with torch.no_grad():
                self.recent_writes.apply(fn)
        return self
