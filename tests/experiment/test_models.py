"""The model registry in experiment/models/__init__.py: every experiment model is known to the Auto classes
as soon as ``experiment.models`` is imported."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiment.models import MODEL_REGISTRY, build_model

REPO_ROOT = Path(__file__).parents[2]
MODEL_TYPES = [
    "memoria_transformer",
    "transformer_xl",
    "compressive_transformer",
    "infinity_former",
    "infinity_former_xl",
    "memoria_bert",
    "memoria_roberta",
]


def test_importing_the_package_alone_registers_every_model_with_the_auto_classes():
    # A fresh interpreter: in this one a task module may already have imported the model modules.
    script = (
        "import json, sys, transformers, experiment.models\n"
        f"types = {MODEL_TYPES!r}\n"
        "print(json.dumps({'configs': [transformers.AutoConfig.for_model(t).model_type for t in types],\n"
        "    'tasks': sorted(m for m in sys.modules if m.startswith('experiment.tasks'))}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"configs": MODEL_TYPES, "tasks": []}


@pytest.mark.parametrize("model_type", ["memoria_bert", "memoria_roberta"])
def test_classification_models_build_from_the_registry(model_type):
    tiny = dict(
        vocab_size=30,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=40,
        memory_layer_index=0,
    )
    model = build_model({"model_type": model_type, **tiny})
    assert model.config.model_type == model_type
    assert type(model) is MODEL_REGISTRY[model_type].model_class


FRESH_LOAD = """
import json, sys, torch, transformers
loaded = {}
for model_type, auto in json.load(open("models.json")).items():
    model = getattr(transformers, auto).from_pretrained(model_type, trust_remote_code=True)
    torch.manual_seed(0)
    loaded[model_type] = float(model.eval()(torch.arange(1, 9)[None]).logits.double().sum())
print(json.dumps({"sums": loaded, "experiment imported": "experiment" in sys.modules}))
"""


def test_every_memory_model_saved_with_its_code_loads_without_the_experiment_package(tmp_path):
    tiny_lm = dict(vocab_size=30, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    tiny_memory = dict(num_working_memories=2, num_reminded_stm=2, stm_capacity=4, num_final_ltms=2)
    tiny_bert = dict(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    configs = {
        "memoria_transformer": {**tiny_lm, **tiny_memory},
        "transformer_xl": {**tiny_lm, "mem_len": 8},
        "compressive_transformer": {**tiny_lm, "mem_len": 8, "compressed_mem_len": 4},
        "infinity_former": {**tiny_lm, "num_basis": 8, "num_samples": 8},
        "infinity_former_xl": {**tiny_lm, "mem_len": 4, "num_basis": 8, "num_samples": 8},
        "memoria_bert": {**tiny_bert, "max_position_embeddings": 16, "memory_layer_index": 0},
        "memoria_roberta": {**tiny_bert, "max_position_embeddings": 18, "memory_layer_index": 0},
    }
    assert set(configs) == set(MODEL_TYPES)
    autos, expected = {}, {}
    for model_type, config in configs.items():
        model = build_model({"model_type": model_type, **config}).eval()
        model.save_pretrained(tmp_path / model_type)
        saved = json.loads((tmp_path / model_type / "config.json").read_text())["auto_map"]
        autos[model_type] = next(name for name in saved if name != "AutoConfig")
        torch.manual_seed(0)
        with torch.no_grad():
            expected[model_type] = float(model(torch.arange(1, 9)[None]).logits.double().sum())
    (tmp_path / "models.json").write_text(json.dumps(autos))
    environment = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    environment["PYTHONPATH"] = str(REPO_ROOT)  # for memoria; experiment is never imported
    result = subprocess.run(
        [sys.executable, "-c", FRESH_LOAD], capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["experiment imported"] is False
    assert report["sums"] == pytest.approx(expected, rel=1e-6)


def test_pretrained_loads_through_the_entry_loader_and_unknown_types_are_named(tmp_path):
    fields = dict(vocab_size=30, n_positions=16, n_embd=16, n_layer=1, n_head=2, num_working_memories=2)
    saved = build_model({"model_type": "memoria_transformer", **fields, "stm_capacity": 4}).eval()
    saved.save_pretrained(tmp_path)
    # a saved Memoria Transformer (not a GPT-2 checkpoint) goes through the loader hook to from_pretrained
    loaded = build_model({"model_type": "memoria_transformer", "pretrained": str(tmp_path)})
    assert loaded.config.stm_capacity == 4
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, msg=name)
    assert MODEL_REGISTRY["memoria_transformer"].loader is not None and MODEL_REGISTRY["gpt2"].loader is None
    with pytest.raises(KeyError, match="unknown model_type 'nope'; registered: .*memoria_transformer"):
        build_model({"model_type": "nope"})
