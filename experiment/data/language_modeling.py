"""Raw language-modelling corpora read from local files, and their tokenisers.

Readers return text (or bytes) per split; nothing here knows about batches. The standard layouts:

- WikiText-103 raw: a directory holding ``wiki.train.raw``, ``wiki.valid.raw``, ``wiki.test.raw``.
- PG-19: a directory holding ``train/``, ``validation/``, ``test/``, each with one ``<book id>.txt`` per book.
- enwik8: the single 100,000,000-byte file, split 90M / 5M / 5M bytes in file order.
- any other text file used byte-level (the CPU run): split by fractions of its bytes.

Tokenisers: bytes (vocabulary 256) for enwik8 and byte-level corpora, a GPT-2 tokenizer loaded from a local
directory for the word-level sets.
"""

import math
import random
from pathlib import Path
from typing import Dict, List, Optional, Protocol, Sequence, Tuple, Union

import torch

SPLITS = ("train", "valid", "test")
WIKITEXT103_FILES = {"train": "wiki.train.raw", "valid": "wiki.valid.raw", "test": "wiki.test.raw"}
PG19_DIRECTORIES = {"train": "train", "valid": "validation", "test": "test"}
ENWIK8_SPLIT_BYTES = {"train": 90_000_000, "valid": 5_000_000, "test": 5_000_000}
DEFAULT_BYTE_SPLIT_FRACTIONS = {"train": 0.9, "valid": 0.05, "test": 0.05}
HUB_DATASETS = {
    "wikitext103": (
        "Salesforce/wikitext",
        "wikitext-103-raw-v1",
        {"train": "train", "valid": "validation", "test": "test"},
    ),
    "pg19": ("deepmind/pg19", None, {"train": "train", "valid": "validation", "test": "test"}),
    "enwik8": ("LTCB/enwik8", None, {"train": "train", "valid": "train", "test": "train"}),
}


class CorpusFormatError(ValueError):
    """A corpus file or directory is missing or does not have the expected layout."""


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _read_utf8(path: Path, what: str) -> str:
    if not path.is_file():
        raise CorpusFormatError(f"{what}: expected a file at {path}, but it does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CorpusFormatError(f"{what}: {path} is not UTF-8 text ({error})") from error
    if not text.strip():
        raise CorpusFormatError(f"{what}: {path} is empty")
    return text


def read_wikitext103(directory: Union[str, Path], split: str) -> str:
    """The raw text of one WikiText-103 split (``wiki.<split>.raw`` in ``directory``), one string."""
    _check_split(split)
    directory = Path(directory)
    if not directory.is_dir():
        raise CorpusFormatError(
            f"WikiText-103: expected a directory with {sorted(WIKITEXT103_FILES.values())} at {directory}, "
            "but it does not exist"
        )
    text = _read_utf8(directory / WIKITEXT103_FILES[split], "WikiText-103 raw")
    # Every raw WikiText file starts its articles with a " = Title = " heading line.
    if " = " not in text[:10_000]:
        raise CorpusFormatError(
            f"WikiText-103 raw: {directory / WIKITEXT103_FILES[split]} has no ' = Heading = ' line in its first "
            "10,000 characters; is it the raw (not tokenised) WikiText-103?"
        )
    return text


def read_pg19(directory: Union[str, Path], split: str, fraction: float = 1.0, seed: int = 0) -> List[Tuple[str, str]]:
    """The books of one PG-19 split as ``(book id, text)`` pairs, ordered by book id.

    ``fraction`` < 1 keeps a seeded random subset of the books (the paper trained on 7 % of them), still
    ordered by book id.
    """
    _check_split(split)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    split_dir = Path(directory) / PG19_DIRECTORIES[split]
    if not split_dir.is_dir():
        raise CorpusFormatError(
            f"PG-19: expected a directory of <book id>.txt files at {split_dir} "
            f"(layout: {directory}/{{{','.join(PG19_DIRECTORIES.values())}}}/*.txt), but it does not exist"
        )
    paths = sorted(split_dir.glob("*.txt"))
    if not paths:
        raise CorpusFormatError(f"PG-19: {split_dir} holds no <book id>.txt files")
    if fraction < 1.0:
        keep = max(1, math.ceil(fraction * len(paths)))
        paths = sorted(random.Random(seed).sample(paths, keep))
    return [(path.stem, _read_utf8(path, "PG-19 book")) for path in paths]


def read_enwik8(path: Union[str, Path], split: str, split_bytes: Optional[Dict[str, int]] = None) -> bytes:
    """The bytes of one enwik8 split: by default the first 90M, next 5M and last 5M bytes of the file.

    ``split_bytes`` gives other sizes (e.g. for a small fixture); they must add up to the file size.
    """
    _check_split(split)
    split_bytes = split_bytes or ENWIK8_SPLIT_BYTES
    path = Path(path)
    if not path.is_file():
        raise CorpusFormatError(f"enwik8: expected the enwik8 file ({sum(split_bytes.values())} bytes) at {path}")
    size = path.stat().st_size
    if size != sum(split_bytes.values()):
        raise CorpusFormatError(
            f"enwik8: {path} has {size} bytes, expected {sum(split_bytes.values())} "
            f"(splits {split_bytes}); is it the unzipped enwik8 file?"
        )
    start = sum(split_bytes[name] for name in SPLITS[: SPLITS.index(split)])
    with path.open("rb") as file:
        file.seek(start)
        return file.read(split_bytes[split])


def read_byte_corpus(path: Union[str, Path], split: str, fractions: Optional[Dict[str, float]] = None) -> bytes:
    """One split of any file used byte-level: consecutive slices of ``fractions`` (90 / 5 / 5 % by default)."""
    _check_split(split)
    fractions = fractions or DEFAULT_BYTE_SPLIT_FRACTIONS
    if abs(sum(fractions[name] for name in SPLITS) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must add up to 1, got {fractions}")
    path = Path(path)
    if not path.is_file():
        raise CorpusFormatError(f"byte corpus: expected a file at {path}, but it does not exist")
    data = path.read_bytes()
    bounds = [0]
    for name in SPLITS:
        bounds.append(bounds[-1] + round(fractions[name] * len(data)))
    index = SPLITS.index(split)
    piece = data[bounds[index] : bounds[index + 1] if split != "test" else len(data)]
    if len(piece) < 2:
        raise CorpusFormatError(f"byte corpus: the {split} split of {path} ({len(data)} bytes) is too small")
    return piece


def read_hub_documents(name: str, split: str) -> List[str]:  # pragma: no cover - needs the network
    """The same corpora through the ``datasets`` library (needs the network and ``pip install datasets``).

    Returns one string per document (WikiText-103: one per line, PG-19: one per book, enwik8: one string).
    """
    _check_split(split)
    try:
        import datasets
    except ImportError as error:
        raise ImportError("reading corpora from the hub needs `pip install datasets`") from error
    if name not in HUB_DATASETS:
        raise ValueError(f"no hub dataset for {name!r}; known: {sorted(HUB_DATASETS)}")
    path, subset, splits = HUB_DATASETS[name]
    table = datasets.load_dataset(path, subset, split=splits[split])
    column = "text"
    texts = list(table[column])
    if name == "enwik8":
        data = "\n".join(texts).encode("utf-8")
        sizes = [len(data) * 90 // 100, len(data) * 5 // 100]
        start = {"train": 0, "valid": sizes[0], "test": sizes[0] + sizes[1]}[split]
        end = {"train": sizes[0], "valid": sizes[0] + sizes[1], "test": len(data)}[split]
        return [data[start:end].decode("utf-8", errors="replace")]
    return texts


class Tokenizer(Protocol):
    """What the loaders need from a tokenizer."""

    vocab_size: int

    def encode_ids(self, text: Union[str, bytes]) -> torch.Tensor:
        """``[Length]`` int64 token ids of ``text``."""


class ByteTokenizer:
    """Bytes as tokens: vocabulary 256, text is UTF-8 encoded first (so bits per byte = bits per character
    on ASCII text, as enwik8's figures are reported)."""

    vocab_size = 256

    def encode_ids(self, text: Union[str, bytes]) -> torch.Tensor:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


class PretrainedTokenizer:
    """A ``transformers`` tokenizer (GPT-2's, or any other) loaded from a local directory, no network."""

    def __init__(self, path: Union[str, Path], lines_per_batch: int = 10_000):
        from transformers import AutoTokenizer

        path = Path(path)
        if not path.is_dir():
            raise CorpusFormatError(
                f"tokenizer: expected a directory with tokenizer.json or vocab.json + merges.txt at {path}"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.vocab_size = len(self.tokenizer)
        self.lines_per_batch = lines_per_batch

    def encode_ids(self, text: Union[str, bytes]) -> torch.Tensor:
        # Encoded line by line (newline kept on each line) so a 500 MB split never becomes one call; GPT-2's
        # pre-tokeniser never merges across a newline, so this matches encoding the whole text at once.
        text = text.decode("utf-8") if isinstance(text, bytes) else text
        lines = text.splitlines(keepends=True)
        ids: List[int] = []
        for start in range(0, len(lines), self.lines_per_batch):
            batch = lines[start : start + self.lines_per_batch]
            for encoded in self.tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
                ids.extend(encoded)
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))


def load_tokenizer(name_or_path: str) -> Union[ByteTokenizer, PretrainedTokenizer]:
    """``"bytes"`` for the byte tokenizer, otherwise a local tokenizer directory (GPT-2's for the paper)."""
    return ByteTokenizer() if name_or_path == "bytes" else PretrainedTokenizer(name_or_path)


def read_documents(
    dataset: str, path: Union[str, Path], split: str, pg19_fraction: float = 1.0, seed: int = 0
) -> Tuple[List[Union[str, bytes]], bool]:
    """The documents of ``split`` and whether memory must reset at each document start.

    ``dataset``: ``wikitext103``, ``pg19``, ``enwik8``, ``bytes`` (any local file, byte-level) or
    ``hub:<name>`` (through ``datasets``). Only PG-19 resets at document (book) boundaries; the others are one
    stream.
    """
    if dataset == "wikitext103":
        return [read_wikitext103(path, split)], False
    if dataset == "pg19":
        fraction = pg19_fraction if split == "train" else 1.0
        return [text for _, text in read_pg19(path, split, fraction, seed)], True
    if dataset == "enwik8":
        return [read_enwik8(path, split)], False
    if dataset == "bytes":
        return [read_byte_corpus(path, split)], False
    if dataset.startswith("hub:"):  # pragma: no cover - needs the network
        name = dataset[len("hub:") :]
        texts = read_hub_documents(name, split)
        return (texts, True) if name == "pg19" else (["".join(texts)], False)
    raise ValueError(f"unknown dataset {dataset!r}; expected wikitext103, pg19, enwik8, bytes or hub:<name>")
