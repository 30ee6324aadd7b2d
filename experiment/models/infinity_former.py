"""∞-former (Martins et al., ACL 2022): GPT-2-style blocks plus an unbounded continuous long-term memory.

Each block's attention is the sum of two parts read by the same layer-normed input: causal self-attention over
the current segment (short-term) and attention over the layer's continuous memory (long-term). The long-term
part (:class:`LongTermAttention`) turns the memory's basis coefficients ``B`` [N, Dim] into keys ``K = B W_K``
and values ``V = B W_V`` per head; a query ``q`` predicts a Gaussian over [0, 1] from its scores against the
keys, ``mu = sigmoid(w_mu . K q)``, ``sigma^2 = softplus(w_sigma . K q)``, and reads
``E_p[psi(t)]^T V`` (closed form, :mod:`experiment.models.continuous_memory`).

After the segment, each layer's memory is updated from that layer's (layer-normed) input states: the old
signal, resampled at ``num_samples`` positions drawn where this segment's queries put their attention
("sticky memories"), is contracted to [0, tau], the new states fill [tau, 1], and the whole is refitted by
ridge regression. Memory coefficients are computed without gradient (the paper detaches the memory), so the
loss of a segment trains the long-term attention's projections but never reaches earlier segments.
"""

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.pytorch_utils import Conv1D
from transformers.utils import ModelOutput

from .continuous_memory import GaussianBasis, bin_masses, expected_basis, update_memory
from .lm_head import TiedLMHeadMixin, init_gpt2_style
from .memoria_transformer import MLP, CausalSelfAttention

# Floor of the attention density's variance: keeps it wider than about 1 % of the memory.
MIN_VARIANCE = 1e-4


class InfinityFormerConfig(PretrainedConfig):
    """Configuration of :class:`InfinityFormerLMHeadModel`.

    GPT-2 fields: ``vocab_size``, ``n_positions`` (longest segment), ``n_embd``, ``n_layer``, ``n_head``,
    ``n_inner``, ``activation_function``, ``resid_pdrop``, ``embd_pdrop``, ``attn_pdrop``, ``layer_norm_epsilon``,
    ``initializer_range``. Memory fields: ``num_basis`` (radial basis functions ``N``), ``basis_widths`` (their
    standard deviations, None: the centre spacing), ``num_samples`` (points at which the old signal is
    resampled), ``tau`` (share of [0, 1] the old signal is contracted to), ``ridge_penalty`` (``lambda``),
    ``sticky_memories`` (resample where attention went, else evenly), ``sticky_bins`` (histogram bins).
    """

    model_type = "infinity_former"

    def __init__(
        self,
        vocab_size: int = 50257,
        n_positions: int = 1024,
        n_embd: int = 768,
        n_layer: int = 12,
        n_head: int = 12,
        n_inner: Optional[int] = None,
        activation_function: str = "gelu_new",
        resid_pdrop: float = 0.1,
        embd_pdrop: float = 0.1,
        attn_pdrop: float = 0.1,
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        num_basis: int = 512,
        basis_widths: Optional[Sequence[float]] = None,
        num_samples: int = 512,
        tau: float = 0.5,
        ridge_penalty: float = 0.01,
        sticky_memories: bool = True,
        sticky_bins: int = 64,
        **kwargs: Any,
    ) -> None:
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        if not 0.0 < tau < 1.0:
            raise ValueError(f"tau must be in (0, 1), got {tau}")
        if num_samples < 1 or sticky_bins < 1:
            raise ValueError(f"num_samples and sticky_bins must be >= 1, got {num_samples} and {sticky_bins}")
        if ridge_penalty <= 0:
            raise ValueError(f"ridge_penalty must be > 0, got {ridge_penalty}")
        GaussianBasis(num_basis, basis_widths)  # validates num_basis and basis_widths
        self.vocab_size = vocab_size
        self.n_positions = n_positions
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_inner = n_inner
        self.activation_function = activation_function
        self.resid_pdrop = resid_pdrop
        self.embd_pdrop = embd_pdrop
        self.attn_pdrop = attn_pdrop
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.num_basis = num_basis
        self.basis_widths = None if basis_widths is None else list(basis_widths)
        self.num_samples = num_samples
        self.tau = tau
        self.ridge_penalty = ridge_penalty
        self.sticky_memories = sticky_memories
        self.sticky_bins = sticky_bins
        kwargs.setdefault("tie_word_embeddings", True)
        super().__init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        return self.n_embd


@dataclass
class InfinityFormerOutput(ModelOutput):
    """Output of :class:`InfinityFormerLMHeadModel`.

    Attributes:
        loss: next-token cross-entropy when ``labels`` were given (shifted inside, -100 ignored).
        logits: [Batch, Length, VocabSize].
        last_hidden_state: [Batch, Length, Dim].
        long_term_memory: per layer, the basis coefficients [Batch, NumBasis, Dim] of the continuous memory to
            pass with the next segment (float32, no gradient).
    """

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    last_hidden_state: Optional[torch.Tensor] = None
    long_term_memory: Optional[list[torch.Tensor]] = None


@dataclass
class LongTermReadout:
    """What :class:`LongTermAttention` returns: ``output`` [Batch, Length, Dim], the density's ``mean`` and
    ``variance`` per head and query [Batch, Heads, Length], and ``bins``: the attention mass per region of the
    memory [Batch, StickyBins], averaged over heads and queries (detached)."""

    output: torch.Tensor
    mean: torch.Tensor
    variance: torch.Tensor
    bins: torch.Tensor


class LongTermAttention(nn.Module):
    """Continuous attention from the segment's queries to a memory given by basis coefficients."""

    def __init__(self, config: InfinityFormerConfig, basis: GaussianBasis) -> None:
        super().__init__()
        dim = config.n_embd
        self.num_heads = config.n_head
        self.head_dim = dim // config.n_head
        self.sticky_bins = config.sticky_bins
        self.basis = basis
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim, bias=False)  # V = B W_V: the context integrates the signal
        # Per head, the maps from a query's N key scores to the density's location and (pre-softplus) variance.
        self.location_weight = nn.Parameter(torch.zeros(config.n_head, config.num_basis, 2))
        self.location_bias = nn.Parameter(torch.zeros(config.n_head, 2))
        self.output = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(config.attn_pdrop)

    def forward(self, hidden: torch.Tensor, coefficients: torch.Tensor) -> LongTermReadout:
        """hidden [Batch, Length, Dim] (layer-normed), coefficients [Batch, NumBasis, Dim]."""
        batch, length, dim = hidden.shape
        q = self.query(hidden).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, L, hd)
        k, v = self.key_value(coefficients.to(hidden.dtype)).split(dim, dim=-1)
        k = k.view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)
        v = v.view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)
        scores = q @ k.transpose(-1, -2) / self.head_dim**0.5  # (B, H, L, N)
        location = torch.einsum("bhln,hnk->bhlk", scores, self.location_weight) + self.location_bias[:, None]
        mean = torch.sigmoid(location[..., 0].float())  # (B, H, L)
        variance = F.softplus(location[..., 1].float()) + MIN_VARIANCE  # (B, H, L)
        weights = expected_basis(self.basis, mean, variance).to(v.dtype)  # (B, H, L, N)
        context = self.dropout(weights) @ v  # (B, H, L, hd)
        output = self.output(context.transpose(1, 2).reshape(batch, length, dim))
        with torch.no_grad():
            bins = bin_masses(mean, variance, self.sticky_bins).mean(dim=(1, 2))  # (B, Bins)
        return LongTermReadout(output, mean, variance, bins)


class InfinityFormerBlock(nn.Module):
    """Short-term causal self-attention plus long-term continuous attention (summed), then the MLP."""

    def __init__(self, config: InfinityFormerConfig, basis: GaussianBasis) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.long_term = LongTermAttention(config, basis)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(
        self, hidden: torch.Tensor, memory: Optional[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """hidden [Batch, Length, Dim], memory [Batch, NumBasis, Dim] or None.

        Returns the new hidden states, the layer-normed input (what the memory stores) and the attention mass per
        memory region [Batch, StickyBins] (None without memory).
        """
        normed = self.ln_1(hidden)
        attended = self.attn(normed)
        bins = None
        if memory is not None:
            readout = self.long_term(normed, memory)
            attended = attended + readout.output
            bins = readout.bins
        hidden = hidden + attended
        return hidden + self.mlp(self.ln_2(hidden)), normed, bins


class InfinityFormerPreTrainedModel(PreTrainedModel):
    config_class = InfinityFormerConfig
    base_model_prefix = "transformer"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        init_gpt2_style(module, std, (nn.Linear, Conv1D))
        if isinstance(module, LongTermAttention):
            module.location_weight.normal_(mean=0.0, std=std)
            module.location_bias.zero_()


class InfinityFormerModel(InfinityFormerPreTrainedModel):
    """The decoder stack; the radial basis is shared by every layer's memory."""

    def __init__(self, config: InfinityFormerConfig) -> None:
        super().__init__(config)
        self.basis = GaussianBasis(config.num_basis, config.basis_widths)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(InfinityFormerBlock(config, self.basis) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.wte = value

    def _check_memory(self, memory: Sequence[torch.Tensor], batch: int) -> None:
        if len(memory) != len(self.h):
            raise ValueError(f"long_term_memory must hold {len(self.h)} tensors (one per layer), got {len(memory)}")
        expected = (batch, self.config.num_basis, self.config.n_embd)
        for tensor in memory:
            if tuple(tensor.shape) != expected:
                raise ValueError(f"long_term_memory tensors must be {list(expected)}, got {list(tensor.shape)}")

    def forward(
        self, input_ids: torch.Tensor, long_term_memory: Optional[Sequence[torch.Tensor]] = None
    ) -> InfinityFormerOutput:
        """Run one segment.

        Args:
            input_ids: [Batch, Length] token ids, Length <= n_positions.
            long_term_memory: the previous segment's ``long_term_memory`` (per layer [Batch, NumBasis, Dim]), or
                None for the first segment of a stream (no long-term read then; the memory starts from it).
        """
        config = self.config
        batch, length = input_ids.shape
        if length > config.n_positions:
            raise ValueError(f"segment of {length} tokens is longer than n_positions={config.n_positions}")
        if long_term_memory is not None:
            self._check_memory(long_term_memory, batch)
        positions = torch.arange(length, device=input_ids.device)
        hidden = self.drop(self.wte(input_ids) + self.wpe(positions))  # (B, L, D)
        new_memory = []
        for index, block in enumerate(self.h):
            memory = None if long_term_memory is None else long_term_memory[index]
            hidden, normed, bins = block(hidden, memory)
            new_memory.append(
                update_memory(
                    self.basis,
                    memory,
                    normed.detach(),
                    config.tau,
                    config.num_samples,
                    config.ridge_penalty,
                    bins if config.sticky_memories else None,
                    random=self.training,
                )
            )
        return InfinityFormerOutput(last_hidden_state=self.ln_f(hidden), long_term_memory=new_memory)


class InfinityFormerLMHeadModel(TiedLMHeadMixin, InfinityFormerPreTrainedModel):
    """∞-former with a tied language-model head."""

    def __init__(self, config: InfinityFormerConfig) -> None:
        super().__init__(config)
        self.attach_lm_head(InfinityFormerModel(config))
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        long_term_memory: Optional[Sequence[torch.Tensor]] = None,
        labels: Optional[torch.Tensor] = None,
    ) -> InfinityFormerOutput:
        """Run one segment. ``labels`` [Batch, Length] are shifted inside (-100 ignored)."""
        output = self.transformer(input_ids, long_term_memory)
        output.logits, output.loss = self.lm_logits_and_loss(output.last_hidden_state, labels)  # (B, L, V)
        return output
