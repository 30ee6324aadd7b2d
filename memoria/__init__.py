"""Memoria: a human-inspired memory architecture for neural networks."""

from . import utils
from .engram import Engrams, EngramType
from .memoria import Memoria
from .version import __version__

__all__ = ["utils", "Abstractor", "Engrams", "EngramType", "HistoryManager", "Memoria", "__version__"]


def __getattr__(name: str):
    # the helper modules land separately; import lazily so the core works while they are absent
    if name == "Abstractor":
        from .abstractor import Abstractor

        return Abstractor
    if name == "HistoryManager":
        from .history_manager import HistoryManager

        return HistoryManager
    raise AttributeError(f"module 'memoria' has no attribute {name!r}")
