"""The inputs of the memory's last K writes, so that a later segment's loss can reach the write through the engrams.

``Memoria`` stores engrams detached (the paper's form): a loss after segment t never reaches what the abstractor wrote
at segment t - k. With ``write_gradient_segments = K > 0``, :class:`~memoria.nn.MemoriaMemory` keeps what each of its
last K writes abstracted (the hidden states and mask, detached) with the id of the first engram it made. When a
reminded engram comes from one of them, the abstractor is run on those inputs again in the current segment and the
reminded vector becomes ``stored + (recomputed - recomputed.detach())``: its value is the stored engram exactly, its
gradient reaches the abstractor's parameters as if the engram had been written now. Nothing is retained from the
earlier segments' autograd graphs, so the earlier segments may run under ``no_grad`` and every segment may have its own
``backward()``; the gradient stops at the abstractor (not the hidden states of the earlier segments).

Inside ``MemoriaMemory.unrolled()`` (``unroll_segments``: one backward over several segments) each write also keeps
its live output, and the reminded engrams of it are read through that instead: nothing is run again, and the
gradient goes on into the hidden states that were written.

Shapes: B batch, L segment length, W working memories per write, R reminded memories, D hidden.
"""

from dataclasses import dataclass
from typing import Callable, Optional

import torch


@dataclass
class Write:
    """One write: its inputs (detached), the id of its first engram (the others follow), and the rows it still
    stands for (a row reset since then does not hold its engrams any more)."""

    hidden_states: torch.Tensor  # [B, L, D]
    mask: Optional[torch.Tensor]  # [B, L]
    first_id: torch.Tensor  # 0-dim long (a tensor: a compiled model would otherwise recompile for each write)
    rows: torch.Tensor  # [B] bool
    live: Optional[torch.Tensor] = None  # [B, W, D] the write's output in the graph (MemoriaMemory.unrolled)


class RecentWrites:
    """The last ``size`` writes of a memory, oldest first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.writes: list[Write] = []

    def add(
        self,
        hidden_states: torch.Tensor,
        mask: Optional[torch.Tensor],
        first_id: torch.Tensor,
        live: Optional[torch.Tensor] = None,
        keep: Optional[int] = None,
    ) -> None:
        """Keep a write: its inputs (detached) and, in an unrolled loop, its ``live`` output [B, W, D]; then the
        last ``keep`` writes (None: ``size``) are kept."""
        keep = self.size if keep is None else min(keep, self.size)
        if keep == 0:
            return
        rows = torch.ones(hidden_states.size(0), dtype=torch.bool, device=hidden_states.device)
        detached = None if mask is None else mask.detach()
        write = Write(hidden_states.detach(), detached, first_id, rows, live)
        self.writes = [*self.writes, write][-keep:]

    def clear(self) -> None:
        self.writes = []

    def clear_rows(self, rows: torch.Tensor) -> None:
        """Forget the batch rows ``rows`` (bool [B]) of every kept write."""
        for write in self.writes:
            write.rows = write.rows & ~rows.to(write.rows.device)

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Move the kept inputs as ``nn.Module._apply`` moves parameters (``.to()``, ``.half()``...)."""
        for write in self.writes:
            write.hidden_states = fn(write.hidden_states)
            write.mask = None if write.mask is None else write.mask.to(write.hidden_states.device)
            write.rows = write.rows.to(write.hidden_states.device)
            write.first_id = write.first_id.to(write.hidden_states.device)
            write.live = None  # a graph does not move; an unrolled loop moves nothing in its middle

    def with_gradient(
        self,
        write_fn: Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor],
        reminded: torch.Tensor,
        reminded_ids: torch.Tensor,
    ) -> torch.Tensor:
        """``reminded`` [B, R, D] with the gradient of the kept writes' engrams routed to their writes: through a
        write's live output where it was kept, else through ``write_fn`` (the memory's write) run again on its inputs.

        ``reminded_ids`` [B, R]: the engram id of each reminded memory (-1: none). The values are unchanged.
        """
        for write in self.writes:
            working = write.live if write.live is not None else write_fn(write.hidden_states, write.mask)  # (B, W, D)
            width = working.size(1)
            offset = reminded_ids - write.first_id  # (B, R)
            hit = (offset >= 0) & (offset < width) & (reminded_ids >= 0) & write.rows[:, None]
            index = offset.clamp(0, width - 1)[..., None].expand(-1, -1, working.size(2))  # (B, R, D)
            recomputed = working.gather(1, index).to(reminded.dtype)  # (B, R, D)
            reminded = torch.where(hit[..., None], reminded + (recomputed - recomputed.detach()), reminded)
        return reminded
