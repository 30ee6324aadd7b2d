"""The optional C extensions, and the switch that turns them off.

``pip install`` builds them where a C compiler and the Python headers are present (see ``setup.py``); without them
memoria computes the same values with torch ops, only slower on a CPU. Set ``MEMORIA_NATIVE=0`` to use torch ops
anyway (for example to compare the two).

- ``mt19937``: the long-term tie-break draw on a copy of a CPU generator's state (``memoria/draw.py``).
- ``walk``: the long-term graph walk on CPU count tensors (``memoria/memoria.py``).
- ``counts``: writes to CPU count tensors, co-firing and new or cleared slots (``memoria/store.py``).
"""

import importlib
import os
from types import ModuleType
from typing import Optional


def _load(name: str) -> Optional[ModuleType]:
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError:
        return None


mt19937 = _load("_mt19937")
walk = _load("_walk")
counts = _load("_counts")


def enabled() -> bool:
    """False where the environment says ``MEMORIA_NATIVE=0``."""
    return os.environ.get("MEMORIA_NATIVE", "1") != "0"


def active(module: Optional[ModuleType]) -> bool:
    """Whether one of the extensions above (``native.walk``, ...) is built and allowed."""
    return module is not None and enabled()
