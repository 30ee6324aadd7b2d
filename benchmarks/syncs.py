"""Which code of ``memoria`` is running, and where the host waits for the GPU.

Shared by the benchmark (syncs per step) and the device audit (syncs and ops by the function that made them).
"""

import collections
import os
import sys
import traceback
import warnings
from typing import Any, Callable, Counter, Dict, List, Tuple

import torch

import memoria

# files of the package itself (a checkout folder that happens to be called "memoria" must not count)
PACKAGE_DIR = os.path.dirname(os.path.abspath(memoria.__file__)) + os.sep


def memoria_frames() -> List[traceback.FrameSummary]:
    """The frames of the ``memoria`` package on the Python stack, outermost first."""
    return [frame for frame in traceback.extract_stack() if os.path.abspath(frame.filename).startswith(PACKAGE_DIR)]


_IN_PACKAGE: Dict[str, bool] = {}


def _in_package(filename: str) -> bool:
    inside = _IN_PACKAGE.get(filename)
    if inside is None:
        inside = _IN_PACKAGE[filename] = os.path.abspath(filename).startswith(PACKAGE_DIR)
    return inside


def memoria_caller() -> str:
    """The innermost function of the ``memoria`` package on the Python stack (``?`` when none).

    Walks the frames instead of ``traceback.extract_stack`` (as ``memoria_frames`` does): it runs once per op.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if _in_package(frame.f_code.co_filename):
            return frame.f_code.co_name
        frame = frame.f_back
    return "?"


def count_syncs_by_caller(fn: Callable[[], Any]) -> Tuple[Any, Counter]:
    """Run ``fn()`` on a CUDA device, counting synchronisations by the ``memoria`` function that caused them."""
    found: Counter = collections.Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message).lower():
            caller = memoria_caller()
            if caller == "?":  # name where it came from (seen once per process: a first-use initialisation)
                frames = [frame for frame in traceback.extract_stack() if not frame.filename.endswith("warnings.py")]
                caller = f"outside memoria: {frames[-2].filename.rsplit('/', 1)[-1]}:{frames[-2].name}"
            found[caller] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # called while the op that synchronises is still on the stack, so the caller can be read off it
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result, found
