"""Where a Memoria step runs and where it waits: ops off the memory's device, and host-device synchronisations.

On a GPU every tensor op of ``remind`` and ``adjust_lifespan_and_memories`` should run on the GPU, and the host
should wait for the device only where an output's shape depends on the data (a width to allocate) or an input
check needs an answer. This script feeds one benchmark configuration's stream to ours and, on the audited steps,
lists every op whose tensors are not all on the memory's device (CPU scalars excepted) and every synchronisation,
by the function of ``memoria`` that caused it:

    python -m benchmarks.device_audit --device cuda --configs gpt2,enwik8 --json audit.json

Synchronisations are counted with ``torch.cuda.set_sync_debug_mode("warn")``, which warns at every blocking copy
to the host and every stream synchronisation; on a CPU there are none to count and only the op audit runs.
"""

import argparse
import collections
import json
import time
from typing import Any, Counter, Dict, List, Optional, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import memoria
from benchmarks.syncs import count_syncs_by_caller, memoria_caller, memoria_frames
from benchmarks.workload import CONFIGS, lifespan_delta, make_stream


class OffDeviceOps(TorchDispatchMode):
    """Records every op of ``memoria`` that touches a tensor off ``device``; 0-dim CPU tensors (scalars) may be inputs.

    A copy from the device to the host is how the host reads a value (a width, a check): those are kept apart, in
    ``host_copies``, and each is also a synchronisation.
    """

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.found: Counter = collections.Counter()
        self.host_copies: Counter = collections.Counter()

    def _off_device(self, tensor: torch.Tensor, is_input: bool) -> bool:
        if tensor.device.type == self.device.type:
            return False
        return not (is_input and tensor.device.type == "cpu" and tensor.dim() == 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        caller = memoria_caller()
        if caller == "?":  # not an op of memoria's (the caller's own preparations)
            return out
        inputs = [t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        to_host = func.__name__.startswith("_to_copy") and all(t.device.type == "cpu" for t in outputs)
        if to_host and self.device.type != "cpu":
            self.host_copies[caller] += 1
        elif any(self._off_device(t, True) for t in inputs) or any(self._off_device(t, False) for t in outputs):
            self.found[(caller, func.__name__)] += 1
        return out


class OpTimes(TorchDispatchMode):
    """Wall time of every op of ``memoria``, the device synchronised around each one: where a step's time goes."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.seconds: Counter = collections.Counter()
        self.calls: Counter = collections.Counter()

    def _wait(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self._wait()
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self._wait()
        frames = memoria_frames()
        key = (f"{frames[-1].name}:{frames[-1].lineno}" if frames else "?", func.__name__)
        self.seconds[key] += time.perf_counter() - start
        self.calls[key] += 1
        return out


def profile_step(memory: memoria.Memoria, data: torch.Tensor, logits: torch.Tensor, device: torch.device) -> str:
    """The costliest ops of one step (device synchronised around each op), as text."""
    with OpTimes(device) as times:
        memory.add_working_memory(data)
        _, indices = memory.remind()
        memory.adjust_lifespan_and_memories(indices, lifespan_delta(logits, indices.size(1)).to(device))
    total = sum(times.seconds.values())
    lines = [f"{len(times.calls)} distinct ops, {sum(times.calls.values())} calls, {total * 1e3:.1f} ms in all"]
    for (where, op), seconds in times.seconds.most_common(25):
        lines.append(f"{seconds * 1e3:9.2f} ms {times.calls[(where, op)]:5d} x  {where:40s} {op}")
    return "\n".join(lines)


def audit_step(
    memory: memoria.Memoria, data: torch.Tensor, logits: torch.Tensor, device: torch.device
) -> Dict[str, Any]:
    """Audit one ``add_working_memory`` + ``remind`` + ``adjust_lifespan_and_memories``; ``data`` on ``device``."""

    def step() -> None:
        memory.add_working_memory(data)
        _, indices = memory.remind()
        # the caller's delta, left out of the counts as a model would have it ready on the device
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
        delta = lifespan_delta(logits, indices.size(1)).to(device)
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        memory.adjust_lifespan_and_memories(indices, delta)

    with OffDeviceOps(device) as ops:
        if device.type == "cuda":
            _, syncs = count_syncs_by_caller(step)
        else:
            step()
            syncs = collections.Counter()
    return dict(
        syncs=sum(syncs.values()),
        syncs_by_caller=dict(syncs),
        host_copies=dict(ops.host_copies),
        off_device_ops=sum(ops.found.values()),
        off_device_by_caller={f"{caller}: {op}": count for (caller, op), count in ops.found.items()},
    )


def audit_config(
    name: str, device: torch.device, steps: int, audited: int, seed: int = 0, profile: bool = False
) -> List[Dict[str, Any]]:
    """Run ``steps`` steps of configuration ``name`` and audit the last ``audited`` of them (with ``profile``, the
    last one is timed op by op instead)."""
    config = CONFIGS[name]
    torch.manual_seed(seed)
    memory = memoria.Memoria(**config.memoria_kwargs())
    results = []
    for step, (data, logits) in enumerate(make_stream(config, steps, seed)):
        data = data.to(device)
        if step < steps - audited:
            memory.add_working_memory(data)
            _, indices = memory.remind()
            memory.adjust_lifespan_and_memories(indices, lifespan_delta(logits, indices.size(1)).to(device))
            continue
        if profile and step == steps - 1:
            print(f"[{name}] op times, step {step} (M={memory.memory_length}):")
            print(profile_step(memory, data, logits, device))
            continue
        result = audit_step(memory, data, logits, device)
        result.update(config=name, step=step, memory_length=memory.memory_length)
        results.append(result)
    return results


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="gpt2,enwik8,sort")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=40, help="steps per configuration (the last ones audited)")
    parser.add_argument("--audited", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="time the last step op by op")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    results = []
    for name in args.configs.split(","):
        for result in audit_config(name, device, args.steps, args.audited, profile=args.profile):
            results.append(result)
            print(
                f"{name} step {result['step']} (M={result['memory_length']}): {result['syncs']} syncs "
                f"{result['syncs_by_caller']}, host copies {result['host_copies']}; "
                f"{result['off_device_ops']} ops off {device.type} {result['off_device_by_caller']}"
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


if __name__ == "__main__":
    main()
