"""Memory a ``keep_history`` memory grows by per step: every step kept (``keep_history=True``) against a window.

Each variant runs in a process of its own (so that resident memory is its own) on the same random stream, and
reports, every ``--every`` steps, the bytes held by the histories' tensors and the process's resident set size
(VmRSS). The growth per step is fitted over the second half of the run, after the memory length has settled.

    python -m benchmarks.history_memory                                   # keep_history=True against 1000
    python -m benchmarks.history_memory --steps 9500 --variants True,1000,100
"""

import argparse
import json
import subprocess
import sys
import time
import warnings

import torch

from memoria import Memoria


def rss_bytes() -> int:
    """The process's resident set size (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(item) for item in value)
    return 0


def history_bytes(histories: list) -> int:
    """Bytes of every tensor the histories hold (records and count models; Python objects aside)."""
    total = 0
    for history in histories or []:
        for record in history._records:
            total += sum(tensor_bytes(getattr(record, name, None)) for name in type(record).__slots__)
        if history._model is not None:
            total += sum(tensor_bytes(value) for value in vars(history._model).values())
    return total


def run_variant(args: argparse.Namespace) -> None:
    """One memory, one stream; prints one JSON line per sample."""
    torch.set_num_threads(1)
    keep = True if args.keep == "True" else int(args.keep)
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # keep_history turns id and age tracking on, as it says
        memoria = Memoria(
            num_reminded_stm=args.reminded,
            stm_capacity=args.stm_capacity,
            ltm_search_depth=4,
            initial_lifespan=9,
            num_final_ltms=args.reminded,
            keep_history=keep,
        )
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        data = torch.randn(args.batch, args.working, args.hidden, generator=generator) * (8.0 / args.hidden) ** 0.5
        memoria.add_working_memory(data)
        _, indices = memoria.remind()
        logits = torch.randn(indices.shape, generator=generator)
        memoria.adjust_lifespan_and_memories(indices, logits.softmax(dim=1) * indices.size(1) * 8.0)
        if step % args.every == 0 or step == args.steps:
            sample = {
                "step": step,
                "history_bytes": history_bytes(memoria.history),
                "rss": rss_bytes(),
                "memory_length": memoria.memory_length,
                "steps_kept": len(memoria.history[0]),
                "seconds": time.perf_counter() - start,
            }
            print(json.dumps(sample), flush=True)


def slope(samples: list, key: str) -> float:
    """Least-squares growth of ``key`` per step over the second half of the samples."""
    half = [s for s in samples if s["step"] > samples[-1]["step"] / 2]
    x = torch.tensor([float(s["step"]) for s in half], dtype=torch.float64)
    y = torch.tensor([float(s[key]) for s in half], dtype=torch.float64)
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--every", type=int, default=250, help="sample every this many steps")
    parser.add_argument("--variants", default="True,1000", help="keep_history values, comma-separated")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--working", type=int, default=16, help="working memories added per step")
    parser.add_argument("--stm-capacity", type=int, default=64)
    parser.add_argument("--reminded", type=int, default=8, help="num_reminded_stm and num_final_ltms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help=argparse.SUPPRESS)  # set in the child process
    args = parser.parse_args()
    if args.keep is not None:
        return run_variant(args)

    print(
        f"batch {args.batch}, hidden {args.hidden}, {args.working} working memories per step, stm_capacity "
        f"{args.stm_capacity}, {args.steps} steps; growth fitted over the second half"
    )
    print(f"{'keep_history':>12} {'history KB/step':>16} {'RSS KB/step':>12} {'history MB':>11} {'RSS MB':>8} "
          f"{'steps kept':>10} {'memory length':>13} {'s/step':>7}")  # fmt: skip
    for keep in args.variants.split(","):
        command = [sys.executable, "-m", "benchmarks.history_memory", "--keep", keep]
        for name in ("steps", "every", "batch", "hidden", "working", "stm_capacity", "reminded", "seed"):
            command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        samples = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        last = samples[-1]
        print(
            f"{keep:>12} {slope(samples, 'history_bytes') / 1024:16.2f} {slope(samples, 'rss') / 1024:12.2f} "
            f"{last['history_bytes'] / 2**20:11.1f} {last['rss'] / 2**20:8.0f} {last['steps_kept']:10d} "
            f"{last['memory_length']:13d} {last['seconds'] / last['step']:7.4f}"
        )


if __name__ == "__main__":
    main()
