"""Memoria: a human-inspired memory architecture for neural networks."""

from . import abstractor, engram, history_manager, sparse_tensor, types, utils
from .abstractor import Abstractor
from .engram import Engrams, EngramType
from .history_manager import HistoryManager
from .memoria import Memoria
from .sparse_tensor import SparseTensor
from .version import __version__

__all__ = [
    "utils",
    "Abstractor",
    "Engrams",
    "EngramType",
    "HistoryManager",
    "Memoria",
    "SparseTensor",
    "__version__",
]
