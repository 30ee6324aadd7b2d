"""A row's history as a file: a gzip-compressed ``torch.save`` of its state dict, read back with bounds.

Files hold tensors, numbers, strings and lists only and are read with ``torch.load(weights_only=True)``, so that a
history file can never run code; a file is refused once it decompresses past ``MAX_FILE_BYTES`` (256 MiB,
``HistoryManager.load(max_bytes=...)``), before more is read. What the state must hold: ``state``.
"""

import gzip
import io
import os
import pickle
import warnings
import zlib
from typing import Any, Optional, Union

import torch

from .state import STATE_VERSION, pack_state, read_state

#: Marks a file written by ``HistoryManager.save``.
FILE_FORMAT = "memoria-history-1"
#: Most bytes a history file may decompress to before ``load`` refuses it (256 MiB; ``max_bytes`` raises it).
MAX_FILE_BYTES = 2**28
__all__ = ["FILE_FORMAT", "MAX_FILE_BYTES", "STATE_VERSION", "Files", "read_gzip"]


def read_gzip(path: Union[str, "os.PathLike[str]"], max_bytes: Optional[int]) -> bytes:
    """The decompressed bytes of a gzip file, refused past ``max_bytes`` (None: no bound) without reading further."""
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)):
        raise TypeError(f"max_bytes must be None or an int, got {type(max_bytes).__name__}")
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
    try:
        with gzip.open(path, "rb") as file:
            content = file.read() if max_bytes is None else file.read(max_bytes + 1)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is not a gzip-compressed history file: {error}") from None
    if max_bytes is not None and len(content) > max_bytes:
        raise ValueError(
            f"{path} decompresses to more than max_bytes={max_bytes} bytes ({max_bytes / 2**20:g} MiB): refused; "
            "for a larger history file you trust, raise max_bytes"
        )
    if not content:
        raise ValueError(f"{path} is empty")
    return content


class Files:
    """The persistence half of ``HistoryManager``: state dicts, pickles and gzip files."""

    def state_dict(self) -> dict[str, Any]:
        """The history as a few new tensors, numbers and lists (``state``; safe for
        ``torch.load(weights_only=True)``)."""
        return pack_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace this history with one saved by ``state_dict`` (copied; checked before anything changes, with a
        ``ValueError`` naming the first bad field)."""
        self.__dict__.update(read_state(state, type(self)).__dict__)

    def __getstate__(self) -> dict[str, Any]:
        return self.state_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()
        if isinstance(state, dict) and "version" in state:  # ours: a state dict
            self.load_state_dict(state)
        elif isinstance(state, dict) and isinstance(state.get("summaries"), list):
            for summary in state["summaries"]:  # a pickle of the published 1.1.0 HistoryManager: replay its summaries
                self.add_summary(summary)
        else:
            raise ValueError("not a pickled HistoryManager (neither a state dict nor the published one's summaries)")

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Save to a gzip-compressed ``torch.save`` of ``state_dict()``: tensors, numbers, strings and lists only, so
        that ``load`` reads it with ``torch.load(weights_only=True)`` and a history file can never run code."""
        buffer = io.BytesIO()
        torch.save({"format": FILE_FORMAT, "state": self.state_dict()}, buffer)
        with gzip.open(path, "wb") as file:
            file.write(buffer.getvalue())

    @classmethod
    def load(
        cls,
        path: Union[str, "os.PathLike[str]"],
        allow_pickle: bool = False,
        max_bytes: Optional[int] = MAX_FILE_BYTES,
    ) -> Any:
        """Load a history written by ``save``.

        Args:
            path: the gzip file.
            allow_pickle: also read a gzip-compressed pickle (what the published package and earlier versions of this
                one wrote). Unpickling runs whatever code the file names, so pass it only for a file you trust; it
                warns. Without it such a file is refused with a ``ValueError``.
            max_bytes: most bytes the file may decompress to (``MAX_FILE_BYTES``, 256 MiB); a larger file is refused
                with a ``ValueError`` before more is read. None: no bound, for a file you trust.
        """
        content = read_gzip(path, max_bytes)
        if content[:2] == b"PK":  # torch.save's zip container
            try:
                saved = torch.load(io.BytesIO(content), weights_only=True, map_location="cpu")
            except Exception as error:  # the unpickler refuses anything but data with pickle.UnpicklingError and kin
                raise ValueError(f"{path} is not a readable history file: {error}") from None
            if not isinstance(saved, dict) or saved.get("format") != FILE_FORMAT:
                raise ValueError(f"{path} is not a history file (expected format {FILE_FORMAT!r})")
            return read_state(saved.get("state"), cls)
        if not allow_pickle:
            raise ValueError(
                f"{path} is a pickle (written by memoria-pytorch 1.x or an older version of this package). Unpickling "
                "can run any code the file names: pass allow_pickle=True only for a file you trust, then save() it "
                "again to get a data-only file"
            )
        warnings.warn(f"unpickling {path}: this runs whatever code the file names; save() it again to stop needing it")
        loaded = pickle.loads(content)
        if not isinstance(loaded, cls):
            raise ValueError(f"{path} holds a {type(loaded).__name__}, not a HistoryManager")
        return loaded
