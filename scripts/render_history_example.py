"""Run a Memoria stream with keep_history=True, save row 0's history and render the README pictures.

The stream revisits a few "topics" (fixed directions plus noise), so that old engrams get reminded when their
topic comes back. Lifespan deltas are what a model would pass: attention of the working memories over the
reminded ones, times the number reminded times 8 (the paper's scale).

    python scripts/render_history_example.py                     # writes docs/images/history_*.{png,gif}
    python scripts/render_history_example.py --steps 60 --out /tmp/pictures
"""

import argparse
import warnings
from pathlib import Path

import torch

from memoria import Memoria
from memoria.visualize import render_all

LIFESPAN_EXTEND_SCALE = 8.0


def run(steps: int, seed: int) -> Memoria:
    torch.manual_seed(seed)
    hidden, working, topics = 32, 8, 6
    centres = torch.randn(topics, hidden)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # keep_history turns id and age tracking on, as it says
        memoria = Memoria(
            num_reminded_stm=6,
            stm_capacity=48,
            ltm_search_depth=4,
            initial_lifespan=4,
            num_final_ltms=6,
            keep_history=True,
        )
    for step in range(steps):
        topic = (step // 5) % topics if step % 20 < 15 else torch.randint(topics, ()).item()
        data = centres[topic] + 0.35 * torch.randn(1, working, hidden)  # [1, W, D]
        memoria.add_working_memory(data)
        memories, indices = memoria.remind()  # [1, R, D], [1, R]
        attention = (-torch.cdist(data, memories).pow(2) / hidden).softmax(-1).mean(1)  # [1, R]
        delta = attention * indices.size(1) * LIFESPAN_EXTEND_SCALE
        memoria.adjust_lifespan_and_memories(indices, delta)
    return memoria


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "images"))
    args = parser.parse_args()
    memoria = run(args.steps, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    history = memoria.history[0]
    history.save(str(out / "history_example.gz"))
    for path in render_all(history, str(out), prefix="history_"):
        print(path)


if __name__ == "__main__":
    main()
