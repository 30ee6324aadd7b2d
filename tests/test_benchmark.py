"""Smoke tests of the benchmark script and of its measuring tools (tiny configurations, a few steps)."""

import json
import math
import re

import pytest
import torch

import memoria
from benchmarks.benchmark import main
from benchmarks.compare import boundary_gap
from benchmarks.memory_profile import held_bytes, measure_peak, peak_from_memory_events, tensor_bytes
from benchmarks.workload import CONFIGS, lifespan_delta, make_stream

TABLE_HEADER = "| impl | memory length | step ms (median) | vs 1.1.0 | vs 1.0.0 | state MiB (peak) | step peak MiB |"


def run_tiny(tmp_path, *extra: str) -> dict:
    path = tmp_path / "results.json"
    main(
        ["--quick", "--configs", "tiny", "--warmup", "2", "--steps", "3", "--probes", "1", "--json", str(path), *extra]
    )
    return json.loads(path.read_text())


def test_quick_run_prints_tables_and_compares_every_step(tmp_path, capsys):
    path = tmp_path / "results.json"
    main(["--quick", "--configs", "tiny,sweep", "--sweep", "200", "--warmup", "1", "--steps", "2", "--probes", "1",
          "--json", str(path)])  # fmt: skip
    printed = capsys.readouterr().out
    assert TABLE_HEADER in printed
    assert "| stm_capacity | memory length | ours ms | 1.1.0 ms | 1.0.0 ms |" in printed
    assert "| config | phase | non-view ops | view ops | host syncs | syncs by caller |" in printed

    results = json.loads(path.read_text())
    for result in [results["configs"]["tiny"], *results["sweep"]]:
        ours, ref_110, ref_100 = (result["impls"][name] for name in ("ours", "1.1.0", "1.0.0"))
        total = result["warmup"] + result["steps"] + result["probes"]
        assert ours["compared"] == total
        assert ref_110["compared"] == total - result["warmup"]  # 1.1.0 sits out the warm-up
        assert ours["identical"] + ours["near_ties"] + ours["unexplained"] == ours["compared"]
        assert ours["unexplained"] == 0, ours["differences"]
        assert ours["rng_mismatches"] == 0
        for summary in (ours, ref_110, ref_100):
            assert len(summary["step_seconds"]) == result["steps"]
            assert summary["median_step_s"] > 0
            assert summary["step_peak_bytes"] > 0
            assert summary["state_peak_bytes"] > 0
        # one step of ours in the GPU forms, on a copy (the comparisons above are unchanged by it)
        counts = result["op_count"]
        assert set(counts) == {"add", "remind", "adjust", "step"}
        assert counts["step"]["ops"] > 0 and counts["step"]["views"] > 0 and counts["step"]["syncs"] > 0
    # Every implementation saw the same stream, so the memory length is the same for all.
    sweep = results["sweep"][0]["impls"]
    assert sweep["ours"]["memory_length_max"] == sweep["1.0.0"]["memory_length_max"]


def test_reference_against_itself_is_identical_on_every_step(tmp_path):
    """Same inputs and same RNG state must give bit-identical outputs and state, with no resync needed."""
    result = run_tiny(tmp_path, "--ours-module", "reference:1.0.0")["configs"]["tiny"]
    ours = result["impls"]["ours"]
    assert result["op_count"] is None  # only the memoria package's ops are counted
    assert ours["identical"] == ours["compared"] == 6
    assert ours["rng_mismatches"] == 0 and ours["differences"] == []


def test_real_differences_are_reported_and_not_taken_for_near_ties(tmp_path):
    """1.1.0 ranks without exp, so as "ours" it differs from 1.0.0 on this stream far from any near-tie."""
    ours = run_tiny(tmp_path, "--ours-module", "reference:1.1.0")["configs"]["tiny"]["impls"]["ours"]
    assert ours["unexplained"] > 0 and ours["near_ties"] == 0
    assert ours["identical"] + ours["unexplained"] == ours["compared"]
    assert all(gap > 1e-5 for record in ours["differences"] for gap in record["boundary_gaps"])
    assert {"indices", "memories"} <= set(ours["differences"][0]["parts"])


def test_references_join_after_warmup_from_ours_state(tmp_path):
    path = tmp_path / "results.json"
    main(["--configs", "tiny", "--warmup", "4", "--steps", "2", "--probes", "1", "--no-count-ops", "--json", str(path)])
    result = json.loads(path.read_text())["configs"]["tiny"]
    assert result["compare_warmup"] is False and result["op_count"] is None
    ours, ref_100 = result["impls"]["ours"], result["impls"]["1.0.0"]
    assert ours["compared"] == 3 and ours["unexplained"] == 0
    assert ours["memory_length_min"] == ref_100["memory_length_min"] > 4


def test_boundary_gap_ignores_interchangeable_candidates():
    scores = torch.tensor([[3.0, 2.0, 2.0 + 1e-9, 1.0], [3.0, 2.0, 2.0, 1.0]], dtype=torch.float64)
    values = torch.tensor([[5, 6, 7, 8], [5, -1, -1, 8]])
    gaps = boundary_gap(scores, values, k=2)
    assert gaps[0] < 1e-8  # 6 and 7 nearly tie across the boundary
    # The two -1 paddings tie exactly, but choosing either gives the same result: the gap is 3.0 vs 2.0.
    assert math.isclose(gaps[1], 1 / 3)
    assert torch.isinf(boundary_gap(scores, values, k=4)).all()


def test_stream_keeps_distances_away_from_underflow_and_delta_sums_to_scale():
    config = CONFIGS["tiny"]
    data, logits = make_stream(config, 1, seed=0)[0]
    assert data.shape == (config.batch_size, config.num_working, config.hidden_dim)
    squared = torch.cdist(data[0], data[0]).pow(2)
    off_diagonal = squared[~torch.eye(config.num_working, dtype=torch.bool)]
    assert 4 < off_diagonal.mean() < 40
    delta = lifespan_delta(logits, 5)
    assert delta.shape == (config.batch_size, 5)
    assert torch.allclose(delta.sum(dim=1), torch.full([config.batch_size], 5 * 8.0))


def test_peak_from_memory_events_is_running_maximum_in_time_order():
    assert peak_from_memory_events([(3, -4), (1, 4), (2, 2), (4, 1)]) == 6
    # a free of memory from before the call (no allocation of that size in it) does not hide the call's own
    assert peak_from_memory_events([(1, -8), (2, 4)]) == 4
    assert peak_from_memory_events([(1, 4), (2, -8), (3, -4), (4, 2)]) == 4


def test_measure_peak_on_cpu_sees_known_allocations():
    def allocate():
        first = torch.ones(1_000_000)  # 4 MB
        second = torch.ones(500_000)  # 2 MB, both alive
        del first
        return second + 1  # 2 MB more, after 4 MB were freed

    result, peak = measure_peak(allocate, torch.device("cpu"))
    assert result.shape == (500_000,)
    assert 6_000_000 <= peak < 6_100_000
    assert tensor_bytes([result, None, torch.zeros(3, dtype=torch.int32)]) == 2_000_012


def test_measure_peak_on_cpu_is_not_hidden_by_freeing_older_memory():
    holder = {}
    # 12 MB made during an earlier measured call (a step before): the profiler knows its size when it is freed
    measure_peak(lambda: holder.update(old=torch.ones(3_000_000)), torch.device("cpu"))

    def release_then_allocate():
        del holder["old"]
        return torch.ones(1_000_000)  # 4 MB of the call's own

    _, peak = measure_peak(release_then_allocate, torch.device("cpu"))
    assert 4_000_000 <= peak < 4_100_000


def test_held_bytes_counts_each_storage_once_through_nested_objects():
    class Holder:
        def __init__(self, **values):
            self.__dict__.update(values)

    buffer = torch.zeros(100, 10)  # 4000 bytes
    inner = Holder(view=buffer[:5], ints=torch.zeros(7, dtype=torch.int32), nothing=None)
    outer = Holder(buffer=buffer, inner=inner, tensors=[torch.zeros(2, dtype=torch.uint8)])
    assert held_bytes(outer) == 4000 + 28 + 2
    assert held_bytes(outer, depth=0) == 4000 + 2


def test_device_audit_flags_ops_off_the_memory_device():
    from benchmarks.device_audit import OffDeviceOps, audit_config

    memory = memoria.Memoria(
        num_reminded_stm=2, stm_capacity=4, ltm_search_depth=2, initial_lifespan=3, num_final_ltms=2
    )
    memory.add_working_memory(torch.rand(2, 3, 4))
    # every op here runs on the CPU, so an audit that expects a GPU sees each of them
    with OffDeviceOps(torch.device("cuda")) as audit:
        memory.remind()
    assert sum(audit.found.values()) > 20 and {caller for caller, _ in audit.found} >= {"remind", "indices_with_mask"}
    results = audit_config("tiny", torch.device("cpu"), steps=8, audited=2)
    assert [r["step"] for r in results] == [6, 7]
    assert all(r["off_device_ops"] == 0 and r["syncs"] == 0 and r["memory_length"] > 0 for r in results)


def test_device_audit_profile_names_the_costliest_ops(capsys):
    from benchmarks.device_audit import audit_config

    results = audit_config("tiny", torch.device("cpu"), steps=8, audited=2, profile=True)
    assert [r["step"] for r in results] == [6]  # the last step is timed op by op instead
    printed = capsys.readouterr().out
    assert "op times, step 7" in printed and "ms in all" in printed
    # every row names an op and the line of memoria it ran on, costliest first
    rows = [line for line in printed.splitlines() if " ms " in line and " x " in line]
    assert 10 <= len(rows) <= 25
    assert all(re.fullmatch(r"\s*[\d.]+ ms\s+\d+ x  ([\w<>]+:\d+|\?)\s+[\w.]+", row) for row in rows), rows
    times = [float(row.split()[0]) for row in rows]
    assert times == sorted(times, reverse=True)


def test_native_share_variants_table_and_verdicts():
    from benchmarks import native_share

    names = ("mt19937", "walk", "counts", "index")
    switches = native_share.variants(names)
    assert switches == {
        "all on": "1",
        "none": "0",
        "without mt19937": "walk,counts,index",
        "without walk": "mt19937,counts,index",
        "without counts": "mt19937,walk,index",
        "without index": "mt19937,walk,counts",
    }
    row = {"all on": 0.09, "none": 0.2, "without mt19937": 0.11, "without walk": 0.15}
    row.update({"without counts": 0.0905, "without index": 0.09})
    medians = {"gpt2": row, "sort": dict(row, **{"without counts": 0.12})}  # counts pays at sort alone
    table = native_share.table(medians, names)
    assert table.splitlines()[0].startswith("| config | all on ms | none ms (share all save) | without mt19937 ms")
    assert (
        "| gpt2 | 90.0 | 200.0 (+55.0 %) | 110.0 (+18.2 %) | 150.0 (+40.0 %) | 90.5 (+0.6 %) | 90.0 (+0.0 %) |" in table
    )
    # at least 10 % of the step without the extension, at some configuration
    assert native_share.verdicts(medians, names) == {"mt19937": True, "walk": True, "counts": True, "index": False}


def test_before_runs_an_older_package_beside_ours_in_alternating_order(tmp_path, capsys):
    """``--before DIR`` imports the memoria package in DIR under another name and times it on the same steps; here
    DIR is this checkout, so both must run every step and leave the global RNG alike."""
    from pathlib import Path

    from benchmarks.loaders import load_package
    from benchmarks.steps import BEFORE, OURS

    root = Path(__file__).resolve().parents[1]
    module = load_package(str(root), "memoria_before_test")
    assert module.__name__ == "memoria_before_test" and module.Memoria is not __import__("memoria").Memoria
    path = tmp_path / "before.json"
    main(["--configs", "tiny", "--warmup", "3", "--steps", "4", "--probes", "0", "--no-references", "--no-count-ops"]
         + ["--before", str(root), "--json", str(path)])  # fmt: skip
    result = json.loads(path.read_text())["configs"]["tiny"]["impls"]
    assert set(result) == {OURS, BEFORE}
    assert len(result[OURS]["step_seconds"]) == len(result[BEFORE]["step_seconds"]) == 4
    assert result[OURS]["memory_length_max"] == result[BEFORE]["memory_length_max"] > 0
    assert "vs before" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no memoria package"):
        load_package(str(tmp_path))


def test_no_module_of_benchmarks_imports_itself_back():
    """The workload, loaders, RNG, steps, comparator, runner, tables and CLI are modules of their own, imported one way
    (``op_count`` used to import ``benchmark``, which imported it back): no cycle, imports inside functions included."""
    import ast
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    graph = {}
    for path in folder.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "benchmarks":
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("benchmarks."):
                imported.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                imported.update(a.name.split(".")[1] for a in node.names if a.name.startswith("benchmarks."))
        graph[path.stem] = imported - {path.stem}
    assert {"workload", "benchmark", "op_count", "runner", "compare", "tables"} <= set(graph)
    assert "benchmark" not in set().union(*graph.values()), "a module imports the CLI"

    def reaches(start: str, target: str, seen: set) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph.get(start, ()))

    cycles = sorted(module for module in graph if reaches(module, module, {module}))
    assert not cycles, f"import cycles through {cycles}: {graph}"
