"""docs/algorithm.md stays true: the tests it cites exist, each quirk R1-R4 has its section, its links resolve."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "algorithm.md"
QUIRKS = ["R1", "R2", "R3", "R4"]
CITATION = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def names_of_tests(path: Path) -> set:
    """Names of the test functions in a test module, module-level and inside classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return {name for name in names if name.startswith("test")}


def quirk_section(quirk: str) -> str:
    """The text of the ``### R<n>: ...`` section, up to the next heading."""
    match = re.search(rf"^### {quirk}: .*?(?=^#{{2,3}} )", doc_text(), flags=re.M | re.S)
    assert match, f"docs/algorithm.md has no '### {quirk}: ...' section"
    return match.group(0)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_cited_test_exists():
    citations = CITATION.findall(doc_text())
    assert len(citations) >= 15, "the doc should name the tests that pin its rules"
    missing = []
    for path, name in citations:
        module = ROOT / path
        if not module.is_file() or name not in names_of_tests(module):
            missing.append(f"{path}::{name}")
    assert missing == []


def test_every_mentioned_test_module_exists():
    modules = set(re.findall(r"\btests/[\w/]+\.py\b", doc_text()))
    assert len(modules) >= 5
    assert sorted(path for path in modules if not (ROOT / path).is_file()) == []


@pytest.mark.parametrize("quirk", QUIRKS)
def test_each_kept_quirk_says_what_why_and_which_test_pins_it(quirk):
    section = quirk_section(quirk)
    for part in ("**What.**", "**Why kept.**", "**Pinned by**"):
        assert part in section, f"section {quirk} lacks {part}"
    pinned = section.split("**Pinned by**", 1)[1]
    names = [name for _, name in CITATION.findall(pinned)]
    # the unit test written for the quirk carries its name (tests/test_memoria.py::test_quirk_r1_...)
    assert any(name.startswith(f"test_quirk_{quirk.lower()}_") for name in names), names


def test_every_quirk_the_code_cites_is_defined_in_the_doc():
    sources = [path for pattern in ("*.py", "*.c", "*.h") for path in (ROOT / "memoria").glob(pattern)]
    assert sources
    cited, stale = set(), []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        cited.update(re.findall(r"\bR[1-9]\b", text))
        if re.search(r"SPEC\s+R[1-9]", text):
            stale.append(path.name)
    assert cited, "the code names the quirks it reproduces"
    for quirk in sorted(cited):
        quirk_section(quirk)
    # the quirks are defined in the repository now, not in an outside specification
    assert stale == []


def test_relative_links_resolve_to_files_and_headings():
    links = re.findall(r"\]\(([^)\s]+)\)", doc_text())
    relative = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert relative
    for link in relative:
        path, _, anchor = link.partition("#")
        target = (DOC.parent / path).resolve() if path else DOC
        assert target.is_file(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {github_anchor(heading) for heading in headings}, link


def test_readme_links_the_doc():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/algorithm.md)" in readme
