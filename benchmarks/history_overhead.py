"""Cost of ``keep_history=True`` at a benchmark configuration, ours against the published memoria-pytorch 1.1.0.

One stream (the speed benchmark's) is fed to two of our Memoria instances, one with ``keep_history=True``,
with the same global RNG state before each step. After ``warmup`` steps the next ``steps`` are timed:

- our step without history, our step with history, and ``record_history`` alone on the same states;
- the published package's history on those same states: its ``Engrams.status_summary()`` (rebuilt from our
  tensors) followed by its ``HistoryManager.add_summary``, timed on the last ``ref_steps`` steps only because a
  single one takes seconds at this size.

    python -m benchmarks.history_overhead                     # gpt2 configuration, CPU
    python -m benchmarks.history_overhead --device cuda --steps 20 --ref-steps 3
"""

import argparse
import statistics
import time
from typing import Any, Callable

import torch

from benchmarks.reference import load_reference
from benchmarks.workload import CONFIGS, lifespan_delta, make_stream
from memoria import Memoria
from memoria.history_manager import HistoryManager, record_history


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds ``fn`` takes, device work included."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def step(memoria: Memoria, data: torch.Tensor, logits: torch.Tensor) -> None:
    memoria.add_working_memory(data)
    _, indices = memoria.remind()
    memoria.adjust_lifespan_and_memories(indices, lifespan_delta(logits, indices.size(1)).to(indices.device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="gpt2", choices=sorted(CONFIGS))
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: config's warmup)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--ref-steps", type=int, default=2, help="last timed steps also run the published history")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = CONFIGS[args.config]
    device = torch.device(args.device)
    warmup = config.auto_warmup() if args.warmup is None else args.warmup
    stream = make_stream(config, warmup + args.steps, args.seed)
    plain = Memoria(**config.memoria_kwargs(), track_age=True, track_id=True)
    kept = Memoria(**config.memoria_kwargs(), keep_history=True)
    shadow = [HistoryManager() for _ in range(config.batch_size)]  # record_history timed alone
    ref = load_reference("1.1.0")
    ref_histories = [ref.HistoryManager() for _ in range(config.batch_size)]
    ref_memoria = ref.Memoria(**config.memoria_kwargs())  # the published step without history, for its ratio

    without, with_history, record_alone, published, ref_step, lengths, edges = [], [], [], [], [], [], []
    torch.manual_seed(args.seed)
    for index, (data, logits) in enumerate(stream):
        data = data.to(device)
        rng = torch.get_rng_state()
        seconds_plain = timed(lambda: step(plain, data, logits), device)
        torch.set_rng_state(rng)
        seconds_kept = timed(lambda: step(kept, data, logits), device)
        seconds_record = timed(lambda: record_history(shadow, plain.engrams), device)
        torch.set_rng_state(rng)
        seconds_ref = timed(lambda: step(ref_memoria, data, logits), device)
        if index < warmup:
            continue
        without.append(seconds_plain)
        with_history.append(seconds_kept)
        record_alone.append(seconds_record)
        ref_step.append(seconds_ref)
        lengths.append(plain.engrams.memory_length)
        if index >= len(stream) - args.ref_steps:
            e = plain.engrams
            as_ref = ref.Engrams(
                e.data, e.induce_counts, e.engrams_types, e.lifespan, e.age, e.engram_ids, True, True
            )  # the published class on the very same tensors

            def published_history() -> None:
                for history, summary in zip(ref_histories, as_ref.status_summary()):
                    history.add_summary(summary)

            published.append(timed(published_history, device))
            edges.append(sum(len(s.edges) for s in ref_histories[0].summaries[-1:]))

    median = statistics.median
    print(f"config {config.name} on {device}: {warmup} warm-up steps, {args.steps} timed steps")
    print(f"memory length per row: {min(lengths)}..{max(lengths)}; edges in row 0 (published steps): {edges}")
    print(f"ours, step without history      : {median(without) * 1e3:9.1f} ms")
    print(f"ours, step with keep_history    : {median(with_history) * 1e3:9.1f} ms")
    print(f"  -> overhead factor            : {median(with_history) / median(without):9.2f}x")
    print(f"ours, record_history alone      : {median(record_alone) * 1e3:9.1f} ms")
    if published:
        print(f"1.1.0, status_summary+add_summary: {median(published) * 1e3:9.1f} ms  ({len(published)} steps)")
        print(f"1.1.0, step without history     : {median(ref_step) * 1e3:9.1f} ms")
        factor = (median(ref_step) + median(published)) / median(ref_step)
        print(f"  -> published overhead factor  : {factor:9.1f}x")


if __name__ == "__main__":
    main()
