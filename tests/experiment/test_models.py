"""The model registry in experiment/models/__init__.py: every experiment model is known to the Auto classes
as soon as ``experiment.models`` is imported."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiment.models import MODEL_REGISTRY, build_model

REPO_ROOT = Path(__file__).parents[2]
MODEL_TYPES = [
    "memoria_transformer",
    "transformer_xl",
    "compressive_transformer",
    "infinity_former",
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
