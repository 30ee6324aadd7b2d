"""MemoriaForCausalLM: a pretrained Hugging Face causal LM that reads a Memoria memory at chosen decoder layers.

Nothing of the base model's code is copied or changed: a forward hook on each chosen decoder layer adds the memory
read (a :class:`memoria.nn.MemoryReader`, gated) to the hidden states that layer returns, and a forward hook on the
base model's backbone reports the final hidden states. A text is read in segments of ``segment_length`` tokens:

1. at a segment's start the memory writes the previous segment's final hidden states (the backbone's output after
   its final norm, detached, padding masked; as the Memoria Transformer writes) as working memories and reminds;
2. the segment runs through the base model; it attends only within itself (positions restart at 0 every segment,
   no key/value cache crosses a boundary) and reads the working then the reminded memories at the chosen layers;
3. at its end the attention the reminded memories received becomes their lifespan gain.

Shapes: B batch, T tokens of the input, L segment length, D hidden, V vocabulary.
"""

import inspect
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache
from transformers.utils import ModelOutput

from memoria.nn import MemoryReader

from .generation import GenerationOutput, generate
from .layers import choose_layers, find_decoder_layers, text_config
from .reading import SegmentReading
from .segment_memory import SegmentMemory


@dataclass
class MemoriaCausalLMOutput(ModelOutput):
    """What :meth:`MemoriaForCausalLM.forward` returns.

    Attributes:
        loss: mean next-token cross-entropy over the labels that are not -100 (when ``labels`` were given); the
            labels are shifted inside, across segment boundaries.
        logits: [B, T, V] for the whole input.
    """

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` [B, T, V] at position t against ``labels`` [B, T] at t + 1 (-100: ignored)."""
    shifted = logits[:, :-1].flatten(0, 1).float()  # (B * (T - 1), V)
    return F.cross_entropy(shifted, labels[:, 1:].flatten().to(logits.device), ignore_index=-100)


def _read_hook(wrapper: "MemoriaForCausalLM", position: int, module: nn.Module, args: Any, output: Any) -> Any:
    """Forward hook of a chosen decoder layer: add the memory read to the hidden states it returns."""
    reading = wrapper._reading
    if reading is None:  # the base model called on its own: unchanged
        return None
    hidden = output[0] if isinstance(output, tuple) else output
    read = wrapper.readers[position](hidden, reading.read)
    if read.reminded_attention is not None:
        reading.attentions[position].append(read.reminded_attention)
    return (read.hidden_states, *output[1:]) if isinstance(output, tuple) else read.hidden_states


def _final_hidden_hook(wrapper: "MemoriaForCausalLM", module: nn.Module, args: Any, output: Any) -> None:
    """Forward hook of the backbone: keep its final hidden states [B, T, D] for the next segment's write."""
    if wrapper._reading is not None:
        wrapper._reading.last_hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state


class MemoriaForCausalLM(nn.Module):
    """A causal LM (``transformers``) with one :class:`SegmentMemory` and a :class:`memoria.nn.MemoryReader` per
    chosen decoder layer. Build it with :func:`add_memoria`.

    The memory carries over between calls of :meth:`forward` and :meth:`generate`: call :meth:`reset_memory`
    before a new batch of documents (or :meth:`reset_memory_rows` where a new document starts in some rows).

    Attributes:
        model: the base model (its parameters and code untouched; its chosen layers carry the hooks).
        memory: the :class:`SegmentMemory` (abstractor, ``Memoria``, the finished segment to write next).
        readers: one :class:`memoria.nn.MemoryReader` per chosen layer, in ``layer_indices`` order.
        layer_indices: the chosen decoder layers' indices.
        segment_length: L, tokens per segment.
    """

    def __init__(
        self,
        model: nn.Module,
        segment_length: int,
        layers: Optional[Sequence[int]] = None,
        *,
        decoder_layers: Optional[Sequence[nn.Module]] = None,
        num_heads: Optional[int] = None,
        gate: Optional[float] = 0.0,
        reader_dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
        **memory_config: Any,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module) or not hasattr(model, "config"):
            raise TypeError(f"model must be a transformers causal LM (a PreTrainedModel), got {type(model).__name__}")
        if not isinstance(segment_length, int) or isinstance(segment_length, bool) or segment_length < 1:
            raise ValueError(f"segment_length must be an int >= 1, got {segment_length!r}")
        config = text_config(model)
        positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if positions is not None and segment_length > positions:
            raise ValueError(f"segment_length {segment_length} is longer than the model's {positions} positions")
        stack = list(decoder_layers) if decoder_layers is not None else list(find_decoder_layers(model))
        self.layer_indices = choose_layers(stack, layers)
        hidden_dim = config.hidden_size
        num_heads = config.num_attention_heads if num_heads is None else num_heads
        memory_config.setdefault("init_std", getattr(config, "initializer_range", 0.02))
        self.model = model
        self.segment_length = segment_length
        self.memory = SegmentMemory(hidden_dim, **memory_config)
        self.readers = nn.ModuleList(
            MemoryReader(hidden_dim, num_heads, reader_dropout, layer_norm_eps, gate=gate) for _ in self.layer_indices
        )
        self.settings = dict(
            segment_length=segment_length,
            layers=self.layer_indices,
            num_heads=num_heads,
            gate=gate,
            reader_dropout=reader_dropout,
            layer_norm_eps=layer_norm_eps,
            **{key: value for key, value in memory_config.items() if key != "generator"},
        )
        parameter = next(model.parameters())
        self.memory.to(device=parameter.device, dtype=parameter.dtype)
        self.readers.to(device=parameter.device, dtype=parameter.dtype)
        self._reading: Optional[SegmentReading] = None
        # transformers 5 renamed past_key_values to cache (the old name deprecated); take the one this model reads
        parameters = inspect.signature(model.forward).parameters
        self._cache_keyword = "cache" if "cache" in parameters else "past_key_values"
        self._hooks = [
            stack[index].register_forward_hook(partial(_read_hook, self, position))
            for position, index in enumerate(self.layer_indices)
        ]
        backbone = getattr(model, "base_model", model)
        self._hooks.append(backbone.register_forward_hook(partial(_final_hidden_hook, self)))

    # ------------------------------------------------------------------ parameters and state

    def memory_parameters(self) -> Iterator[nn.Parameter]:
        """The memory's parameters (abstractor, readers, gates): what to give the optimiser over a frozen base."""
        yield from self.memory.parameters()
        yield from self.readers.parameters()

    def memory_weights(self) -> dict[str, torch.Tensor]:
        """The memory parameters by name (``memory.*``, ``readers.*``): the weights :func:`save_memoria` writes."""
        return {name: tensor for name, tensor in self.state_dict().items() if not name.startswith("model.")}

    def reset_memory(self) -> None:
        """Forget everything (call before a new batch of documents)."""
        self.memory.reset()

    def reset_memory_rows(self, rows: Union[torch.Tensor, list[int]]) -> None:
        """Forget the batch rows ``rows`` (bool mask [B] or row indices) only: a new document starts there. The
        other rows keep their memory; with ``independent_rows=True`` their outputs are exactly as without it."""
        self.memory.reset_rows(rows)

    def remove_memoria(self) -> nn.Module:
        """Take the hooks off the base model and return it, as it was before :func:`add_memoria`."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        return self.model

    # ------------------------------------------------------------------ reading segments

    def _check_inputs(
        self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor], labels: Optional[torch.Tensor] = None
    ) -> None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.size(1) == 0:
            raise ValueError("input_ids must be a [B, T] tensor of token ids with T >= 1")
        if input_ids.dtype not in (torch.long, torch.int):
            raise TypeError(f"input_ids must hold integer token ids, got {input_ids.dtype}")
        for name, tensor in (("attention_mask", attention_mask), ("labels", labels)):
            if tensor is not None and (not isinstance(tensor, torch.Tensor) or tensor.shape != input_ids.shape):
                raise ValueError(f"{name} must be None or a tensor shaped like input_ids {list(input_ids.shape)}")
        rows = self.memory.batch_size
        if rows is not None and rows != input_ids.size(0):
            raise ValueError(
                f"input_ids hold {input_ids.size(0)} rows but the memory holds {rows}: call reset_memory() before a "
                "new batch of documents"
            )

    # The memory boundary: the host-side work of the memory (write, remind, lifespans) and its bookkeeping. Under
    # torch.compile the graph breaks here and nowhere else; dynamo never traces into it.

    @torch.compiler.disable
    def _start_segment(self, use_cache: bool) -> SegmentReading:
        """Write the finished segment, remind, and open a segment that reads them (with a fresh key/value cache)."""
        cache = DynamicCache(config=self.model.config) if use_cache else None
        read = self.memory.next_read()
        if read.reminded is not None and read.reminded.size(1) > 1:
            # R changes from segment to segment: one compiled graph for every R, not one graph each
            for tensor in (read.reminded, read.reminded_mask, read.reminded_indices):
                torch._dynamo.maybe_mark_dynamic(tensor, 1)
        return SegmentReading(read, len(self.readers), cache)

    def _read_tokens(
        self, segment: SegmentReading, input_ids: torch.Tensor, mask: Optional[torch.Tensor], **model_kwargs: Any
    ) -> torch.Tensor:
        """Run the next ``input_ids`` [B, T] of ``segment`` (``mask`` [B, T]) through the base model; logits."""
        length = input_ids.size(1)
        positions = torch.arange(segment.filled, segment.filled + length, device=input_ids.device)
        self._reading = segment
        try:
            output = self.model(
                input_ids=input_ids,
                attention_mask=segment.mask_with(mask),
                position_ids=positions.unsqueeze(0).expand(input_ids.size(0), -1),
                **{self._cache_keyword: segment.cache},
                use_cache=segment.cache is not None,
                **model_kwargs,
            )
        finally:
            self._reading = None
        segment.record(mask, length)
        return output.logits

    @torch.compiler.disable
    def _finish_segment(self, segment: SegmentReading) -> None:
        """Give the reminded memories their lifespan gain from the segment's attention; keep its hidden states."""
        mask = segment.segment_mask()
        self.memory.adjust(segment.read, segment.reminded_attentions(), query_mask=mask)
        self.memory.keep(torch.cat(segment.hidden, dim=1), mask)

    def _segment(self, input_ids: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """One whole segment [B, L] (``mask`` [B, L] or None) after what the memory holds: logits [B, L, V].

        Under ``torch.compile`` this is the frame that compiles: the base model and the memory reads are traced, and
        the graph breaks only at the memory's boundary (the write-and-remind and the lifespan adjustment)."""
        segment = self._start_segment(use_cache=False)
        logits = self._read_tokens(segment, input_ids, mask)
        self._finish_segment(segment)
        return logits

    # The segment loop runs in Python: under torch.compile each _segment is a compiled frame of its own.
    @torch.compiler.disable(recursive=False)
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
    ) -> MemoriaCausalLMOutput:
        """Read ``input_ids`` [B, T] segment by segment after what the memory holds; logits [B, T, V] and the loss.

        Args:
            input_ids: [B, T], any T: cut into segments of ``segment_length`` (the last one may be shorter). A
                following call continues the text as if it came in the same call when T is a multiple of
                ``segment_length``.
            attention_mask: [B, T], 1 at real tokens, 0 at padding (masked in self-attention, in the memory write
                and in the lifespan gain). None: all real.
            labels: [B, T] token ids (-100: ignored), as transformers' causal LMs take them: position t predicts
                ``labels[:, t + 1]``, across segment boundaries.
        """
        self._check_inputs(input_ids, attention_mask, labels)
        logits = []
        for start in range(0, input_ids.size(1), self.segment_length):
            end = start + self.segment_length
            mask = None if attention_mask is None else attention_mask[:, start:end].to(torch.bool)
            segment = input_ids[:, start:end]
            torch._dynamo.maybe_mark_dynamic(segment, 1)  # a document's shorter last segment: no graph of its own
            logits.append(self._segment(segment, mask))
        logits = torch.cat(logits, dim=1)  # (B, T, V)
        return MemoriaCausalLMOutput(loss=None if labels is None else causal_lm_loss(logits, labels), logits=logits)

    def generate(
        self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, **options: Any
    ) -> Union[torch.Tensor, GenerationOutput]:
        """Read the prompt through the memory and continue it; see :func:`memoria.integrations.transformers.generate`."""
        return generate(self, input_ids, attention_mask, **options)


def add_memoria(
    model: nn.Module,
    layers: Optional[Sequence[int]] = None,
    segment_length: int = 512,
    **options: Any,
) -> MemoriaForCausalLM:
    """Give a pretrained causal LM a Memoria memory read at ``layers``; returns the wrapper that owns it.

    Args:
        model: a ``transformers`` causal LM (GPT-2, Llama, Qwen2, Mistral, GPT-NeoX, ... families).
        layers: indices of the decoder layers that read the memory (negative: from the end); None: every layer.
        segment_length: L, tokens per segment (at most the model's positions).
        decoder_layers: the model's decoder layers, for an architecture whose layers are not found on their own.
        num_heads: the memory reads' attention heads (default: the model's).
        gate: initial value of each read's learned gate; 0.0 (default) keeps the model's outputs unchanged at
            initialisation. None: no gate (the reads change the outputs from the start).
        reader_dropout, layer_norm_eps: the memory reads' dropout and layer norm epsilon.
        **memory_config: :class:`memoria.nn.MemoriaMemory`'s arguments (``num_working_memories``,
            ``num_reminded_stm``, ``stm_capacity``, ``ltm_search_depth``, ``initial_lifespan``, ``num_final_ltms``,
            ``lifespan_extend_scale``, ``memory_init``, ``independent_rows`` ...).
    """
    return MemoriaForCausalLM(model, segment_length, layers, **options)
