import json
from collections import Counter

import numpy as np
import pytest

from experiment.data.sorting import (
    IGNORE_INDEX,
    SEPARATOR,
    SortingDataset,
    SortingFileError,
    generate_example,
    read_sorting_file,
    sorting_target,
    write_sorting_file,
)
from experiment.scripts import sorting_generate


def test_target_orders_by_count_ties_by_first_occurrence_or_by_symbol_absent_last():
    # counts: 3 -> 4, 7 -> 2, 1 -> 2, 0 -> 1; the rest never occur. 7 is seen before 1.
    sequence = np.array([3, 7, 3, 1, 3, 0, 7, 1, 3])
    absent = [s for s in range(20) if s not in (0, 1, 3, 7)]
    assert sorting_target(sequence).tolist() == [3, 7, 1, 0] + absent  # the default: the ∞-former's rule
    assert sorting_target(sequence, "symbol").tolist() == [3, 1, 7, 0] + absent
    with pytest.raises(ValueError, match="tie_rule"):
        sorting_target(sequence, "count")


def test_the_default_rule_is_the_infinity_former_generators():
    # its generator: Counter(sequence).most_common() (ties in first-seen order), then the absent symbols in order
    rng = np.random.default_rng(3)
    for _ in range(50):
        sequence = rng.integers(0, 14, size=int(rng.integers(5, 60)))
        theirs = [symbol for symbol, _ in Counter(sequence.tolist()).most_common()]
        theirs += [symbol for symbol in range(20) if symbol not in theirs]
        assert sorting_target(sequence).tolist() == theirs


def test_the_tie_rule_is_in_the_file_and_checked(tmp_path):
    default = write_sorting_file(tmp_path / "a.bin", 3, 30, seed=1, progress=False)
    by_symbol = write_sorting_file(tmp_path / "b.bin", 3, 30, seed=1, progress=False, tie_rule="symbol")
    assert (
        read_sorting_file(default).tie_rule == "first_occurrence" and read_sorting_file(by_symbol).tie_rule == "symbol"
    )
    for row in read_sorting_file(by_symbol).rows:
        np.testing.assert_array_equal(row[30:], sorting_target(row[:30], "symbol"))
    np.testing.assert_array_equal(read_sorting_file(default).rows[:, :30], read_sorting_file(by_symbol).rows[:, :30])
    with pytest.raises(SortingFileError, match="break ties by 'symbol', the config asks 'first_occurrence'"):
        SortingDataset(by_symbol, tie_rule="first_occurrence")
    # a version-1 file (before the rule was recorded) was made by symbol
    data = by_symbol.read_bytes()
    header_end = data.index(b"\n", 16) + 1
    header = json.loads(data[16:header_end])
    header["version"] = 1
    del header["tie_rule"]
    old = tmp_path / "old.bin"
    old.write_bytes(data[:16] + json.dumps(header).encode() + b"\n" + data[header_end:])
    assert read_sorting_file(old).tie_rule == "symbol" and len(SortingDataset(old, tie_rule="symbol")) == 3


def test_generated_example_is_consistent():
    sequence, target = generate_example(np.random.default_rng(0), 500)
    assert sequence.shape == (500,) and sequence.dtype == np.uint8 and sequence.max() < 20
    assert sorted(target.tolist()) == list(range(20))
    counts = np.bincount(sequence, minlength=20)
    assert (np.diff(counts[target]) <= 0).all()


def test_distribution_drifts_from_start_to_end():
    # Averaged over many examples, the first and last tenths differ much more than two halves of the first tenth.
    rng = np.random.default_rng(1)
    p_gap, same = [], []
    for _ in range(40):
        sequence, _ = generate_example(rng, 2000)
        first, last = np.bincount(sequence[:200], minlength=20), np.bincount(sequence[-200:], minlength=20)
        p_gap.append(np.abs(first - last).sum())
        same.append(np.abs(np.bincount(sequence[:100], minlength=20) * 2 - first).sum())
    assert np.mean(p_gap) > 1.3 * np.mean(same)


def test_files_are_deterministic_and_prefix_stable(tmp_path):
    a = write_sorting_file(tmp_path / "a.bin", 4, 30, seed=7, progress=False)
    b = write_sorting_file(tmp_path / "b.bin", 4, 30, seed=7, progress=False)
    c = write_sorting_file(tmp_path / "c.bin", 2, 30, seed=7, progress=False)
    d = write_sorting_file(tmp_path / "d.bin", 4, 30, seed=8, progress=False)
    assert a.read_bytes() == b.read_bytes()
    np.testing.assert_array_equal(read_sorting_file(c).rows, read_sorting_file(a).rows[:2])
    assert not np.array_equal(read_sorting_file(d).rows, read_sorting_file(a).rows)
    rows = read_sorting_file(a).rows
    for row in rows:
        np.testing.assert_array_equal(row[30:], sorting_target(row[:30]))


def test_dataset_input_and_labels(tmp_path):
    path = write_sorting_file(tmp_path / "train.bin", 3, 10, seed=0, progress=False)
    dataset = SortingDataset(path, expected_length=10)
    item = dataset[1]
    row = read_sorting_file(path).rows[1]
    assert item["input_ids"].tolist() == row[:10].tolist() + [SEPARATOR] + row[10:].tolist()
    labels = item["labels"]
    assert labels[:10].tolist() == [IGNORE_INDEX] * 10 and labels[-1] == IGNORE_INDEX
    assert labels[10:30].tolist() == row[10:].tolist()  # the separator predicts the first target symbol
    with pytest.raises(SortingFileError, match="config asks 12"):
        SortingDataset(path, expected_length=12)


def test_truncated_malformed_and_corrupt_files_are_rejected(tmp_path):
    path = write_sorting_file(tmp_path / "ok.bin", 3, 10, seed=0, progress=False)
    data = path.read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-5])
    with pytest.raises(SortingFileError, match="truncated"):
        read_sorting_file(tmp_path / "short.bin")
    (tmp_path / "long.bin").write_bytes(data + b"\0")
    with pytest.raises(SortingFileError, match="trailing"):
        read_sorting_file(tmp_path / "long.bin")
    (tmp_path / "magic.bin").write_bytes(b"NOT-SORTING\n" + data[16:])
    with pytest.raises(SortingFileError, match="not a sorting data file"):
        read_sorting_file(tmp_path / "magic.bin")
    (tmp_path / "header.bin").write_bytes(b"MEMORIA-SORTING\n{broken\n" + data[-90:])
    with pytest.raises(SortingFileError, match="malformed header"):
        read_sorting_file(tmp_path / "header.bin")
    header_end = data.index(b"\n", 16) + 1
    header = json.loads(data[16:header_end])
    del header["num_examples"]
    (tmp_path / "keys.bin").write_bytes(data[:16] + json.dumps(header).encode() + b"\n" + data[header_end:])
    with pytest.raises(SortingFileError, match="malformed header"):
        read_sorting_file(tmp_path / "keys.bin")
    corrupt = bytearray(data)
    corrupt[header_end + 35] = 200  # a symbol out of range in example 1
    (tmp_path / "corrupt.bin").write_bytes(bytes(corrupt))
    dataset = SortingDataset(tmp_path / "corrupt.bin")
    dataset[0]
    with pytest.raises(SortingFileError, match="example 1"):
        dataset[1]
    with pytest.raises(FileNotFoundError):
        read_sorting_file(tmp_path / "missing.bin")


def test_generator_cli_writes_three_splits(tmp_path, capsys):
    sorting_generate.main(
        [
            "--output-dir",
            str(tmp_path),
            "--length",
            "16",
            "--train",
            "3",
            "--dev",
            "2",
            "--test",
            "2",
            "--seed",
            "5",
            "--tie-rule",
            "symbol",
            "--no-progress",
        ]
    )
    files = {split: read_sorting_file(tmp_path / f"{split}.bin") for split in ("train", "dev", "test")}
    assert [f.rows.shape[0] for f in files.values()] == [3, 2, 2]
    assert files["train"].header["seed"] == 5 and files["test"].header["split"] == "test"
    assert {f.tie_rule for f in files.values()} == {"symbol"}
    assert not np.array_equal(files["train"].rows[:2], files["dev"].rows)  # splits draw different streams
    with pytest.raises(SystemExit):
        sorting_generate.main(["--help"])
    assert "--length" in capsys.readouterr().out
