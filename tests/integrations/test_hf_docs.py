"""docs/pretrained.md runs as written: its Python blocks, in order, as one script in a folder of its own."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_pretrained_model_page_runs_as_written(tmp_path):
    page = (ROOT / "docs" / "pretrained.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) == 5  # the one call, training, evaluation, generation, saving
    script = tmp_path / "pretrained.py"
    script.write_text("\n".join(blocks))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"training loss \d+\.\d{3}", lines[0])
    assert re.fullmatch(r"perplexity \d+\.\d, logits \(1, 100, 256\)", lines[1])
    assert lines[2] == "generated 60 tokens"
    assert lines[3] == "['memoria_config.json', 'memoria_weights.safetensors']"
    assert (tmp_path / "llama-memoria" / "memory.pt").is_file()
