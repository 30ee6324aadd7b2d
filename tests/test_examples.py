"""Every file in examples/ runs; an example that reads memory trains every memory parameter and never attends to
padding; the README's and the tutorial's code blocks are those files verbatim and show what they print.

The examples run in this process, as ``__main__`` (the notebook: its code cells in order), watched through PyTorch's
own global hooks: a forward hook on every module (which memory modules ran, and the attention weights of every
attention over memories) and a step hook on every optimiser (which parameters it steps). Nothing is replaced.
"""

import contextlib
import importlib.util
import io
import os
import re
import runpy
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook
from torch.optim.optimizer import register_optimizer_step_post_hook

from memoria import Abstractor
from memoria.nn import MemoriaMemory, MemoryCrossAttention, MemoryReader

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
EXAMPLES = sorted(path for path in (ROOT / "examples").iterdir() if path.suffix in (".py", ".ipynb"))
#: the examples that put a memory in a model (the others tour Memoria's own calls)
READS_MEMORY = {"quickstart.py", "model_loop.py"}
#: every parameter of these modules is a memory parameter: the learned write (abstractor) and the read
MEMORY_MODULES = (Abstractor, MemoriaMemory, MemoryReader, MemoryCrossAttention)

SEED_STEP_6 = """tensor([[ 0,  6,  4,  3,  2, -1],
        [ 0,  7,  6,  5,  4, -1]])"""
SEED_STEP_6_LIFESPAN = """tensor([[6., 1., 6., 6., 6., 1., 6., 1., 2., 2., 2., 2., 2., 2., 2., 2.],
        [6., 1., 1., 1., 6., 6., 6., 6., 2., 2., 2., 2., 2., 2., 2., 2.]])"""


@dataclass
class Run:
    """What one example did, as the hooks saw it."""

    stdout: str = ""
    memory_parameters: dict[int, tuple[str, nn.Parameter]] = field(default_factory=dict)  # id -> (name, parameter)
    nonzero_gradient: set[int] = field(default_factory=set)  # ids of parameters that got a non-zero, finite gradient
    nonfinite_gradient: set[int] = field(default_factory=set)
    stepped: set[int] = field(default_factory=set)  # ids of the parameters of the optimisers that stepped
    steps: int = 0
    reads: int = 0  # attention calls over memories
    padding_slots: int = 0  # memory slots that were padding, summed over those calls
    padding_attention: float = 0.0  # the largest attention mass one query put on padding slots


def _argument(args: tuple, kwargs: dict, position: int, name: str) -> Any:
    return args[position] if len(args) > position else kwargs.get(name)


def run_example(path: Path) -> Run:
    """Run ``path`` (a script as ``__main__``, or a notebook's code cells) with the hooks on; returns what they saw.

    A memory module that runs with autograd on is being trained: its parameters are watched (a run under
    ``torch.no_grad()`` infers). A memory slot is padding where the attention's mask says so, or where its vector is exactly zero: ``Memoria``
    returns zeros for every -1 (none) slot of ``remind()``, and the examples never write a segment that is all
    padding, so no real memory is exactly zero.
    """
    run = Run()

    def on_gradient(parameter: torch.Tensor) -> None:
        if not torch.isfinite(parameter.grad).all():
            run.nonfinite_gradient.add(id(parameter))
        elif parameter.grad.abs().max() > 0:
            run.nonzero_gradient.add(id(parameter))

    def record(weights: torch.Tensor, padding: torch.Tensor) -> None:
        """``weights`` [B, H, L, M] (or [B, L, M]), ``padding`` [B, M] True at padding slots."""
        weights = weights.detach()
        if weights.dim() == 3:
            weights = weights[:, None]
        run.reads += 1
        run.padding_slots += int(padding.sum())
        mass = (weights.abs() * padding[:, None, None, :]).sum(dim=-1)  # [B, H, L]
        run.padding_attention = max(run.padding_attention, float(mass.max()))

    def on_forward(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if isinstance(module, MEMORY_MODULES) and torch.is_grad_enabled():  # run to be trained, not to infer
            for name, parameter in module.named_parameters():
                if id(parameter) not in run.memory_parameters:
                    run.memory_parameters[id(parameter)] = (f"{type(module).__name__}.{name}", parameter)
                    parameter.register_post_accumulate_grad_hook(on_gradient)
        if isinstance(module, MemoryCrossAttention):  # args: hidden [B, L, D], memories [B, M, D], memory_mask [B, M]
            memories = _argument(args, kwargs, 1, "memories").detach()
            padding = memories.eq(0).all(dim=-1)
            mask = _argument(args, kwargs, 2, "memory_mask")
            if mask is not None:
                padding = padding | ~mask.to(torch.bool)
            record(output[1], padding)
        elif isinstance(module, nn.MultiheadAttention) and output[1] is not None:  # a hand-made memory read
            key = _argument(args, kwargs, 1, "key").detach()
            key = key if module.batch_first or key.dim() == 2 else key.transpose(0, 1)
            padding = key.eq(0).all(dim=-1)
            key_padding_mask = _argument(args, kwargs, 3, "key_padding_mask")
            if key_padding_mask is not None:
                padding = padding | key_padding_mask.to(torch.bool)
            record(output[1], padding)

    def on_step(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        run.steps += 1
        for group in optimizer.param_groups:
            run.stepped.update(id(parameter) for parameter in group["params"])

    handles = [register_module_forward_hook(on_forward, with_kwargs=True), register_optimizer_step_post_hook(on_step)]
    stdout, cwd = io.StringIO(), os.getcwd()
    try:
        os.chdir(ROOT)
        with contextlib.redirect_stdout(stdout):
            if path.suffix == ".py":
                runpy.run_path(str(path), run_name="__main__")
            else:
                nbformat = pytest.importorskip("nbformat", reason="the dev extra installs nbformat")
                cells = nbformat.read(path, as_version=4).cells
                code = "\n\n".join(cell.source for cell in cells if cell.cell_type == "code")
                exec(compile(code, str(path), "exec"), {"__name__": "__main__"})
    finally:
        os.chdir(cwd)
        for handle in handles:
            handle.remove()
    run.stdout = stdout.getvalue()
    return run


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_example_trains_each_memory_parameter_and_never_attends_to_padding(example):
    torch.manual_seed(0)
    run = run_example(example)
    assert (example.name in READS_MEMORY) == bool(run.memory_parameters), "which examples put a memory in a model"
    problems = []
    if run.padding_attention != 0.0:
        problems.append(f"padding memory slots received attention (up to {run.padding_attention:.1%} of a query's)")
    if run.memory_parameters:
        if run.steps == 0:
            problems.append("it never steps an optimiser: an example with a memory trains it")
        for key, (name, _) in run.memory_parameters.items():
            if key in run.nonfinite_gradient:
                problems.append(f"{name}: a gradient that is not finite")
            if key not in run.nonzero_gradient:
                problems.append(f"{name}: never a non-zero gradient")
            if key not in run.stepped:
                problems.append(f"{name}: in no optimiser that stepped")
        if run.reads == 0 or run.padding_slots == 0:
            problems.append(f"no read saw a padding slot ({run.reads} reads): the padding check above checked nothing")
    assert not problems, f"examples/{example.name}:\n" + "\n".join(problems)


def load_example(name: str):
    """Import examples/<name>.py as a module (its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_loop_keeps_padding_out_of_the_memory_the_model_and_the_loss():
    """What stands in the padding changes nothing: the same losses, engrams and weights after training."""
    loop = load_example("model_loop")
    batches = list(loop.documents(6))
    written_with_padding = [mask[:, :-1].split(loop.SEGMENT, dim=1)[:-1] for _, mask in batches]
    assert any(not segment.all() for segments in written_with_padding for segment in segments), "a padded write"
    generator = torch.Generator().manual_seed(1)
    noise = [
        (torch.where(mask, tokens, torch.randint(1, loop.VOCAB, tokens.shape, generator=generator)), mask)
        for tokens, mask in batches
    ]
    results = []
    for data in (batches, noise):
        torch.manual_seed(0)
        model = loop.TinyMemoryLM()
        losses = loop.train(model, data, torch.optim.AdamW(model.parameters(), lr=3e-3))
        results.append((losses, model.memory.memoria.engrams, model.state_dict()))
    (losses, memory, weights), (noise_losses, noise_memory, noise_weights) = results
    assert losses == noise_losses
    assert all(torch.equal(weights[name], noise_weights[name]) for name in weights)
    assert memory == noise_memory


def test_tutorial_script_prints_the_seed_values():
    out = subprocess.run([sys.executable, "examples/tutorial.py"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    step6 = out.stdout.split("## step 6")[1].split("## step 7")[0]
    assert SEED_STEP_6 in step6 and SEED_STEP_6_LIFESPAN in step6
    assert "tensor([], size=(2, 0, 64))" in out.stdout and "<EngramType.SHORTTERM: 2>" in out.stdout


def test_tutorial_page_shows_what_the_script_prints_step_by_step():
    tutorial = (ROOT / "docs" / "tutorial.md").read_text()
    assert SEED_STEP_6 in tutorial and SEED_STEP_6_LIFESPAN in tutorial
    steps = re.findall(r"^\*\*(\d)(?:-(\d))?\. ", tutorial, flags=re.M)
    assert [first for first, _ in steps] == ["1", "3", "4", "5", "6", "7"]  # "1-2" opens, as in the script


@pytest.mark.parametrize("page, example", [("README.md", "quickstart.py"), ("docs/tutorial.md", "model_loop.py")])
def test_page_examples_are_the_tested_files_and_run(page, example):
    text = (ROOT / page).read_text()
    code = (ROOT / "examples" / example).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert code in blocks, f"{page}'s example must be examples/{example} verbatim"
    out = subprocess.run(
        [sys.executable, f"examples/{example}"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert re.search(r"loss \d+\.\d{3}", out.stdout), out.stdout
    if example == "model_loop.py":
        assert "the restored model reads the rest as the trained one: True" in out.stdout


def test_readme_block_is_at_most_15_lines_of_code_on_the_shipped_layer():
    code = (ROOT / "examples" / "quickstart.py").read_text()
    lines = [line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 15, f"{len(lines)} lines of code"
    assert "from memoria.nn import" in code and ".detach()" not in code


def test_notebook_runs_top_to_bottom():
    nbformat = pytest.importorskip("nbformat", reason="the dev extra installs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the dev extra installs nbclient")
    notebook = nbformat.read(ROOT / "examples" / "tutorial.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = ENV["PYTHONPATH"]
    try:
        client.execute()
    finally:
        os.environ.pop("PYTHONPATH") if old is None else os.environ.__setitem__("PYTHONPATH", old)
    outputs = "".join(
        output.get("text", "") + output.get("data", {}).get("text/plain", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert SEED_STEP_6 in outputs and SEED_STEP_6_LIFESPAN in outputs
