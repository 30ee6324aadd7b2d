"""Memoria in a model of your own, trained on long padded documents segment by segment (docs/tutorial.md)."""

import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional

import torch
from torch import Tensor, nn

from memoria.nn import MemoriaMemory, MemoryReader, load_memory_state_dict, memory_state_dict, reset_memory

SEGMENT, VOCAB, PAD = 16, 64, 0


class TinyMemoryLM(nn.Module):
    """A causal language model that reads one memory after each of its two blocks."""

    def __init__(self, hidden: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, hidden)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(2)
        )
        sizes = dict(num_reminded_stm=8, stm_capacity=32, ltm_search_depth=4, initial_lifespan=5, num_final_ltms=8)
        self.memory = MemoriaMemory(hidden, num_working_memories=8, **sizes)  # the learned write and Memoria
        self.readers = nn.ModuleList(MemoryReader(hidden, heads) for _ in self.blocks)  # one read per block
        self.head = nn.Linear(hidden, VOCAB)

    def forward(
        self, tokens: Tensor, mask: Tensor, previous: Optional[Tensor], previous_mask: Optional[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Tokens [B, L] and their mask (True at real tokens); the previous segment's hidden states [B, L, D] and mask
        (None, None: a document's first segment) -> logits [B, L, V] and this segment's hidden states [B, L, D]."""
        read = self.memory(previous, previous_mask)  # write the previous segment (its padding masked), remind
        hidden = self.embed(tokens)
        causal = nn.Transformer.generate_square_subsequent_mask(tokens.size(1))  # padding last: no token sees it
        reminded_attentions = []
        for block, reader in zip(self.blocks, self.readers):
            out = reader(block(hidden, src_mask=causal, is_causal=True), read)  # working, then reminded memories
            hidden = out.hidden_states
            reminded_attentions.append(out.reminded_attention)  # [B, H, L, R], zero at the -1 (none) slots
        self.memory.adjust(read, reminded_attentions, query_mask=mask)  # attention received -> lifespan
        return self.head(hidden), hidden


def documents(num_batches: int, batch_size: int = 2, seed: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of documents of 34 to 65 tokens, each written with 4 words of its own: tokens [B, T] padded with PAD
    after each document's end, and the mask [B, T] (True at real tokens); T is the longest document's length. The
    documents of a batch end in its last two segments, so a segment that is all padding is never written."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(num_batches):
        words = torch.rand(batch_size, VOCAB - 1, generator=generator).argsort(dim=1)[:, :4] + 1  # [B, 4] ids
        picks = torch.randint(0, 4, (batch_size, 4 * SEGMENT + 1), generator=generator)
        lengths = torch.randint(2 * SEGMENT + 2, 4 * SEGMENT + 2, (batch_size,), generator=generator)
        tokens = words.gather(1, picks)[:, : int(lengths.max())]
        mask = torch.arange(tokens.size(1)) < lengths[:, None]
        yield tokens.masked_fill(~mask, PAD), mask


def read(
    model: TinyMemoryLM,
    tokens: Tensor,
    mask: Tensor,
    optimizer: Optional[torch.optim.Optimizer] = None,
    carried: tuple = (None, None),
) -> tuple[list[float], tuple]:
    """Read documents [B, T] segment by segment after ``carried`` (the hidden states and mask of the segment read
    last; (None, None): from their start). With an optimiser: one step per segment. Returns the losses and what to
    carry on to the next segment."""
    labels = tokens[:, 1:].masked_fill(~mask[:, 1:], -100)  # the next token; no loss at padding
    losses, (previous, previous_mask) = [], carried
    for x, m, y in zip(*(t.split(SEGMENT, dim=1) for t in (tokens[:, :-1], mask[:, :-1], labels))):
        with torch.set_grad_enabled(optimizer is not None):
            logits, hidden = model(x, m, previous, previous_mask)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)
        if optimizer is not None:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
        previous, previous_mask = hidden.detach(), m  # written into the memory at the next segment
    return losses, (previous, previous_mask)


def train(model: TinyMemoryLM, batches: Iterable[tuple[Tensor, Tensor]], optimizer: torch.optim.Optimizer) -> list:
    """Train on every batch of documents, the memory empty at the start of each. Returns the losses per segment."""
    losses = []
    for tokens, mask in batches:
        reset_memory(model)  # new documents: forget the previous ones
        losses += read(model, tokens, mask, optimizer)[0]
    return losses


def main(directory: Optional[Path] = None) -> tuple[TinyMemoryLM, TinyMemoryLM]:
    """Train; read half of new documents, save the weights and the memory apart, load both into a fresh model, and
    read the rest with both models. Returns the trained and the restored model."""
    torch.manual_seed(0)
    model = TinyMemoryLM()
    losses = train(model, documents(40), torch.optim.AdamW(model.parameters(), lr=3e-3))
    print(f"{len(losses)} segments of 40 batches of documents; loss {sum(losses[-4:]) / 4:.3f} on the last 4")

    tokens, mask = next(documents(1, seed=1))
    reset_memory(model)
    _, carried = read(model, tokens[:, : 2 * SEGMENT + 1], mask[:, : 2 * SEGMENT + 1])  # two segments
    # The engrams (and the segment to write next) are the state of the documents being read, not weights.
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(directory or scratch)
        torch.save(model.state_dict(), directory / "model.pt")
        torch.save({"memory": memory_state_dict(model), "carried": carried}, directory / "memory.pt")
        restored = TinyMemoryLM()
        restored.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
        state = torch.load(directory / "memory.pt", weights_only=True)
        load_memory_state_dict(restored, state["memory"])

    rest = tokens[:, 2 * SEGMENT :], mask[:, 2 * SEGMENT :]
    with torch.random.fork_rng():  # Memoria's tie-break draws from the global RNG: both models read with one state
        expected, _ = read(model, *rest, carried=carried)
    losses, _ = read(restored, *rest, carried=state["carried"])
    print("the restored model reads the rest as the trained one:", losses == expected)
    return model, restored


if __name__ == "__main__":
    main()
