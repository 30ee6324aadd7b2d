"""Peak memory of one call, measured from the allocator's own events.

On CPU there is no allocator counter to reset, so the call runs under ``torch.profiler`` with
``profile_memory=True``: every allocation and free is recorded as a ``[memory]`` event carrying a
signed byte count; summing them in time order gives the bytes the call allocated and still holds (frees
of memory from before the call are set aside, see ``peak_from_memory_events``); its maximum is the peak. On CUDA the caching allocator keeps that peak itself
(``torch.cuda.max_memory_allocated`` after a reset).
"""

from collections import Counter
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import torch
from torch.profiler import ProfilerActivity, profile


def tensor_bytes(tensors: Iterable[Optional[torch.Tensor]]) -> int:
    """Bytes held by the given tensors' elements (``None`` entries count 0)."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def held_bytes(obj: Any, depth: int = 2) -> int:
    """Bytes of every tensor storage in ``obj``'s attributes and in objects nested up to ``depth`` levels below.

    Counts whole storages, once each, so a tensor kept in a larger buffer (slots with spare capacity) counts
    the buffer. This measures what an implementation really keeps, whatever its layout.
    """
    storages: Dict[Tuple[str, int], int] = {}

    def visit(value: Any, level: int) -> None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            storages[(str(value.device), storage.data_ptr())] = storage.nbytes()
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item, level)
        elif level > 0 and hasattr(value, "__dict__") and not isinstance(value, (type, torch.nn.Module)):
            for item in vars(value).values():
                visit(item, level - 1)

    visit(obj, depth + 1)  # obj's own attributes are always read
    return sum(storages.values())


def peak_from_memory_events(events: Iterable[Tuple[int, int]]) -> int:
    """Largest number of bytes allocated by the call and live at once, taking the events in time order.

    A free that matches no live allocation of the call (same size) released memory that existed before the call (a
    cached view, a previous step's output): it does not count against the call's own allocations. Counting it would
    let such a free hide the call's temporaries (a run once showed 0.3 MiB for a step whose keys alone are 10 MiB).

    Args:
        events: ``(timestamp, nbytes)`` pairs, ``nbytes > 0`` for an allocation and ``< 0`` for a free
    """
    live_sizes: Counter = Counter()
    live, peak = 0, 0
    for _, nbytes in sorted(events, key=lambda event: event[0]):
        if nbytes > 0:
            live_sizes[nbytes] += 1
            live += nbytes
        elif live_sizes[-nbytes] > 0:
            live_sizes[-nbytes] -= 1
            live += nbytes
        peak = max(peak, live)
    return peak


def _cpu_peak(fn: Callable[[], Any]) -> Tuple[Any, int]:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = [
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    ]
    return result, peak_from_memory_events(events)


def _cuda_peak(fn: Callable[[], Any], device: torch.device) -> Tuple[Any, int]:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    return result, torch.cuda.max_memory_allocated(device) - start


def measure_peak(fn: Callable[[], Any], device: torch.device) -> Tuple[Any, int]:
    """Run ``fn()`` and return its result with the peak bytes allocated above the level at its start.

    Only memory on ``device`` counts (host allocations of a CUDA run are not included).
    """
    if device.type == "cuda":
        return _cuda_peak(fn, device)
    return _cpu_peak(fn)
