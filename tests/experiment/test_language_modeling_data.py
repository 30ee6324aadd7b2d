"""Corpus readers and tokenisers on small fixture files in each layout, and their errors."""

from pathlib import Path

import pytest
import torch

from experiment.data.language_modeling import (
    ByteTokenizer,
    CorpusFormatError,
    PretrainedTokenizer,
    load_tokenizer,
    read_byte_corpus,
    read_documents,
    read_enwik8,
    read_pg19,
    read_wikitext103,
)

FIXTURES = Path(__file__).parent / "fixtures" / "lm"
ENWIK8_FIXTURE_SPLIT = {"train": 180, "valid": 10, "test": 10}


def build_tiny_tokenizer(directory: Path) -> Path:
    """A byte-level BPE tokenizer (GPT-2 style) trained on the WikiText fixture, saved like GPT-2's."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train([str(FIXTURES / "wikitext103" / "wiki.train.raw")], vocab_size=300, min_frequency=2, show_progress=False)
    PreTrainedTokenizerFast(tokenizer_object=bpe).save_pretrained(str(directory))
    return directory


def test_wikitext103_reads_each_split():
    train = read_wikitext103(FIXTURES / "wikitext103", "train")
    assert train.startswith(" \n = Harbour Lights = \n")
    assert read_wikitext103(FIXTURES / "wikitext103", "test").endswith("town . \n")


def test_wikitext103_errors_name_the_path(tmp_path):
    with pytest.raises(CorpusFormatError, match=r"wiki\.train\.raw.*does not exist"):
        read_wikitext103(tmp_path, "train")
    with pytest.raises(CorpusFormatError, match="expected a directory"):
        read_wikitext103(tmp_path / "nowhere", "train")
    (tmp_path / "wiki.valid.raw").write_text("")
    with pytest.raises(CorpusFormatError, match="is empty"):
        read_wikitext103(tmp_path, "valid")
    (tmp_path / "wiki.test.raw").write_bytes(b"\xff\xfe = x = ")
    with pytest.raises(CorpusFormatError, match="not UTF-8"):
        read_wikitext103(tmp_path, "test")
    (tmp_path / "wiki.train.raw").write_text("the <unk> was @-@ tokenised\n")
    with pytest.raises(CorpusFormatError, match="Heading"):
        read_wikitext103(tmp_path, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        read_wikitext103(FIXTURES / "wikitext103", "validation")


def test_pg19_reads_books_in_id_order_and_subsamples():
    books = read_pg19(FIXTURES / "pg19", "train")
    assert [book_id for book_id, _ in books] == ["101", "102", "103"]
    assert books[2][1].startswith("THE ORCHARD")
    assert [book_id for book_id, _ in read_pg19(FIXTURES / "pg19", "valid")] == ["201"]
    subset = read_pg19(FIXTURES / "pg19", "train", fraction=0.5, seed=3)
    assert len(subset) == 2 and subset == sorted(subset)
    assert subset == read_pg19(FIXTURES / "pg19", "train", fraction=0.5, seed=3)


def test_pg19_errors(tmp_path):
    with pytest.raises(CorpusFormatError, match=r"validation.*does not exist"):
        read_pg19(tmp_path, "valid")
    (tmp_path / "test").mkdir()
    with pytest.raises(CorpusFormatError, match=r"holds no <book id>\.txt"):
        read_pg19(tmp_path, "test")


def test_enwik8_split_by_bytes():
    path = FIXTURES / "enwik8_200"
    parts = [read_enwik8(path, split, ENWIK8_FIXTURE_SPLIT) for split in ("train", "valid", "test")]
    assert [len(p) for p in parts] == [180, 10, 10]
    assert b"".join(parts) == path.read_bytes()


def test_enwik8_errors(tmp_path):
    with pytest.raises(CorpusFormatError, match=r"has 200 bytes, expected 100000000"):
        read_enwik8(FIXTURES / "enwik8_200", "train")
    with pytest.raises(CorpusFormatError, match="expected the enwik8 file"):
        read_enwik8(tmp_path / "enwik8", "train")


def test_byte_corpus_fractions_cover_the_file():
    path = FIXTURES / "enwik8_200"
    parts = [read_byte_corpus(path, split) for split in ("train", "valid", "test")]
    assert [len(p) for p in parts] == [180, 10, 10]
    assert b"".join(parts) == path.read_bytes()


def test_read_documents_layouts():
    docs, reset = read_documents("pg19", FIXTURES / "pg19", "train")
    assert len(docs) == 3 and reset
    docs, reset = read_documents("wikitext103", FIXTURES / "wikitext103", "valid")
    assert len(docs) == 1 and not reset
    with pytest.raises(ValueError, match="unknown dataset"):
        read_documents("imagenet", FIXTURES, "train")


def test_byte_tokenizer_round_trip():
    tokenizer = load_tokenizer("bytes")
    assert isinstance(tokenizer, ByteTokenizer)
    ids = tokenizer.encode_ids("né")
    assert ids.tolist() == [110, 195, 169]
    assert tokenizer.decode(ids.tolist()) == "né"


def test_pretrained_tokenizer_from_local_directory(tmp_path):
    path = build_tiny_tokenizer(tmp_path / "tok")
    tokenizer = load_tokenizer(str(path))
    assert isinstance(tokenizer, PretrainedTokenizer) and tokenizer.vocab_size <= 300
    text = read_wikitext103(FIXTURES / "wikitext103", "train")
    ids = tokenizer.encode_ids(text)
    assert ids.dtype == torch.long and 0 < ids.numel() < len(text)
    # Encoding line by line gives the same ids as encoding the whole text in one call.
    assert ids.tolist() == tokenizer.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids.tolist()) == text
    with pytest.raises(CorpusFormatError, match="tokenizer.json or vocab.json"):
        load_tokenizer(str(tmp_path / "missing"))
