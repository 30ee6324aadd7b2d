"""Generation state of a Memoria Transformer: the key/value cache of the current segment and the memory read for it.

Text is read in segments of ``segment_length`` tokens, as in training. While a segment fills up, each new token
attends to the segment's earlier tokens through the key/value cache and to the memories read at the segment's start
(the previous segment's working memories and what ``Memoria.remind`` returned). When a segment is complete, the
attention its reminded memories received becomes their lifespan gain (``adjust_lifespan_and_memories``), and its
hidden states become the next segment's working memories. A partly filled segment has not adjusted the memory yet.
"""

from dataclasses import dataclass, field
from typing import Optional

import torch

from memoria.nn import MemoryRead


@dataclass
class MemoriaGenerationCache:
    """Per-sequence state that :meth:`MemoriaTransformerLMHeadModel.forward` carries between generation steps.

    It is created by the model (``use_cache=True`` or ``generate``) and returned as ``output.cache``; pass it back
    as ``cache`` with the next tokens. It holds the batch's place in the text, not weights.

    Attributes:
        segment_length: tokens per segment.
        key_values: per layer, the current segment's keys and values, each [Batch, Heads, Filled, HeadDim].
        memory: what the current segment reads from memory (:class:`memoria.nn.MemoryRead`).
        segment_hidden: final hidden states of the current segment's tokens so far, [Batch, Filled, Dim] pieces.
        reminded_attentions: per layer, the reminded attention of those tokens, [Batch, Heads, Filled, R] pieces.
        previous_hidden: the last complete segment's final hidden states [Batch, SegmentLength, Dim] (detached),
            None before the first segment is complete.
        seen_tokens: tokens read so far.
    """

    segment_length: int
    key_values: list[Optional[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=list)
    memory: MemoryRead = field(default_factory=MemoryRead)
    segment_hidden: list[torch.Tensor] = field(default_factory=list)
    reminded_attentions: list[list[torch.Tensor]] = field(default_factory=list)
    previous_hidden: Optional[torch.Tensor] = None
    seen_tokens: int = 0

    # What transformers' generation loop asks of a cache: not compilable, not croppable, and input_ids of a
    # continued call are cut after the tokens already read (``get_seq_length``).
    is_compileable = False
    is_croppable = False
    is_linear = (False,)

    def __post_init__(self) -> None:
        if not isinstance(self.segment_length, int) or isinstance(self.segment_length, bool) or self.segment_length < 1:
            raise ValueError(f"segment_length must be a positive int, got {self.segment_length!r}")

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens read so far (all segments)."""
        return self.seen_tokens

    @property
    def filled(self) -> int:
        """Tokens of the current segment read so far (0 at a segment boundary)."""
        return sum(piece.size(1) for piece in self.segment_hidden)

    def start_segment(self, num_layers: int, memory: MemoryRead) -> None:
        """Begin a segment that reads ``memory``."""
        self.key_values = [None] * num_layers
        self.reminded_attentions = [[] for _ in range(num_layers)]
        self.segment_hidden = []
        self.memory = memory
