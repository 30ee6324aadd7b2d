"""Report the articles that Hyperpartisan split lists share (exit status 1 when any is shared).

    python -m experiment.scripts.classification_split_check --articles A.xml --ground-truth G.xml \\
        --splits hp-splits.json
"""

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from experiment.data.hyperpartisan import check_split_overlap, load_articles, read_split_file, resolve_split


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=Path, required=True, help="articles-*.xml")
    parser.add_argument("--ground-truth", type=Path, required=True, help="ground-truth-*.xml")
    parser.add_argument("--splits", type=Path, required=True, help="split file (hp-splits.json style)")
    args = parser.parse_args(argv)
    articles = load_articles(args.articles, args.ground_truth)
    positions = {name: resolve_split(entries, articles) for name, entries in read_split_file(args.splits).items()}
    sizes = {name: len(p) for name, p in positions.items()}
    overlap = check_split_overlap(positions)
    print(", ".join(f"{name}: {size}" for name, size in sizes.items()))
    print(overlap.report(sizes))
    return 1 if overlap else 0


if __name__ == "__main__":
    sys.exit(main())
