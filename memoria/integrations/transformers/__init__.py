"""Memoria on a pretrained Hugging Face causal LM (needs ``transformers``; ``import memoria`` does not import it).

One call adds the memory::

    from transformers import AutoModelForCausalLM
    from memoria.integrations.transformers import add_memoria

    model = add_memoria(AutoModelForCausalLM.from_pretrained(...), layers=[-4, -1], segment_length=256,
                        num_working_memories=32, num_reminded_stm=64, stm_capacity=256, num_final_ltms=64)
    out = model(input_ids, attention_mask=mask, labels=input_ids)    # a long input, read segment by segment
    tokens = model.generate(prompt, max_new_tokens=50)                # the prompt read through the memory
    model.reset_memory()                                              # before the next documents

The pretrained model's outputs are unchanged at initialisation (each memory read enters through a gate that starts at
0). See docs/pretrained.md for training the memory over a frozen base, evaluation, saving and the choices.

Shapes: B batch, T input length, L segment length, D hidden, V vocabulary.
"""

from .generation import GenerationOutput, generate, next_tokens
from .layers import find_decoder_layers
from .model import MemoriaCausalLMOutput, MemoriaForCausalLM, add_memoria
from .saving import load_memoria, save_memoria
from .segment_memory import SegmentMemory

__all__ = [
    "GenerationOutput",
    "MemoriaCausalLMOutput",
    "MemoriaForCausalLM",
    "SegmentMemory",
    "add_memoria",
    "find_decoder_layers",
    "generate",
    "load_memoria",
    "next_tokens",
    "save_memoria",
]
