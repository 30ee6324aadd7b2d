"""The long-term tie-break draw: same values, same choices and same RNG stream as ``torch.rand(..., float16)``."""

import pytest
import torch

from memoria import native, ops
from memoria.forms import draw, plain

needs_extension = pytest.mark.skipif(
    native.mt19937 is None, reason="the optional C extension memoria._mt19937 was not built (no C compiler at install)"
)
DRAWS = ["native", "native-threads", "integer", "float16"]


def use_draw(monkeypatch, kind: str) -> None:
    """Make ``draw`` take one of its ways: the C extension (on this thread, or its batch rows split over two of torch's
    threads), torch's integer draw, or torch's float16 draw."""
    native_kind = kind.startswith("native")
    if native_kind and not draw.native_draw_matches():
        pytest.skip("the C extension memoria._mt19937 is not built or does not match this torch build")
    if kind == "native-threads" and native._openmp_parallel == 0:
        pytest.skip("torch runs its CPU threads without OpenMP")
    threads = (native._openmp_parallel, 2) if kind == "native-threads" else (0, 1)
    monkeypatch.setattr(native, "threads", lambda: threads)
    monkeypatch.setattr(draw, "_native_draw_matches", native_kind)
    monkeypatch.setattr(draw, "_integer_draw_matches", kind != "float16")


def test_this_torch_build_draws_float16_from_the_same_words():
    # if a torch release changes how CPU rand makes float16 values, the plain draw is used instead (and this fails)
    assert draw.integer_draw_matches()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_halves_from_words_equal_rand_float16(seed):
    # 2^25 draws hit nearly every one of the 2^24 low-bit values, the ones that round up to 1.0 included
    expected_generator = torch.Generator().manual_seed(seed)
    expected = torch.rand(1 << 25, dtype=torch.float16, generator=expected_generator)
    generator = torch.Generator().manual_seed(seed)
    words = torch.empty(1 << 25, dtype=torch.int32).random_(generator=generator)
    assert torch.equal(draw.halves_from_words(words), expected)
    assert torch.equal(generator.get_state(), expected_generator.get_state())


def test_words_that_round_to_one_become_zero():
    words = torch.tensor([draw._WRAP - 1, draw._WRAP, (1 << 24) - 1, 5 << 24], dtype=torch.int32)
    halves = draw.halves_from_words(words)
    assert halves[0] < 1 and halves[0] > 0.999
    assert halves[1:].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("kind", DRAWS)
@pytest.mark.parametrize("shape", [(0, 3, 5), (2, 3, 5), (1, 1, draw.CHUNK_ELEMENTS + 7), (3, 700, 1000)])
def test_advance_spends_the_rng_like_rand(monkeypatch, kind, shape):
    use_draw(monkeypatch, kind)
    torch.manual_seed(11)
    torch.rand(shape, dtype=torch.float16)
    expected = torch.get_rng_state()
    torch.manual_seed(11)
    ops.advance(shape, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), expected)


def _published_first_max(length, columns, candidates, candidate_of_entry):
    """The published package's way: the whole float16 draw, zero outside the candidates, argmax."""
    batch_size, num_entries = candidate_of_entry.shape
    noise = torch.rand((batch_size, num_entries, length), dtype=torch.float16)
    allowed = torch.zeros(batch_size, num_entries, length, dtype=torch.bool)
    per_entry = candidates.gather(1, candidate_of_entry.unsqueeze(2).expand(-1, -1, columns.size(1)))
    valid = (columns >= 0).unsqueeze(1).expand_as(per_entry)
    allowed.scatter_(2, columns.clamp(min=0).unsqueeze(1).expand_as(per_entry), per_entry & valid)
    product = noise * allowed
    return product.argmax(dim=2), product.amax(dim=2) > 0


@pytest.mark.parametrize("run", [False, True], ids=["scattered-columns", "one-run-of-columns"])
@pytest.mark.parametrize("kind", DRAWS)
@pytest.mark.parametrize("seed", range(6))
def test_first_max_at_columns_matches_the_published_argmax(monkeypatch, kind, seed, run):
    use_draw(monkeypatch, kind)
    generator = torch.Generator().manual_seed(seed)
    batch_size, length = 3, int(torch.randint(5, 3000, (), generator=generator))
    num_entries, num_rows = int(torch.randint(1, 400, (), generator=generator)), 4
    # ascending, left-padded columns of different counts per row
    columns = torch.full((batch_size, 40), -1, dtype=torch.long)
    for row in range(batch_size):
        # even seeds leave row 0 without any column (no long-term engram in that row)
        smallest = 0 if row == 0 and seed % 2 == 0 else 1
        count = int(torch.randint(smallest, min(40, length) + 1, (), generator=generator))
        if run:  # long-term engrams are the oldest: usually one run of positions
            first = int(torch.randint(0, length - count + 1, (), generator=generator))
            columns[row, 40 - count :] = torch.arange(first, first + count)
        else:
            columns[row, 40 - count :] = torch.randperm(length, generator=generator)[:count].sort().values
    candidates = (torch.rand(batch_size, num_rows, 40, generator=generator) < 0.3) & (columns >= 0).unsqueeze(1)
    candidates[:, 0] = columns >= 0  # one row allows every column, as the R1 row often does
    candidate_of_entry = torch.randint(0, num_rows, (batch_size, num_entries), generator=generator)

    torch.manual_seed(seed)
    position, drew = ops.first_max_at_columns(length, columns, candidates, candidate_of_entry)
    ours_state = torch.get_rng_state()
    torch.manual_seed(seed)
    expected_column, expected_drew = _published_first_max(length, columns, candidates, candidate_of_entry)

    assert torch.equal(torch.get_rng_state(), ours_state)
    assert torch.equal(drew, expected_drew)
    assert torch.equal(columns.gather(1, position)[drew], expected_column[drew])


def _tie_heavy_words(kind: int, generator: torch.Generator) -> torch.Tensor:
    shape = (64, 33)
    if kind == 0:  # near one value: many words share a float16
        base = int(torch.randint(0, 1 << 24, (), generator=generator))
        words = base + torch.randint(-3000, 3000, shape, generator=generator)
    elif kind == 1:  # near 1.0 (rounds to 1, becomes 0) and near 0
        high = torch.randint(draw._WRAP - 3000, 1 << 24, shape, generator=generator)
        low = torch.randint(0, 3000, shape, generator=generator)
        words = torch.where(torch.rand(shape, generator=generator) < 0.5, high, low)
    else:  # anything, with junk above bit 24 as random_ gives it
        words = torch.randint(0, 1 << 24, shape, generator=generator)
    high_bits = torch.randint(0, 127, shape, generator=generator) << 24
    return (words.clamp(0, (1 << 24) - 1) + high_bits).to(torch.int32)


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_first_max_on_integers_equals_first_max_on_halves(kind):
    generator = torch.Generator().manual_seed(kind)
    for _ in range(50):
        words = _tie_heavy_words(kind, generator)
        allowed = torch.rand(words.shape, generator=generator) < 0.6
        halves = draw.halves_from_words(words).float() * allowed
        position, drew = halves.argmax(dim=1), halves.max(dim=1).values > 0
        int_position, int_drew = draw._first_max_of_words(words, allowed)
        assert torch.equal(int_drew, drew)
        assert torch.equal(int_position[drew], position[drew])


def test_lowest_word_is_exact_for_every_word():
    words = torch.arange(1, draw._WRAP, dtype=torch.int32)
    halves = draw.halves_from_words(words)
    starts = torch.ones_like(halves, dtype=torch.bool)
    starts[1:] = halves[1:] != halves[:-1]
    expected = torch.cummax(torch.where(starts, words, 0), dim=0).values
    assert torch.equal(draw._lowest_word(words), expected)


def test_class_starts_are_the_first_word_of_every_half():
    starts = draw._class_starts(torch.device("cpu"))
    keys = torch.arange(draw._KEY_OF_ZERO + 1, draw._KEY_OF_ZERO + draw._WRAP, dtype=torch.int32)
    halves = draw.halves_from_words(keys - draw._KEY_OF_ZERO)
    first = torch.ones_like(halves, dtype=torch.bool)
    first[1:] = halves[1:] != halves[:-1]
    assert torch.equal(starts[1:], keys[first]) and starts[0] == 0


@needs_extension
def test_the_extension_keys_every_word_as_its_float16():
    # all 2^24 low-bit values, with junk in the high bits as random_ leaves it: the key is the half times 2^24
    words = torch.arange(1 << 24, dtype=torch.int32) | (torch.arange(1 << 24, dtype=torch.int32) % 127 << 24)
    keys = torch.empty_like(words)
    native.mt19937.half_keys(words.data_ptr(), keys.data_ptr(), words.numel())
    assert torch.equal(keys.double(), draw.halves_from_words(words).double() * 2.0**24)


@needs_extension
@pytest.mark.parametrize("used", [0, 1, 3, 623, 624, 625, 1000])
def test_the_extension_skips_like_rand_from_any_point_of_a_block(used):
    for count in [0, 1, 622, 623, 624, 625, 1248, 12345]:
        expected = torch.Generator().manual_seed(count + 7 * used)
        torch.empty(used, dtype=torch.int32).random_(generator=expected)
        state = expected.get_state()
        torch.rand(count, dtype=torch.float16, generator=expected)
        native.mt19937.skip(state.data_ptr(), count)
        assert torch.equal(state, expected.get_state()), count


@needs_extension
@pytest.mark.parametrize("kind", ["native", "native-threads"])
def test_the_extension_refuses_a_bad_slot_and_leaves_the_generator_alone(monkeypatch, kind):
    use_draw(monkeypatch, kind)
    generator = torch.Generator().manual_seed(3)
    before = generator.get_state()
    # three batch rows: with two threads the bad entry of the last row is in the second thread's share
    columns = torch.tensor([[0, 1, 2]]).expand(3, -1)
    candidates = torch.ones(3, 2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="out of range"):
        draw.first_max_native(5, columns, candidates, torch.tensor([[0, 1], [1, 0], [0, 2]]), generator)
    with pytest.raises(ValueError, match="out of range"):
        draw.first_max_native(2, columns, candidates, torch.tensor([[0, 1], [1, 0], [0, 1]]), generator)
    assert torch.equal(generator.get_state(), before)


@needs_extension
def test_the_extension_draws_from_the_global_generator_by_default(monkeypatch):
    use_draw(monkeypatch, "native")
    columns = torch.tensor([[3, 4, 5, 6], [-1, 0, 7, 9]])
    candidates = torch.ones(2, 1, 4, dtype=torch.bool) & (columns >= 0).unsqueeze(1)
    slots = torch.zeros(2, 50, dtype=torch.long)
    torch.manual_seed(5)
    position, drew = ops.first_max_at_columns(10, columns, candidates, slots)
    after = torch.get_rng_state()
    expected = plain.first_max_at_columns(10, columns, candidates, slots, torch.Generator().manual_seed(5))
    assert torch.equal(drew, expected[1]) and torch.equal(position[drew], expected[0][drew])
    torch.manual_seed(5)
    torch.rand(2, 50, 10, dtype=torch.float16)
    assert torch.equal(after, torch.get_rng_state())


def test_the_extension_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(draw, "_native_draw_matches", None)
    monkeypatch.setenv("MEMORIA_NATIVE", "0")
    assert not draw.native_draw_matches()
    monkeypatch.delenv("MEMORIA_NATIVE")
    assert draw.native_draw_matches() == (native.mt19937 is not None)
