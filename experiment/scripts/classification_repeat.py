"""Train and test one classification config once per seed (the paper reports 5 runs per model).

    python -m experiment.scripts.classification_repeat --config experiment/configs/classification/X.json \\
        --seeds 1 2 3 4 5 [--override key=value ...]

Run ``s`` writes to ``<output_dir>/seed<s>`` (``seed`` and ``output_dir`` are overridden per run); then compare two
models with ``experiment.scripts.classification_summary``.
"""

import argparse
import json
from pathlib import Path
from typing import Dict, Optional, Sequence

from experiment.scripts.train import load_config, train


def repeat(config_path: str, seeds: Sequence[int], overrides: Sequence[str] = ()) -> Dict[int, dict]:
    """Test metrics of each seed's run."""
    results = {}
    for seed in seeds:
        config = load_config(config_path, overrides)
        config["seed"] = seed
        config["output_dir"] = str(Path(config["output_dir"]) / f"seed{seed}")
        results[seed] = train(config)
    return results


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a JSON config of experiment/configs/classification")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config entries to set")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[int, dict]:
    args = parse_args(argv)
    results = repeat(args.config, args.seeds, args.override)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
