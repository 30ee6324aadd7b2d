"""The one boundary between what Memoria computes and how each operation runs.

``memoria.py`` and ``store.py`` call the operations below. Each has a plain torch form (``memoria/forms/plain.py``),
the executable spec, and may have fast forms that give the same results: ``cpu`` (torch ops that read values on the
host), ``gpu`` (torch ops that never make the host wait), ``c`` (an optional C extension). ``FORMS`` is the table and
``form_for`` the one switch:

- a tensor off the CPU takes the ``gpu`` form (or the plain one where there is none); so does a CPU tensor under
  ``MEMORIA_FORCE_GPU_BRANCHES=1``, which lets tests and op counts run the GPU forms on a CPU machine;
- a CPU tensor takes the ``c`` form where its extension is built and allowed (``MEMORIA_NATIVE``, see
  ``memoria/native.py``) and the form's own check passes, else the ``cpu`` form, else the plain one;
- ``MEMORIA_FORMS=plain`` makes every operation take its plain form.

``tests/test_forms.py`` checks every fast form against the plain form.
"""

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch

from . import draw, native
from .forms import c, cpu, gpu, plain
from .forms.plain import ABSENT, LongtermGraph  # noqa: F401  (ABSENT: see walk_from; the walk's input)
from .forms.ranges import arange, batch_index, constant  # noqa: F401  (shared ranges and constants, for the store)


@dataclass(frozen=True)
class Forms:
    """The forms of one operation; ``usable`` says, per form, whether it may run in this process."""

    plain: Callable
    cpu: Optional[Callable] = None
    gpu: Optional[Callable] = None
    c: Optional[Callable] = None
    usable: Dict[str, Callable[[], bool]] = field(default_factory=dict)

    def can(self, form: str) -> bool:
        return getattr(self, form) is not None and self.usable.get(form, lambda: True)()


def gpu_forms_forced() -> bool:
    """Whether ``MEMORIA_FORCE_GPU_BRANCHES=1`` is set: CPU tensors then take the GPU forms."""
    return os.environ.get("MEMORIA_FORCE_GPU_BRANCHES", "0") == "1"


def on_cpu(where: Union[torch.Tensor, torch.device]) -> bool:
    """Whether a tensor (or device) takes the CPU forms: a CPU one, unless ``MEMORIA_FORCE_GPU_BRANCHES=1``."""
    return (where.device if isinstance(where, torch.Tensor) else where).type == "cpu" and not gpu_forms_forced()


def form_for(name: str, where: Union[torch.Tensor, torch.device]) -> str:
    """The form operation ``name`` takes for tensors on ``where``'s device (see the module docstring)."""
    forms = FORMS[name]
    if os.environ.get("MEMORIA_FORMS") == "plain":
        return "plain"
    if not on_cpu(where):
        return "gpu" if forms.gpu is not None else "plain"
    for form in ("c", "cpu"):
        if forms.can(form):
            return form
    return "plain"


def run(name: str, where: Union[torch.Tensor, torch.device], form: Optional[str] = None) -> Callable:
    """The function of operation ``name`` in ``form`` (default: ``form_for(name, where)``)."""
    return getattr(FORMS[name], form or form_for(name, where))


# ------------------------------------------------------------------ the operations


def indices_with_mask(mask: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
    """Positions of the true entries of every row of ``mask`` [BatchSize, M], ascending, left-padded with -1
    (``width``: the largest true count, where the caller knows it)."""
    return run("indices_with_mask", mask)(mask, width)


def indices_with_masks(
    masks: Union[List[torch.Tensor], torch.Tensor], widths: Optional[List[int]] = None
) -> List[torch.Tensor]:
    """``indices_with_mask`` of several masks [BatchSize, M] (a list, or stacked [NumMasks, BatchSize, M]) at once:
    one host read for all their widths, where the caller does not know them."""
    return run("indices_with_masks", masks[0])(masks, widths)


def super_unique(t: torch.Tensor, dim: int, ignore: Optional[int] = None) -> torch.Tensor:
    """Distinct values of every slice of ``t`` along ``dim``, -1 padded, in the published order (``utils.super_unique``);
    ``ignore`` (``ABSENT``, last dim only) is left out as if those entries were not there."""
    return run("super_unique", t)(t, dim, ignore)


def gather_slots(values: torch.Tensor, indices: torch.Tensor, fill_value: float = 0) -> torch.Tensor:
    """``values[b, indices[b, k]]`` [BatchSize, K, *Rest], ``fill_value`` at -1."""
    return run("gather_slots", values)(values, indices, fill_value)


def pair_gather(counts: torch.Tensor, rows: torch.Tensor, columns: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``counts[b, rows[b, i], columns[b, j]]`` [BatchSize, R, C], -1 wherever an index is -1."""
    return run("pair_gather", counts)(counts, rows, columns)


def fire_together(counts: torch.Tensor, indices: torch.Tensor, spare: bool = False) -> None:
    """Add 1 to ``counts[b, i, j]`` for every pair of the distinct non-negative ``indices[b]`` [BatchSize, K]
    (``spare``: the last row and column of ``counts`` are read by nobody)."""
    run("fire_together", counts)(counts, indices, spare)


def fill_slots(
    counts: torch.Tensor, slots: torch.Tensor, value: int, all_valid: bool = False, spare: bool = False
) -> None:
    """Set the rows and columns of ``slots`` [BatchSize, K] (-1 skipped) in ``counts`` to ``value`` (``all_valid``:
    the caller knows no entry is -1; ``spare``: the last row and column of ``counts`` are read by nobody)."""
    run("fill_slots", counts)(counts, slots, value, all_valid, spare)


def padding_slots(slots: torch.Tensor, padding: torch.Tensor, capacity: int) -> torch.Tensor:
    """A compaction's slots [BatchSize, Width] with the ``padding`` entries (holding dead engrams' slots) given slots
    that no survivor uses (which ones is not observable)."""
    return run("padding_slots", slots)(slots, padding, capacity)


def free_slots(slots: torch.Tensor, capacity: int, width: int) -> torch.Tensor:
    """[BatchSize, width] slots in 0..capacity-1 that ``slots`` [BatchSize, M] does not name, ascending."""
    return run("free_slots", slots)(slots, capacity, width)


def zero_vectors(data: torch.Tensor, slots: torch.Tensor, offsets: Optional[torch.Tensor] = None) -> None:
    """Zero the vectors of ``slots`` [BatchSize, K] (-1 skipped) in ``data`` [BatchSize, N + 1, HiddenDim]
    (``offsets``: [BatchSize, 1] where each batch row starts in ``data`` seen as [BatchSize * (N + 1), HiddenDim])."""
    run("zero_vectors", data)(data, slots, offsets)


def strongest_longterm(
    store, rows: torch.Tensor, ltm_mask: torch.Tensor, ltm_indices: torch.Tensor, generator: Optional[torch.Generator]
) -> torch.Tensor:
    """For each entry [BatchSize, K], the long-term engram its row co-fired with most (ties: one random draw)."""
    return run("strongest_longterm", rows)(store, rows, ltm_mask, ltm_indices, generator)


def walk(graph: LongtermGraph, start: torch.Tensor, depth: int) -> torch.Tensor:
    """The long-term graph walk from ``start`` [BatchSize, K]: [BatchSize, depth * K] local positions, depth-major."""
    return run("walk", start)(graph, start, depth)


def walk_from(graph: LongtermGraph, ltm_mask: torch.Tensor, initial: torch.Tensor, depth: int) -> torch.Tensor:
    """The starts among ``initial`` [BatchSize, K] and the walk from them (entries ``ABSENT`` stand for nothing)."""
    return run("walk_from", initial)(graph, ltm_mask, initial, depth)


def first_max_at_columns(
    length: int,
    columns: torch.Tensor,
    candidates: torch.Tensor,
    candidate_of_entry: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The tie-break: per entry, the first maximum of one ``float16`` draw over its candidate columns."""
    return run("first_max_at_columns", columns)(length, columns, candidates, candidate_of_entry, generator)


def advance(shape: Tuple[int, ...], device: torch.device, generator: Optional[torch.Generator] = None) -> None:
    """Spend the RNG as ``torch.rand(shape, dtype=float16)`` does."""
    run("advance", device)(shape, device, generator)


def may_hold_any(mask: torch.Tensor) -> bool:
    """False only where ``mask`` surely has no true entry; a GPU does not ask (that would make the host wait)."""
    return run("may_hold_any", mask)(mask)


# CPU forms made of other operations take those operations' own choice of form
def _cpu_strongest_longterm(store, rows, ltm_mask, ltm_indices, generator):
    return cpu.strongest_longterm(
        store, rows, ltm_mask, ltm_indices, generator, first_max_at_columns, advance, indices_with_mask
    )


def _walk_from(graph, ltm_mask, initial, depth):
    return plain.walk_from(graph, ltm_mask, initial, depth, walk, indices_with_mask)


def _extension(name: str) -> Callable[[], bool]:
    return lambda: native.active(getattr(native, name))


_DRAW_CHECKS = {"cpu": draw.integer_draw_matches, "c": draw.native_draw_matches}

FORMS: Dict[str, Forms] = {
    "indices_with_mask": Forms(plain.indices_with_mask, cpu.indices_with_mask, gpu.indices_with_mask),
    "indices_with_masks": Forms(plain.indices_with_masks, cpu.indices_with_masks, gpu.indices_with_masks),
    "super_unique": Forms(plain.super_unique, cpu.super_unique, gpu.super_unique),
    "gather_slots": Forms(plain.gather_slots, cpu=cpu.gather_slots, gpu=gpu.gather_slots),
    "pair_gather": Forms(plain.pair_gather, c=c.pair_gather, usable={"c": _extension("counts")}),
    "fire_together": Forms(
        plain.fire_together, gpu=gpu.fire_together, c=c.fire_together, usable={"c": _extension("counts")}
    ),
    "fill_slots": Forms(plain.fill_slots, cpu.fill_slots, gpu.fill_slots, c.fill_slots, {"c": _extension("counts")}),
    "free_slots": Forms(plain.free_slots, cpu=cpu.free_slots),
    "padding_slots": Forms(plain.padding_slots, cpu=cpu.padding_slots),
    "zero_vectors": Forms(plain.zero_vectors, cpu=cpu.zero_vectors),
    "strongest_longterm": Forms(plain.strongest_longterm, cpu=_cpu_strongest_longterm, gpu=gpu.strongest_longterm),
    "walk": Forms(plain.walk, cpu.walk, gpu.walk, c.walk, {"c": _extension("walk")}),
    "walk_from": Forms(plain.walk_from, cpu=_walk_from, gpu=gpu.walk_from),
    "first_max_at_columns": Forms(
        plain.first_max_at_columns, draw.first_max_by_words, c=draw.first_max_native, usable=_DRAW_CHECKS
    ),
    "advance": Forms(plain.advance, draw.advance_by_words, c=draw.advance_native, usable=_DRAW_CHECKS),
    "may_hold_any": Forms(plain.may_hold_any, gpu=gpu.may_hold_any),
}
