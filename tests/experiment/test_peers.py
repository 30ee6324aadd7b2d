"""The peers from PyPI (RMT, Titans memory-as-context) as registry models: built, trained through the real CLI,
their memory reaching across segments as the libraries train it. Skipped where the optional packages are missing."""

import json

import pytest
import torch

from experiment.models import MODEL_REGISTRY, UNAVAILABLE_MODELS, build_model
from experiment.scripts import train
from experiment.tasks.base import run_segments

PEERS = {"rmt": "recurrent_memory_transformer_pytorch", "titans_mac": "titans_pytorch"}
TINY = dict(vocab_size=32, n_embd=16, n_layer=1, n_head=2, segment_length=8)


def needs(model_type: str) -> None:
    if model_type in UNAVAILABLE_MODELS:
        pytest.skip(f"{UNAVAILABLE_MODELS[model_type]} is not installed (experiment/requirements-peers.txt)")


def test_a_missing_peer_is_named_with_what_to_install():
    missing = {model_type: requirement for model_type, requirement in UNAVAILABLE_MODELS.items() if model_type in PEERS}
    assert set(missing) | {t for t in PEERS if t in MODEL_REGISTRY} == set(PEERS)  # each either registered or named
    for model_type, requirement in missing.items():
        with pytest.raises(KeyError, match=f"needs {requirement} .*requirements-peers.txt"):
            build_model({"model_type": model_type})


@pytest.mark.parametrize("model_type", sorted(PEERS))
def test_the_far_recall_config_builds_the_2x64_peer(model_type):
    needs(model_type)
    config = train.load_config(f"experiment/configs/far_recall/{model_type}_cpu.json")
    assert (config["model"]["n_embd"], config["model"]["n_layer"]) == (64, 2)
    assert config["optimizer"]["learning_rate"] == 1e-3
    model = build_model({**config["model"], "segment_length": config["segment_length"]})
    assert MODEL_REGISTRY[model_type].whole_example
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == {"rmt": 107_976, "titans_mac": 314_788}[model_type]  # the tables state these


def _example(segments: int) -> torch.Tensor:
    """Tokens 3..29 in every segment but the first, which holds 30 and 31 only."""
    tokens = torch.randint(3, 30, (2, segments * 8))
    tokens[:, :8] = torch.tensor([30, 31] * 4)
    return tokens


def test_rmt_trains_through_its_memory_across_segments_unless_detached():
    needs("rmt")
    tokens = _example(4)
    labels = torch.full_like(tokens, -100)
    labels[:, -1] = 5
    grads = {}
    for detach in (False, True):
        torch.manual_seed(0)
        model = build_model({"model_type": "rmt", **TINY, "detach_memory": detach}).train()
        stats = run_segments(model, tokens, labels, segment_length=8, train=True)
        stats.loss.backward()
        grads[detach] = model.rmt.token_emb.weight.grad[30:32].abs().sum()
    # the first segment's tokens reach the last segment's loss only through the written memories
    assert grads[False] > 0 and grads[True] == 0


def test_titans_reads_what_left_its_attention_window():
    needs("titans_mac")
    torch.manual_seed(0)
    model = build_model({"model_type": "titans_mac", **TINY}).eval()
    tokens = _example(4)
    changed = tokens.clone()
    changed[:, :8] = torch.tensor([31, 30] * 4)
    with torch.no_grad():
        last = [model(t).logits[:, -8:] for t in (tokens, changed)]
    assert not torch.allclose(last[0], last[1])  # segment 0 is three windows back: only the neural memory holds it
    assert model(tokens[:, :12]).logits.shape == (2, 12, 32)


@pytest.mark.parametrize("model_type", sorted(PEERS))
def test_two_training_steps_through_the_cli_save_and_reload(model_type, tmp_path):
    needs(model_type)
    overrides = [f"output_dir={tmp_path}", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    metrics = train.main(
        ["--config", f"experiment/configs/far_recall/{model_type}_tiny.json", "--override", *overrides]
    )
    assert 0.0 <= metrics["test/accuracy"] <= 1.0 and metrics["test/loss"] > 0
    assert json.loads((tmp_path / "config.json").read_text())["model"]["model_type"] == model_type
    reloaded = build_model({"model_type": model_type, "pretrained": str(tmp_path / "model")})
    assert reloaded.config.segment_length == 8  # the task's, written into the model config
