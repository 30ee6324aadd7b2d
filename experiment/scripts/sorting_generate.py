"""Generate the sorting task's train/dev/test files.

Example (paper scale, L = 32K)::

    python -m experiment.scripts.sorting_generate --output-dir data/sorting/L32768 --length 32768 \\
        --train 80000 --dev 800 --test 800 --seed 42
"""

import argparse
from pathlib import Path
from typing import Optional, Sequence

from experiment.data.sorting import DEFAULT_TIE_RULE, SPLITS, TIE_RULES, write_sorting_file


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True, type=Path, help="folder for train.bin, dev.bin, test.bin")
    parser.add_argument("--length", required=True, type=int, help="symbols per sequence (L)")
    parser.add_argument("--train", type=int, default=80000, help="number of training examples")
    parser.add_argument("--dev", type=int, default=800, help="number of development examples")
    parser.add_argument("--test", type=int, default=800, help="number of test examples")
    parser.add_argument("--seed", type=int, default=42, help="seed; each split and example has its own stream")
    parser.add_argument(
        "--tie-rule",
        choices=TIE_RULES,
        default=DEFAULT_TIE_RULE,
        help="how the target orders symbols of equal count: first seen first (the ∞-former's) or smaller first",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    for split in SPLITS:
        path = write_sorting_file(
            args.output_dir / f"{split}.bin",
            getattr(args, split),
            args.length,
            args.seed,
            split=split,
            progress=not args.no_progress,
            tie_rule=args.tie_rule,
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
