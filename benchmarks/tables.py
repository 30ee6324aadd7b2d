"""The benchmark's Markdown tables: one per configuration, and the stm_capacity sweep."""

from typing import Any, Dict, Optional, Sequence

from benchmarks.steps import BEFORE, OURS, REF_100, REF_110


def _mib(num_bytes: Optional[int]) -> str:
    return "-" if num_bytes is None else f"{num_bytes / 2**20:.1f}"


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> str:
    return "-" if not numerator or not denominator else f"{numerator / denominator:.1f}x"


def _length(summary: Dict[str, Any]) -> str:
    low, high = summary["memory_length_min"], summary["memory_length_max"]
    return "-" if low is None else (str(low) if low == high else f"{low}-{high}")


def _equality(summary: Dict[str, Any], name: str) -> str:
    if name == REF_100:
        return "(baseline)"
    if summary["compared"] == 0:
        return "-"
    text = f"{summary['identical']}/{summary['compared']}"
    if name == REF_110:
        return text + " (ranks without exp)"
    text += f", near-ties {summary['near_ties']}, unexplained {summary['unexplained']}"
    return text + (f", RNG drift {summary['rng_mismatches']}" if summary["rng_mismatches"] else "")


def config_table(result: Dict[str, Any]) -> str:
    """Markdown table of one configuration's result."""
    impls = result["impls"]
    ref_times = {name: impls[name]["median_step_s"] for name in (REF_110, REF_100, BEFORE) if name in impls}
    cuda = result["device"].startswith("cuda")
    before = BEFORE in impls
    header = (
        [
            "impl",
            "memory length",
            "step ms (median)",
            "vs 1.1.0",
            "vs 1.0.0",
            "state MiB (peak)",
            "step peak MiB",
            "identical to 1.0.0 (steps)",
        ]
        + (["syncs/step"] if cuda else [])
        + (["vs before"] if before else [])
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in (OURS, BEFORE, REF_110, REF_100):
        if name not in impls:
            continue
        summary = impls[name]
        row = [
            name,
            _length(summary),
            _ms(summary["median_step_s"]),
            _ratio(ref_times.get(REF_110), summary["median_step_s"]),
            _ratio(ref_times.get(REF_100), summary["median_step_s"]),
            _mib(summary["state_peak_bytes"]),
            _mib(summary["step_peak_bytes"]),
            _equality(summary, name),
        ] + ([str(summary["syncs_per_step"])] if cuda else [])
        row += [_ratio(ref_times.get(BEFORE), summary["median_step_s"])] if before else []
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def sweep_table(results: Sequence[Dict[str, Any]]) -> str:
    """Markdown table of the stm_capacity sweep: time and memory against memory length."""
    header = [
        "stm_capacity",
        "memory length",
        "ours ms",
        "1.1.0 ms",
        "1.0.0 ms",
        "vs 1.1.0",
        "vs 1.0.0",
        "ours step MiB",
        "1.1.0 step MiB",
        "1.0.0 step MiB",
        "ours state MiB",
        "identical",
        "before ms",
        "ours vs before",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        impls = result["impls"]
        get = lambda name, key: impls[name][key] if name in impls else None  # noqa: E731
        ours = impls[OURS]
        lines.append(
            "| "
            + " | ".join(
                [
                    str(result["config"]["stm_capacity"]),
                    _length(ours),
                    _ms(get(OURS, "median_step_s")),
                    _ms(get(REF_110, "median_step_s")),
                    _ms(get(REF_100, "median_step_s")),
                    _ratio(get(REF_110, "median_step_s"), get(OURS, "median_step_s")),
                    _ratio(get(REF_100, "median_step_s"), get(OURS, "median_step_s")),
                    _mib(get(OURS, "step_peak_bytes")),
                    _mib(get(REF_110, "step_peak_bytes")),
                    _mib(get(REF_100, "step_peak_bytes")),
                    _mib(get(OURS, "state_peak_bytes")),
                    _equality(ours, OURS) if REF_100 in impls else "-",
                    _ms(get(BEFORE, "median_step_s")),
                    _ratio(get(BEFORE, "median_step_s"), get(OURS, "median_step_s")),
                ]
            )
            + " |"
        )
    return "\n".join(lines)
