"""The history of a memory row; ``memoria.history_manager.HistoryManager`` puts these modules together.

- ``record``: recording one step per adjust as a few small tensors, the co-firing count model, the bounded window
  (``keep_history=N``), and the functions ``Memoria`` calls (``check_history_rows``, ``record_history``).
- ``queries``: what a history answers (steps, summaries, creation and deletion times, firings, ``inspect``).
- ``files``: gzip files, read with a bound on their size; ``state``: the state dict they hold (a few columns of
  tensors), read back with every field checked and its structure bounded.

Shape legend (docstrings and comments): B batch, M memory length, D hidden, R reminded, W working; Live the live
engrams of one row at one step, K the engrams that fired at one step, S steps, E the live engrams of every step.
"""
