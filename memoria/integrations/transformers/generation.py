"""Generation through the memory: our own loop (not transformers' ``GenerationMixin``), because the memory advances at
segment boundaries, which a key/value cache alone cannot express.

The prompt and then each new token fill the current segment through the base model's key/value cache (a fresh
``transformers.DynamicCache`` per segment, explicit ``position_ids`` from 0 in every segment). When a segment is
full, the attention its reminded memories received becomes their lifespan gain, its hidden states are kept, and the
next segment starts by writing them and reminding, with a fresh cache: exactly what :meth:`MemoriaForCausalLM.forward`
does with the whole text, so each new token's logits are those of that forward (to float rounding).

Shapes: B batch, P prompt length, N new tokens, V vocabulary.
"""

import inspect
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import nn

from .reading import SegmentReading


@dataclass
class GenerationOutput:
    """What :func:`generate` returns with ``return_dict=True``.

    Attributes:
        sequences: [B, P + N] the prompt and the new tokens (rows that stopped early are padded with
            ``pad_token_id``; fewer than ``max_new_tokens`` columns when every row stopped).
        logits: [B, N, V] the logits each new token was chosen from (before temperature, top-k and top-p).
    """

    sequences: torch.Tensor
    logits: torch.Tensor


def _check_options(max_new_tokens: int, temperature: float, top_k: Optional[int], top_p: Optional[float]) -> None:
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or isinstance(top_p, bool) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")


def next_tokens(
    logits: torch.Tensor,
    do_sample: bool,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """[B, V] logits -> [B] token ids: the most likely one, or a draw after temperature, top-k then top-p."""
    if not do_sample:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if top_k is not None and top_k < scores.size(-1):
        kth = scores.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        sorted_probabilities = sorted_scores.softmax(dim=-1)
        ahead = sorted_probabilities.cumsum(dim=-1) - sorted_probabilities  # (B, V) mass of the likelier tokens
        # a token goes once the likelier ones hold top_p; the likeliest always stays; back to vocabulary order
        drop = torch.zeros_like(ahead, dtype=torch.bool).scatter(-1, order, ahead >= top_p)
        scores = scores.masked_fill(drop, float("-inf"))
    probabilities = scores.softmax(dim=-1)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)


class _Reader:
    """Feeds tokens to a wrapper segment by segment through a per-segment key/value cache."""

    def __init__(self, wrapper: nn.Module) -> None:
        self.wrapper = wrapper
        self.segment: Optional[SegmentReading] = None
        parameters = inspect.signature(wrapper.model.forward).parameters
        self.model_kwargs = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}

    def feed(self, input_ids: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Read ``input_ids`` [B, T] (``mask`` [B, T] or None); the logits [B, V] after its last token."""
        start, length, logits = 0, input_ids.size(1), None
        while start < length:
            if self.segment is None:
                self.segment = self.wrapper._start_segment(use_cache=True)
            take = min(length - start, self.wrapper.segment_length - self.segment.filled)
            piece = None if mask is None else mask[:, start : start + take]
            logits = self.wrapper._read_tokens(
                self.segment, input_ids[:, start : start + take], piece, **self.model_kwargs
            )
            start += take
            if self.segment.filled == self.wrapper.segment_length:
                self.finish()
        return logits[:, -1]

    def finish(self) -> None:
        """End the segment in progress (a partial one too), as a forward pass over the text would end it."""
        if self.segment is not None:
            self.wrapper._finish_segment(self.segment)
            self.segment = None


@torch.no_grad()
def generate(
    wrapper: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: Optional[torch.Tensor] = None,
    *,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    eos_token_id: Optional[Union[int, Sequence[int]]] = None,
    pad_token_id: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    return_dict: bool = False,
) -> Union[torch.Tensor, GenerationOutput]:
    """Read ``input_ids`` [B, P] through the memory of ``wrapper`` (a :class:`MemoriaForCausalLM`, after what its
    memory holds) and continue it by up to ``max_new_tokens``.

    Greedy (default) or sampled (``do_sample=True`` with ``temperature``, ``top_k``, ``top_p``; ``generator`` for
    reproducible draws). A row stops at any of ``eos_token_id`` and is padded with ``pad_token_id`` (default: the
    first eos id) while the others go on; generation ends when every row stopped. ``attention_mask`` [B, P] marks
    padding in the prompt (0); new tokens are real. Afterwards the memory is exactly as after
    ``wrapper(sequences)`` from the same start, so a text can be continued by ``forward`` or ``generate``.

    Returns [B, P + N] token ids, or a :class:`GenerationOutput` with the logits of each step (``return_dict``).
    """
    wrapper._check_inputs(input_ids, attention_mask)
    _check_options(max_new_tokens, temperature, top_k, top_p)
    eos = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if pad_token_id is None:
        pad_token_id = eos[0] if eos else 0
    reader = _Reader(wrapper)
    mask = None if attention_mask is None else attention_mask.to(torch.bool)
    logits = reader.feed(input_ids, mask)
    batch, device = input_ids.size(0), input_ids.device
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    new_tokens, step_logits = [], []
    real = None if mask is None else torch.ones(batch, 1, dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        step_logits.append(logits)
        token = next_tokens(logits, do_sample, temperature, top_k, top_p, generator)
        token = token.masked_fill(done, pad_token_id)
        new_tokens.append(token)
        if eos:
            done |= torch.isin(token, torch.tensor(eos, device=device))
        # the last token is read too, so that the memory ends where a forward pass over the whole text leaves it
        logits = reader.feed(token[:, None], real)
        if bool(done.all()):
            break
    reader.finish()
    sequences = torch.cat([input_ids, torch.stack(new_tokens, dim=1).to(input_ids.dtype)], dim=1)
    if return_dict:
        return GenerationOutput(sequences=sequences, logits=torch.stack(step_logits, dim=1))
    return sequences
