"""Where a Hugging Face causal LM keeps its decoder layers, found from the model itself rather than from a table.

Shapes: D hidden, H heads.
"""

from typing import Optional, Sequence

from torch import nn

# Attribute names that hold the decoder stack, tried in order after the layer classes named by the model.
STACK_NAMES = ("layers", "h", "layer", "blocks", "decoder.layers")


def text_config(model: nn.Module):
    """The decoder's config (``config.get_text_config()`` where the model has one; multimodal configs nest it)."""
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError(f"model must be a transformers PreTrainedModel (with .config), got {type(model).__name__}")
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config


def _stack_at(root: nn.Module, dotted: str) -> Optional[nn.ModuleList]:
    module = root
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module if isinstance(module, nn.ModuleList) and len(module) > 0 else None


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of ``model`` in order: the ``nn.ModuleList`` whose entries are the classes that
    ``model._no_split_modules`` names (transformers marks its decoder layers so), else the first of
    ``base_model.layers`` / ``.h`` / ``.layer`` / ``.blocks`` / ``.decoder.layers`` holding as many modules as the
    config has layers. Raises ValueError naming ``decoder_layers=`` when neither finds them."""
    config = text_config(model)
    count = getattr(config, "num_hidden_layers", None)
    base = getattr(model, "base_model", model)
    layer_classes = set(getattr(model, "_no_split_modules", None) or ())
    for _, module in base.named_modules():
        if (
            isinstance(module, nn.ModuleList)
            and len(module) > 0
            and all(type(layer).__name__ in layer_classes for layer in module)
            and (count is None or len(module) == count)
        ):
            return module
    for name in STACK_NAMES:
        stack = _stack_at(base, name)
        if stack is not None and (count is None or len(stack) == count):
            return stack
    raise ValueError(
        f"cannot find the decoder layers of {type(model).__name__} (no nn.ModuleList of {sorted(layer_classes)} or at "
        f"base_model.{{{', '.join(STACK_NAMES)}}}): pass them as decoder_layers=, e.g. "
        "add_memoria(model, decoder_layers=model.model.layers)"
    )


def choose_layers(stack: Sequence[nn.Module], layers: Optional[Sequence[int]]) -> list[int]:
    """Validated, sorted indices into ``stack`` (negative ones count from the end); None means every layer."""
    if layers is None:
        return list(range(len(stack)))
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a sequence of layer indices or None, got {type(layers).__name__}")
    chosen = []
    for index in layers:
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"layers must hold ints, got {index!r}")
        if not -len(stack) <= index < len(stack):
            raise ValueError(f"layers: {index} is out of range for a model with {len(stack)} decoder layers")
        chosen.append(index % len(stack))
    if not chosen:
        raise ValueError("layers must name at least one decoder layer")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"layers names a layer twice: {list(layers)}")
    return sorted(chosen)
