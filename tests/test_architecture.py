"""The package's shape (issue #15): the algorithm module holds no device, C or slot dispatch, and no module of the
package imports itself back through another."""

import ast
import re
from pathlib import Path
from typing import Dict, Set

import memoria

PACKAGE = Path(memoria.__file__).parent


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path) -> Set[str]:
    """Modules of the package that ``path`` imports anywhere (module level or inside a function)."""
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
                found.add(candidate if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists() else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module.startswith("memoria") and module != name}


def test_no_import_cycle_inside_the_package():
    graph: Dict[str, Set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        # the package root re-exports its modules; a module importing the root is what would close a cycle
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        graph[module_name(path)] = internal_imports(path)
    assert "memoria" not in set().union(*graph.values()), "a module imports the package root"
    assert "memoria.rows" in graph["memoria.memoria"] and "memoria.memoria" not in graph["memoria.rows"]

    visiting, done = set(), set()

    def visit(module: str, trail: list) -> None:
        if module in done or module not in graph:
            return
        assert module not in visiting, "import cycle: " + " -> ".join(trail + [module])
        visiting.add(module)
        for imported in graph[module]:
            visit(imported, trail + [module])
        visiting.discard(module)
        done.add(module)

    for module in graph:
        visit(module, [])


def test_the_algorithm_module_is_short_and_free_of_dispatch():
    source = (PACKAGE / "memoria.py").read_text()
    assert len(source.splitlines()) <= 400
    code = "\n".join(line.split("#")[0] for line in source.splitlines())
    for word in ("native", "on_cpu", "data_ptr", "cuda", "device.type", "physical", "slots", "capacity", "_walk"):
        assert not re.search(rf"\b{re.escape(word)}\b", code), f"memoria.py mentions {word!r}"
    assert "import native" not in source and "forms" not in code


def test_only_the_boundary_chooses_forms():
    """The device switch and the extensions are read in ``ops`` (the table) and in the forms themselves only."""
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        text = path.read_text()
        if relative in {"ops.py", "native.py", "draw.py"} or relative.startswith("forms/"):
            continue
        assert "on_cpu(" not in text and "native." not in text.replace("memoria/native.py", ""), relative
