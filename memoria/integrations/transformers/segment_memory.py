"""SegmentMemory: a ``MemoriaMemory`` that also keeps the last segment it was shown, to write at the next segment.

A wrapped model reads a text segment by segment; the hidden states of a finished segment are written (abstracted
into working memories) when the next segment starts, as the Memoria Transformer does. Keeping them here makes them
part of the memory's per-document state: reset, per-row reset, save and load (also through ``memoria.nn``'s
model-wide helpers, which find this module as a ``MemoriaMemory``) cover them with the engrams.

Shapes: B batch, L segment length, D hidden, W working memories, R reminded memories.
"""

from typing import Any, Optional, Union

import torch

from memoria.nn import MemoriaMemory, MemoryRead

SEGMENT_STATE_FORMAT = "memoria.integrations.SegmentMemory"


class SegmentMemory(MemoriaMemory):
    """:class:`memoria.nn.MemoriaMemory` plus the finished segment waiting to be written.

    :meth:`next_read` writes the kept segment (if any) and reminds; :meth:`keep` stores a finished segment's final
    hidden states. Arguments: those of :class:`memoria.nn.MemoriaMemory`.
    """

    def __init__(self, hidden_dim: int, num_working_memories: int = 128, **options: Any) -> None:
        super().__init__(hidden_dim, num_working_memories, **options)
        self.previous_hidden: Optional[torch.Tensor] = None  # [B, L, D] the last finished segment, detached
        self.previous_mask: Optional[torch.Tensor] = None  # [B, L] True at its real tokens (None: all real)

    @property
    def batch_size(self) -> Optional[int]:
        """Rows of the document batch being read (None before the first segment)."""
        return None if self.previous_hidden is None else self.previous_hidden.size(0)

    def next_read(self) -> MemoryRead:
        """Write the kept segment as working memories and remind (an empty read when nothing is kept)."""
        return self(self.previous_hidden, self.previous_mask)

    def keep(self, hidden_states: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
        """Hold a finished segment's hidden states [B, L, D] (``mask`` [B, L] or None) for the next write."""
        self.previous_hidden = hidden_states.detach()
        self.previous_mask = None if mask is None else mask.detach().to(torch.bool)

    @torch.compiler.disable
    def reset(self) -> None:
        """Forget everything, the kept segment too (call between documents)."""
        super().reset()
        self.previous_hidden = self.previous_mask = None

    @torch.compiler.disable
    def reset_rows(self, rows: Union[torch.Tensor, list[int]]) -> None:
        """Forget the batch rows ``rows`` (bool mask [B] or row indices) only: their engrams, and their part of the
        kept segment is masked out, so that their next write abstracts nothing of the old document."""
        super().reset_rows(rows)
        if self.previous_hidden is not None:
            batch, length = self.previous_hidden.shape[:2]
            device = self.previous_hidden.device
            if self.previous_mask is None:
                mask = torch.ones(batch, length, dtype=torch.bool, device=device)
            else:
                mask = self.previous_mask.clone()
            mask[torch.as_tensor(rows, device=device)] = False
            self.previous_mask = mask

    def memory_state_dict(self) -> dict[str, Any]:
        """The engrams and the kept segment: per-document state, not weights (plain tensors and numbers)."""
        return {
            "format": SEGMENT_STATE_FORMAT,
            "memory": super().memory_state_dict(),
            "previous_hidden": self.previous_hidden,
            "previous_mask": self.previous_mask,
        }

    def load_memory_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`memory_state_dict` returned (same arguments) onto this module's device; everything is
        checked before anything changes."""
        if not isinstance(state, dict) or state.get("format") != SEGMENT_STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"state must be a SegmentMemory.memory_state_dict() ({SEGMENT_STATE_FORMAT!r}), got {found!r}"
            )
        hidden, mask = state.get("previous_hidden"), state.get("previous_mask")
        dim = self.hidden_dim
        if hidden is not None and (not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or hidden.size(2) != dim):
            raise ValueError(f"state['previous_hidden'] must be None or a [B, L, {dim}] tensor")
        if mask is not None and (
            hidden is None or not isinstance(mask, torch.Tensor) or mask.shape != hidden.shape[:2]
        ):
            raise ValueError("state['previous_mask'] must be None or a [B, L] tensor beside previous_hidden")
        super().load_memory_state_dict(state.get("memory"))
        parameter = self.abstractor.query_embeddings
        self.previous_hidden = None if hidden is None else hidden.to(device=parameter.device, dtype=parameter.dtype)
        self.previous_mask = None if mask is None else mask.to(device=parameter.device, dtype=torch.bool)

    def _apply(self, fn: Any, recurse: bool = True) -> "SegmentMemory":
        """``.to()`` / ``.half()`` ... move and cast the kept segment with the parameters."""
        super()._apply(fn, recurse)
        if self.previous_hidden is not None and self.abstractor.query_embeddings.device.type != "meta":
            with torch.no_grad():
                self.previous_hidden = fn(self.previous_hidden)
            if self.previous_mask is not None:
                self.previous_mask = self.previous_mask.to(self.previous_hidden.device)
        return self
