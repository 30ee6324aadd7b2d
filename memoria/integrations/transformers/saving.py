"""The memory's weights in a folder of their own, beside the base model's: its settings as JSON and its parameters
(abstractor, readers, gates) as safetensors, so that loading runs no code. The memory's state (the engrams of the
documents being read) is saved apart with :func:`memoria.nn.save_memory`, which finds the wrapper's memory.
"""

import json
from pathlib import Path
from typing import Any, Union

from safetensors.torch import load_file, save_file
from torch import nn

from .layers import text_config
from .model import MemoriaForCausalLM, add_memoria

CONFIG_FILE = "memoria_config.json"
WEIGHTS_FILE = "memoria_weights.safetensors"
FORMAT = "memoria.integrations.transformers"


def save_memoria(wrapper: MemoriaForCausalLM, directory: Union[str, Path]) -> Path:
    """Write ``wrapper``'s memory settings (``memoria_config.json``) and parameters (``memoria_weights.safetensors``)
    into ``directory`` (made if missing; the base model's own files may sit there too); returns the folder."""
    if not isinstance(wrapper, MemoriaForCausalLM):
        raise TypeError(f"wrapper must be a MemoriaForCausalLM, got {type(wrapper).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "hidden_size": wrapper.memory.hidden_dim, "settings": wrapper.settings}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    weights = {name: tensor.detach().contiguous() for name, tensor in wrapper.memory_weights().items()}
    save_file(weights, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
    return directory


def load_memoria(model: nn.Module, directory: Union[str, Path], **overrides: Any) -> MemoriaForCausalLM:
    """Add the memory that :func:`save_memoria` wrote in ``directory`` to ``model`` (the same base model, loaded as
    usual); returns the wrapper. ``overrides`` replace saved settings that cannot be saved (``decoder_layers``,
    ``generator``). The memory starts empty: load a saved memory state with :func:`memoria.nn.load_memory`."""
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"no {name} in {directory} (write one with save_memoria)")
    config = json.loads((directory / CONFIG_FILE).read_text())
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{directory / CONFIG_FILE} is not a memoria memory config (format {FORMAT!r})")
    hidden_size = text_config(model).hidden_size
    if config["hidden_size"] != hidden_size:
        raise ValueError(f"the saved memory is {config['hidden_size']} wide, the model's hidden size is {hidden_size}")
    settings = {**config["settings"], **overrides}
    segment_length, layers = settings.pop("segment_length"), settings.pop("layers")
    parameter = next(model.parameters())
    weights = load_file(str(directory / WEIGHTS_FILE), device=str(parameter.device))
    wrapper = add_memoria(model, layers, segment_length, **settings)
    expected = set(wrapper.memory_weights())
    try:
        if set(weights) != expected:
            raise ValueError(
                f"{directory / WEIGHTS_FILE} does not fit: missing {sorted(expected - set(weights))}, "
                f"unexpected {sorted(set(weights) - expected)}"
            )
        wrapper.load_state_dict(weights, strict=False)  # shapes checked; the base model's keys are not in the file
    except Exception:
        wrapper.remove_memoria()  # the base model goes back as it came
        raise
    return wrapper
