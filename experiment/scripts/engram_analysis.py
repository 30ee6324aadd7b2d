"""Engram analysis of a trained far-recall Memoria Transformer, as in the paper's analysis of what Memoria keeps.

    python -m experiment.scripts.engram_analysis --model runs/far_recall/memoria_cpu_seed42/model \\
        --config experiment/configs/far_recall/memoria_cpu.json --documents 40 --out experiment/docs/images/far_recall

``--batch`` rows each read ``--documents`` test documents twice. First as trained, the memory reset per document:
``summary.json`` gets the label accuracy and, per part of a document (evidence segment, noise segments), the mean
lifespan the engrams made from it gain at ``[SEP]``: the gain is the attention an engram receives, scaled so that
uniform attention gives ``lifespan_extend_scale``, so this says which memories the model reads and keeps. Then as one stream per row without resets, so that a row's history spans
``documents * (distance + 2)`` memory steps: for row 0 the script writes the history (``history.gz``,
``HistoryManager.save``) and ``memoria.visualize``'s pictures (``timeline.png``, ``timeline.gif``, ``analysis.png``:
types alive, survival and reminding by creation step, temporal contiguity), and ``summary.json`` gets the stream's
accuracy and how many engrams of each part were still alive at its end.
"""

import argparse
import json
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from transformers import AutoModelForCausalLM

import experiment.models  # noqa: F401  (registers the model types with the Auto classes)
from experiment.data.far_recall import FarRecallConfig, generate_far_recall
from experiment.scripts.train import load_config
from memoria import HistoryManager, Memoria
from memoria.analysis import creation_curves
from memoria.visualize import render_all


def part_names(distance: int) -> list[str]:
    """What the segment at each position of a document is: evidence, noise 1..distance, [SEP]."""
    return ["evidence"] + [f"noise {i}" for i in range(1, distance + 1)] + ["[SEP]"]


@torch.no_grad()
def read_documents(
    model: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor, segment_length: int, reset: bool
) -> tuple[float, list[torch.Tensor]]:
    """Feed documents [Docs, Batch, Length] segment by segment; ``reset``: forget between documents (as trained),
    else each batch row reads its documents as one stream. Returns the label accuracy and, with ``reset``, per
    document the lifespan gained at ``[SEP]`` [Batch, Steps] by the engrams of each creation step."""
    state, correct, gains = None, 0, []
    for document, document_labels in zip(tokens, labels):
        if reset:
            model.reset_memory()
            state = None
        for start in range(0, document.size(1), segment_length):
            output = model(document[:, start : start + segment_length], memory_hidden_states=state)
            state = output.memory_hidden_states
        correct += int((output.logits[:, -1].argmax(-1) == document_labels).sum())
        if reset:
            gains.append(
                torch.stack([gain_at_last_step_by_creation_step(history) for history in model.memoria.history])
            )
    return correct / labels.numel(), gains


def gain_at_last_step_by_creation_step(history: HistoryManager) -> torch.Tensor:
    """Mean lifespan gained at the last step by the engrams created at each step: [Steps] (NaN: none there).

    Every engram loses 1 per step and a reminded one gains ``attention share * reminded * lifespan_extend_scale``,
    so with uniform attention each reminded engram gains ``lifespan_extend_scale``; more means the model looked at
    it more than at the average memory."""
    last, previous = history.step(len(history) - 1), history.step(len(history) - 2)
    before = dict(zip(previous.ids.tolist(), previous.lifespan.tolist()))
    created_at = history.engram_creation_times
    totals = torch.zeros(len(history), dtype=torch.float64)
    counts = torch.zeros(len(history), dtype=torch.float64)
    for engram_id, lifespan in zip(last.ids.tolist(), last.lifespan.tolist()):
        if engram_id in before:
            totals[created_at[engram_id]] += lifespan - before[engram_id] + 1.0
            counts[created_at[engram_id]] += 1
    return (totals / torch.where(counts > 0, counts, torch.nan)).float()


def history_memoria(config) -> Memoria:
    """A ``Memoria`` with the model config's settings that keeps a history per batch row."""
    return Memoria(
        num_reminded_stm=config.num_reminded_stm,
        stm_capacity=config.stm_capacity,
        ltm_search_depth=config.ltm_search_depth,
        initial_lifespan=config.initial_lifespan,
        num_final_ltms=config.num_final_ltms,
        keep_history=True,
    )


def analyse(model_dir: str, config_path: str, documents: int, batch: int, out: str, seed: int = 0) -> dict:
    """Read test documents with history kept, reset per document and as streams; write pictures and a summary."""
    config = load_config(config_path)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # keep_history turns id and age tracking on, as it says
        model.transformer.memoria = history_memoria(model.config)
    data = config["data"]
    set_config = FarRecallConfig(
        num_labels=data["num_labels"],
        vocab_size=data["vocab_size"],
        segment_length=config["segment_length"],
        distance=data["distance"],
        evidence_fraction=data["evidence_fraction"],
    )
    tokens, labels = generate_far_recall(set_config, documents * batch, seed=1000 * data.get("seed", 0) + 2)
    tokens = tokens.view(documents, batch, -1)  # (Docs, B, Length): row b reads documents b, b + batch, ...
    labels = labels.view(documents, batch)
    names = part_names(set_config.distance)

    # As trained: memory reset per document. History step i is the adjust of segment i + 1, whose working memories
    # summarise segment i, so the engrams created at step i come from part i of the document.
    accuracy, gains = read_documents(model, tokens, labels, set_config.segment_length, reset=True)
    per_part = torch.cat(gains).nanmean(dim=0)  # (Steps,) NaN for the working memories made at [SEP]
    # Stream: the same documents without resets, for a history long enough for the curves.
    model.reset_memory()
    stream_accuracy, _ = read_documents(model, tokens, labels, set_config.segment_length, reset=False)
    history = model.memoria.history[0]
    curves = creation_curves(history)
    part = torch.arange(len(history)) % len(names)
    survival = torch.zeros(len(names), dtype=torch.float64).index_add_(0, part, curves.alive_at_end.double())
    made = torch.zeros(len(names), dtype=torch.float64).index_add_(0, part, curves.created.double())

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    history.save(str(out_dir / "history.gz"))
    render_all(history, str(out_dir))
    summary = {
        "documents": documents * batch,
        "accuracy_reset_per_document": accuracy,
        "lifespan_extend_scale": model.config.lifespan_extend_scale,
        "lifespan_gained_at_sep_by_part": {
            names[i]: float(per_part[i]) for i in range(per_part.numel()) if not per_part[i].isnan()
        },
        "stream_steps_row0": len(history),
        "stream_accuracy": stream_accuracy,
        "stream_alive_at_end_by_part_row0": {
            names[i]: f"{int(survival[i])}/{int(made[i])}" for i in range(len(names)) if made[i] > 0
        },
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="save_pretrained folder of a trained far-recall Memoria model")
    parser.add_argument("--config", required=True, help="the far-recall config it was trained with")
    parser.add_argument("--documents", type=int, default=40, help="documents streamed through each batch row")
    parser.add_argument("--batch", type=int, default=25, help="batch rows (independent streams)")
    parser.add_argument("--out", required=True, help="folder for history.gz, the pictures and summary.json")
    args = parser.parse_args(argv)
    summary = analyse(args.model, args.config, args.documents, args.batch, args.out)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
