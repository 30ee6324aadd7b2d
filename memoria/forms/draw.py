"""The long-term tie-break: one ``float16`` uniform draw per step, read only where it matters.

The published package breaks ties among the long-term engrams an entry co-fired with most by multiplying a
``torch.rand([B, S, M], dtype=float16)`` draw with the tie mask and taking the argmax. The draw
is observable twice: through the choices, and through the global RNG stream it advances. Both must stay as they are.

On a CPU the generator is an MT19937 that spends one 32-bit word per element, and a ``float16`` element is the low 24
bits of that word times 2^-24, rounded to ``float16``. ``random_`` on an ``int32`` tensor spends the same words (keeping
their low 31 bits) about twice as fast, so the same stream can be drawn as integers in small chunks, each chunk read at
the long-term columns only and then dropped: no ``[B, S, M]`` tensor is ever held. Whether
this torch build really draws that way is checked once per process; if not, the plain ``float16`` draw is used.

Faster still, where the optional C extension ``memoria._mt19937`` was built (``memoria/native.py``): it runs the same
MT19937 on a copy of the generator's state, tempers and rounds only the words that are read, and writes the state
back. It too is checked once per process against torch's draw (values and state). Unlike torch's draw it does not
hold the generator's lock while it runs: a draw from the same generator in another thread meanwhile would be lost.
"""

import math
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

import torch

from .. import native
from . import plain
from .registry import form

# elements of the integer draw per chunk: small enough to stay in cache between drawing and reading it
CHUNK_ELEMENTS = 1 << 19
_LOW_24_BITS = (1 << 24) - 1
# words whose low 24 bits are at least this round to 1.0, which rand turns into 0
_WRAP = (1 << 24) - (1 << 12)
# the key of v = 0 under (v - _WRAP) mod 2^24
_KEY_OF_ZERO = 1 << 12

_integer_draw_matches: Optional[bool] = None


def integer_draw_matches() -> bool:
    """Whether ``int32`` ``random_`` reproduces this torch build's CPU ``float16`` ``rand`` (values and RNG state)."""
    global _integer_draw_matches
    if _integer_draw_matches is None:
        shape = (3, 1031)
        reference = torch.Generator().manual_seed(20240721)
        expected = torch.rand(shape, dtype=torch.float16, generator=reference)
        mine = torch.Generator().manual_seed(20240721)
        words = torch.empty(shape, dtype=torch.int32).random_(generator=mine)
        _integer_draw_matches = bool(torch.equal(halves_from_words(words), expected)) and bool(
            torch.equal(reference.get_state(), mine.get_state())
        )
    return _integer_draw_matches


_native_draw_matches: Optional[bool] = None


def native_draw_matches() -> bool:
    """Whether the C extension is built and reproduces this torch build's draw (values and RNG state), and is allowed."""
    global _native_draw_matches
    if _native_draw_matches is None:
        _native_draw_matches = native.mt19937 is not None and integer_draw_matches() and _native_self_check()
    return _native_draw_matches and native.active(native.mt19937)


@contextmanager
def _generator_state(generator: Optional[torch.Generator]) -> Iterator[torch.Tensor]:
    """A copy of the CPU generator's state (default: the global one) for the C code, written back unless it raised."""
    generator = torch.default_generator if generator is None else generator
    state = generator.get_state()
    yield state
    generator.set_state(state)


def _native_self_check() -> bool:
    """Order keys, a skip and a tie-heavy first maximum against the torch draw (tests check every key)."""
    # a stride through all 24-bit values, the words around every power of two and around 1.0, and high junk bits
    edges = (2 ** torch.arange(25)).unsqueeze(1) + torch.arange(-3, 4)
    low_bits = torch.cat([torch.arange(0, 1 << 24, 97), edges.flatten(), torch.arange(_WRAP - 5, _WRAP + 5)])
    words = (low_bits.clamp(0, _LOW_24_BITS) + (low_bits % 128 << 24)).to(torch.int32)
    keys = torch.empty_like(words)
    native.mt19937.half_keys(words.data_ptr(), keys.data_ptr(), words.numel())
    if not torch.equal(keys.double(), halves_from_words(words).double() * 2.0**24):
        return False
    source = torch.Generator().manual_seed(20240721)
    columns = torch.tensor([[-1, -1, 3, 4, 5, 6, 7, 8], [0, 2, 5, 9, 10, 11, 12, 1000]])
    candidates = torch.rand((2, 3, 8), generator=source, dtype=torch.float32) < 0.7
    candidates[columns.unsqueeze(1).expand_as(candidates) < 0] = False
    candidate_of_entry = torch.randint(0, 3, (2, 700), generator=source)
    mine = torch.Generator()
    mine.set_state(source.get_state())
    expected = plain.first_max_at_columns(1001, columns, candidates, candidate_of_entry, source)
    got = first_max_native(1001, columns, candidates, candidate_of_entry, mine)
    torch.rand((5, 333), dtype=torch.float16, generator=source)
    with _generator_state(mine) as state:
        native.mt19937.skip(state.data_ptr(), 5 * 333)
    return (
        torch.equal(expected[1], got[1])
        and torch.equal(expected[0][expected[1]], got[0][got[1]])
        and torch.equal(source.get_state(), mine.get_state())
    )


def halves_from_words(words: torch.Tensor) -> torch.Tensor:
    """The ``float16`` values ``rand`` makes of the MT19937 words behind ``words`` (any ``int32`` shape)."""
    halves = ((words & _LOW_24_BITS).to(torch.float32) * 2.0**-24).to(torch.float16)
    # rand keeps its values below 1: one that rounds up to 1 in float16 becomes 0
    return halves.masked_fill_(halves == 1, 0)


@form("cpu", usable=integer_draw_matches, name="advance")
def advance_by_words(shape: Tuple[int, ...], device: torch.device, generator: Optional[torch.Generator] = None) -> None:
    """``plain.advance`` on a CPU by the integer draw, in chunks (no [shape] float16 tensor is made)."""
    numel = math.prod(shape)
    buffer = torch.empty(min(numel, CHUNK_ELEMENTS), dtype=torch.int32)
    for start in range(0, numel, max(buffer.numel(), 1)):
        buffer[: min(buffer.numel(), numel - start)].random_(generator=generator)


@form("c", usable=native_draw_matches, name="advance")
def advance_native(shape: Tuple[int, ...], device: torch.device, generator: Optional[torch.Generator] = None) -> None:
    """``plain.advance`` on a CPU by the C extension: the generator skips the words without making them."""
    numel = math.prod(shape)
    if numel:
        with _generator_state(generator) as state:
            native.mt19937.skip(state.data_ptr(), numel)


@form("c", usable=native_draw_matches, name="first_max_at_columns")
def first_max_native(
    length: int,
    columns: torch.Tensor,
    candidates: torch.Tensor,
    candidate_of_entry: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``plain.first_max_at_columns`` by the C extension, on a copy of the generator's state (CPU only)."""
    batch_size, num_entries = candidate_of_entry.shape
    columns = columns.to(torch.long).contiguous()
    candidates = candidates.to(torch.bool).contiguous()
    candidate_of_entry = candidate_of_entry.to(torch.long).contiguous()
    position = torch.empty((batch_size, num_entries), dtype=torch.long)
    drew = torch.empty((batch_size, num_entries), dtype=torch.bool)
    with _generator_state(generator) as state:
        native.mt19937.first_max(
            state.data_ptr(),
            batch_size,
            num_entries,
            length,
            columns.data_ptr(),
            columns.size(1),
            candidates.data_ptr(),
            candidates.size(1),
            candidate_of_entry.data_ptr(),
            position.data_ptr(),
            drew.data_ptr(),
            *native.threads(),
        )
    return position, drew


@form("cpu", usable=integer_draw_matches, name="first_max_at_columns")
def first_max_by_words(
    length: int,
    columns: torch.Tensor,
    candidates: torch.Tensor,
    candidate_of_entry: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``plain.first_max_at_columns`` on a CPU by the integer draw, a chunk at a time (CPU only)."""
    batch_size, num_entries = candidate_of_entry.shape
    num_rows = candidates.size(1)
    # flat candidate row of every entry, entries in the draw's (batch, entry) order
    batch = torch.arange(batch_size).unsqueeze(1)
    flat_candidate = (candidate_of_entry + batch * num_rows).flatten()
    flat_candidates = candidates.flatten(0, 1)
    safe_columns = columns.clamp(min=0)
    # Each chunk (entries of one batch row) is drawn, read at its columns and dropped. The long-term engrams of a row
    # are usually one run of positions (they are the oldest), and then the read is a slice instead of a gather.
    per_chunk = max(1, CHUNK_ELEMENTS // max(length, 1))
    buffer = torch.empty(min(per_chunk, num_entries) * length, dtype=torch.int32)
    num_columns = columns.size(1)
    counts = (columns >= 0).sum(dim=1).tolist()
    firsts = columns[:, -1].tolist() if num_columns else [0] * batch_size
    positions, drews = [], []
    for row in range(batch_size):
        count = counts[row]
        first = firsts[row] - count + 1
        run = count > 0 and bool((columns[row, num_columns - count :] == torch.arange(first, first + count)).all())
        for start in range(0, num_entries, per_chunk):
            stop = min(start + per_chunk, num_entries)
            words = buffer[: (stop - start) * length].view(stop - start, length).random_(generator=generator)
            allowed = flat_candidates.index_select(
                0, flat_candidate[row * num_entries + start : row * num_entries + stop]
            )
            if run:
                position, drew = _first_max_of_words(words[:, first : first + count], allowed[:, num_columns - count :])
                position += num_columns - count
            else:
                read = words.gather(1, safe_columns[row].expand(stop - start, -1))
                position, drew = _first_max_of_words(read, allowed)
            positions.append(position)
            drews.append(drew)
    return torch.cat(positions).view(batch_size, num_entries), torch.cat(drews).view(batch_size, num_entries)


def _first_max_of_words(words: torch.Tensor, allowed: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The first maximum of ``halves_from_words(words)`` where ``allowed``, and whether it is above 0, on the integers.

    A word's low 24 bits ``v`` give the half ``round(v / 2^24)``, which is 0 from ``_WRAP`` up (the values that round to
    1). ``(v - _WRAP) mod 2^24`` keeps the order of the halves (the wrapped values go to the bottom, below
    ``v = 0``), and a half is the same for every ``v`` from the smallest one that rounds to it (``_lowest_word``) up
    to the next half's: so the first maximum is the first position whose key reaches the largest key's lowest word.
    """
    keys = (words - _WRAP).bitwise_and_(_LOW_24_BITS).mul_(allowed)
    top = keys.max(dim=1).values
    starts = _class_starts(keys.device)
    # where nothing drew above 0 the position does not matter (the caller takes column 0)
    lowest = starts[torch.searchsorted(starts, top, right=True) - 1]
    position = (keys >= lowest.unsqueeze(1)).max(dim=1).indices
    return position, top > _KEY_OF_ZERO


_class_start_keys: Optional[torch.Tensor] = None


def _class_starts(device: torch.device) -> torch.Tensor:
    """Ascending keys of the lowest word of every non-zero ``float16`` class below 1, after a leading 0."""
    global _class_start_keys
    if _class_start_keys is None:
        # every positive half below 1 is a whole multiple of 2^-24, so h * 2^24 is a word that rounds to h
        halves = torch.arange(1, int(torch.tensor(1.0, dtype=torch.float16).view(torch.int16)), dtype=torch.int16)
        words = (halves.view(torch.float16).to(torch.float32) * 2.0**24).to(torch.int32)
        starts = _lowest_word(words) + _KEY_OF_ZERO
        _class_start_keys = torch.cat([torch.zeros(1, dtype=torch.int32), starts])
    return _class_start_keys.to(device)


def _lowest_word(words: torch.Tensor) -> torch.Tensor:
    """The smallest 24-bit ``v`` whose half ``round(v / 2^24)`` equals that of ``words`` (in ``1.._WRAP - 1``)."""
    half = (words.to(torch.float32) * 2.0**-24).to(torch.float16)
    below = (half.view(torch.int16) - 1).view(torch.float16)
    # the midpoint to the half below is exact in float32 and sits at most one word below the answer
    lowest = ((half.to(torch.float32) + below.to(torch.float32)) * 2.0**23).floor().to(torch.int32)
    for _ in range(2):
        lowest = torch.where(halves_from_words(lowest) == half, lowest, lowest + 1)
    return lowest
