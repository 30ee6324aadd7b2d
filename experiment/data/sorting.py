"""Sorting task data (from the ∞-former paper, reused by Memoria): generator, file format, dataset.

An example is a sequence of ``L`` symbols from ``0..19`` whose distribution drifts from ``p_start`` to ``p_end``
(token ``j`` is drawn from ``(1 - r) * p_start + r * p_end`` with ``r = (j + 1) / L``; both weight vectors hold
integers 1-9, normalised). Its target lists the 20 symbols by decreasing count in the sequence. Ties are broken
as the ∞-former's generator breaks them (``tie_rule="first_occurrence"``, the default: the symbol seen first in the
sequence comes first, as ``collections.Counter.most_common`` orders them), or by the smaller symbol first
(``"symbol"``, this project's first rule, by name); either way the symbols that never occur come last, smaller first.

Model input: ``sequence, SEPARATOR, target``; only the 20 target tokens are predicted.

File format (``.bin``), one file per split:

1. the line ``MEMORIA-SORTING\\n``;
2. one line of JSON: ``{"version": 2, "num_examples": N, "sequence_length": L, "num_symbols": 20, "seed": S,
   "split": NAME, "tie_rule": RULE}`` (version 1 files have no ``tie_rule``: they were made with ``"symbol"``);
3. ``N * (L + 20)`` bytes: per example the ``L`` sequence symbols then the 20 target symbols, one ``uint8`` each.

Example ``i`` of split ``k`` is drawn from ``numpy.random.default_rng([seed, k, i])``, so a file's content depends
only on ``(seed, split, i, L)``: a shorter file is a prefix of a longer one.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

NUM_SYMBOLS = 20
SEPARATOR = NUM_SYMBOLS
VOCAB_SIZE = NUM_SYMBOLS + 1
MAGIC = b"MEMORIA-SORTING\n"
FORMAT_VERSION = 2
TIE_RULES = ("first_occurrence", "symbol")
DEFAULT_TIE_RULE = "first_occurrence"
SPLITS = ("train", "dev", "test")
IGNORE_INDEX = -100


class SortingFileError(ValueError):
    """A sorting data file is malformed or truncated."""


def check_tie_rule(tie_rule: str) -> str:
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    return tie_rule


def sorting_target(sequence: np.ndarray, tie_rule: str = DEFAULT_TIE_RULE) -> np.ndarray:
    """Symbols by decreasing count in ``sequence`` [L]; ties by first occurrence or by symbol (``tie_rule``), the
    symbols that never occur last, smaller first. Returns [20] uint8."""
    check_tie_rule(tie_rule)
    sequence = np.asarray(sequence, dtype=np.int64)
    counts = np.bincount(sequence, minlength=NUM_SYMBOLS)
    if counts.size != NUM_SYMBOLS:
        raise ValueError(f"symbols must lie in 0..{NUM_SYMBOLS - 1}")
    symbols = np.arange(NUM_SYMBOLS)
    first_seen = np.full(NUM_SYMBOLS, sequence.size)  # absent symbols: after every position, then by symbol
    if tie_rule == "first_occurrence":
        present, first_index = np.unique(sequence, return_index=True)
        first_seen[present] = first_index
    else:
        first_seen[:] = 0
    # lexsort sorts by the last key first: decreasing count, then first occurrence, then increasing symbol.
    return np.lexsort((symbols, first_seen, -counts)).astype(np.uint8)


def generate_example(
    rng: np.random.Generator, length: int, tie_rule: str = DEFAULT_TIE_RULE
) -> tuple[np.ndarray, np.ndarray]:
    """One example: sequence [length] and target [20], both uint8."""
    p_start = rng.integers(1, 10, size=NUM_SYMBOLS).astype(np.float64)
    p_end = rng.integers(1, 10, size=NUM_SYMBOLS).astype(np.float64)
    p_start /= p_start.sum()
    p_end /= p_end.sum()
    ratio = np.arange(1, length + 1) / length
    # Drawing the mixture component first, then the symbol, samples (1 - r) p_start + r p_end exactly.
    from_end = rng.random(length) < ratio
    start_symbols = rng.choice(NUM_SYMBOLS, size=length, p=p_start)
    end_symbols = rng.choice(NUM_SYMBOLS, size=length, p=p_end)
    sequence = np.where(from_end, end_symbols, start_symbols).astype(np.uint8)
    return sequence, sorting_target(sequence, tie_rule)


def iter_examples(
    num_examples: int, length: int, seed: int, split_index: int = 0, tie_rule: str = DEFAULT_TIE_RULE
) -> Iterable[np.ndarray]:
    """Examples as rows of ``L + 20`` uint8 (sequence then target), deterministic in (seed, split, i)."""
    for index in range(num_examples):
        sequence, target = generate_example(np.random.default_rng([seed, split_index, index]), length, tie_rule)
        yield np.concatenate([sequence, target])


def write_sorting_file(
    path: Union[str, Path],
    num_examples: int,
    length: int,
    seed: int,
    split: str = "train",
    progress: bool = True,
    tie_rule: str = DEFAULT_TIE_RULE,
) -> Path:
    """Generate ``num_examples`` examples of ``length`` symbols into ``path`` (format in the module docstring)."""
    check_tie_rule(tie_rule)
    if length < 1 or num_examples < 0:
        raise ValueError(f"need length >= 1 and num_examples >= 0, got {length}, {num_examples}")
    split_index = SPLITS.index(split) if split in SPLITS else len(SPLITS)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "version": FORMAT_VERSION,
        "num_examples": num_examples,
        "sequence_length": length,
        "num_symbols": NUM_SYMBOLS,
        "seed": seed,
        "split": split,
        "tie_rule": tie_rule,
    }
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # two processes may generate at once
    with open(partial, "wb") as file:
        file.write(MAGIC + json.dumps(header).encode() + b"\n")
        rows = iter_examples(num_examples, length, seed, split_index, tie_rule)
        for row in tqdm(rows, total=num_examples, desc=f"sorting {split}", disable=not progress):
            file.write(row.tobytes())
    partial.replace(path)  # a crash never leaves a file that looks complete
    return path


@dataclass
class SortingFile:
    """A loaded data file: its header and the examples [N, L + 20] (memory-mapped uint8)."""

    header: dict[str, Any]
    rows: np.ndarray

    @property
    def sequence_length(self) -> int:
        return self.header["sequence_length"]

    @property
    def tie_rule(self) -> str:
        """How the file's targets break ties (version 1 files: by symbol, the only rule then)."""
        return self.header.get("tie_rule", "symbol")


def read_sorting_file(path: Union[str, Path]) -> SortingFile:
    """Open a sorting data file, checking its header and size; raises :class:`SortingFileError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sorting data file at {path} (make one with experiment.scripts.sorting_generate)")
    with open(path, "rb") as file:
        magic = file.read(len(MAGIC))
        if magic != MAGIC:
            raise SortingFileError(f"{path}: not a sorting data file (first line {magic!r}, expected {MAGIC!r})")
        header_line = file.readline(1 << 16)
        offset = file.tell()
    try:
        header = json.loads(header_line)
        num_examples, length = int(header["num_examples"]), int(header["sequence_length"])
        version, num_symbols = header["version"], header["num_symbols"]
    except (ValueError, KeyError, TypeError) as error:
        raise SortingFileError(f"{path}: malformed header line {header_line[:200]!r}: {error}") from error
    if version not in (1, FORMAT_VERSION) or num_symbols != NUM_SYMBOLS:
        raise SortingFileError(f"{path}: version {version} with {num_symbols} symbols; expected {FORMAT_VERSION}, 20")
    if header.get("tie_rule", "symbol") not in TIE_RULES:
        raise SortingFileError(f"{path}: unknown tie_rule {header['tie_rule']!r}; known: {TIE_RULES}")
    row_length = length + NUM_SYMBOLS
    expected = offset + num_examples * row_length
    actual = path.stat().st_size
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise SortingFileError(
            f"{path}: file {kind}: {actual} bytes, header promises {num_examples} examples of {row_length} "
            f"symbols = {expected} bytes"
        )
    if num_examples == 0:
        return SortingFile(header, np.zeros((0, row_length), dtype=np.uint8))
    rows = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(num_examples, row_length))
    return SortingFile(header, rows)


def model_input(row: np.ndarray) -> dict[str, torch.Tensor]:
    """``sequence, SEPARATOR, target`` as ``input_ids`` [L + 21] and ``labels`` [L + 21].

    ``labels[t]`` is the token to predict at position ``t`` (already shifted): the next target token for the
    separator and the first 19 target positions, -100 everywhere else.
    """
    length = row.shape[0] - NUM_SYMBOLS
    input_ids = torch.empty(length + NUM_SYMBOLS + 1, dtype=torch.long)
    input_ids[:length] = torch.from_numpy(np.asarray(row[:length], dtype=np.int64))
    input_ids[length] = SEPARATOR
    input_ids[length + 1 :] = torch.from_numpy(np.asarray(row[length:], dtype=np.int64))
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[length : length + NUM_SYMBOLS] = input_ids[length + 1 :]
    return {"input_ids": input_ids, "labels": labels}


class SortingDataset(Dataset):
    """Examples of one split file as model inputs (see :func:`model_input`)."""

    def __init__(
        self, path: Union[str, Path], expected_length: Optional[int] = None, tie_rule: Optional[str] = None
    ) -> None:
        self.path = Path(path)
        self.file = read_sorting_file(self.path)
        if expected_length is not None and self.file.sequence_length != expected_length:
            raise SortingFileError(
                f"{self.path}: holds sequences of {self.file.sequence_length} symbols, config asks {expected_length}"
            )
        if tie_rule is not None and self.file.tie_rule != check_tie_rule(tie_rule):
            raise SortingFileError(
                f"{self.path}: its targets break ties by {self.file.tie_rule!r}, the config asks {tie_rule!r}; "
                "generate the files again in another folder (data.dir) or set data.tie_rule"
            )

    def __len__(self) -> int:
        return self.file.rows.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.file.rows[index]
        if row.max() >= NUM_SYMBOLS:
            raise SortingFileError(f"{self.path}: example {index} holds a symbol >= {NUM_SYMBOLS}")
        return model_input(row)
