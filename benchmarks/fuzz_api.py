"""A fuzz of bad calls across memoria's public API: each must be refused cleanly.

    python -m benchmarks.fuzz_api --calls 1000 --seed 0                  # counts and examples
    python -m benchmarks.fuzz_api --calls 1000 --seed 0 --json out.json  # every result too

Each call is one public entry point (``Memoria`` and its methods, the ``engrams`` setter, ``Engrams`` and its methods,
``Abstractor``, ``super_unique``, ``HistoryManager.load`` / ``load_state_dict``) with one bad argument and the others
good, made on a fresh copy of a live object (``benchmarks/fuzz_cases.py`` builds both from ``--seed`` and the call's
number). A call is refused cleanly when it raises a ``TypeError`` or ``ValueError`` (or a subclass; ``OSError`` too
for a path) whose message names the argument, and the object, the global RNG and the memory's generator are
bit-identical after it. What else can happen, counted and shown with examples:

- **wrong-kind**: another exception, or a ``TypeError`` / ``ValueError`` that does not name the argument;
- **state-changed**: refused, but something changed first;
- **accepted-broken**: accepted, and then the memory's own checkpoint does not load into a fresh memory, or a
  normal step after it fails (``accepted`` alone is not a finding: some inputs are accepted by design);
- **hangs**: no answer within ``--timeout`` seconds (the worker is killed and restarted);
- **crashes**: the worker process died (a segfault, an abort, killed by the system).

Calls run in a worker process whose address space is capped (``--memory-gb``), so that a call that would allocate
what the machine cannot hold fails there instead of taking the machine's memory. Findings are also grouped by the
file of ``memoria`` whose code raised (the innermost frame of the package in the traceback).
"""

import argparse
import collections
import copy
import importlib
import json
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

PACKAGE_DIR = str(Path(__file__).resolve().parents[1] / "memoria")
FINDINGS = ("wrong-kind", "state-changed", "accepted-broken", "hangs", "crashes")


# ------------------------------------------------------------------ in the worker


def same(a: Any, b: Any) -> bool:
    """Bit-for-bit equality of nested state (tensors by dtype, shape and bits)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or (a.dtype, a.shape) != (
            b.dtype,
            b.shape,
        ):
            return False
        if a.layout != torch.strided or b.layout != torch.strided:
            return a.layout == b.layout and same(a.to_dense(), b.to_dense())
        bits = (lambda t: t.reshape(-1).view(torch.uint8)) if a.numel() and a.dim() else (lambda t: t)
        return torch.equal(bits(a.contiguous()), bits(b.contiguous()))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def fingerprint(target: Any) -> Any:
    """Everything a call on ``target`` could change (copied), and the global RNG state."""
    from memoria import Engrams, HistoryManager, Memoria

    if isinstance(target, Memoria):
        devices = (target.device, target.ext_device, target.ext_dtype, target.timestep, target.next_engram_id)
        generator = target.generator.get_state() if target.generator is not None else None
        state: Any = (target.state_dict(), devices, generator)
    elif isinstance(target, Engrams):
        fields = {k: None if v is None else v.clone() for k, v in target._fields().items()}
        state = (fields, target.track_age, target.track_engram_id)
    elif isinstance(target, torch.nn.Module):
        state = {k: v.clone() for k, v in target.state_dict().items()}
    elif isinstance(target, HistoryManager):
        state = copy.deepcopy(target.state_dict())
    else:
        state = None
    return state, torch.get_rng_state()


def innermost_memoria_frame(error: BaseException) -> str:
    """``memoria/file.py:line`` of the innermost frame of the package in ``error``'s traceback ("" if none)."""
    where = ""
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename.startswith(PACKAGE_DIR):
            where = f"memoria/{os.path.relpath(frame.filename, PACKAGE_DIR)}:{frame.lineno}"
    return where


def check_still_works(memory: Any) -> Optional[BaseException]:
    """After an accepted call: the memory's own checkpoint loads into a fresh memory, and a normal step runs (for a
    history: its state loads again and its queries answer)."""
    from memoria import HistoryManager, Memoria

    if isinstance(memory, HistoryManager):
        try:
            from memoria import analysis

            HistoryManager().load_state_dict(memory.state_dict())
            for engram_id in memory.engram_ids:
                memory.inspect(engram_id)
            list(memory.summaries), memory.latest_engram_infos, memory.engram_fire_counts, memory.firings_per_time
            memory.engram_durations, memory.alive_engram_ids, memory.engram_lastest_alive_timestep
            analysis.type_counts(memory), analysis.creation_curves(memory)
        except Exception as error:  # any failure here is the finding
            return error
        return None
    try:
        Memoria(**memory.config()).load_state_dict(memory.state_dict())
        batch, hidden = (memory.engrams.batch_size, memory.engrams.hidden_dim) if memory.memory_length else (3, 6)
        memory.add_working_memory(torch.rand(batch, 2, hidden))
        _, indices = memory.remind()
        memory.adjust_lifespan_and_memories(indices, torch.ones(indices.shape))
        Memoria(**memory.config()).load_state_dict(memory.state_dict())
    except Exception as error:  # any failure here is the finding
        return error
    return None


def run_case(cases: Any, fixtures: Dict[str, Any], seed: int, index: int) -> Dict[str, Any]:
    """Make call ``index`` on a fresh copy of its fixture and judge it."""
    from memoria import HistoryManager, Memoria

    case = cases.make_case(seed, index)
    target = copy.deepcopy(fixtures[case.fixture]) if case.fixture else None
    torch.manual_seed(index)
    if case.setup is not None:
        case.setup(target)
    before = fingerprint(target)
    result = dict(index=index, target=case.target, argument=case.argument, what=case.what)
    started = time.perf_counter()
    returned = None
    try:
        returned = case.call(target)
    except BaseException as error:  # every kind is judged, KeyboardInterrupt and SystemExit included
        if isinstance(error, KeyboardInterrupt):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        result.update(error=type(error).__name__, message=message[:300], where=innermost_memoria_frame(error))
        named = any(name in str(error) for name in case.names) or getattr(error, "filename", None) is not None
        if not isinstance(error, case.kinds) or not named:
            result["outcome"] = "wrong-kind"
        elif not same(fingerprint(target), before):
            result["outcome"] = "state-changed"
        else:
            result["outcome"] = "refused"
    else:
        result["outcome"] = "accepted"
        made = target if target is not None else returned  # a constructor's object is checked like a fixture
        if isinstance(made, (Memoria, HistoryManager)):
            broken = check_still_works(made)
            if broken is not None:
                message = str(broken).strip().splitlines()[0] if str(broken).strip() else ""
                result.update(outcome="accepted-broken", error=type(broken).__name__, message=message[:300])
                result["where"] = innermost_memoria_frame(broken)
    result["seconds"] = round(time.perf_counter() - started, 4)
    return result


def worker(connection: Any, seed: int, memory_gb: float, cases_module: str) -> None:
    """Answer call numbers with results until told to stop (None)."""
    if memory_gb > 0:
        import resource

        limit = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    torch.set_num_threads(1)
    cases = importlib.import_module(cases_module)
    fixtures = cases.build_fixtures()
    connection.send("ready")
    while True:
        index = connection.recv()
        if index is None:
            return
        connection.send(run_case(cases, fixtures, seed, index))


# ------------------------------------------------------------------ in the parent


class Worker:
    """A worker process (spawned, so that a crash takes nothing of the parent with it)."""

    def __init__(self, seed: int, memory_gb: float, cases_module: str, start_timeout: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=worker, args=(child, seed, memory_gb, cases_module), daemon=True)
        self.process.start()
        child.close()
        if not self.connection.poll(start_timeout) or self.connection.recv() != "ready":
            self.stop()
            raise RuntimeError(f"the fuzz worker did not start within {start_timeout} s")

    def call(self, index: int, timeout: float) -> Dict[str, Any]:
        """The result of call ``index``; ``{"outcome": "hangs"}`` or ``"crashes"`` where there was none."""
        try:
            self.connection.send(index)
            if not self.connection.poll(timeout):
                return {"outcome": "hangs", "seconds": timeout}
            return self.connection.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            self.process.join(5)
            return {"outcome": "crashes", "exitcode": self.process.exitcode}

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)


def run(
    calls: int,
    seed: int = 0,
    timeout: float = 30.0,
    memory_gb: float = 6.0,
    cases_module: str = "benchmarks.fuzz_cases",
    log=None,
    targets: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """Run ``calls`` calls: numbers ``0, 1, ...``, skipping those whose entry point is not among ``targets`` (when
    given); the results and the counts of each outcome."""
    cases = importlib.import_module(cases_module)
    if targets is None:
        chosen = list(range(calls))
    else:
        numbers = (index for index in range(calls * 1000) if cases.make_case(seed, index).target in targets)
        chosen = [index for index, _ in zip(numbers, range(calls))]
    results: List[Dict[str, Any]] = []
    current: Optional[Worker] = None
    started = time.perf_counter()
    try:
        for count, index in enumerate(chosen, start=1):
            if current is None:
                current = Worker(seed, memory_gb, cases_module, start_timeout=max(timeout, 120))
            result = current.call(index, timeout)
            if result["outcome"] in ("hangs", "crashes"):
                case = cases.make_case(seed, index)
                result.update(index=index, target=case.target, argument=case.argument, what=case.what)
                current.stop()
                current = None
            results.append(result)
            if log and count % 100 == 0:
                log(f"  {count}/{calls} calls, {time.perf_counter() - started:.0f} s")
    finally:
        if current is not None:
            try:
                current.connection.send(None)
            except (BrokenPipeError, OSError):
                pass
            current.stop()
    counts = collections.Counter(result["outcome"] for result in results)
    return dict(
        calls=len(results),
        seed=seed,
        seconds=round(time.perf_counter() - started, 1),
        counts={outcome: counts.get(outcome, 0) for outcome in ("refused", "accepted") + FINDINGS},
        results=results,
    )


def describe(result: Dict[str, Any]) -> str:
    call = f"#{result['index']} {result['target']}({result['argument']} = {result['what']})"
    if "error" in result:
        call += f": {result['error']}: {result['message']}"
    if result.get("where"):
        call += f"  [{result['where']}]"
    if result["outcome"] == "crashes":
        call += f" (exit code {result.get('exitcode')})"
    return call


def report(summary: Dict[str, Any], examples: int = 8) -> str:
    counts = summary["counts"]
    lines = [
        f"# API fuzz: {summary['calls']} calls, seed {summary['seed']}, {summary['seconds']} s",
        ", ".join(f"{outcome}: {count}" for outcome, count in counts.items()),
    ]
    findings = [result for result in summary["results"] if result["outcome"] in FINDINGS]
    for outcome in FINDINGS:
        chosen = [result for result in findings if result["outcome"] == outcome]
        if not chosen:
            continue
        lines.append(f"\n## {outcome} ({len(chosen)})")
        # one example per distinct (target, argument, what) first, so that repeats do not hide the variety
        distinct = list({(r["target"], r["argument"], r["what"]): r for r in chosen}.values())
        lines += ["- " + describe(result) for result in distinct[:examples]]
        if len(distinct) > examples:
            lines.append(f"- ... and {len(distinct) - examples} more distinct calls")
    if findings:
        by_file: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for result in findings:
            by_file[result.get("where", "").split(":")[0] or "(outside memoria)"][result["outcome"]] += 1
        lines.append("\n## findings by file (innermost frame of memoria)")
        for name, outcomes in sorted(by_file.items()):
            lines.append(f"- {name}: " + ", ".join(f"{outcome} {count}" for outcome, count in outcomes.items()))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one call may take (default 30)")
    parser.add_argument("--memory-gb", type=float, default=6.0, help="the worker's address-space cap (0: none)")
    parser.add_argument("--examples", type=int, default=8, help="distinct examples shown per kind of finding")
    parser.add_argument("--json", default=None, help="write every result to this path")
    parser.add_argument("--targets", default=None, help="only these entry points (comma list, e.g. Engrams.select)")
    args = parser.parse_args(argv)
    targets = args.targets.split(",") if args.targets else None
    print(f"# load average at start {os.getloadavg()}", file=sys.stderr)
    log = lambda text: print(text, file=sys.stderr)  # noqa: E731
    summary = run(args.calls, args.seed, args.timeout, args.memory_gb, log=log, targets=targets)
    print(report(summary, args.examples))
    print(f"# load average at end {os.getloadavg()}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0 if not any(summary["counts"][outcome] for outcome in FINDINGS) else 1


if __name__ == "__main__":
    sys.exit(main())
