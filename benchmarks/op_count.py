"""Ops and host syncs of memoria's GPU forms, counted on a CPU.

On a GPU every op is a kernel launch and every host read of a device value is a synchronisation. With
``MEMORIA_FORCE_GPU_BRANCHES=1`` CPU tensors take the GPU forms (``memoria.ops.on_cpu``), so both can be counted
here, per phase of a step (``add`` / ``remind`` / ``adjust``):

    python -m benchmarks.op_count --configs gpt2,enwik8,sort,tiny      # warm-up with the CPU forms, one counted step
    python -m benchmarks.op_count --configs tiny --by-caller            # also the ops by memoria function

In code::

    with OpCounter() as counter:          # sets MEMORIA_FORCE_GPU_BRANCHES=1 inside, restores it after
        with counter.phase("add"):
            memory.add_working_memory(data)
    counter.summary()                    # {"add": {"ops": ..., "views": ..., "syncs": ..., ...}, "step": {...}}

    count_step(memory, data, lambda indices: delta)   # one add -> remind -> adjust step, counted by phase

What is counted (only ops and reads whose innermost Python caller is a function of the ``memoria`` package,
``benchmarks.syncs.memoria_caller``; the caller's own work, such as building the lifespan delta, is left out):

- **view ops**: aten ops whose schema returns an alias of an input that is not written (``Tensor(a)``:
  ``view``, ``slice``, ``expand``, ``select``, ``unsqueeze``, ``alias``, ``lift_fresh``, ...), and ``_unsafe_view``
  (a view whose schema hides the alias). They change metadata only and launch no kernel.
- **non-view ops**: every other aten op (in-place and ``out=`` ops, whose returned alias is written, included;
  ``zeros``, ``full`` and the scalars that ``torch.where(mask, x, -1)`` makes on ``x``'s device too: each fills
  memory), except ``_local_scalar_dense``, which is the host read itself, and the bare allocations (``empty``,
  ``empty_strided``: the caching allocator hands out memory without a kernel). Ops are counted as they reach the
  backend, after composite ops decompose (roughly the kernels a GPU launches).
- **host syncs**: reads whose result the host must wait for: ``_local_scalar_dense`` (``item()``, ``int(t)``,
  ``bool(t)``, ...), ``nonzero``, the ``unique`` ops, ``masked_select``, ``repeat_interleave`` without
  ``output_size``, ``bincount``, ``equal``, indexing or index-writing with a boolean mask, ``lift_fresh`` (a tensor
  made from host data: a blocking copy to the device), copies between devices; and, at Python level,
  ``Tensor.tolist`` (it dispatches no op on a CPU tensor), ``Tensor.item``, ``Tensor.cpu``, ``Tensor.numpy``.
  A read counts once: the ops that a Python-level read dispatches (``item`` dispatches ``_local_scalar_dense``, on a
  device ``tolist`` and ``cpu`` dispatch a copy) are not counted as syncs again. A sync op that is also a kernel
  (``nonzero``, ``unique``, ...) counts among the non-view ops as well.
"""

import argparse
import collections
import contextlib
import copy
import json
import os
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from benchmarks.syncs import memoria_caller
from benchmarks.workload import CONFIGS, lifespan_delta, make_stream

FORCE_GPU_FORMS = "MEMORIA_FORCE_GPU_BRANCHES"
PHASES = ("add", "remind", "adjust")
#: the sum of the phases in ``OpCounter.summary``
STEP = "step"

# aten ops (overload packets) whose result the host always has to read
_ALWAYS_SYNC = {
    "_local_scalar_dense",
    "nonzero",
    "_unique",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "unique_dim_consecutive",
    "masked_select",
    "bincount",
    "equal",
    "lift_fresh",
    "lift_fresh_copy",
}
# ops that read the host only when indexed with a boolean (or uint8) mask
_MASK_INDEXED = {"index", "index_put", "index_put_", "_index_put_impl_", "_unsafe_index_put"}
# views whose schema does not say so (no alias annotation on the return)
_UNANNOTATED_VIEWS = {"_unsafe_view"}
# allocations that launch nothing: neither a view nor a kernel
_ALLOCATIONS = {"empty", "empty_strided"}
# Python-level reads: tolist dispatches nothing on a CPU tensor; the others are patched too so that each read counts
# once whatever it dispatches
_PYTHON_READS = ("tolist", "item", "cpu", "numpy")
_MISSING = object()


def op_name(func) -> str:
    """``aten.index.Tensor`` -> ``index``."""
    return func.__name__.split(".")[0]


def is_view_op(func) -> bool:
    """Whether an aten op only makes a view: a return aliases an input that is not written (``Tensor(a)``, not
    ``Tensor(a!)``), or it is ``_unsafe_view``."""
    if op_name(func) in _UNANNOTATED_VIEWS:
        return True
    return any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)


def _argument(func, args: tuple, kwargs: dict, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    for position, argument in enumerate(func._schema.arguments):
        if argument.name == name:
            return args[position] if position < len(args) and not argument.kwarg_only else None
    return None


def host_read_kind(func, args: tuple, kwargs: dict) -> Optional[str]:
    """The name of the host read an aten op call makes (``None`` when it makes none)."""
    name = op_name(func)
    if name in _ALWAYS_SYNC:
        return name
    if name in _MASK_INDEXED:
        indices = _argument(func, args, kwargs, "indices") or ()
        if any(isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8) for t in indices):
            return f"{name}[mask]"
        return None
    if name == "repeat_interleave":
        return name if _argument(func, args, kwargs, "output_size") is None else None
    if name in ("_to_copy", "copy_"):
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        target = kwargs.get("device")
        devices = {t.device.type for t in tensors} | ({torch.device(target).type} if target is not None else set())
        if len(devices) > 1 and not _argument(func, args, kwargs, "non_blocking"):
            return f"{name} across devices"
    return None


@contextlib.contextmanager
def gpu_forms_forced(on: bool = True) -> Iterator[None]:
    """``MEMORIA_FORCE_GPU_BRANCHES=1`` inside (``0`` with ``on=False``), the variable as it was after."""
    before = os.environ.get(FORCE_GPU_FORMS)
    os.environ[FORCE_GPU_FORMS] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(FORCE_GPU_FORMS, None)
        else:
            os.environ[FORCE_GPU_FORMS] = before


def _new_phase() -> Dict[str, Any]:
    return dict(
        ops=0,
        views=0,
        syncs=0,
        syncs_by_caller=collections.Counter(),
        sync_kinds=collections.Counter(),
        ops_by_caller=collections.Counter(),
        ops_by_name=collections.Counter(),
    )


class OpCounter(TorchDispatchMode):
    """Counts, per phase, the non-view ops, the view ops and the host syncs of ``memoria``'s code run inside it.

    Args:
        force_gpu_forms: set ``MEMORIA_FORCE_GPU_BRANCHES=1`` while inside (restored on exit), so that CPU tensors take
            the GPU forms; ``False`` counts the forms the tensors take anyway.

    Use ``phase(name)`` around each call; work outside any phase counts under ``"other"``. ``summary()`` gives the
    counts of each phase and their sum under ``"step"``.
    """

    def __init__(self, force_gpu_forms: bool = True) -> None:
        super().__init__()
        self.force_gpu_forms = force_gpu_forms
        self.phases: Dict[str, Dict[str, Any]] = {}
        self.current = "other"
        self._reading = 0  # depth of Python-level reads under way: what they dispatch is not a read of its own
        self._stack = contextlib.ExitStack()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        previous, self.current = self.current, name
        self.phases.setdefault(name, _new_phase())
        try:
            yield
        finally:
            self.current = previous

    def _record_sync(self, caller: str, kind: str) -> None:
        counts = self.phases.setdefault(self.current, _new_phase())
        counts["syncs"] += 1
        counts["syncs_by_caller"][caller] += 1
        counts["sync_kinds"][kind] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        caller = memoria_caller()
        if caller == "?":
            return out
        counts = self.phases.setdefault(self.current, _new_phase())
        name = op_name(func)
        if is_view_op(func):
            counts["views"] += 1
        elif name not in _ALLOCATIONS and name != "_local_scalar_dense":
            counts["ops"] += 1
            counts["ops_by_caller"][caller] += 1
            counts["ops_by_name"][name] += 1
        kind = host_read_kind(func, args, kwargs)
        if kind is not None and not self._reading:
            self._record_sync(caller, kind)
        return out

    def _python_read(self, name: str, original: Callable) -> Callable:
        counter = self

        def read(tensor, *args, **kwargs):
            if counter._reading:
                return original(tensor, *args, **kwargs)
            caller = memoria_caller()
            if caller != "?":
                counter._record_sync(caller, name)
            counter._reading += 1
            try:
                return original(tensor, *args, **kwargs)
            finally:
                counter._reading -= 1

        return read

    def _patch_reads(self) -> None:
        for name in _PYTHON_READS:
            own = torch.Tensor.__dict__.get(name, _MISSING)
            setattr(torch.Tensor, name, self._python_read(name, getattr(torch.Tensor, name)))
            self._stack.callback(_restore_attribute, torch.Tensor, name, own)

    def __enter__(self) -> "OpCounter":
        if self.force_gpu_forms:
            self._stack.enter_context(gpu_forms_forced())
        self._patch_reads()
        super().__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._stack.close()

    def summary(self) -> Dict[str, Dict[str, Any]]:
        """Per phase (and ``"step"``, the sum): ``ops``, ``views``, ``syncs`` and the counters by caller / name."""
        result = {name: _plain(counts) for name, counts in self.phases.items()}
        total = _new_phase()
        for counts in self.phases.values():
            for key, value in counts.items():
                total[key] += value
        result[STEP] = _plain(total)
        return result


def _restore_attribute(owner: type, name: str, value: Any) -> None:
    if value is _MISSING:
        delattr(owner, name)
    else:
        setattr(owner, name, value)


def _plain(counts: Dict[str, Any]) -> Dict[str, Any]:
    """Counters as plain dicts, largest first (for JSON)."""
    return {k: dict(v.most_common()) if isinstance(v, collections.Counter) else v for k, v in counts.items()}


# ------------------------------------------------------------------------------------------------ one step


def count_step(
    memory: Any,
    data: torch.Tensor,
    delta: Callable[[torch.Tensor], torch.Tensor],
    force_gpu_forms: bool = True,
) -> Dict[str, Dict[str, Any]]:
    """Count one ``add_working_memory(data) -> remind() -> adjust_lifespan_and_memories(indices, delta(indices))``
    step of ``memory`` (which it changes), by phase; ``delta`` (the caller's work) runs outside the phases."""
    with OpCounter(force_gpu_forms) as counter:
        with counter.phase("add"):
            memory.add_working_memory(data)
        with counter.phase("remind"):
            _, indices = memory.remind()
        lifespan_delta = delta(indices)
        with counter.phase("adjust"):
            memory.adjust_lifespan_and_memories(indices, lifespan_delta)
    result = counter.summary()
    result[STEP]["memory_length"] = int(memory.memory_length)
    return result


def count_step_on_copy(
    memory: Any,
    data: torch.Tensor,
    delta: Callable[[torch.Tensor], torch.Tensor],
    force_gpu_forms: bool = True,
) -> Dict[str, Dict[str, Any]]:
    """``count_step`` on a deep copy of ``memory``, the global RNG (CPU and CUDA) saved before and restored after:
    ``memory`` and the random stream go on as if nothing ran."""
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        return count_step(copy.deepcopy(memory), data, delta, force_gpu_forms)
    finally:
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


# ------------------------------------------------------------------------------------------------ tables


def _by_caller(counter: Dict[str, int]) -> str:
    return ", ".join(f"{caller} {count}" for caller, count in counter.items()) or "-"


def op_table(results: Dict[str, Dict[str, Dict[str, Any]]]) -> str:
    """Markdown table: config | phase | non-view ops | view ops | host syncs | syncs by caller."""
    header = ["config", "phase", "non-view ops", "view ops", "host syncs", "syncs by caller"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for config, phases in results.items():
        names = [p for p in PHASES if p in phases] + [p for p in phases if p not in PHASES and p != STEP] + [STEP]
        for phase in names:
            counts = phases[phase]
            label = (
                f"**{phase}** (M={counts['memory_length']})" if phase == STEP and "memory_length" in counts else phase
            )
            row = [config, label, str(counts["ops"]), str(counts["views"]), str(counts["syncs"])]
            lines.append("| " + " | ".join(row + [_by_caller(counts["syncs_by_caller"])]) + " |")
    return "\n".join(lines)


def caller_table(results: Dict[str, Dict[str, Dict[str, Any]]], top: int = 15) -> str:
    """The non-view ops of a step by the memoria function that dispatched them, most first."""
    lines = []
    for config, phases in results.items():
        ops = phases[STEP]["ops_by_caller"]
        lines.append(f"{config}: " + ", ".join(f"{caller} {count}" for caller, count in list(ops.items())[:top]))
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- steady state


def steady_state_count(name: str, warmup: Optional[int] = None, seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """Configuration ``name`` of the benchmark's workload: ``warmup`` steps (default: STM full + 20) with the forms the
    tensors take (CPU), one more with the GPU forms forced (what a GPU keeps between steps, such as the shared index
    ranges, is then made), then one step counted with the GPU forms forced. Same stream and seed as the benchmark."""
    import memoria

    config = CONFIGS[name]
    warmup = config.auto_warmup() if warmup is None else warmup
    torch.manual_seed(seed)
    memory = memoria.Memoria(**config.memoria_kwargs())
    stream = make_stream(config, warmup + 2, seed)
    for forced, steps in ((False, stream[:warmup]), (True, stream[warmup : warmup + 1])):
        with gpu_forms_forced(forced):
            for data, logits in steps:
                memory.add_working_memory(data)
                _, indices = memory.remind()
                memory.adjust_lifespan_and_memories(indices, lifespan_delta(logits, indices.size(1)))
    data, logits = stream[warmup + 1]
    return count_step(memory, data, lambda indices: lifespan_delta(logits, indices.size(1)))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, Dict[str, Any]]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="gpt2,enwik8,sort,tiny", help="comma list of benchmark configurations")
    parser.add_argument(
        "--warmup", type=int, default=None, help="steps before the counted one (default: STM full + 20)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--by-caller", action="store_true", help="also list the non-view ops by memoria function")
    parser.add_argument("--json", default=None, help="write the counts to this path")
    args = parser.parse_args(argv)
    results = {}
    for name in [name.strip() for name in args.configs.split(",") if name.strip()]:
        results[name] = steady_state_count(name, args.warmup, args.seed)
    print(op_table(results))
    if args.by_caller:
        print("\nnon-view ops of the step by caller:\n" + caller_table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


if __name__ == "__main__":
    main()
