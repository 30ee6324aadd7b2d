"""The code's shape (issues #15, #26): the algorithm module holds no checks, no routing between backends and no device,
C or storage dispatch; the façade asks no per-call question about its backend; no file of the package is over 400
lines; nothing in the tree imports itself back; the operations are declared once and listed in ``docs/internals.md``;
an add's data enters each file once."""

import ast
import re
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest
import torch

import memoria
from memoria import Memoria, ops

PACKAGE = Path(memoria.__file__).parent
ROOT = PACKAGE.parent
#: the packages of the tree whose modules must not import each other in a circle
TREE = ("memoria", "benchmarks", "experiment")


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Set[str]:
    """Modules of the tree that ``path`` imports anywhere (module level or inside a function)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rsplit(".", 1)[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                is_module = (ROOT / (candidate.replace(".", "/") + ".py")).exists() or (
                    ROOT / candidate.replace(".", "/") / "__init__.py"
                ).exists()
                found.add(candidate if is_module else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module.split(".")[0] in TREE and module != name}


def import_graph() -> Dict[str, Set[str]]:
    """Every module of the tree and the modules of the tree it imports (a package root too: it re-exports)."""
    return {module_name(path): imports_of(path) for top in TREE for path in (ROOT / top).rglob("*.py")}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One import cycle through each module that is on one (depth-first, in module order)."""
    found, done = [], set()

    def visit(module: str, trail: List[str]) -> None:
        if module in trail:
            found.append(trail[trail.index(module) :] + [module])
            return
        if module in done or module not in graph:
            return
        for imported in sorted(graph[module]):
            visit(imported, trail + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return found


@pytest.mark.parametrize("top", ["memoria", "experiment", "benchmarks"])
def test_no_import_cycle_anywhere_in_the_tree(top):
    graph = import_graph()
    # the root re-exports the package's modules: a module of the package that imports the root closes a cycle
    inside = [module for module, imported in graph.items() if module.startswith(f"{top}.") and top in imported]
    assert not inside, f"modules of {top} import its root: {inside}"
    in_top = [cycle for cycle in cycles(graph) if any(module.split(".")[0] == top for module in cycle)]
    assert not in_top, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in in_top)


def test_the_forms_import_no_part_of_the_memory():
    """The forms take tensors: they import each other and the C extensions' loader, nothing that holds engrams (the
    store once reached back into them, a cycle through a call that no import showed)."""
    for path in (PACKAGE / "forms").glob("*.py"):
        outside = {module for module in imports_of(path) if not module.startswith("memoria.forms")}
        assert outside <= {"memoria.native"}, (path.name, outside)
    # and only the boundary imports them
    for path in PACKAGE.rglob("*.py"):
        if path.parent != PACKAGE / "forms" and path.name != "ops.py":
            assert not any(module.startswith("memoria.forms") for module in imports_of(path)), path.name


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: path.relative_to(PACKAGE).as_posix())
def test_no_file_of_the_package_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400


def code_of(path: Path) -> str:
    """``path``'s code without comments and docstrings."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            body[0] = ast.Pass()
    return ast.unparse(tree)


def test_the_algorithm_module_holds_no_checks_no_routing_and_no_dispatch():
    path = PACKAGE / "algorithm.py"
    code = code_of(path)
    # no device, C or storage-layout dispatch
    for word in ("native", "on_cpu", "data_ptr", "cuda", "device.type", "physical", "capacity", "_walk", "form"):
        assert not re.search(rf"\b{re.escape(word)}\b", code), f"algorithm.py mentions {word!r}"
    # no routing between backends and no input checks: those are the façade's
    for word in ("independent_rows", "IndependentRows", "_backend", "isinstance"):
        assert word not in code, f"algorithm.py mentions {word!r}"
    assert not any(isinstance(node, ast.Raise) for node in ast.walk(ast.parse(code))), "algorithm.py raises"
    imported = imports_of(path)
    assert not imported & {"memoria.validation", "memoria.rows", "memoria.memoria", "memoria.checkpoint"}, imported


def test_the_facade_chooses_its_backend_once():
    """``Memoria`` picks the backend in ``reset_memory``; no other method names a backend or the flag that picks it."""
    tree = ast.parse((PACKAGE / "memoria.py").read_text())
    (facade,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Memoria"]
    for method in facade.body:
        if isinstance(method, ast.FunctionDef) and method.name not in ("__init__", "reset_memory"):
            if ast.get_docstring(method):
                method.body = method.body[1:]
            code = ast.unparse(method)
            named = re.findall(r"\b(independent_rows|IndependentRows|BatchedMemoria|_rows|_rowwise)\b", code)
            assert not named and "isinstance(self" not in code, f"Memoria.{method.name} names its backend: {named}"


def test_only_the_boundary_chooses_forms():
    """The device switch and the extensions are read in ``ops`` (the table) and in the forms themselves only."""
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        text = path.read_text()
        if relative in {"ops.py", "native.py"} or relative.startswith("forms/"):
            continue
        assert "on_cpu(" not in text and "native." not in text.replace("memoria/native.py", ""), relative


def documented_operations() -> Dict[str, str]:
    """The operations table of ``docs/internals.md``: name -> its fast forms as written there."""
    text = (ROOT / "docs" / "internals.md").read_text()
    section = text.split("## The operations", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]*) \|", section, flags=re.M)
    return {name: forms.strip() for name, forms in rows}


def test_the_documented_operations_are_the_registry():
    documented = documented_operations()
    assert list(documented) == list(ops.OPERATIONS), "docs/internals.md lists other operations than the registry"
    for name, operation in ops.OPERATIONS.items():
        fast = [kind for kind in ("cpu", "gpu", "c") if getattr(operation, kind) is not None]
        assert documented[name] == (", ".join(fast) or "-"), name


# ---------------------------------------------------------------------- where an add's data goes


def files_the_data_enters(call, data: torch.Tensor) -> List[str]:
    """The package files, in order, that a call from another file enters with ``data`` (or a tensor sharing its
    storage, or a tensor returned by a function that took it, or an object holding one) among its arguments."""
    storages = {data.untyped_storage().data_ptr()}

    def carries(value, depth: int = 0) -> bool:
        if isinstance(value, torch.Tensor):
            return value.untyped_storage().data_ptr() in storages
        if depth == 0 and isinstance(value, tuple):
            return any(carries(item, 1) for item in value)
        if depth == 0 and hasattr(value, "__dict__") and not isinstance(value, type):
            return any(carries(item, 1) for item in vars(value).values())
        return False

    entered = []

    def local(frame, event, argument):
        if event == "return" and isinstance(argument, torch.Tensor) and argument.numel():
            storages.add(argument.untyped_storage().data_ptr())  # what a function made of the data carries it on
        return local

    def trace(frame, event, argument):
        callee = Path(frame.f_code.co_filename)
        if event != "call" or PACKAGE not in callee.parents:
            return None
        # at a call, the frame's locals are its arguments (*args and **kwargs included)
        values = list(frame.f_locals.values())
        values += [
            item
            for value in values
            if isinstance(value, (tuple, dict))
            for item in (value.values() if isinstance(value, dict) else value)
        ]
        if not any(carries(value) for value in values):
            return None
        if frame.f_back is None or Path(frame.f_back.f_code.co_filename) != callee:
            entered.append(callee.relative_to(PACKAGE).as_posix())
        return local

    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(None)
    return entered


@pytest.mark.parametrize("independent_rows", [False, True], ids=["batched", "independent-rows"])
def test_the_data_of_an_add_enters_each_file_once(independent_rows):
    """Traced through the calls (``sys.settrace``): the façade, the input checks, the backend, the algorithm, the
    store, each entered once (with independent rows the algorithm and the store once per row), never handed back and
    forth between them."""
    memory = Memoria(3, 4, 2, 3, 3, independent_rows=independent_rows)
    generator = torch.Generator().manual_seed(0)
    for step in range(4):
        data = torch.randn(2, 3, 5, generator=generator, dtype=torch.float64)  # (float64: stored as a float32 copy)
        entered = files_the_data_enters(lambda: memory.add_working_memory(data), data)
        print(f"\n[add's data, step {step}, {'independent rows' if independent_rows else 'batched'}] {entered}")
        per_row = {"algorithm.py", "store.py"} if independent_rows else set()
        for name in set(entered):
            assert entered.count(name) == (2 if name in per_row else 1), entered
        backend = ["rows.py"] if independent_rows else []
        assert entered[:3] == ["memoria.py", "validation.py", *backend, "algorithm.py"][:3] and "store.py" in entered
        _, indices = memory.remind()
        memory.adjust_lifespan_and_memories(indices, torch.ones(indices.shape))


#: What the façade may ask of a backend: the verbs and sizes both backends have.
BACKEND_PROTOCOL = {
    "add", "remind", "adjust", "clear_rows", "engrams", "set_engrams", "to", "state", "restored", "load",
    "batch_size", "memory_length", "device", "fixed_shape", "output_width", "generator", "rows_in_use", "row_engrams",
}  # fmt: skip


def test_both_backends_speak_the_one_protocol_the_facade_uses():
    from memoria.algorithm import BatchedMemoria
    from memoria.rows import IndependentRows

    config = Memoria(2, 3, 2, 3, 2).config()
    for backend in (BatchedMemoria(2, 3, 2, 3, 2, False, False), IndependentRows(config)):
        missing = {name for name in BACKEND_PROTOCOL if not hasattr(backend, name)}
        assert not missing, (type(backend).__name__, missing)
    tree = ast.parse((PACKAGE / "memoria.py").read_text())
    asked = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
            owner = node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
            if owner in ("_backend", "backend"):
                asked.add(node.attr)
    assert asked and asked <= BACKEND_PROTOCOL, asked - BACKEND_PROTOCOL
