"""Model registry: every experiment model, keyed by its config's ``model_type``.

Each entry names the config class, the model class, the ``transformers`` Auto class it registers with, and
``state_argument``: the keyword through which the model carries memory from one segment to the next (the
output attribute of the same name is passed back in with the next segment; None for a model without memory).
A model with a ``reset_memory()`` method is also reset between examples. A new model registers itself with one
:func:`register_model` call at the end of its module and one import line at the end of this file.

A model registered with ``save_code=True`` writes its code beside its weights (``save_pretrained`` copies the module
and its relative imports and sets ``auto_map`` in ``config.json``), so that
``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`` loads it in a process that never imported
``experiment`` (the ``memoria`` package must be installed). Such a module imports its siblings relatively only and
is registered here rather than at its own end.
"""

from dataclasses import dataclass
from typing import Any, Optional

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    PretrainedConfig,
    PreTrainedModel,
)


@dataclass(frozen=True)
class ModelSpec:
    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    state_argument: Optional[str]


MODEL_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    config_class: type[PretrainedConfig],
    model_class: type[PreTrainedModel],
    state_argument: Optional[str],
    auto_class: Optional[Any] = AutoModelForCausalLM,
    save_code: bool = False,
) -> None:
    """Add a model to :data:`MODEL_REGISTRY` and, unless ``transformers`` knows it already, to the Auto classes;
    with ``save_code``, ``save_pretrained`` also saves the model's code (see the module docstring)."""
    model_type = config_class.model_type
    if save_code:
        if auto_class is None:
            raise ValueError(f"{model_type}: save_code needs the auto_class that is to load the saved code")
        config_class.register_for_auto_class()
        model_class.register_for_auto_class(auto_class.__name__)
    MODEL_REGISTRY[model_type] = ModelSpec(config_class, model_class, state_argument)
    try:
        AutoConfig.register(model_type, config_class)
    except ValueError:  # already registered: transformers' own model, or a module imported twice
        pass
    if auto_class is not None:
        try:
            auto_class.register(config_class, model_class)
        except ValueError:
            pass


def build_model(model_config: dict[str, Any]) -> PreTrainedModel:
    """Build the model a config's ``"model"`` section describes.

    ``model_type`` picks the registry entry; every other key goes to the config class, except ``pretrained``:
    a directory (or hub name) to load weights from. For ``memoria_transformer`` a GPT-2 checkpoint is accepted
    there (its decoder weights are loaded, the memory parts start fresh).
    """
    arguments = dict(model_config)
    model_type = arguments.pop("model_type")
    pretrained = arguments.pop("pretrained", None)
    if model_type not in MODEL_REGISTRY:
        raise KeyError(f"unknown model_type {model_type!r}; registered: {sorted(MODEL_REGISTRY)}")
    spec = MODEL_REGISTRY[model_type]
    if pretrained is None:
        return spec.model_class(spec.config_class(**arguments))
    if (
        model_type == MemoriaTransformerConfig.model_type
        and AutoConfig.from_pretrained(pretrained).model_type == "gpt2"
    ):
        return MemoriaTransformerLMHeadModel.from_gpt2(pretrained, **arguments)
    return spec.model_class.from_pretrained(pretrained, **arguments)


def model_spec(model: PreTrainedModel) -> ModelSpec:
    """The registry entry of a built model."""
    return MODEL_REGISTRY[model.config.model_type]


from .memoria_transformer import MemoriaTransformerConfig, MemoriaTransformerLMHeadModel  # noqa: E402
from .transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel  # noqa: E402

register_model(GPT2Config, GPT2LMHeadModel, state_argument=None, auto_class=None)
register_model(
    MemoriaTransformerConfig, MemoriaTransformerLMHeadModel, state_argument="memory_hidden_states", save_code=True
)
register_model(TransformerXLConfig, TransformerXLLMHeadModel, state_argument="mems", save_code=True)
from .compressive_transformer import CompressiveTransformerConfig, CompressiveTransformerLMHeadModel  # noqa: E402

register_model(
    CompressiveTransformerConfig, CompressiveTransformerLMHeadModel, state_argument="compressive_mems", save_code=True
)
from .infinity_former import InfinityFormerConfig, InfinityFormerLMHeadModel  # noqa: E402

register_model(InfinityFormerConfig, InfinityFormerLMHeadModel, state_argument="long_term_memory", save_code=True)
from .memoria_bert import MemoriaBertConfig, MemoriaBertForSequenceClassification  # noqa: E402
from .memoria_roberta import MemoriaRobertaConfig, MemoriaRobertaForSequenceClassification  # noqa: E402

for _config, _model in (
    (MemoriaBertConfig, MemoriaBertForSequenceClassification),
    (MemoriaRobertaConfig, MemoriaRobertaForSequenceClassification),
):
    register_model(_config, _model, None, auto_class=AutoModelForSequenceClassification, save_code=True)
