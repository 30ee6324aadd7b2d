"""Recurrent Memory Transformer (Bulatov et al., 2022) from PyPI (``recurrent-memory-transformer-pytorch``), wrapped
as a registry model: an optional peer, installed with ``pip install -r experiment/requirements-peers.txt``.

The model reads a whole example at once (``whole_example`` in the registry) and walks it itself in segments of
``segment_length`` tokens: each segment is read with ``num_memory_tokens`` read-memory tokens in front and as many
write-memory tokens behind; the written memories, and (``use_xl_memories``) the library's Transformer-XL cache of
the last segment, go to the next segment. The memories keep their autograd graph, so the loss of the last segment
trains through every earlier one (backpropagation through time, as RMT trains; ``detach_memory`` cuts it between
segments, the ablation). Everything else is the library's model with its defaults.
"""

from typing import Any, Optional

import torch
from recurrent_memory_transformer_pytorch import RecurrentMemoryTransformer
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .lm_head import causal_lm_loss


class RMTConfig(PretrainedConfig):
    """``vocab_size``; ``n_embd`` (the library's ``dim``), ``n_layer`` (``depth``), ``n_head`` (``heads``),
    ``head_dim`` (``dim_head``, default n_embd / n_head); ``num_memory_tokens``; ``segment_length`` (``seq_len``:
    the task sets it to its own); ``use_xl_memories``; ``detach_memory``; ``num_residual_streams`` (the library's
    hyper-connections, default 4 as there); ``attn_dropout``, ``ff_dropout``."""

    model_type = "rmt"

    def __init__(
        self,
        vocab_size: int = 32,
        n_embd: int = 64,
        n_layer: int = 2,
        n_head: int = 4,
        head_dim: Optional[int] = None,
        num_memory_tokens: int = 8,
        segment_length: int = 32,
        use_xl_memories: bool = True,
        detach_memory: bool = False,
        num_residual_streams: int = 4,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if num_memory_tokens < 1 or segment_length < 1:
            raise ValueError(
                f"num_memory_tokens and segment_length must be >= 1, got {num_memory_tokens}, {segment_length}"
            )
        self.vocab_size = vocab_size
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.head_dim = head_dim or n_embd // n_head
        self.num_memory_tokens = num_memory_tokens
        self.segment_length = segment_length
        self.use_xl_memories = use_xl_memories
        self.detach_memory = detach_memory
        self.num_residual_streams = num_residual_streams
        self.attn_dropout = attn_dropout
        self.ff_dropout = ff_dropout
        super().__init__(**kwargs)


class RMTForCausalLM(PreTrainedModel):
    """The library's ``RecurrentMemoryTransformer`` walked over a whole example."""

    config_class = RMTConfig
    base_model_prefix = "rmt"

    def __init__(self, config: RMTConfig) -> None:
        super().__init__(config)
        self.rmt = RecurrentMemoryTransformer(
            config.n_embd,
            num_tokens=config.vocab_size,
            depth=config.n_layer,
            num_memory_tokens=config.num_memory_tokens,
            seq_len=config.segment_length,
            heads=config.n_head,
            dim_head=config.head_dim,
            use_xl_memories=config.use_xl_memories,
            num_residual_streams=config.num_residual_streams,
            attn_dropout=config.attn_dropout,
            ff_dropout=config.ff_dropout,
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """The library initialises its own modules."""

    def forward(self, input_ids: torch.Tensor, labels: Optional[torch.Tensor] = None) -> CausalLMOutput:
        """input_ids [Batch, Length] (any length: walked in segments) -> logits [Batch, Length, Vocab]."""
        memories, xl_memories, logits = None, None, []
        for segment in input_ids.split(self.config.segment_length, dim=1):
            segment_logits, memories, xl_memories = self.rmt(segment, memories, xl_memories=xl_memories)
            if self.config.detach_memory:
                memories = memories.detach()
            logits.append(segment_logits)
        logits = torch.cat(logits, dim=1)  # (B, T, V)
        return CausalLMOutput(logits=logits, loss=None if labels is None else causal_lm_loss(logits, labels))
