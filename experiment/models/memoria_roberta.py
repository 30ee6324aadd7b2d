"""Memoria RoBERTa: RoBERTa's embeddings, layers and classification head with Memoria BERT's memory layers.

The memory part is :class:`~experiment.models.memoria_bert.MemoriaEncoderMixin`; only the pieces that differ from
BERT (position ids from padding, no pooler, the ``<s>``-token head) come from RoBERTa. Weights of a plain RoBERTa
checkpoint load into the encoder with ``from_pretrained``.
"""

from typing import Optional

import torch
from huggingface_hub.dataclasses import strict
from transformers import AutoModel
from transformers.models.roberta.modeling_roberta import (
    RobertaClassificationHead,
    RobertaEmbeddings,
    RobertaEncoder,
    RobertaPreTrainedModel,
)

from .memoria_bert import (
    AbstractorInitMixin,
    MemoriaBertConfig,
    MemoriaEncoderMixin,
    MemoriaEncoderOutput,
    MemoriaSequenceClassifierOutput,
    MemoryHolderMixin,
    classification_loss,
)
from .memory_names import register_old_memory_names


@strict
class MemoriaRobertaConfig(MemoriaBertConfig):
    """Memoria BERT's fields with RoBERTa's special-token ids and layer-norm epsilon."""

    model_type = "memoria_roberta"
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 2
    layer_norm_eps: float = 1e-5
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    vocab_size: int = 50265


class MemoriaRobertaPreTrainedModel(AbstractorInitMixin, RobertaPreTrainedModel):
    config_class = MemoriaRobertaConfig
    config: MemoriaRobertaConfig
    base_model_prefix = "roberta"


class MemoriaRobertaModel(MemoriaEncoderMixin, MemoriaRobertaPreTrainedModel):
    """RoBERTa encoder with memory layers. ``input_ids`` [Batch, Length] -> :class:`MemoriaEncoderOutput`."""

    def __init__(self, config: MemoriaRobertaConfig) -> None:
        super().__init__(config)
        self.embeddings = RobertaEmbeddings(config)
        self.encoder = RobertaEncoder(config)
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
        return MemoriaEncoderOutput(hidden, None, working, indices, delta)


class MemoriaRobertaForSequenceClassification(MemoryHolderMixin, MemoriaRobertaPreTrainedModel):
    """Memoria RoBERTa with RoBERTa's ``<s>``-token classifier. Call once per segment; the memory carries over."""

    def __init__(self, config: MemoriaRobertaConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = MemoriaRobertaModel(config)
        self.classifier = RobertaClassificationHead(config)
        self.post_init()

    @property
    def encoder_with_memory(self) -> MemoriaRobertaModel:
        return self.roberta

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        use_memory: bool = True,
    ) -> MemoriaSequenceClassifierOutput:
        """input_ids, attention_mask, token_type_ids: [Batch, Length]; labels: [Batch]."""
        outputs = self.roberta(input_ids, attention_mask, token_type_ids, use_memory=use_memory)
        logits = self.classifier(outputs.last_hidden_state)
        return MemoriaSequenceClassifierOutput(classification_loss(logits, labels), logits, outputs.reminded_indices)


AutoModel.register(MemoriaRobertaConfig, MemoriaRobertaModel, exist_ok=True)
register_old_memory_names(MemoriaRobertaConfig.model_type)
