"""memoria.nn: the Memoria memory as PyTorch modules, to put into a transformer of your own.

- :class:`MemoriaMemory` owns one :class:`memoria.Memoria` and its :class:`memoria.Abstractor` and runs the paper's
  per-segment protocol: ``read = memory(hidden_states, mask)`` writes the hidden states as working memories and
  reminds; ``memory.adjust(read, attentions)`` turns the attention the reminded memories received into lifespan.
- :class:`MemoryReader` is the read of one layer: cross-attention over the working memories, then over the reminded
  memories (padding masked), pre-norm or post-norm, with an optional learned gate.
- :class:`MemoriaLayer` wires one memory and one reader for a model that reads memory at one place.
- :func:`unrolled` opens backpropagation through the memory (``unroll_segments``) for a training step that sums the
  losses of several segments and backpropagates once.
- :func:`reset_memory`, :func:`save_memory`, :func:`load_memory`, :func:`memory_state_dict` and
  :func:`load_memory_state_dict` act on every memory of a model: the engrams are per-document state, not weights.

Example (one memory read in a model of your own)::

    import torch
    from memoria.nn import MemoriaLayer

    layer = MemoriaLayer(hidden_dim=64, num_heads=4, num_working_memories=8, num_reminded_stm=16,
                         stm_capacity=64, ltm_search_depth=4, initial_lifespan=5, num_final_ltms=16)
    document = torch.randn(5, 2, 32, 64)      # 5 segments of [B=2, L=32, D=64] hidden states
    for hidden in document:
        hidden = layer(hidden)                # reads what the memory kept of the earlier segments
    layer.reset()                             # before the next documents

A model that reads the memory in several layers holds one :class:`MemoriaMemory` and a :class:`MemoryReader` per
layer, as the Memoria Transformer in ``experiment/models`` does.

Shapes everywhere: B batch, L segment length, W working memories, R reminded memories, D hidden, H heads.
"""

from .attention import MemoryCrossAttention
from .init import MEMORY_INITS, abstractor_init_stds, init_abstractor
from .layer import MemoriaLayer
from .memory import MemoriaMemory, lifespan_delta
from .read import MemoryRead
from .reader import OUTPUT_INITS, MemoryReader, MemoryReaderOutput
from .state import (
    load_memory,
    load_memory_state_dict,
    memory_modules,
    memory_state_dict,
    reset_memory,
    save_memory,
    unrolled,
)

__all__ = [
    "MEMORY_INITS",
    "MemoriaLayer",
    "MemoriaMemory",
    "MemoryCrossAttention",
    "MemoryRead",
    "MemoryReader",
    "MemoryReaderOutput",
    "OUTPUT_INITS",
    "abstractor_init_stds",
    "init_abstractor",
    "lifespan_delta",
    "load_memory",
    "load_memory_state_dict",
    "memory_modules",
    "memory_state_dict",
    "reset_memory",
    "save_memory",
    "unrolled",
]
