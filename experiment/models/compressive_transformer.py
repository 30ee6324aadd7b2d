"""Compressive Transformer (Rae et al., 2020): Transformer-XL memory plus a compressed memory.

Each layer keeps the last ``mem_len`` of its inputs (as Transformer-XL does) and, behind them,
``compressed_mem_len`` compressed slots. States pushed out of the memory are not dropped: every
``compression_rate`` of them become one compressed slot, through a strided 1-D convolution (``"conv"``) or
mean / max pooling. A layer attends over ``[compressed ; memory ; segment]`` with the relative-position
attention of :mod:`experiment.models.transformer_xl` (the blocks are reused, not copied).

The convolution learns only from the attention-reconstruction loss: the layer's attention (its weights
frozen for this loss) over the evicted states and over their compression should give the same output for the
current segment's queries. Memories are detached, so the language-model loss never reaches the compressor.
When the evicted count is not a multiple of ``compression_rate``, its oldest remainder is dropped.
"""

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .lm_head import TiedLMHeadMixin
from .transformer_xl import RelativeSelfAttention, TransformerXLBlock, TransformerXLConfig, init_xl_weights

COMPRESSIONS = ("conv", "mean", "max")


class CompressiveTransformerConfig(TransformerXLConfig):
    """Configuration of :class:`CompressiveTransformerLMHeadModel`.

    Transformer-XL fields (``vocab_size``, ``n_embd``, ``n_layer``, ``n_head``, ``n_inner``, ``mem_len``,
    ``dropout``, ``attn_dropout``, ``activation_function``, ``layer_norm_epsilon``, ``initializer_range``) plus
    ``compressed_mem_len`` (compressed slots per layer), ``compression_rate`` (evicted states per slot),
    ``compression`` (``"conv"``, ``"mean"`` or ``"max"``) and ``reconstruction_loss_weight`` (weight of the
    attention-reconstruction loss in ``loss``).
    """

    model_type = "compressive_transformer"

    def __init__(
        self,
        compressed_mem_len: int = 512,
        compression_rate: int = 4,
        compression: str = "conv",
        reconstruction_loss_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        if compression_rate < 1:
            raise ValueError(f"compression_rate must be >= 1, got {compression_rate}")
        self.compressed_mem_len = compressed_mem_len
        self.compression_rate = compression_rate
        self.compression = compression
        self.reconstruction_loss_weight = reconstruction_loss_weight
        super().__init__(**kwargs)


@dataclass
class CompressiveMemories:
    """Per layer, the memory ``[Batch, <= mem_len, Dim]`` and the compressed memory
    ``[Batch, <= compressed_mem_len, Dim]`` (both detached), oldest first."""

    memories: list[torch.Tensor] = field(default_factory=list)
    compressed: list[torch.Tensor] = field(default_factory=list)


@dataclass
class CompressiveTransformerOutput(ModelOutput):
    """Output of :class:`CompressiveTransformerLMHeadModel`.

    Attributes:
        loss: ``lm_loss + reconstruction_loss_weight * reconstruction_loss`` when ``labels`` were given.
        lm_loss: next-token cross-entropy (labels shifted inside, -100 ignored).
        reconstruction_loss: attention-reconstruction loss, averaged over the layers that compressed something
            in this segment (0 when none did); only the compressor receives its gradient.
        logits: [Batch, Length, VocabSize].
        last_hidden_state: [Batch, Length, Dim].
        compressive_mems: the :class:`CompressiveMemories` to pass with the next segment.
    """

    loss: Optional[torch.Tensor] = None
    lm_loss: Optional[torch.Tensor] = None
    reconstruction_loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    last_hidden_state: Optional[torch.Tensor] = None
    compressive_mems: Optional[CompressiveMemories] = None


class Compressor(nn.Module):
    """``[Batch, Evicted, Dim] -> [Batch, Evicted // rate, Dim]``: the newest ``rate * (Evicted // rate)``
    states, ``rate`` consecutive ones per slot."""

    def __init__(self, dim: int, rate: int, kind: str) -> None:
        super().__init__()
        self.rate = rate
        self.kind = kind
        self.conv = nn.Conv1d(dim, dim, kernel_size=rate, stride=rate) if kind == "conv" else None

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        usable = states.size(1) - states.size(1) % self.rate
        if usable == 0:
            return states[:, :0]
        states = states[:, states.size(1) - usable :].transpose(1, 2)  # (B, D, usable)
        if self.kind == "conv":
            pooled = self.conv(states)
        elif self.kind == "mean":
            pooled = F.avg_pool1d(states, self.rate)
        else:
            pooled = F.max_pool1d(states, self.rate)
        return pooled.transpose(1, 2)  # (B, usable // rate, D)


def frozen_layer_norm(norm: nn.LayerNorm, states: torch.Tensor) -> torch.Tensor:
    """``norm(states)`` with the norm's parameters detached."""
    return F.layer_norm(states, norm.normalized_shape, norm.weight.detach(), norm.bias.detach(), norm.eps)


def frozen_content_attention(
    attention: RelativeSelfAttention, queries: torch.Tensor, keys: torch.Tensor
) -> torch.Tensor:
    """Content-only attention of ``attention`` with its weights detached (the reconstruction target's view).

    queries [Batch, Length, Dim], keys [Batch, K, Dim] (keys double as values) -> [Batch, Length, Dim].
    """
    batch, length, dim = queries.shape
    heads, head_dim = attention.num_heads, attention.head_dim
    q = F.linear(queries, attention.query.weight.detach()).view(batch, length, heads, head_dim)  # (B, L, H, hd)
    k, v = F.linear(keys, attention.key_value.weight.detach()).split(dim, dim=-1)
    k = k.view(batch, -1, heads, head_dim)  # (B, K, H, hd)
    v = v.view(batch, -1, heads, head_dim)  # (B, K, H, hd)
    weights = torch.einsum("blhd,bkhd->bhlk", q, k).div(head_dim**0.5).softmax(dim=-1)  # (B, H, L, K)
    return torch.einsum("bhlk,bkhd->blhd", weights, v).reshape(batch, length, dim)  # (B, L, D)


class CompressiveTransformerPreTrainedModel(PreTrainedModel):
    config_class = CompressiveTransformerConfig
    base_model_prefix = "transformer"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        init_xl_weights(module, self.config.initializer_range, (nn.Linear, nn.Conv1d))


class CompressiveTransformerModel(CompressiveTransformerPreTrainedModel):
    """The decoder stack: Transformer-XL blocks, one compressor per layer."""

    def __init__(self, config: CompressiveTransformerConfig) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(TransformerXLBlock(config) for _ in range(config.n_layer))
        self.compressors = nn.ModuleList(
            Compressor(config.n_embd, config.compression_rate, config.compression) for _ in range(config.n_layer)
        )
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.wte = value

    def forward(
        self, input_ids: torch.Tensor, compressive_mems: Optional[CompressiveMemories] = None
    ) -> CompressiveTransformerOutput:
        """input_ids [Batch, Length]; compressive_mems: the previous segment's, or None at a stream's start."""
        config = self.config
        if compressive_mems is not None and len(compressive_mems.memories) != len(self.h):
            raise ValueError(f"expected memories for {len(self.h)} layers, got {len(compressive_mems.memories)}")
        hidden = self.drop(self.wte(input_ids))  # (B, L, D)
        new_state = CompressiveMemories()
        reconstruction_losses = []
        for index, (block, compressor) in enumerate(zip(self.h, self.compressors)):
            memory = compressed = None
            if compressive_mems is not None:
                memory, compressed = compressive_mems.memories[index], compressive_mems.compressed[index]
            past = [t for t in (compressed, memory) if t is not None and t.size(1) > 0]
            context = torch.cat(past, dim=1) if past else None  # (B, C + M, D), oldest first

            cache = hidden.detach() if memory is None else torch.cat([memory, hidden.detach()], dim=1)
            keep = max(cache.size(1) - config.mem_len, 0)
            evicted, kept = cache[:, :keep], cache[:, keep:]  # (B, E, D), (B, <= mem_len, D)
            squeezed = compressor(evicted)  # (B, E // rate, D)
            if squeezed.size(1) > 0:
                # Only the compressor learns from this loss: every other input and weight is detached.
                queries = frozen_layer_norm(block.ln_1, hidden.detach())
                target = frozen_content_attention(block.attn, queries, frozen_layer_norm(block.ln_1, evicted))
                rebuilt = frozen_content_attention(block.attn, queries, frozen_layer_norm(block.ln_1, squeezed))
                reconstruction_losses.append(F.mse_loss(rebuilt, target.detach()))
            compressed_all = squeezed if compressed is None else torch.cat([compressed, squeezed], dim=1)
            start = max(compressed_all.size(1) - config.compressed_mem_len, 0)
            new_state.memories.append(kept)
            new_state.compressed.append(compressed_all[:, start:].detach())

            hidden = block(hidden, context)
        if reconstruction_losses:
            reconstruction_loss = torch.stack(reconstruction_losses).mean()
        else:
            reconstruction_loss = hidden.new_zeros(())
        return CompressiveTransformerOutput(
            last_hidden_state=self.ln_f(hidden),
            compressive_mems=new_state,
            reconstruction_loss=reconstruction_loss,
        )


class CompressiveTransformerLMHeadModel(TiedLMHeadMixin, CompressiveTransformerPreTrainedModel):
    """Compressive Transformer with a tied language-model head."""

    def __init__(self, config: CompressiveTransformerConfig) -> None:
        super().__init__(config)
        self.attach_lm_head(CompressiveTransformerModel(config))
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        compressive_mems: Optional[CompressiveMemories] = None,
        labels: Optional[torch.Tensor] = None,
    ) -> CompressiveTransformerOutput:
        """Run one segment. ``labels`` [Batch, Length] are shifted inside (-100 ignored)."""
        output = self.transformer(input_ids, compressive_mems)
        logits, lm_loss = self.lm_logits_and_loss(output.last_hidden_state, labels)  # (B, L, V)
        if lm_loss is not None:
            output.lm_loss = lm_loss
            output.loss = output.lm_loss + self.config.reconstruction_loss_weight * output.reconstruction_loss
        output.logits = logits
        return output
