"""The history of a memory row, in three modules; ``memoria.history_manager.HistoryManager`` puts them together.

- ``record``: recording one step per adjust as a few small tensors, the co-firing count model, the bounded window
  (``keep_history=N``), and the functions ``Memoria`` calls (``histories_for``, ``record_history``).
- ``queries``: what a history answers (steps, summaries, creation and deletion times, firings, ``inspect``).
- ``files``: state dicts and gzip files, every field checked on the way in, with bounds on size and structure.

Shape legend (docstrings and comments): B batch, M memory length, D hidden, R reminded, W working; Live the live
engrams of one row at one step, K the engrams that fired at one step, S steps.
"""
