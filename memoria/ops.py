"""The one boundary between what Memoria computes and how each operation runs.

The algorithm (``memoria/algorithm.py``), the store and the engram container call the operations here. Each operation
is declared once, by its plain torch form (``memoria/forms/plain.py``), the executable spec; it may have fast forms that
give the same results: ``cpu`` (torch ops that read values on the host), ``gpu`` (torch ops that never make the host
wait), ``c`` (an optional C extension), and the tie-break draw's CPU forms (``memoria/forms/draw.py``). Every form
registers itself in ``OPERATIONS`` (``memoria/forms/registry.py``, where the switch ``form_for`` is described), and
this module makes one function per operation from that table: ``ops.walk(graph, start, depth)`` runs the form the
device of ``start`` takes. The operations (``tests/test_forms.py`` checks every fast form against the plain one):
``list(OPERATIONS)``.

Plain helpers that the store, the container and ``memoria.utils`` share with the forms are re-exported here, so that
nothing outside ``memoria/forms/`` imports a form module.
"""

import functools
from typing import Callable

from .forms import c, cpu, draw, gpu, plain  # noqa: F401  (each registers its forms)
from .forms.plain import ABSENT, MAX_OCCUPANCY, LongtermGraph, local_mask, mask_with_indices  # noqa: F401
from .forms.ranges import arange, batch_index, constant  # noqa: F401  (shared ranges and constants, for the store)
from .forms.registry import OPERATIONS, dispatch, form_for, gpu_forms_forced, on_cpu, run  # noqa: F401


def _operation(name: str) -> Callable:
    """Operation ``name`` as one function: its plain form's name, signature and docstring, the form picked per call."""
    return functools.update_wrapper(dispatch(name), OPERATIONS[name].plain)


# ops.indices_with_mask, ops.super_unique, ops.walk, ...: one function per declared operation
globals().update({name: _operation(name) for name in OPERATIONS})
