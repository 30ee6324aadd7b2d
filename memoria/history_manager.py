"""History of a memory row: one summary per adjust step, and what happened to every engram (``HistoryManager``).

The published package keeps a full ``EngramsInfo`` (a Python object per engram and per edge) for every step, which
costs far more than the step itself once the graph grows. Here a step is recorded as a few small tensors and its
``EngramsInfo`` is built only when it is read. The class is put together from ``memoria.history``: ``record``
(recording, the co-firing count model, the bounded window), ``queries`` (what a history answers) and ``files`` with
``state`` (files, and the state dict they hold); this module keeps the published import path, which old pickles name.
"""

from typing import Any, Optional

from .history.files import FILE_FORMAT, MAX_FILE_BYTES, STATE_VERSION, Files
from .history.queries import HistoryStep, Queries, SummaryList
from .history.record import (
    TYPE_VALUES,
    Recorder,
    check_history_rows,
    check_keep_history,
    record_history,
    steps_kept,
)

__all__ = [
    "FILE_FORMAT",
    "MAX_FILE_BYTES",
    "STATE_VERSION",
    "TYPE_VALUES",
    "HistoryManager",
    "HistoryStep",
    "SummaryList",
    "check_history_rows",
    "check_keep_history",
    "histories_for",
    "record_history",
]


class HistoryManager(Recorder, Queries, Files):
    """History of one batch row's memory: one summary per adjust step.

    Attributes (all derived from the recorded steps, built when read):
        summaries: the ``EngramsInfo`` of every step (a list-like ``SummaryList``).
        engram_creation_times: engram id -> first step it was alive.
        engram_deletion_times: engram id -> first step it was gone again.
        engram_durations: engram id -> number of steps it was (or has been) alive.
        engram_firing_times: engram id -> steps at which its fire count rose.
        engram_firings: engram id -> its ``Firing`` records.
        firings_per_time: per step, the ``Firing`` records of that step.
        alive_engram_ids: ids alive at the latest step.
        deleted_engram_ids: ids deleted so far, in deletion order.
        max_steps: steps kept (None: every step); see ``first_step``.
    """

    def __init__(self, max_steps: Optional[int] = None) -> None:
        """
        Args:
            max_steps: keep only the last ``max_steps`` steps (None: every step). Memory then stays bounded: the
                history reads as if it had started at its first kept step (engrams alive there are created there),
                and ``first_step`` counts the steps dropped before it.
        """
        self._start_recording(max_steps)
        self._reset_derived()


def histories_for(history: Optional[list], batch_size: int, keep_history: Any) -> Optional[list]:
    """The histories an adjust of a ``batch_size``-row memory records into: ``history`` (checked to hold one per row,
    ``check_history_rows``), new ones on the first adjust (``keep_history``: True for every step, an int N >= 2 for
    the last N), or None without ``keep_history``. Changes nothing, so that it can run before the adjust does."""
    if not keep_history:
        return None
    if history is None:
        return [HistoryManager(max_steps=steps_kept(keep_history)) for _ in range(batch_size)]
    check_history_rows(history, batch_size)
    return history
