"""Pictures of a row's history: the engram timeline (PNG and animated GIF) and the analysis curves.

Timeline: one column per step, one cell per live engram (long-term at the bottom, then short-term, then working,
each in memory-slot order), coloured by type and shaded by remaining lifespan (pale = about to die).

Needs matplotlib (``pip install memoria-pytorch[visualize]``); ``memoria`` itself does not.

    python -m memoria.visualize HISTORY_FILE --out DIR       # HISTORY_FILE written by HistoryManager.save

A pickled history (what memoria-pytorch 1.x saved) is refused unless ``--allow-pickle`` is given: unpickling a file
runs whatever code it names.
"""

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from .analysis import creation_curves, temporal_contiguity, type_counts
from .history_manager import MAX_FILE_BYTES, HistoryManager

#: RGB per ``EngramType`` value: WORKING green, SHORTTERM blue, LONGTERM orange.
TYPE_COLOURS = {1: (0.20, 0.63, 0.17), 2: (0.12, 0.47, 0.71), 3: (0.90, 0.45, 0.05)}
TYPE_LABELS = {1: "working", 2: "short-term", 3: "long-term"}
BACKGROUND = 1.0
# Stacking order within a column, bottom first: the long-lived engrams form a stable base.
STACK_ORDER = (3, 2, 1)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # matplotlib is an optional extra
        raise ImportError(
            "memoria.visualize needs matplotlib: pip install matplotlib (or memoria-pytorch[visualize])"
        ) from error
    return plt


def timeline_array(history: HistoryManager, max_lifespan: Optional[float] = None) -> torch.Tensor:
    """The timeline as an image.

    Args:
        history: a row's history
        max_lifespan: lifespan drawn at full colour (default: the 95th percentile over the history, so that a few
            long-lived engrams do not wash out the rest)
    Returns:
        RGB in [0, 1] shaped [Rows, Steps, 3]; row 0 is the bottom of the stack, empty cells are white
    """
    steps = [history.step(t) for t in range(len(history))]
    rows = max((step.ids.numel() for step in steps), default=0)
    image = torch.full((rows, len(steps), 3), BACKGROUND)
    if max_lifespan is None:
        everything = torch.cat([step.lifespan.float() for step in steps]) if steps else torch.ones(1)
        max_lifespan = float(everything.quantile(0.95)) if everything.numel() else 1.0
    colours = torch.zeros(4, 3)
    for value, rgb in TYPE_COLOURS.items():
        colours[value] = torch.tensor(rgb)
    for column, step in enumerate(steps):
        types = step.types.long()
        order = torch.cat([(types == value).nonzero(as_tuple=True)[0] for value in STACK_ORDER])
        # Strength 0.2..1: a dying engram stays visible but pale.
        strength = 0.2 + 0.8 * (step.lifespan[order].float() / max(max_lifespan, 1e-6)).clamp(0, 1)
        strength = strength.unsqueeze(1)  # [Live, 1]
        image[: order.numel(), column] = BACKGROUND * (1 - strength) + colours[types[order]] * strength
    return image


def _legend_handles(history: HistoryManager) -> list:
    """Legend entries for the types that occur (after an adjust there are no working engrams)."""
    from matplotlib.patches import Patch

    present = set().union(*(history.step(t).types.unique().tolist() for t in range(len(history))))
    return [Patch(color=TYPE_COLOURS[v], label=TYPE_LABELS[v]) for v in STACK_ORDER if v in present]


def plot_timeline(history: HistoryManager, path: str, title: str = "Engram timeline") -> Path:
    """Save the timeline as a PNG."""
    plt = _pyplot()
    image = timeline_array(history)
    figure, axis = plt.subplots(figsize=(10, 4.5), dpi=120)
    axis.imshow(image.numpy(), origin="lower", aspect="auto", interpolation="nearest")
    axis.set_xlabel("step")
    axis.set_ylabel("engrams alive (long-term at the bottom)")
    axis.set_title(f"{title} (shade: remaining lifespan)")
    axis.legend(handles=_legend_handles(history), loc="upper left", fontsize=8, framealpha=0.9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)


def animate_timeline(
    history: HistoryManager, path: str, cell: int = 2, frame_ms: int = 80, max_frames: int = 60
) -> Path:
    """Save the timeline growing step by step as an animated GIF (``cell`` pixels per engram and step).

    Long histories advance several steps per frame so that there are at most ``max_frames`` frames.
    """
    _pyplot()  # same optional dependency set; pillow comes with matplotlib
    from PIL import Image

    image = timeline_array(history).flip(0)  # top row first, as image files store it
    pixels = (image * 255).round().to(torch.uint8)
    pixels = pixels.repeat_interleave(cell, 0).repeat_interleave(cell, 1)  # [Rows*cell, Steps*cell, 3]
    frames = []
    stride = max(1, -(-image.size(1) // max_frames))
    ends = list(range(stride, image.size(1), stride)) + [image.size(1)] if image.size(1) else []
    for step in ends:
        frame = torch.full_like(pixels, int(BACKGROUND * 255))
        frame[:, : step * cell] = pixels[:, : step * cell]
        frames.append(Image.fromarray(frame.numpy()))
    if not frames:
        raise ValueError("the history is empty: nothing to animate")
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * 20]  # linger on the full timeline
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return Path(path)


def _binned_rate(rate: torch.Tensor, created: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average a per-creation-step rate over bins of ``width`` steps, weighted by engrams created: (centres, rates)."""
    steps = rate.numel()
    bins = torch.arange(steps) // width
    weighted = torch.zeros(int(bins.max()) + 1 if steps else 0, dtype=torch.float64)
    totals = torch.zeros_like(weighted)
    weighted.index_add_(0, bins, torch.nan_to_num(rate.double()) * created.double())
    totals.index_add_(0, bins, created.double())
    centres = torch.arange(weighted.numel()) * width + (width - 1) / 2
    return centres, weighted / torch.where(totals > 0, totals, torch.nan)


def plot_analysis(history: HistoryManager, path: str, max_lag: int = 30, bins: int = 30) -> Path:
    """Save the analysis curves as a PNG: type counts, creation curves (in about ``bins`` bins), contiguity."""
    plt = _pyplot()
    counts = type_counts(history)
    curves = creation_curves(history)
    contiguity = temporal_contiguity(history, max_lag=min(max_lag, max(len(history) - 1, 0)))
    figure, axes = plt.subplots(1, 3, figsize=(15, 4), dpi=110)

    steps = torch.arange(len(history)).numpy()
    axes[0].stackplot(
        steps,
        *[counts[:, value - 1].numpy() for value in STACK_ORDER],
        colors=[TYPE_COLOURS[v] for v in STACK_ORDER],
        labels=[TYPE_LABELS[v] for v in STACK_ORDER],
    )
    axes[0].set(title="Engrams alive by type", xlabel="step", ylabel="engrams")
    axes[0].legend(loc="upper left", fontsize=8)

    width = max(1, len(history) // bins)
    for rate, label in (
        (curves.survival_rate, "alive at the end"),
        (curves.reminded_rate, "reminded at least once"),
        (curves.longterm_rate, "became long-term"),
    ):
        centres, binned = _binned_rate(rate, curves.created, width)
        axes[1].plot(centres.numpy(), binned.numpy(), marker="o", markersize=3, label=label)
    axes[1].set(
        title=f"Survival and reminding by creation step (bins of {width})", xlabel="creation step", ylabel="fraction"
    )
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].legend(fontsize=8)

    axes[2].plot(contiguity.lags.numpy(), contiguity.probability.numpy(), marker="o", markersize=3)
    axes[2].set(
        title="Temporal contiguity",
        xlabel="creation-step lag between two engrams",
        ylabel="P(reminded together | both alive)",
    )
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)


def render_all(history: HistoryManager, out_dir: str, prefix: str = "") -> list[Path]:
    """Write ``timeline.png``, ``timeline.gif`` and ``analysis.png`` (with an optional name prefix) into a folder.

    Raises ``ValueError`` for a history without steps, or an ``out_dir`` that names a file, before writing anything.
    """
    out = Path(out_dir)
    if len(history) == 0:
        raise ValueError("the history holds no steps: nothing to draw")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return [
        plot_timeline(history, str(out / f"{prefix}timeline.png")),
        animate_timeline(history, str(out / f"{prefix}timeline.gif")),
        plot_analysis(history, str(out / f"{prefix}analysis.png")),
    ]


def main(argv: Optional[list[str]] = None) -> None:
    """The command line; every error is one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(
        prog="python -m memoria.visualize",
        description="Render a saved Memoria history (HistoryManager.save) as pictures.",
    )
    parser.add_argument("history_file", help="file written by HistoryManager.save")
    parser.add_argument("--out", required=True, help="folder for timeline.png, timeline.gif and analysis.png")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also read a pickled history (memoria-pytorch 1.x): unpickling runs code, so only for a file you trust",
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=MAX_FILE_BYTES,
        help=f"most bytes the file may decompress to (default {MAX_FILE_BYTES}, 256 MiB)",
    )
    args = parser.parse_args(argv)
    try:
        history = HistoryManager.load(args.history_file, allow_pickle=args.allow_pickle, max_bytes=args.max_bytes)
        paths = render_all(history, args.out)
    except (OSError, ValueError, TypeError) as error:
        message = str(error).replace("allow_pickle=True", "--allow-pickle").replace("max_bytes", "--max-bytes")
        print(f"{parser.prog}: error: {' '.join(message.split())}", file=sys.stderr)
        raise SystemExit(2) from None
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
