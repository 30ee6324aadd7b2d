"""The optional C extensions, and the switch that turns them off.

``pip install`` builds them where a C compiler and the Python headers are present (see ``setup.py``); without them
memoria computes the same values with torch ops, only slower on a CPU. Set ``MEMORIA_NATIVE=0`` to use torch ops
anyway (for example to compare the two), or ``MEMORIA_NATIVE=walk,counts`` (a comma list of the names below) to use
only those extensions and torch ops for the rest; unset or ``1``: every extension that is built.

- ``mt19937``: the long-term tie-break draw on a copy of a CPU generator's state (``memoria/forms/draw.py``).
- ``walk``: the long-term graph walk on CPU count tensors (``memoria/forms/c.py``).
- ``counts``: CPU count tensors: co-firing, new or cleared slots, counts between chosen rows and columns
  (``memoria/forms/c.py``).

Each is kept because it saves at least a tenth of a step at one of the benchmark's configurations (figures in
``benchmarks/README.md``, "Which C extensions pay").

Where torch runs its CPU threads with OpenMP, the C code splits its batch rows over those same threads (``threads``);
``MEMORIA_NATIVE_THREADS=0`` keeps it on the calling thread.

An install where an extension that ``MEMORIA_NATIVE`` allows did not build (no C compiler) warns once, at import
(``RuntimeWarning``, "memoria: the C extension(s) ... did not build"): the results are the same, a CPU step is slower.
Setting ``MEMORIA_NATIVE`` to the extensions that did build (``0`` for none) says that this is meant and silences it;
so does a warnings filter on that message.
"""

import ctypes
import functools
import importlib
import os
import warnings
from types import ModuleType
from typing import Dict, FrozenSet, Optional, Tuple

import torch


def _load(name: str) -> Optional[ModuleType]:
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError:
        return None


mt19937 = _load("_mt19937")
walk = _load("_walk")
counts = _load("_counts")


NAMES = ("mt19937", "walk", "counts")


def built() -> Dict[str, bool]:
    """Which of the extensions above this install has, by name."""
    return {name: globals()[name] is not None for name in NAMES}


@functools.lru_cache(maxsize=8)
def _parse(value: str) -> FrozenSet[str]:
    value = value.strip()
    if value in ("", "1"):
        return frozenset(NAMES)
    if value == "0":
        return frozenset()
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    unknown = sorted(names - set(NAMES))
    if unknown:
        raise ValueError(
            f"MEMORIA_NATIVE={value!r}: unknown extension(s) {', '.join(unknown)}; "
            f"expected 0, 1 or a comma list of {', '.join(NAMES)}"
        )
    return names


def allowed() -> FrozenSet[str]:
    """The names of the extensions ``MEMORIA_NATIVE`` lets run (built or not); ValueError on a name it does not know."""
    return _parse(os.environ.get("MEMORIA_NATIVE", "1"))


def enabled() -> bool:
    """False where the environment says ``MEMORIA_NATIVE=0`` (no extension at all)."""
    return bool(allowed())


def active(module: Optional[ModuleType]) -> bool:
    """Whether one of the extensions above (``native.walk``, ...) is built and allowed by ``MEMORIA_NATIVE``."""
    return module is not None and module.__name__.rpartition(".")[2].lstrip("_") in allowed()


def _warn_if_missing() -> None:
    """The warning above, where an allowed extension did not build."""
    try:
        wanted = allowed()
    except ValueError:  # a malformed MEMORIA_NATIVE: the first use says so
        return
    missing = [name for name in NAMES if name in wanted and globals()[name] is None]
    if missing:
        have = ",".join(name for name in NAMES if globals()[name] is not None) or "0"
        warnings.warn(
            f"memoria: the C extension(s) {', '.join(missing)} did not build with this install (no C compiler?): "
            "memoria computes the same values with torch ops, slower on a CPU. Reinstall where a C compiler and the "
            f"Python headers are, or set MEMORIA_NATIVE={have} to run without them and without this warning.",
            RuntimeWarning,
            stacklevel=2,
        )


_warn_if_missing()


def _find_openmp_parallel() -> int:
    """Address of ``GOMP_parallel`` in the OpenMP runtime torch's CPU threads come from, 0 where there is none."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return 0
    try:
        # torch loads its OpenMP runtime into the global namespace; a runtime of our own would start threads of its own
        return ctypes.cast(ctypes.CDLL(None).GOMP_parallel, ctypes.c_void_p).value or 0
    except (AttributeError, OSError, TypeError, ValueError):  # no such symbol, or no global namespace (Windows)
        return 0


_openmp_parallel = _find_openmp_parallel()


def threads() -> Tuple[int, int]:
    """``(GOMP_parallel address or 0, thread count)`` for C code that splits work over torch's own CPU threads.

    torch's OpenMP threads spin for a while after every parallel op, so a thread of the extension's own would compete
    with them for the cores; running on the same threads, through the same runtime, it does not.
    """
    count = torch.get_num_threads()
    if count <= 1 or os.environ.get("MEMORIA_NATIVE_THREADS", "1") == "0":
        return 0, 1
    return _openmp_parallel, count
