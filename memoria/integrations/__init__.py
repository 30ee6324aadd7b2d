"""Memoria on other libraries' models. Each integration is a submodule imported on its own, so that the library it
needs stays optional: ``import memoria`` and ``import memoria.nn`` import none of them.

- :mod:`memoria.integrations.transformers`: memory on a pretrained Hugging Face causal LM (GPT-2, Llama, Qwen2,
  Mistral, GPT-NeoX and other decoders) through forward hooks; needs ``transformers``.
"""
