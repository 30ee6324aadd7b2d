"""Checkpoints written before the memory moved into ``memoria.nn`` load into the rebuilt models.

Those checkpoints hold the abstractor at ``<base>.abstractor.*``; the rebuilt models hold it inside their
:class:`~memoria.nn.MemoriaMemory`, at ``<base>.memory.abstractor.*``. (The memory readers kept their names:
``h.0.memory.cross_attention...`` and ``memory_blocks.0...``.) Two loaders read checkpoints:

- ``from_pretrained`` (``transformers``): a renaming registered per ``model_type``. ``save_pretrained`` applies it
  in reverse, so the files keep the earlier layout and earlier code loads them too.
- ``load_state_dict`` (PyTorch, Lightning checkpoints): a pre-hook on the module that holds the memory.
"""

import re
from typing import Any

from torch import nn

OLD, NEW = "abstractor.", "memory.abstractor."


def register_old_memory_names(model_type: str) -> None:
    """Let ``from_pretrained`` read ``abstractor.*`` as ``memory.abstractor.*`` for ``model_type``."""
    from transformers.conversion_mapping import register_checkpoint_conversion_mapping
    from transformers.core_model_loading import WeightRenaming

    renaming = WeightRenaming(source_patterns=r"(?<!memory\.)abstractor\.", target_patterns=NEW)
    register_checkpoint_conversion_mapping(model_type, [renaming], overwrite=True)


def _rename_old_memory_keys(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    old = re.compile(re.escape(prefix + OLD))
    for key in [key for key in state_dict if old.match(key)]:
        state_dict[prefix + NEW + key[len(prefix + OLD) :]] = state_dict.pop(key)


def accept_old_memory_names(module: nn.Module) -> None:
    """Let ``module.load_state_dict`` (and any parent's) read ``abstractor.*`` as ``memory.abstractor.*``."""
    module.register_load_state_dict_pre_hook(_rename_old_memory_keys)
