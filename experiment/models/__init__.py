"""Every experiment model, registered here by its config's ``model_type`` (the mechanism is in ``registry.py``).

Importing ``experiment.models`` registers all of them, with :data:`MODEL_REGISTRY` and with the ``transformers``
Auto classes, so ``AutoConfig`` / ``AutoModel...`` know every ``model_type``. The registrations live in this one
table rather than at the end of each model's module because a model saved with its code (``save_code=True``) is
loaded by ``transformers`` in a process that never imported ``experiment``: such a module imports only its
siblings, relatively, and cannot reach the registry. A new model is one line in :data:`_MODELS`; a peer from PyPI
(an optional dependency, ``experiment/requirements-peers.txt``) one in :data:`_PEERS`: when its package is missing,
its ``model_type`` is listed in :data:`UNAVAILABLE_MODELS` and ``build_model`` says what to install.

A model with a ``reset_memory()`` method is also reset between examples by the tasks.
"""

import importlib
from typing import Any

from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BigBirdConfig,
    BigBirdForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LongformerConfig,
    LongformerForSequenceClassification,
    PreTrainedModel,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from .compressive_transformer import CompressiveTransformerConfig, CompressiveTransformerLMHeadModel
from .infinity_former import InfinityFormerConfig, InfinityFormerLMHeadModel
from .infinity_former_xl import InfinityFormerXLConfig, InfinityFormerXLLMHeadModel
from .memoria_bert import MemoriaBertConfig, MemoriaBertForSequenceClassification
from .memoria_roberta import MemoriaRobertaConfig, MemoriaRobertaForSequenceClassification
from .memoria_transformer import MemoriaTransformerConfig, MemoriaTransformerLMHeadModel
from .registry import MODEL_REGISTRY, UNAVAILABLE_MODELS, ModelSpec, build_model, model_spec, register_model
from .transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel

__all__ = ["MODEL_REGISTRY", "UNAVAILABLE_MODELS", "ModelSpec", "build_model", "model_spec", "register_model"]


def load_memoria_transformer(pretrained: str, **fields: Any) -> PreTrainedModel:
    """A saved Memoria Transformer, or a GPT-2 checkpoint whose decoder weights start one (memory parts fresh)."""
    if AutoConfig.from_pretrained(pretrained).model_type == "gpt2":
        return MemoriaTransformerLMHeadModel.from_gpt2(pretrained, **fields)
    return MemoriaTransformerLMHeadModel.from_pretrained(pretrained, **fields)


# (config class, model class, state argument, registration options)
_MODELS: list[tuple[Any, Any, Any, dict[str, Any]]] = [
    (GPT2Config, GPT2LMHeadModel, None, {"auto_class": None}),
    (
        MemoriaTransformerConfig,
        MemoriaTransformerLMHeadModel,
        "memory_hidden_states",
        {"save_code": True, "loader": load_memoria_transformer},
    ),
    (TransformerXLConfig, TransformerXLLMHeadModel, "mems", {"save_code": True}),
    (CompressiveTransformerConfig, CompressiveTransformerLMHeadModel, "compressive_mems", {"save_code": True}),
    (InfinityFormerConfig, InfinityFormerLMHeadModel, "long_term_memory", {"save_code": True}),
    (InfinityFormerXLConfig, InfinityFormerXLLMHeadModel, "infinity_memory", {"save_code": True}),
    # classification: the memory lives inside the model (reset per batch), nothing is passed between segments
    *(
        (config, model, None, {"auto_class": AutoModelForSequenceClassification, "save_code": True})
        for config, model in (
            (MemoriaBertConfig, MemoriaBertForSequenceClassification),
            (MemoriaRobertaConfig, MemoriaRobertaForSequenceClassification),
        )
    ),
    *(
        (config, model, None, {"auto_class": None})
        for config, model in (
            (BertConfig, BertForSequenceClassification),
            (RobertaConfig, RobertaForSequenceClassification),
            (LongformerConfig, LongformerForSequenceClassification),
            (BigBirdConfig, BigBirdForSequenceClassification),
        )
    ),
]
for _config, _model, _state, _options in _MODELS:
    register_model(_config, _model, _state, **_options)

# model_type -> (module, config class, model class, pip requirement)
_PEERS = {
    "rmt": ("peer_rmt", "RMTConfig", "RMTForCausalLM", "recurrent-memory-transformer-pytorch"),
    "titans_mac": ("peer_titans", "TitansMACConfig", "TitansMACForCausalLM", "titans-pytorch"),
}
for _model_type, (_module, _config_name, _model_name, _requirement) in _PEERS.items():
    try:
        _peer = importlib.import_module(f"{__name__}.{_module}")
    except ImportError:
        UNAVAILABLE_MODELS[_model_type] = _requirement
        continue
    register_model(getattr(_peer, _config_name), getattr(_peer, _model_name), None, whole_example=True)
