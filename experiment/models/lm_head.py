"""What the causal models (Transformer-XL, Compressive, Memoria Transformer) share: the GPT-2-style weight
initialisation and the tied language-model head."""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def init_gpt2_style(module: nn.Module, std: float, linear_types: tuple[type, ...] = (nn.Linear,)) -> None:
    """GPT-2's initialisation: N(0, std) weights for ``linear_types`` (zero bias) and embeddings; unit layer norms.
    Other modules are left to the caller."""
    if isinstance(module, linear_types):
        module.weight.normal_(mean=0.0, std=std)
        if module.bias is not None:
            module.bias.zero_()
    elif isinstance(module, nn.Embedding):
        module.weight.normal_(mean=0.0, std=std)
    elif isinstance(module, nn.LayerNorm):
        module.weight.fill_(1.0)
        module.bias.zero_()


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: logits [Batch, Length, Vocab] at position t predict labels [Batch, Length] at t + 1
    (-100 ignored), the ``transformers`` convention."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100)


class TiedLMHeadMixin:
    """A ``transformer`` body (with a ``wte`` token embedding) under an ``lm_head`` tied to ``wte``.

    Put it before the ``PreTrainedModel`` base; call :meth:`attach_lm_head` in ``__init__`` before ``post_init``.
    """

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def attach_lm_head(self, transformer: nn.Module) -> None:
        """Registers ``transformer`` then ``lm_head`` (this order fixes the state-dict key order)."""
        self.transformer = transformer
        self.lm_head = nn.Linear(self.config.n_embd, self.config.vocab_size, bias=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def lm_logits_and_loss(
        self, hidden: torch.Tensor, labels: Optional[torch.Tensor]
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """hidden [Batch, Length, Dim] -> logits [Batch, Length, Vocab] and the shifted loss (None without labels)."""
        logits = self.lm_head(hidden)
        return logits, None if labels is None else causal_lm_loss(logits, labels)
