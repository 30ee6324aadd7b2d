"""The model registry's mechanism: :data:`MODEL_REGISTRY` keyed by ``model_type``, :func:`register_model`,
:func:`build_model` and :func:`model_spec`. Which models are registered is in ``experiment/models/__init__.py``."""

from dataclasses import dataclass
from typing import Any, Callable, Optional

from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

# (pretrained folder or hub name, config fields) -> model; the default is ``model_class.from_pretrained``.
Loader = Callable[..., PreTrainedModel]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its config and model classes; ``state_argument``, the keyword through which it carries
    memory from one segment to the next (the output attribute of the same name goes back in with the next segment;
    None for a model without memory); ``loader``, how ``"pretrained"`` is loaded when that is not the model class's
    own ``from_pretrained`` (e.g. the Memoria Transformer also takes a GPT-2 checkpoint); ``whole_example``: the model
    reads a whole example in one call and walks its segments itself (the peers from PyPI: their memory keeps its
    gradient across segments, as they train), so the tasks give it the example rather than segment by segment."""

    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    state_argument: Optional[str]
    loader: Optional[Loader] = None
    whole_example: bool = False


MODEL_REGISTRY: dict[str, ModelSpec] = {}
# model_type -> the pip requirement that provides it, for models whose optional dependency is not installed
UNAVAILABLE_MODELS: dict[str, str] = {}


def register_model(
    config_class: type[PretrainedConfig],
    model_class: type[PreTrainedModel],
    state_argument: Optional[str],
    auto_class: Optional[Any] = AutoModelForCausalLM,
    save_code: bool = False,
    loader: Optional[Loader] = None,
    whole_example: bool = False,
) -> None:
    """Add a model to :data:`MODEL_REGISTRY` and, unless ``transformers`` knows it already, to the Auto classes.

    With ``save_code``, ``save_pretrained`` also writes the model's code beside its weights and sets ``auto_map``,
    so that ``from_pretrained(folder, trust_remote_code=True)`` loads it where ``experiment`` was never imported.
    """
    model_type = config_class.model_type
    if save_code:
        if auto_class is None:
            raise ValueError(f"{model_type}: save_code needs the auto_class that is to load the saved code")
        config_class.register_for_auto_class()
        model_class.register_for_auto_class(auto_class.__name__)
    MODEL_REGISTRY[model_type] = ModelSpec(config_class, model_class, state_argument, loader, whole_example)
    UNAVAILABLE_MODELS.pop(model_type, None)
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

    ``model_type`` picks the registry entry; every other key goes to the config class, except ``pretrained``: a
    directory (or hub name) to load weights from, through the entry's ``loader`` when it has one.
    """
    arguments = dict(model_config)
    model_type = arguments.pop("model_type")
    pretrained = arguments.pop("pretrained", None)
    if model_type not in MODEL_REGISTRY:
        if model_type in UNAVAILABLE_MODELS:
            raise KeyError(
                f"model_type {model_type!r} needs {UNAVAILABLE_MODELS[model_type]} "
                "(pip install -r experiment/requirements-peers.txt)"
            )
        raise KeyError(f"unknown model_type {model_type!r}; registered: {sorted(MODEL_REGISTRY)}")
    spec = MODEL_REGISTRY[model_type]
    if pretrained is None:
        return spec.model_class(spec.config_class(**arguments))
    if spec.loader is not None:
        return spec.loader(pretrained, **arguments)
    return spec.model_class.from_pretrained(pretrained, **arguments)


def model_spec(model: PreTrainedModel) -> ModelSpec:
    """The registry entry of a built model."""
    return MODEL_REGISTRY[model.config.model_type]
