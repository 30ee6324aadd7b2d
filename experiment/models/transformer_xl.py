"""Transformer-XL (Dai et al., 2019): segment-level recurrence over cached hidden states, relative positions.

``transformers`` 5 no longer ships one, so this is a compact pre-layer-norm version: each layer attends over
``[cached states of the previous segments ; current segment]`` with sinusoidal relative position encodings and
the two learned biases ``r_w_bias`` (content) and ``r_r_bias`` (position). The cache (``mems``) holds the last
``mem_len`` inputs of every layer and is detached, so no gradient crosses segments.
"""

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

from .lm_head import TiedLMHeadMixin, init_gpt2_style


class TransformerXLConfig(PretrainedConfig):
    """Configuration of :class:`TransformerXLLMHeadModel`.

    ``vocab_size``, ``n_embd`` (width), ``n_layer``, ``n_head``, ``n_inner`` (MLP width, default 4 * n_embd),
    ``mem_len`` (cached positions per layer), ``dropout``, ``attn_dropout``, ``activation_function``,
    ``layer_norm_epsilon``, ``initializer_range``.
    """

    model_type = "transformer_xl"

    def __init__(
        self,
        vocab_size: int = 32000,
        n_embd: int = 512,
        n_layer: int = 4,
        n_head: int = 8,
        n_inner: Optional[int] = None,
        mem_len: int = 1024,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
        activation_function: str = "gelu_new",
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_inner = n_inner
        self.mem_len = mem_len
        self.dropout = dropout
        self.attn_dropout = attn_dropout
        self.activation_function = activation_function
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        kwargs.setdefault("tie_word_embeddings", True)
        super().__init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        return self.n_embd


@dataclass
class TransformerXLOutput(ModelOutput):
    """Output of :class:`TransformerXLLMHeadModel`.

    Attributes:
        loss: next-token cross-entropy when ``labels`` were given (shifted inside, -100 ignored).
        logits: [Batch, Length, VocabSize].
        last_hidden_state: [Batch, Length, Dim].
        mems: per layer, the cache to pass with the next segment, [Batch, <= mem_len, Dim] (detached).
    """

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    last_hidden_state: Optional[torch.Tensor] = None
    mems: Optional[list[torch.Tensor]] = None


def sinusoid_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal encodings of the distances 0..length-1, [length, dim]."""
    inverse_frequency = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inverse_frequency[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class RelativeSelfAttention(nn.Module):
    """Causal attention over ``[memory ; segment]`` scored by content and by relative distance."""

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__()
        dim = config.n_embd
        self.num_heads = config.n_head
        self.head_dim = dim // config.n_head
        self.query = nn.Linear(dim, dim, bias=False)
        self.key_value = nn.Linear(dim, 2 * dim, bias=False)
        self.position = nn.Linear(dim, dim, bias=False)
        self.r_w_bias = nn.Parameter(torch.zeros(self.num_heads, self.head_dim))
        self.r_r_bias = nn.Parameter(torch.zeros(self.num_heads, self.head_dim))
        self.output = nn.Linear(dim, dim)
        self.attention_dropout = nn.Dropout(config.attn_dropout)
        self.output_dropout = nn.Dropout(config.dropout)

    def forward(self, hidden: torch.Tensor, memory: Optional[torch.Tensor]) -> torch.Tensor:
        """hidden [Batch, Length, Dim], memory [Batch, MemLength, Dim] or None -> [Batch, Length, Dim]."""
        batch, length, dim = hidden.shape
        context = hidden if memory is None else torch.cat([memory, hidden], dim=1)  # (B, K, D), K = M + L
        mem_length = context.size(1) - length
        total = context.size(1)

        q = self.query(hidden).view(batch, length, self.num_heads, self.head_dim)  # (B, L, H, hd)
        k, v = self.key_value(context).split(dim, dim=-1)
        k = k.view(batch, total, self.num_heads, self.head_dim)  # (B, K, H, hd)
        v = v.view(batch, total, self.num_heads, self.head_dim)  # (B, K, H, hd)
        r = self.position(sinusoid_positions(total, dim, hidden.device).to(hidden.dtype))
        r = r.view(total, self.num_heads, self.head_dim)  # (K distances, H, hd)

        by_distance = torch.einsum("blhd,khd->bhlk", q + self.r_r_bias, r)  # (B, H, L, K distances)
        # Query i sits at absolute position M + i; its distance to key j is M + i - j.
        query_pos = torch.arange(length, device=hidden.device)[:, None] + mem_length
        distance = query_pos - torch.arange(total, device=hidden.device)[None, :]  # (L, K)
        gather_index = distance.clamp(min=0).expand(batch, self.num_heads, length, total)
        position_scores = by_distance.gather(-1, gather_index) / self.head_dim**0.5  # (B, H, L, K)
        position_scores = position_scores.masked_fill(distance < 0, float("-inf"))
        # The content term (q + r_w_bias) . k and the softmax run fused; the position term enters as a float mask.
        content_query = (q + self.r_w_bias).to(k.dtype).transpose(1, 2)  # (B, H, L, hd); autocast may lower k
        attended = F.scaled_dot_product_attention(
            content_query,
            k.transpose(1, 2),  # (B, H, K, hd)
            v.transpose(1, 2),  # (B, H, K, hd)
            attn_mask=position_scores.to(k.dtype),
            dropout_p=self.attention_dropout.p if self.training else 0.0,
        )
        attended = attended.transpose(1, 2).reshape(batch, length, dim)  # (B, L, D)
        return self.output_dropout(self.output(attended))


class TransformerXLBlock(nn.Module):
    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = RelativeSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, inner),
            ACT2FN[config.activation_function],
            nn.Linear(inner, config.n_embd),
            nn.Dropout(config.dropout),
        )

    def forward(self, hidden: torch.Tensor, memory: Optional[torch.Tensor]) -> torch.Tensor:
        normed_memory = None if memory is None else self.ln_1(memory)
        hidden = hidden + self.attn(self.ln_1(hidden), normed_memory)
        return hidden + self.mlp(self.ln_2(hidden))


class TransformerXLPreTrainedModel(PreTrainedModel):
    config_class = TransformerXLConfig
    base_model_prefix = "transformer"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        init_xl_weights(module, self.config.initializer_range)


def init_xl_weights(module: nn.Module, std: float, linear_types: tuple[type, ...] = (nn.Linear,)) -> None:
    """GPT-2-style initialisation plus zero relative-position biases (shared by Transformer-XL and Compressive)."""
    init_gpt2_style(module, std, linear_types)
    if isinstance(module, RelativeSelfAttention):
        module.r_w_bias.zero_()
        module.r_r_bias.zero_()


class TransformerXLModel(TransformerXLPreTrainedModel):
    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(TransformerXLBlock(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.wte = value

    def forward(self, input_ids: torch.Tensor, mems: Optional[list[torch.Tensor]] = None) -> TransformerXLOutput:
        """input_ids [Batch, Length]; mems: the previous segment's ``mems`` or None at an example's start."""
        if mems is not None and len(mems) != len(self.h):
            raise ValueError(f"expected {len(self.h)} memory tensors (one per layer), got {len(mems)}")
        hidden = self.drop(self.wte(input_ids))  # (B, L, D)
        new_mems = []
        for index, block in enumerate(self.h):
            memory = None if mems is None else mems[index]
            cache = hidden if memory is None else torch.cat([memory, hidden], dim=1)
            new_mems.append(cache[:, -self.config.mem_len :].detach() if self.config.mem_len > 0 else cache[:, :0])
            hidden = block(hidden, memory)
        return TransformerXLOutput(last_hidden_state=self.ln_f(hidden), mems=new_mems)


class TransformerXLLMHeadModel(TiedLMHeadMixin, TransformerXLPreTrainedModel):
    """Transformer-XL with a tied language-model head."""

    def __init__(self, config: TransformerXLConfig) -> None:
        super().__init__(config)
        self.attach_lm_head(TransformerXLModel(config))
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        mems: Optional[list[torch.Tensor]] = None,
        labels: Optional[torch.Tensor] = None,
    ) -> TransformerXLOutput:
        """Run one segment. ``labels`` [Batch, Length] are shifted inside (-100 ignored)."""
        output = self.transformer(input_ids, mems)
        logits, output.loss = self.lm_logits_and_loss(output.last_hidden_state, labels)  # (B, L, V)
        output.logits = logits
        return output
