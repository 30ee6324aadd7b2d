"""Classification metrics under DDP: two CPU processes (gloo) train and test a tiny config through the CLI, and the
logged test F1 must be the F1 of all test documents, not of one rank's share."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from experiment.tasks.classification import build, document_logits, macro_f1, segment_logits

ROOT = Path(__file__).parents[2]
CONFIG = ROOT / "experiment" / "configs" / "classification" / "tiny_memoria_bert.json"


def test_two_process_ddp_logs_the_f1_of_all_test_documents(tmp_path):
    # 7 test documents in batches of 2: the ranks hold 4 and 3 documents, so a padded sampler would repeat one and
    # rank 0 alone would see 4 of the 7
    overrides = [
        f"output_dir={tmp_path}",
        "data.num_test=7",
        "eval_batch_size=2",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0",
        "wandb=false",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "experiment.scripts.train", "--config", str(CONFIG), "--override", *overrides]
    finished = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stderr[-4000:]
    logged = json.loads((tmp_path / "test_metrics.json").read_text())

    # the same checkpoint in this process, over every test document
    config = json.loads((tmp_path / "config.json").read_text())
    task, data = build(config)
    state = torch.load(logged["checkpoint"], weights_only=False)
    task.load_state_dict(state["state_dict"])
    task.eval()
    data.setup()
    predictions, labels = [], []
    with torch.no_grad():
        for batch in data.test_dataloader():
            logits = document_logits(segment_logits(task.model, batch), batch["segment_mask"], task.prediction_mode)
            predictions.append(logits.argmax(-1))
            labels.append(batch["labels"])
    predictions, labels = torch.cat(predictions), torch.cat(labels)
    assert len(labels) == 7

    assert abs(logged["test/f1"] - macro_f1(predictions, labels, 2)) < 1e-6
    assert abs(logged["test/accuracy"] - (predictions == labels).float().mean().item()) < 1e-6
    # what was logged before: rank 0's own share (documents 0, 2, 4, 6) gives another value on this data
    assert abs(logged["test/f1"] - macro_f1(predictions[0::2], labels[0::2], 2)) > 1e-3
