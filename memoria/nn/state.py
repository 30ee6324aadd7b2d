"""Memory state of a whole model: every ``MemoriaMemory`` / ``MemoriaLayer`` in it, reset, saved and loaded at once.

The engrams are the state of the documents being read, not weights: ``state_dict()`` never holds them. These helpers
find the memory modules of any model (the outermost ones: a ``MemoriaLayer``'s own memory is its to save) by name.
"""

from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from torch import nn

from .layer import MemoriaLayer
from .memory import MemoriaMemory

MODEL_STATE_FORMAT = "memoria.nn.model_memory"


def memory_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The outermost :class:`MemoriaMemory` and :class:`MemoriaLayer` modules of ``model`` (itself included), by
    their names in ``model.named_modules()``."""
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, (MemoriaMemory, MemoriaLayer)) and not any(
            name == outer or name.startswith(outer + ".") if outer else True for outer in found
        ):
            found[name] = module
    return found


def reset_memory(model: nn.Module) -> None:
    """Forget everything in every memory of ``model`` (call between documents)."""
    for module in memory_modules(model).values():
        module.reset()


@contextmanager
def unrolled(model: nn.Module) -> Iterator[None]:
    """Backpropagation through the memory for every memory of ``model`` (see ``MemoriaMemory.unroll_segments``).

    Open it around the segments of one batch of documents whose losses are summed and backpropagated once (the
    training step of a task whose only loss comes after many segments, e.g. recall)::

        with memoria.nn.unrolled(model):
            loss = sum(loss_fn(model(segment), target) for segment, target in segments)
        loss.backward()

    A loop that steps the optimiser after every segment (language modelling) does not open it.
    """
    with ExitStack() as stack:
        for module in memory_modules(model).values():  # a layer's own unrolled() also detaches its kept segment
            stack.enter_context(module.unrolled())
        yield


def memory_state_dict(model: nn.Module) -> dict[str, Any]:
    """The state of every memory of ``model``, by module name."""
    return {
        "format": MODEL_STATE_FORMAT,
        "modules": {name: module.memory_state_dict() for name, module in memory_modules(model).items()},
    }


def load_memory_state_dict(model: nn.Module, state: dict[str, Any]) -> None:
    """Restore what :func:`memory_state_dict` returned into the same modules of ``model``; if any module refuses
    its state, the memories that were already restored are put back as they were, and the error is raised."""
    modules = memory_modules(model)
    if not isinstance(state, dict) or state.get("format") != MODEL_STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"state must be a memoria.nn.memory_state_dict() ({MODEL_STATE_FORMAT!r}), got {found!r}")
    saved = state.get("modules")
    if not isinstance(saved, dict) or set(saved) != set(modules):
        names = sorted(saved) if isinstance(saved, dict) else saved
        raise ValueError(f"state holds the memories {names}, the model has {sorted(modules)}")
    before = {name: module.memory_state_dict() for name, module in modules.items()}
    restored = []
    try:
        for name, module in modules.items():
            module.load_memory_state_dict(saved[name])
            restored.append(name)
    except Exception:
        for name in restored:
            modules[name].load_memory_state_dict(before[name])
        raise


def save_memory(model: nn.Module, path: Union[str, Path]) -> Path:
    """Write the state of every memory of ``model`` to the file ``path`` (e.g. beside its weights); returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(memory_state_dict(model), path)
    return path


def load_memory(
    model: nn.Module, path: Union[str, Path], map_location: Optional[Union[str, torch.device]] = None
) -> None:
    """Restore what :func:`save_memory` wrote (a weights-only load: the file cannot run code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved memory state at {path} (write one with memoria.nn.save_memory)")
    load_memory_state_dict(model, torch.load(path, weights_only=True, map_location=map_location))
