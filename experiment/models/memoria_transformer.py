"""Memoria Transformer: a GPT-2-style decoder that reads working and reminded memories from ``Memoria``.

Built on the package's memory layer (``memoria.nn``): per segment, the model's :class:`~memoria.nn.MemoriaMemory`
writes the previous segment's final hidden states (detached) as working memories and reminds (no gradient through
the reminded engrams, except inside :meth:`MemoriaTransformerModel.unrolled`). Each block runs causal self-attention, a
:class:`~memoria.nn.MemoryReader` (cross-attention over the working memories, then over the reminded memories), then
the MLP. After the forward pass the attention that the reminded memories received becomes their lifespan gain.
Parameter names follow GPT-2's (``transformer.h.0.attn.c_attn`` ...), so GPT-2 checkpoints load with
:meth:`MemoriaTransformerLMHeadModel.from_gpt2`; checkpoints written before the memory moved into ``memoria.nn``
(``transformer.abstractor.*``) load as they are (see :mod:`.memory_names`).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, GPT2Config, GPT2LMHeadModel, PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.pytorch_utils import Conv1D
from transformers.utils import ModelOutput

from memoria import Abstractor, Memoria
from memoria.nn import MEMORY_INITS, MemoriaMemory, MemoryRead, MemoryReader, init_abstractor

# relative imports only: save_pretrained copies this module and its siblings beside the weights
from .lm_head import TiedLMHeadMixin, init_gpt2_style
from .memoria_generation import MemoriaGenerationCache
from .memory_names import accept_old_memory_names, register_old_memory_names

MEMORY_FILE = "memory_state.pt"


class MemoriaTransformerConfig(PretrainedConfig):
    """Configuration of :class:`MemoriaTransformerLMHeadModel`.

    GPT-2 fields: ``vocab_size``, ``n_positions`` (longest segment), ``n_embd``, ``n_layer``, ``n_head``,
    ``n_inner`` (MLP width, default 4 * n_embd), ``activation_function``, ``resid_pdrop``, ``embd_pdrop``,
    ``attn_pdrop``, ``layer_norm_epsilon``, ``initializer_range``.
    Memory fields: ``num_working_memories`` (abstractor outputs per segment), ``abstractor_feedforward_dim``,
    ``num_reminded_stm``, ``stm_capacity``, ``ltm_search_depth``, ``initial_lifespan``, ``num_final_ltms``
    (the ``Memoria`` arguments) and ``lifespan_extend_scale`` (multiplies the attention-based lifespan gain).
    ``memory_init``: how the abstractor starts, ``"scaled"`` (default: a live memory path at every width) or
    ``"paper"`` (the authors' N(0, initializer_range) everywhere); see :func:`memoria.nn.abstractor_init_stds`.
    ``memory_gate``: None (default, the paper's form) or the initial value of a learned gate on each memory read
    (:class:`memoria.nn.MemoryReader`). ``write_gradient_segments``: 0 (default, the paper's detached engrams) or K,
    the number of recent writes whose reminded engrams carry the loss's gradient back to the abstractor, for loops
    that backpropagate every segment (:class:`memoria.nn.MemoriaMemory`).
    ``memory_output_init``: ``"zero"`` (default: each memory read's output projection starts at zero, so the memory
    adds nothing until it has learned to) or ``"normal"`` (GPT-2's N(0, initializer_range), the paper's form).
    ``memory_write_norm``: True (default: a layer norm on what the abstractor writes, so every engram has the same
    scale) or False (the paper's form). ``unroll_segments``: K (default 4) or 0 (the paper's detached write): in a
    training step that backpropagates once over several segments (:meth:`MemoriaTransformerModel.unrolled`, opened by
    ``experiment.tasks.base.run_segments``), the loss reaches the writes and forward passes of the K segments before
    it through the memory (see :class:`memoria.nn.MemoriaMemory`).

    A config saved before these three fields existed (one that carries ``transformers_version`` but not them) loads
    with their earlier forms (``"normal"``, False, 0), so a model trained then computes as it did.
    """

    #: the fields added with the memory that learns reliably, and the forms models saved before them were trained with
    EARLIER_FORMS = {"memory_output_init": "normal", "memory_write_norm": False, "unroll_segments": 0}

    model_type = "memoria_transformer"
    # the names transformers' generation and tooling read; not max_position_embeddings: n_positions bounds a
    # segment, not the text
    attribute_map = {"num_hidden_layers": "n_layer", "num_attention_heads": "n_head"}

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
        num_working_memories: int = 128,
        abstractor_feedforward_dim: Optional[int] = None,
        num_reminded_stm: int = 256,
        stm_capacity: int = 512,
        ltm_search_depth: int = 10,
        initial_lifespan: int = 5,
        num_final_ltms: int = 640,
        lifespan_extend_scale: float = 8.0,
        memory_init: str = "scaled",
        memory_gate: Optional[float] = None,
        write_gradient_segments: int = 0,
        memory_output_init: str = "zero",
        memory_write_norm: bool = True,
        unroll_segments: int = 4,
        **kwargs: Any,
    ) -> None:
        if memory_init not in MEMORY_INITS:
            raise ValueError(f"memory_init must be one of {MEMORY_INITS}, got {memory_init!r}")
        if memory_output_init not in ("zero", "normal"):
            raise ValueError(f"memory_output_init must be 'zero' or 'normal', got {memory_output_init!r}")
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
        self.num_working_memories = num_working_memories
        self.abstractor_feedforward_dim = abstractor_feedforward_dim
        self.num_reminded_stm = num_reminded_stm
        self.stm_capacity = stm_capacity
        self.ltm_search_depth = ltm_search_depth
        self.initial_lifespan = initial_lifespan
        self.num_final_ltms = num_final_ltms
        self.lifespan_extend_scale = lifespan_extend_scale
        self.memory_init = memory_init
        self.memory_gate = memory_gate
        self.write_gradient_segments = write_gradient_segments
        self.memory_output_init = memory_output_init
        self.memory_write_norm = memory_write_norm
        self.unroll_segments = unroll_segments
        kwargs.setdefault("tie_word_embeddings", True)
        super().__init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        return self.n_embd

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        """A saved config (it names the ``transformers_version`` that wrote it) without the newer memory fields gets
        their earlier forms (:attr:`EARLIER_FORMS`); anything else gets today's defaults."""
        if "transformers_version" in config_dict:
            config_dict = {**cls.EARLIER_FORMS, **config_dict}
        return super().from_dict(config_dict, **kwargs)


@dataclass
class MemoriaTransformerOutput(ModelOutput):
    """Output of :class:`MemoriaTransformerLMHeadModel`.

    Attributes:
        loss: next-token cross-entropy when ``labels`` were given (labels shifted inside, -100 ignored).
        logits: [Batch, Length, VocabSize].
        last_hidden_state: final hidden states after ``ln_f``, [Batch, Length, Dim].
        memory_hidden_states: what to pass as ``memory_hidden_states`` with the next segment (detached).
        reminded_indices: global engram indices read in this segment, [Batch, NumReminded] (-1: none),
            None for a segment without memory.
        lifespan_delta: the lifespan gain given to those engrams, [Batch, NumReminded].
    """

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    last_hidden_state: Optional[torch.Tensor] = None
    memory_hidden_states: Optional[torch.Tensor] = None
    reminded_indices: Optional[torch.Tensor] = None
    lifespan_delta: Optional[torch.Tensor] = None
    cache: Optional[MemoriaGenerationCache] = None


class CausalSelfAttention(nn.Module):
    """GPT-2 self-attention (fused ``c_attn`` projection, causal mask)."""

    def __init__(self, config: MemoriaTransformerConfig) -> None:
        super().__init__()
        self.num_heads = config.n_head
        self.c_attn = Conv1D(3 * config.n_embd, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[Batch, Length, Dim] -> [Batch, Length, Dim]."""
        batch, length, dim = hidden.shape
        q, k, v = self.c_attn(hidden).split(dim, dim=-1)
        q, k, v = (t.view(batch, length, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, H, L, hd)
        dropout = self.attn_pdrop if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)  # (B, H, L, hd)
        context = context.transpose(1, 2).reshape(batch, length, dim)  # (B, L, D)
        return self.resid_dropout(self.c_proj(context))

    def forward_cached(
        self, hidden: torch.Tensor, past: Optional[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """[Batch, Length, Dim] new tokens after the segment's ``past`` keys and values ([Batch, Heads, Past,
        HeadDim] each, or None) -> output [Batch, Length, Dim] and the keys and values of past and new tokens."""
        batch, length, dim = hidden.shape
        q, k, v = self.c_attn(hidden).split(dim, dim=-1)
        q, k, v = (t.view(batch, length, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, H, L, hd)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, H, P + L, hd)
        past_length = k.size(2) - length
        dropout = self.attn_pdrop if self.training else 0.0
        if past_length == 0:
            context = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:  # new token i sits at position past_length + i and sees keys up to there
            mask = torch.ones(length, k.size(2), dtype=torch.bool, device=hidden.device).tril(diagonal=past_length)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        context = context.transpose(1, 2).reshape(batch, length, dim)  # (B, L, D)
        return self.resid_dropout(self.c_proj(context)), (k, v)


class MLP(nn.Module):
    """GPT-2 feed-forward: ``c_fc`` -> activation -> ``c_proj``."""

    def __init__(self, config: MemoriaTransformerConfig) -> None:
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.c_fc = Conv1D(inner, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, inner)
        self.act = ACT2FN[config.activation_function]
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden))))


class MemoriaTransformerBlock(nn.Module):
    """Self-attention, memory read (:class:`memoria.nn.MemoryReader`: working then reminded), MLP; pre-layer-norm
    residuals."""

    def __init__(self, config: MemoriaTransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.memory = MemoryReader(
            config.n_embd,
            config.n_head,
            config.attn_pdrop,
            config.layer_norm_epsilon,
            gate=config.memory_gate,
            # a zero gate already silences the read: the reader then draws the projection (None picks that)
            output_init=None if config.memory_output_init == "zero" else "default",
        )
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, hidden: torch.Tensor, read: MemoryRead) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """[Batch, Length, Dim] and the segment's memory read -> [Batch, Length, Dim] and the attention the
        reminded memories received [Batch, Heads, Length, NumReminded] (None without reminded memories)."""
        hidden = hidden + self.attn(self.ln_1(hidden))
        memory_output = self.memory(hidden, read)
        hidden = memory_output.hidden_states
        hidden = hidden + self.mlp(self.ln_2(hidden))
        return hidden, memory_output.reminded_attention

    def forward_cached(
        self,
        hidden: torch.Tensor,
        past: Optional[tuple[torch.Tensor, torch.Tensor]],
        read: MemoryRead,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`forward` for new tokens [Batch, Length, Dim] of a segment whose earlier tokens' keys and values
        are ``past``; also returns the updated keys and values."""
        attended, present = self.attn.forward_cached(self.ln_1(hidden), past)
        hidden = hidden + attended
        memory_output = self.memory(hidden, read)
        hidden = memory_output.hidden_states
        hidden = hidden + self.mlp(self.ln_2(hidden))
        return hidden, memory_output.reminded_attention, present


class MemoriaTransformerPreTrainedModel(PreTrainedModel):
    config_class = MemoriaTransformerConfig
    base_model_prefix = "transformer"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        init_gpt2_style(module, std, (nn.Linear, Conv1D))
        if isinstance(module, Abstractor):  # visited after its linear layers, so this has the last word
            init_abstractor(module, self.config.memory_init, std)


class MemoriaTransformerModel(MemoriaTransformerPreTrainedModel):
    """The decoder stack with its memory (:class:`memoria.nn.MemoriaMemory`: an ``Abstractor`` and a ``Memoria``,
    one memory per model instance)."""

    def __init__(self, config: MemoriaTransformerConfig) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(MemoriaTransformerBlock(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.memory = MemoriaMemory(
            config.n_embd,
            config.num_working_memories,
            abstractor_feedforward_dim=config.abstractor_feedforward_dim,
            num_reminded_stm=config.num_reminded_stm,
            stm_capacity=config.stm_capacity,
            ltm_search_depth=config.ltm_search_depth,
            initial_lifespan=config.initial_lifespan,
            num_final_ltms=config.num_final_ltms,
            lifespan_extend_scale=config.lifespan_extend_scale,
            memory_init=config.memory_init,
            init_std=config.initializer_range,
            write_gradient_segments=config.write_gradient_segments,
            write_norm=config.memory_write_norm,
            layer_norm_eps=config.layer_norm_epsilon,
            unroll_segments=config.unroll_segments,
        )
        accept_old_memory_names(self)
        self.post_init()
        # after the GPT-2 draw (transformers visits only modules that hold parameters themselves, never the readers):
        # memory_output_init="zero" zeroes each read's output projection (loaded weights replace it later)
        for block in self.h:
            block.memory.init_output()

    @property
    def memoria(self) -> Memoria:
        return self.memory.memoria

    @memoria.setter
    def memoria(self, memoria: Memoria) -> None:
        """Replace the memory's ``Memoria`` (e.g. by one that keeps its history)."""
        self.memory.memoria = memoria

    @property
    def abstractor(self) -> Abstractor:
        return self.memory.abstractor

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.wte = value

    def reset_memory(self) -> None:
        """Forget everything: call between examples."""
        self.memory.reset()

    def unrolled(self) -> ContextManager[None]:
        """Backpropagation through the memory (``config.unroll_segments``) for the segments run inside: open it
        around one example's segments whose losses are backpropagated together."""
        return self.memory.unrolled()

    def reset_memory_rows(self, rows: torch.Tensor) -> None:
        """Forget the engrams of the batch rows ``rows`` (bool [Batch]) only: a new stream starts there.

        The caller also owns the ``memory_hidden_states`` it carries; those rows of it are its to forget.
        """
        self.memory.reset_rows(rows)

    def forward(
        self, input_ids: torch.Tensor, memory_hidden_states: Optional[torch.Tensor] = None
    ) -> MemoriaTransformerOutput:
        """Run one segment.

        Args:
            input_ids: [Batch, Length] token ids, Length <= n_positions.
            memory_hidden_states: the previous segment's ``memory_hidden_states`` [Batch, PrevLength, Dim],
                or None for the first segment of an example (no memory is read or written then).
        """
        batch, length = input_ids.shape
        if length > self.config.n_positions:
            raise ValueError(f"segment of {length} tokens is longer than n_positions={self.config.n_positions}")
        # write the previous segment and remind (nothing on a first segment); the carried hidden states stay in the
        # graph only in an unrolled training step
        live = self.memory.keeps_written_graph
        previous = memory_hidden_states
        if previous is not None and not live:
            previous = previous.detach()
        read = self.memory(previous)

        positions = torch.arange(length, device=input_ids.device)
        hidden = self.drop(self.wte(input_ids) + self.wpe(positions))  # (B, L, D)
        reminded_attentions = []
        for block in self.h:
            hidden, attention = block(hidden, read)
            reminded_attentions.append(attention)
        hidden = self.ln_f(hidden)

        delta = self.memory.adjust(read, reminded_attentions)
        return MemoriaTransformerOutput(
            last_hidden_state=hidden,
            memory_hidden_states=hidden if live else hidden.detach(),
            reminded_indices=read.reminded_indices,
            lifespan_delta=delta,
        )

    def forward_cached(self, input_ids: torch.Tensor, cache: MemoriaGenerationCache) -> torch.Tensor:
        """Read ``input_ids`` [Batch, Length] (any length) after what ``cache`` has read; returns the final hidden
        states [Batch, Length, Dim] and updates ``cache`` and the memory.

        The tokens fill the current segment; at each segment boundary the memory advances exactly as
        :meth:`forward` does for consecutive segments: the finished segment's lifespan gains are applied, and the
        next segment adds its working memories (the abstracted finished segment) and reminds.
        """
        if cache.segment_length > self.config.n_positions:
            raise ValueError(
                f"segment_length {cache.segment_length} is longer than n_positions={self.config.n_positions}"
            )
        pieces, start, length = [], 0, input_ids.size(1)
        while start < length:
            if cache.filled == 0:
                cache.start_segment(len(self.h), self.memory(cache.previous_hidden))
            take = min(length - start, cache.segment_length - cache.filled)
            positions = torch.arange(cache.filled, cache.filled + take, device=input_ids.device)
            hidden = self.drop(self.wte(input_ids[:, start : start + take]) + self.wpe(positions))  # (B, T, D)
            for layer, block in enumerate(self.h):
                hidden, attention, cache.key_values[layer] = block.forward_cached(
                    hidden, cache.key_values[layer], cache.memory
                )
                if attention is not None:
                    cache.reminded_attentions[layer].append(attention)
            hidden = self.ln_f(hidden)
            pieces.append(hidden)
            cache.segment_hidden.append(hidden.detach())
            cache.seen_tokens += take
            start += take
            if cache.filled == cache.segment_length:
                self._finish_segment(cache)
        return torch.cat(pieces, dim=1)

    def _finish_segment(self, cache: MemoriaGenerationCache) -> None:
        """Apply the complete segment's lifespan gains and keep its hidden states for the next segment."""
        attentions = [torch.cat(layer, dim=2) for layer in cache.reminded_attentions if layer]  # (B, H, S, R)
        self.memory.adjust(cache.memory, attentions)
        cache.previous_hidden = torch.cat(cache.segment_hidden, dim=1)
        cache.start_segment(len(self.h), MemoryRead())


class MemoriaTransformerLMHeadModel(TiedLMHeadMixin, MemoriaTransformerPreTrainedModel, GenerationMixin):
    """Memoria Transformer with a tied language-model head.

    ``generate()`` reads the prompt segment by segment through the memory and continues it (greedy or sampled;
    see :meth:`forward` with ``use_cache``). It continues the memory as it is: call :meth:`reset_memory` first to
    start a new text. ``segment_length`` (a ``generate`` argument) defaults to ``config.segment_length`` (written
    by ``experiment.scripts.train``) or ``n_positions``.
    """

    def __init__(self, config: MemoriaTransformerConfig) -> None:
        super().__init__(config)
        self.attach_lm_head(MemoriaTransformerModel(config))
        self.post_init()

    @property
    def memoria(self) -> Memoria:
        return self.transformer.memoria

    def reset_memory(self) -> None:
        """Forget everything: call between examples."""
        self.transformer.reset_memory()

    def reset_memory_rows(self, rows: torch.Tensor) -> None:
        """Forget the engrams of the batch rows ``rows`` (bool [Batch]) only; see
        :meth:`MemoriaTransformerModel.reset_memory_rows`."""
        self.transformer.reset_memory_rows(rows)

    def unrolled(self) -> ContextManager[None]:
        """See :meth:`MemoriaTransformerModel.unrolled`."""
        return self.transformer.unrolled()

    def memory_state_dict(self) -> dict[str, Any]:
        """The engrams held now, for checkpoints (:meth:`memoria.nn.MemoriaMemory.memory_state_dict`)."""
        return self.transformer.memory.memory_state_dict()

    def load_memory_state_dict(self, state: dict[str, Any]) -> None:
        self.transformer.memory.load_memory_state_dict(state)

    def save_memory(self, directory: str, memory_hidden_states: Optional[torch.Tensor] = None) -> str:
        """Write the memory held now (and the ``memory_hidden_states`` [Batch, Length, Dim] the caller carries, if
        given) to ``directory/memory_state.pt``, e.g. beside ``save_pretrained``'s files, which never hold it: it is
        the state of the texts being read, not weights. Returns the file's path."""
        path = Path(directory) / MEMORY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        hidden = None if memory_hidden_states is None else memory_hidden_states.detach().cpu()
        torch.save({"memory": self.memory_state_dict(), "memory_hidden_states": hidden}, path)
        return str(path)

    def load_memory(self, directory: str) -> Optional[torch.Tensor]:
        """Restore the memory written by :meth:`save_memory` (onto this model's device; a weights-only load);
        returns the saved ``memory_hidden_states`` (None if none were saved), to pass with the next segment."""
        path = Path(directory) / MEMORY_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no saved memory state at {path} (write one with save_memory)")
        saved = torch.load(path, weights_only=True, map_location=self.device)
        self.load_memory_state_dict(saved["memory"])
        hidden = saved["memory_hidden_states"]
        return None if hidden is None else hidden.to(self.device)

    def forward(
        self,
        input_ids: torch.Tensor,
        memory_hidden_states: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        cache: Optional[MemoriaGenerationCache] = None,
        use_cache: Optional[bool] = None,
        segment_length: Optional[int] = None,
        past_key_values: Optional[MemoriaGenerationCache] = None,
        return_dict: Optional[bool] = None,
    ) -> MemoriaTransformerOutput:
        """Run one segment; see :meth:`MemoriaTransformerModel.forward`. ``labels`` [Batch, Length] follow the
        ``transformers`` convention (shifted inside, -100 ignored).

        With ``use_cache=True`` or a ``cache`` (``past_key_values`` is its older name), ``input_ids`` [Batch, Length]
        of any length continue the text that ``cache`` has read (a new one without it), segment by segment of
        ``segment_length`` tokens through the memory (:meth:`MemoriaTransformerModel.forward_cached`); the returned
        ``output.cache`` goes with the next tokens. ``memory_hidden_states`` then stands for a segment read before
        the cache started. ``attention_mask`` [Batch, Length] must be all ones: padding is not supported.
        """
        if past_key_values is not None:
            if cache is not None:
                raise ValueError("pass the generation cache as cache or as past_key_values, not both")
            cache = past_key_values
        if cache is not None and not isinstance(cache, MemoriaGenerationCache):
            raise TypeError(f"cache must be a MemoriaGenerationCache (output.cache), got {type(cache).__name__}")
        if not torch.is_tensor(input_ids) or input_ids.dim() != 2:
            raise ValueError("input_ids must be a [Batch, Length] tensor of token ids")
        if attention_mask is not None and not bool((attention_mask == 1).all()):
            raise ValueError("attention_mask has padding (zeros); this model reads unpadded text only")
        if cache is None and not use_cache:
            output = self.transformer(input_ids, memory_hidden_states)
            logits, output.loss = self.lm_logits_and_loss(output.last_hidden_state, labels)  # (B, L, V)
            output.logits = logits
            return output

        segment_length = segment_length or getattr(self.config, "segment_length", None) or self.config.n_positions
        if cache is None:
            cache = MemoriaGenerationCache(segment_length)
            if memory_hidden_states is not None:
                cache.previous_hidden = memory_hidden_states.detach()
        elif cache.segment_length != segment_length:
            raise ValueError(f"segment_length {segment_length} differs from the cache's {cache.segment_length}")
        hidden = self.transformer.forward_cached(input_ids, cache)  # (B, L, D)
        logits, loss = self.lm_logits_and_loss(hidden, labels)  # (B, L, V)
        return MemoriaTransformerOutput(
            loss=loss,
            logits=logits,
            last_hidden_state=hidden,
            memory_hidden_states=cache.previous_hidden,
            cache=cache,
        )

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # forward makes its own cache (MemoriaGenerationCache)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``transformers`` generation (greedy or sampling) through the memory; see the class docstring."""
        num_beams = kwargs.get("num_beams") or getattr(kwargs.get("generation_config"), "num_beams", None) or 1
        if num_beams > 1:
            raise ValueError("num_beams > 1: beam search is not supported (the memory cannot follow reordered beams)")
        return super().generate(*args, **kwargs)

    @classmethod
    def from_gpt2(cls, path: str, **memory_config: Any) -> "MemoriaTransformerLMHeadModel":
        """Build a Memoria Transformer whose decoder weights come from the GPT-2 checkpoint at ``path``.

        ``memory_config`` sets the memory fields of :class:`MemoriaTransformerConfig` (and may override GPT-2
        ones such as dropout). The memory blocks and the abstractor start from fresh initialisation.
        """
        gpt2_config = GPT2Config.from_pretrained(path)
        shared = {
            name: getattr(gpt2_config, name)
            for name in (
                "vocab_size",
                "n_positions",
                "n_embd",
                "n_layer",
                "n_head",
                "n_inner",
                "activation_function",
                "resid_pdrop",
                "embd_pdrop",
                "attn_pdrop",
                "layer_norm_epsilon",
                "initializer_range",
            )
        }
        model = cls(MemoriaTransformerConfig(**{**shared, **memory_config}))
        gpt2_state = GPT2LMHeadModel.from_pretrained(path).state_dict()
        missing, unexpected = model.load_state_dict(gpt2_state, strict=False)
        fresh = ("memory.", "abstractor.")
        not_loaded = [name for name in missing if not any(part in name for part in fresh)]
        if not_loaded or unexpected:
            raise ValueError(f"GPT-2 checkpoint does not fit: missing {not_loaded}, unexpected {list(unexpected)}")
        return model


register_old_memory_names(MemoriaTransformerConfig.model_type)
