"""The ∞-former as its paper and code have it (Martins et al., ACL 2022; deep-spin/infinite-former, ``sorting/``):
a Transformer-XL whose states, once they leave the XL cache, enter an unbounded continuous memory.

Per layer, the segment attends to a Transformer-XL cache of the ``mem_len`` most recent states (relative
positions, exact) and reads the continuous memory, which holds only the states older than that cache. The two
readings are summed before the residual connection. After a segment, the states pushed out of the cache are kept
aside; at the next segment they are gated (``memory_gate``: a width-3 convolution over time and a sigmoid, the
original's ``--mask --mask_type cnn``) and fitted into the memory: the old signal, sampled at ``num_samples``
evenly spaced points, is contracted to [0, ``tau``], the new states fill [``tau``, 1], and ridge regression
(``ridge_penalty``) onto ``num_basis`` normalised Gaussian basis functions of widths ``basis_widths`` gives the
new coefficients, with zero targets just beyond [0, 1]. The gate is trained through this fit; the old signal is
detached, so no gradient reaches earlier segments.

A query reads the memory with the XL attention's own query projection: its scores against the keys ``B W_K``
give, through two maps shared by the heads, a Gaussian ``N(mu, sigma^2)`` over the real line
(``mu = sigmoid(.)``, ``sigma^2 = softplus(.)``, at least 1e-6), and the context is ``E_p[psi(t)]^T B W_V``. With
``kl_regularizer``, the model returns ``auxiliary_loss``: ``kl_weight`` times the KL divergence of each density
from ``N(mu_0, sigma_0^2)`` (without ``kl_mu_0``: from any Gaussian of variance ``sigma_0^2``), averaged over
batch, heads and queries and summed over layers, as the original adds it to the loss.
"""

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .continuous_memory import GaussianBasis, evaluate_signal, expected_basis_untruncated, fit_signal_padded
from .lm_head import TiedLMHeadMixin
from .transformer_xl import (
    RelativeSelfAttention,
    TransformerXLBlock,
    TransformerXLConfig,
    TransformerXLPreTrainedModel,
    init_xl_weights,
)

MIN_VARIANCE = 1e-6  # the original's floor of the density's variance


class InfinityFormerXLConfig(TransformerXLConfig):
    """Configuration of :class:`InfinityFormerXLLMHeadModel`.

    Transformer-XL fields (``vocab_size``, ``n_embd``, ``n_layer``, ``n_head``, ``n_inner``, ``mem_len``: the XL
    cache in front of the memory, ``dropout``, ``attn_dropout``, ...) plus the continuous memory's: ``num_basis``
    (``N``), ``basis_widths`` (the basis is split evenly among them; the original: 0.01 and 0.05), ``num_samples``
    (points at which the old signal is resampled), ``tau`` (share of [0, 1] the old signal is contracted to),
    ``ridge_penalty``, ``memory_gate`` (gate the states entering the memory), ``kl_regularizer``, ``kl_sigma_0``,
    ``kl_mu_0`` (None: no term for the mean), ``kl_weight``. Defaults are the original's sorting run.
    """

    model_type = "infinity_former_xl"

    def __init__(
        self,
        num_basis: int = 512,
        basis_widths: Sequence[float] = (0.01, 0.05),
        num_samples: int = 512,
        tau: float = 0.75,
        ridge_penalty: float = 1.0,
        memory_gate: bool = True,
        kl_regularizer: bool = True,
        kl_sigma_0: float = 0.05,
        kl_mu_0: Optional[float] = None,
        kl_weight: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        if not 0.0 < tau < 1.0:
            raise ValueError(f"tau must be in (0, 1), got {tau}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if ridge_penalty <= 0 or kl_sigma_0 <= 0 or kl_weight < 0:
            raise ValueError(
                f"ridge_penalty and kl_sigma_0 must be > 0 and kl_weight >= 0, got {ridge_penalty}, {kl_sigma_0}, "
                f"{kl_weight}"
            )
        GaussianBasis(num_basis, basis_widths)  # validates num_basis and basis_widths
        self.num_basis = num_basis
        self.basis_widths = list(basis_widths)
        self.num_samples = num_samples
        self.tau = tau
        self.ridge_penalty = ridge_penalty
        self.memory_gate = memory_gate
        self.kl_regularizer = kl_regularizer
        self.kl_sigma_0 = kl_sigma_0
        self.kl_mu_0 = kl_mu_0
        self.kl_weight = kl_weight
        super().__init__(**kwargs)
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


@dataclass
class InfinityMemory:
    """The state carried from one segment to the next, per layer.

    Attributes:
        cache: the Transformer-XL cache, [Batch, <= mem_len, Dim]: the layer's most recent input states.
        evicted: the states pushed out of the cache by the last segment, [Batch, E, Dim] (E may be 0); they enter
            the continuous memory at the next segment.
        coefficients: the continuous memory's basis coefficients [Batch, NumBasis, Dim], or None while it is empty.
    """

    cache: list[torch.Tensor]
    evicted: list[torch.Tensor]
    coefficients: list[Optional[torch.Tensor]]


@dataclass
class InfinityFormerXLOutput(ModelOutput):
    """Output of :class:`InfinityFormerXLLMHeadModel`.

    Attributes:
        loss: next-token cross-entropy when ``labels`` were given (shifted inside, -100 ignored); the KL term is not
            in it.
        logits: [Batch, Length, VocabSize].
        last_hidden_state: [Batch, Length, Dim].
        infinity_memory: the :class:`InfinityMemory` to pass with the next segment (detached).
        auxiliary_loss: ``kl_weight`` times the KL term (a scalar), when a layer read the continuous memory and
            ``kl_regularizer`` is set; None otherwise. The tasks add it to the training loss.
    """

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    last_hidden_state: Optional[torch.Tensor] = None
    infinity_memory: Optional[InfinityMemory] = None
    auxiliary_loss: Optional[torch.Tensor] = None


def memory_positions(count: int, start: float, device: torch.device) -> torch.Tensor:
    """``count`` positions ``start + (1 - start) j / count``, j = 1..count (the original's spacing), [count]."""
    return start + (1.0 - start) * torch.arange(1, count + 1, device=device, dtype=torch.float32) / count


def padding_positions(count: int, device: torch.device) -> torch.Tensor:
    """``count // 2`` points on each side of [0, 1] at spacing ``1 / count``, where the fit's targets are zero."""
    side = (torch.arange(count // 2, device=device, dtype=torch.float32) + 0.5) / count
    return torch.cat([-side.flip(0), 1.0 + side])


class ContinuousLongTermAttention(nn.Module):
    """The original's long-term attention: the memory update (gate, contraction, fit) and the continuous read."""

    def __init__(self, config: InfinityFormerXLConfig, basis: GaussianBasis) -> None:
        super().__init__()
        dim = config.n_embd
        self.config = config
        self.basis = basis
        self.num_heads = config.n_head
        self.head_dim = dim // config.n_head
        self.gate = nn.Conv1d(dim, dim, kernel_size=3, padding=1) if config.memory_gate else None
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.location = nn.Linear(config.num_basis, 1, bias=False)  # scores -> mu (pre-sigmoid), shared by heads
        self.scale = nn.Linear(config.num_basis, 1, bias=False)  # scores -> sigma^2 (pre-softplus)
        self.output = nn.Linear(dim, dim, bias=False)

    def update(self, coefficients: Optional[torch.Tensor], states: torch.Tensor) -> torch.Tensor:
        """The memory with ``states`` [Batch, E, Dim] (E >= 1, oldest first) added: [Batch, NumBasis, Dim].

        Differentiable in the gate (the old coefficients are taken as constants)."""
        if self.gate is not None:
            states = states * torch.sigmoid(self.gate(states.transpose(1, 2))).transpose(1, 2)
        batch, count, _ = states.shape
        device = states.device
        if coefficients is None:  # the first states span [0, 1], at (i + 0.5) / count
            positions = memory_positions(count, 0.0, device) - 0.5 / count
            return fit_signal_padded(
                self.basis,
                positions.expand(batch, count),
                states,
                self.config.ridge_penalty,
                padding_positions(count, device),
            )
        samples = self.config.num_samples
        old_at = memory_positions(samples, 0.0, device)  # (M,): where the old signal is read, j / M
        old_values = evaluate_signal(self.basis, coefficients.detach().float(), old_at.expand(batch, samples))
        positions = torch.cat([self.config.tau * old_at, memory_positions(count, self.config.tau, device)])
        values = torch.cat([old_values, states.float()], dim=1)  # (B, M + E, D)
        padding = padding_positions(samples + count, device)
        return fit_signal_padded(
            self.basis, positions.expand(batch, samples + count), values, self.config.ridge_penalty, padding
        )

    def forward(self, query: torch.Tensor, coefficients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query [Batch, Length, Dim] (the XL attention's projection), coefficients [Batch, NumBasis, Dim].

        Returns the context [Batch, Length, Dim] and the KL term per head and query [Batch, Heads, Length]."""
        batch, length, dim = query.shape
        q = query.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, L, hd)
        memory = coefficients.to(query.dtype)
        k = self.key(memory).view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)
        v = self.value(memory).view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, H, L, N)
        mean = torch.sigmoid(self.location(scores).squeeze(-1).float())  # (B, H, L)
        variance = F.softplus(self.scale(scores).squeeze(-1).float()).clamp(min=MIN_VARIANCE)  # (B, H, L)
        weights = expected_basis_untruncated(self.basis, mean, variance).to(v.dtype)  # (B, H, L, N)
        context = (weights @ v).transpose(1, 2).reshape(batch, length, dim)
        return self.output(context), self.kl_term(mean, variance)

    def kl_term(self, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        """KL(N(mean, variance) || N(mu_0, sigma_0^2)); without ``kl_mu_0`` the mean's term is left out."""
        ratio = variance / self.config.kl_sigma_0**2
        kl = 0.5 * (ratio - torch.log(ratio) - 1)
        if self.config.kl_mu_0 is not None:
            kl = kl + 0.5 * (mean - self.config.kl_mu_0) ** 2 / self.config.kl_sigma_0**2
        return kl


class InfinityFormerXLBlock(TransformerXLBlock):
    """A pre-layer-norm Transformer-XL block whose attention also reads the continuous memory."""

    def __init__(self, config: InfinityFormerXLConfig, basis: GaussianBasis) -> None:
        super().__init__(config)
        self.long_term = ContinuousLongTermAttention(config, basis)

    def forward(
        self,
        hidden: torch.Tensor,
        cache: Optional[torch.Tensor],
        evicted: Optional[torch.Tensor],
        coefficients: Optional[torch.Tensor],
    ) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """hidden [Batch, Length, Dim]; cache [Batch, C, Dim] or None; evicted [Batch, E, Dim] or None (states
        that left the cache, to add to the memory now); coefficients [Batch, NumBasis, Dim] or None.

        Returns the new hidden states, the memory's coefficients after the update (with their gradient to the
        gate; None while empty) and the KL term [Batch, Heads, Length] (None without a long-term read)."""
        normed = self.ln_1(hidden)
        attended = self.attn(normed, None if cache is None else self.ln_1(cache))
        if evicted is not None and evicted.size(1) > 0:
            coefficients = self.long_term.update(coefficients, self.ln_1(evicted))
        kl = None
        if coefficients is not None:
            context, kl = self.long_term(self.attn.query(normed), coefficients)
            attended = attended + context
        hidden = hidden + attended
        return hidden + self.mlp(self.ln_2(hidden)), coefficients, kl


class InfinityFormerXLPreTrainedModel(TransformerXLPreTrainedModel):
    config_class = InfinityFormerXLConfig

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        init_xl_weights(module, self.config.initializer_range, (nn.Linear, nn.Conv1d))


class InfinityFormerXLModel(InfinityFormerXLPreTrainedModel):
    """The decoder stack; one basis, shared by every layer's memory."""

    def __init__(self, config: InfinityFormerXLConfig) -> None:
        super().__init__(config)
        self.basis = GaussianBasis(config.num_basis, config.basis_widths, normalized=True)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(InfinityFormerXLBlock(config, self.basis) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.wte = value

    def _check_memory(self, memory: InfinityMemory) -> None:
        for name in ("cache", "evicted", "coefficients"):
            if len(getattr(memory, name)) != len(self.h):
                raise ValueError(f"infinity_memory.{name} must hold {len(self.h)} entries (one per layer)")

    def forward(
        self, input_ids: torch.Tensor, infinity_memory: Optional[InfinityMemory] = None
    ) -> InfinityFormerXLOutput:
        """input_ids [Batch, Length]; infinity_memory: the previous segment's, or None at a stream's start."""
        if infinity_memory is not None:
            self._check_memory(infinity_memory)
        mem_len = self.config.mem_len
        hidden = self.drop(self.wte(input_ids))  # (B, L, D)
        caches, evicted_states, coefficients, kl_terms = [], [], [], []
        for index, block in enumerate(self.h):
            cache = evicted = memory = None
            if infinity_memory is not None:
                cache, evicted = infinity_memory.cache[index], infinity_memory.evicted[index]
                memory = infinity_memory.coefficients[index]
                cache = cache if cache.size(1) > 0 else None
            full = hidden if cache is None else torch.cat([cache, hidden], dim=1)  # this layer's inputs, oldest first
            keep = min(mem_len, full.size(1))
            caches.append(full[:, full.size(1) - keep :].detach())
            evicted_states.append(full[:, : full.size(1) - keep].detach())
            hidden, memory, kl = block(hidden, cache, evicted, memory)
            coefficients.append(None if memory is None else memory.detach())
            if kl is not None:
                kl_terms.append(kl.mean())
        auxiliary = None
        if self.config.kl_regularizer and kl_terms:
            auxiliary = self.config.kl_weight * torch.stack(kl_terms).sum()
        return InfinityFormerXLOutput(
            last_hidden_state=self.ln_f(hidden),
            infinity_memory=InfinityMemory(caches, evicted_states, coefficients),
            auxiliary_loss=auxiliary,
        )


class InfinityFormerXLLMHeadModel(TiedLMHeadMixin, InfinityFormerXLPreTrainedModel):
    """The original ∞-former with a tied language-model head."""

    def __init__(self, config: InfinityFormerXLConfig) -> None:
        super().__init__(config)
        self.attach_lm_head(InfinityFormerXLModel(config))
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        infinity_memory: Optional[InfinityMemory] = None,
        labels: Optional[torch.Tensor] = None,
    ) -> InfinityFormerXLOutput:
        """Run one segment. ``labels`` [Batch, Length] are shifted inside (-100 ignored)."""
        output = self.transformer(input_ids, infinity_memory)
        output.logits, output.loss = self.lm_logits_and_loss(output.last_hidden_state, labels)  # (B, L, V)
        return output
