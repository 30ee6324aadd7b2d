"""Titans, memory as context (Behrouz et al., 2024), from PyPI (``titans-pytorch``), wrapped as a registry model: an
optional peer, installed with ``pip install -r experiment/requirements-peers.txt``.

The library's ``MemoryAsContextTransformer`` reads a whole example at once (``whole_example`` in the registry):
attention is limited to windows of ``segment_length`` tokens (the task sets it to its own segment length), each with
``num_longterm_mem_tokens`` tokens read from the neural memory and ``num_persist_mem_tokens`` learned ones in front;
the neural memory, a small MLP updated at test time by its surprise, carries what lies outside the window. The whole
example is one autograd graph, as the library trains it. Everything else is the library's model with its defaults.
"""

from typing import Any, Optional

import torch
from titans_pytorch import MemoryAsContextTransformer
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .lm_head import causal_lm_loss


class TitansMACConfig(PretrainedConfig):
    """``vocab_size``; ``n_embd`` (the library's ``dim``), ``n_layer`` (``depth``), ``n_head`` (``heads``),
    ``head_dim`` (``dim_head``, default n_embd / n_head); ``segment_length`` (``segment_len``, the attention window);
    ``num_longterm_mem_tokens``, ``num_persist_mem_tokens``; ``num_residual_streams`` (default 4 as there)."""

    model_type = "titans_mac"

    def __init__(
        self,
        vocab_size: int = 32,
        n_embd: int = 64,
        n_layer: int = 2,
        n_head: int = 4,
        head_dim: Optional[int] = None,
        segment_length: int = 32,
        num_longterm_mem_tokens: int = 8,
        num_persist_mem_tokens: int = 4,
        num_residual_streams: int = 4,
        **kwargs: Any,
    ) -> None:
        if segment_length < 1:
            raise ValueError(f"segment_length must be >= 1, got {segment_length}")
        self.vocab_size = vocab_size
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.head_dim = head_dim or n_embd // n_head
        self.segment_length = segment_length
        self.num_longterm_mem_tokens = num_longterm_mem_tokens
        self.num_persist_mem_tokens = num_persist_mem_tokens
        self.num_residual_streams = num_residual_streams
        super().__init__(**kwargs)


class TitansMACForCausalLM(PreTrainedModel):
    """The library's ``MemoryAsContextTransformer`` over a whole example."""

    config_class = TitansMACConfig
    base_model_prefix = "titans"

    def __init__(self, config: TitansMACConfig) -> None:
        super().__init__(config)
        self.titans = MemoryAsContextTransformer(
            num_tokens=config.vocab_size,
            dim=config.n_embd,
            depth=config.n_layer,
            segment_len=config.segment_length,
            num_longterm_mem_tokens=config.num_longterm_mem_tokens,
            num_persist_mem_tokens=config.num_persist_mem_tokens,
            heads=config.n_head,
            dim_head=config.head_dim,
            num_residual_streams=config.num_residual_streams,
        )
        # The neural memory keeps its MLP's starting weights as a second parameter list, for one memory head views of
        # the MLP's own parameters. Only that list is read in the forward pass (the MLP is called functionally with
        # it); giving it storage of its own changes nothing computed and lets save_pretrained write both.
        for module in self.titans.modules():
            if isinstance(getattr(module, "memory_model_parameters", None), nn.ParameterList):
                module.memory_model_parameters = nn.ParameterList(
                    nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
                    for p in module.memory_model_parameters
                )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """The library initialises its own modules."""

    def forward(self, input_ids: torch.Tensor, labels: Optional[torch.Tensor] = None) -> CausalLMOutput:
        """input_ids [Batch, Length] -> logits [Batch, Length, Vocab]."""
        logits = self.titans(input_ids)  # (B, T, V)
        return CausalLMOutput(logits=logits, loss=None if labels is None else causal_lm_loss(logits, labels))
