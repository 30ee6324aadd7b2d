"""Memoria BERT: a BERT encoder whose upper layers cross-attend to Memoria's working and reminded memories.

Built on the package's memory layer (``memoria.nn``). After layer ``memory_layer_index`` (9 of 12 in the paper's
configs) the model's :class:`~memoria.nn.MemoriaMemory` writes the segment's hidden states as working memories (its
abstractor's summary) and reminds stored memories. Every later layer reads them through a
:class:`~memoria.nn.MemoryReader` (working pass, then reminded pass) placed as in the authors' model
(``memory_placement="inside"``): between the layer's self-attention and its feed-forward part, post-norm like the rest
of BERT. ``"after"`` puts a pre-norm reader after the whole layer instead. After the forward pass the attention each
reminded memory received becomes its lifespan gain.

The memory lives in the model instance and is carried across calls: feed one document segment by segment and call
:meth:`reset_memory` before the next batch of documents. Weights of a plain BERT checkpoint load into the encoder
(``from_pretrained`` on a ``BertModel`` or ``BertForSequenceClassification`` folder); the memory parts start fresh.
"""

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel, BertConfig
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertEmbeddings, BertEncoder, BertPooler, BertPreTrainedModel
from transformers.utils import ModelOutput

from memoria import Abstractor, Memoria
from memoria.nn import MEMORY_INITS, MemoriaMemory, MemoryRead, MemoryReader, init_abstractor

# relative imports only, and registered in experiment/models/__init__.py: save_pretrained copies this module and its
# siblings beside the weights, where they load without the experiment package
from .memory_names import accept_old_memory_names, register_old_memory_names

MEMORY_PLACEMENTS = ("inside", "after")


@strict
class MemoriaBertConfig(BertConfig):
    """BERT hyper-parameters plus the memory's; defaults are the paper's Hyperpartisan settings.

    Args (beyond ``BertConfig``):
        memory_layer_index: the layer after which working memories are made; later layers attend to memory.
        num_working_memories: working memories the abstractor makes per segment.
        abstractor_feedforward_dim: the abstractor's inner width (None: ``intermediate_size``).
        memoria_num_reminded_stm / memoria_stm_capacity / memoria_ltm_search_depth / memoria_initial_lifespan /
        memoria_num_final_ltms: passed to ``Memoria``.
        lifespan_extend_scale: reminded memories gain ``attention * num_reminded * scale`` lifespan.
        memory_init: ``"scaled"`` (default: a live memory path at every width) or ``"paper"`` (the authors'
            N(0, initializer_range)); see :func:`memoria.nn.abstractor_init_stds`.
        memory_placement: ``"inside"`` (default, the authors'): memory attention between each later layer's
            self-attention and feed-forward, post-norm; ``"after"``: a pre-norm memory reader after each later layer.
        memory_gate: None (default, the paper's form) or the initial value of a learned gate on each memory read
            (:class:`memoria.nn.MemoryReader`).
        write_gradient_segments: 0 (default, the paper's detached engrams) or K: reminded engrams of the last K
            writes carry the loss's gradient back to the abstractor (:class:`memoria.nn.MemoriaMemory`).
    """

    model_type = "memoria_bert"
    memory_layer_index: int = 9
    num_working_memories: int = 64
    abstractor_feedforward_dim: int | None = None
    memoria_num_reminded_stm: int = 64
    memoria_stm_capacity: int = 128
    memoria_ltm_search_depth: int = 10
    memoria_initial_lifespan: int = 12
    memoria_num_final_ltms: int = 64
    lifespan_extend_scale: float | int = 8.0
    memory_init: str = "scaled"
    memory_placement: str = "inside"
    memory_gate: float | int | None = None
    write_gradient_segments: int = 0

    def check_memory_layer(self) -> None:
        """Raises ValueError unless at least one layer follows the memory layer and the memory fields are known."""
        if self.memory_init not in MEMORY_INITS:
            raise ValueError(f"memory_init must be one of {MEMORY_INITS}, got {self.memory_init!r}")
        if self.memory_placement not in MEMORY_PLACEMENTS:
            raise ValueError(f"memory_placement must be one of {MEMORY_PLACEMENTS}, got {self.memory_placement!r}")
        if not 0 <= self.memory_layer_index < self.num_hidden_layers - 1:
            raise ValueError(
                f"memory_layer_index must be in 0..{self.num_hidden_layers - 2} so that a later layer can attend to "
                f"memory, got {self.memory_layer_index}"
            )


@dataclass
class MemoriaEncoderOutput(ModelOutput):
    """last_hidden_state [Batch, Length, Dim]; pooler_output [Batch, Dim] (None without a pooler);
    working_memories [Batch, NumWorking, Dim]; reminded_indices [Batch, NumReminded] (-1: none);
    lifespan_delta [Batch, NumReminded]."""

    last_hidden_state: Optional[torch.Tensor] = None
    pooler_output: Optional[torch.Tensor] = None
    working_memories: Optional[torch.Tensor] = None
    reminded_indices: Optional[torch.Tensor] = None
    lifespan_delta: Optional[torch.Tensor] = None


@dataclass
class MemoriaSequenceClassifierOutput(ModelOutput):
    """loss (scalar, when labels are given); logits [Batch, NumLabels]; reminded_indices [Batch, NumReminded]."""

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    reminded_indices: Optional[torch.Tensor] = None


def build_memory(config: MemoriaBertConfig) -> MemoriaMemory:
    """A fresh memory (abstractor and ``Memoria``) with the config's settings."""
    return MemoriaMemory(
        config.hidden_size,
        config.num_working_memories,
        abstractor_feedforward_dim=config.abstractor_feedforward_dim or config.intermediate_size,
        num_reminded_stm=config.memoria_num_reminded_stm,
        stm_capacity=config.memoria_stm_capacity,
        ltm_search_depth=config.memoria_ltm_search_depth,
        initial_lifespan=config.memoria_initial_lifespan,
        num_final_ltms=config.memoria_num_final_ltms,
        lifespan_extend_scale=config.lifespan_extend_scale,
        memory_init=config.memory_init,
        init_std=config.initializer_range,
        write_gradient_segments=config.write_gradient_segments,
        # the paper's forms (no write norm, no unrolling, readers' output as drawn): not measured on classification
        write_norm=False,
        unroll_segments=0,
    )


class MemoriaEncoderMixin:
    """The shared part of Memoria BERT and Memoria RoBERTa: memory modules and the layer loop.

    The host module defines ``embeddings`` and ``encoder`` (a ``layer`` list) like the ``transformers`` encoder it
    extends, so that plain checkpoints load into it key for key.
    """

    def init_memory(self, config: MemoriaBertConfig) -> None:
        config.check_memory_layer()
        self.memory = build_memory(config)
        num_memory_layers = config.num_hidden_layers - config.memory_layer_index - 1
        post_norm = config.memory_placement == "inside"
        dropout, eps = config.attention_probs_dropout_prob, config.layer_norm_eps
        heads, gate = config.num_attention_heads, config.memory_gate
        self.memory_blocks = nn.ModuleList(
            MemoryReader(config.hidden_size, heads, dropout, eps, post_norm, gate, output_init="default")
            for _ in range(num_memory_layers)
        )
        accept_old_memory_names(self)

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

    def reset_memory(self) -> None:
        """Forgets every stored memory (call between batches of documents)."""
        self.memory.reset()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def embed_and_encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor],
        token_type_ids: Optional[torch.Tensor],
        use_memory: bool = True,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embeds input_ids [Batch, Length] and runs :meth:`encode_with_memory` (same returns)."""
        embedding_output = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return self.encode_with_memory(embedding_output, attention_mask, use_memory)

    def encode_with_memory(
        self, embedding_output: torch.Tensor, attention_mask: Optional[torch.Tensor], use_memory: bool = True
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Runs the layers over one segment and updates the memory.

        Args:
            embedding_output: [Batch, Length, Dim].
            attention_mask: [Batch, Length], 1 for real tokens (None: all real).
            use_memory: False runs the working-memory pass only and leaves Memoria untouched.
        Returns:
            hidden states [Batch, Length, Dim], working memories [Batch, NumWorking, Dim],
            reminded indices [Batch, NumReminded] and lifespan deltas [Batch, NumReminded].
        """
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
        )
        read = MemoryRead()
        attentions: List[Optional[torch.Tensor]] = []
        hidden = embedding_output
        first_memory_layer = self.config.memory_layer_index + 1
        for layer_index, layer in enumerate(self.encoder.layer):
            if layer_index < first_memory_layer:
                hidden = layer(hidden, mask)
            else:
                block = self.memory_blocks[layer_index - first_memory_layer]
                if self.config.memory_placement == "inside":
                    attention_output, _ = layer.attention(hidden, mask)  # self-attention + its post-norm residual
                    out = block(attention_output, read)
                    hidden = layer.feed_forward_chunk(out.hidden_states)
                else:
                    out = block(layer(hidden, mask), read)
                    hidden = out.hidden_states
                attentions.append(out.reminded_attention)
            if layer_index == self.config.memory_layer_index:
                # the authors' abstractor reads every position of the segment, padding included
                if use_memory:
                    read = self.memory(hidden)  # write this segment, remind
                else:
                    read = MemoryRead(working=self.memory.abstractor(hidden))  # (B, W, D), Memoria untouched
        if use_memory:
            # Padding positions' attention would otherwise count towards the gain of the memories they looked at.
            query_mask = None if attention_mask is None else attention_mask.bool()
            delta = self.memory.adjust(read, attentions, query_mask)
            indices = read.reminded_indices
        else:
            indices = torch.full((hidden.size(0), 0), -1, dtype=torch.long, device=hidden.device)
            delta = torch.zeros(indices.shape, device=hidden.device)
        return hidden, read.working, indices, delta


class AbstractorInitMixin:
    """Initialises the abstractor as the config's ``memory_init`` says; put it before the ``PreTrainedModel`` base."""

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Abstractor):  # visited after its linear layers, so this has the last word
            init_abstractor(module, self.config.memory_init, self.config.initializer_range)


class MemoriaBertPreTrainedModel(AbstractorInitMixin, BertPreTrainedModel):
    config_class = MemoriaBertConfig
    config: MemoriaBertConfig
    base_model_prefix = "bert"


class MemoriaBertModel(MemoriaEncoderMixin, MemoriaBertPreTrainedModel):
    """BERT encoder with memory layers. ``input_ids`` [Batch, Length] -> :class:`MemoriaEncoderOutput`."""

    def __init__(self, config: MemoriaBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.init_memory(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        use_memory: bool = True,
    ) -> MemoriaEncoderOutput:
        """input_ids, attention_mask, token_type_ids: [Batch, Length]."""
        hidden, working, indices, delta = self.embed_and_encode(input_ids, attention_mask, token_type_ids, use_memory)
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return MemoriaEncoderOutput(hidden, pooled, working, indices, delta)


def classification_loss(logits: torch.Tensor, labels: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Cross-entropy of logits [Batch, NumLabels] against labels [Batch] (None without labels)."""
    return None if labels is None else F.cross_entropy(logits, labels)


class MemoryHolderMixin:
    """Memory verbs of a classifier whose encoder (``self.encoder_with_memory``) holds the ``Memoria``."""

    @property
    def memoria(self) -> Memoria:
        return self.encoder_with_memory.memoria

    def reset_memory(self) -> None:
        """Forgets every stored memory (call between batches of documents)."""
        self.encoder_with_memory.reset_memory()

    def memory_state_dict(self) -> dict:
        """The memory state, for checkpoints (:meth:`memoria.nn.MemoriaMemory.memory_state_dict`)."""
        return self.encoder_with_memory.memory.memory_state_dict()

    def load_memory_state_dict(self, state: dict) -> None:
        self.encoder_with_memory.memory.load_memory_state_dict(state)


class MemoriaBertForSequenceClassification(MemoryHolderMixin, MemoriaBertPreTrainedModel):
    """Memoria BERT with BERT's pooled-[CLS] classifier. Call once per segment; the memory carries over."""

    def __init__(self, config: MemoriaBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = MemoriaBertModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @property
    def encoder_with_memory(self) -> MemoriaBertModel:
        return self.bert

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        use_memory: bool = True,
    ) -> MemoriaSequenceClassifierOutput:
        """input_ids, attention_mask, token_type_ids: [Batch, Length]; labels: [Batch]."""
        outputs = self.bert(input_ids, attention_mask, token_type_ids, use_memory=use_memory)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        return MemoriaSequenceClassifierOutput(classification_loss(logits, labels), logits, outputs.reminded_indices)


AutoModel.register(MemoriaBertConfig, MemoriaBertModel, exist_ok=True)
register_old_memory_names(MemoriaBertConfig.model_type)
