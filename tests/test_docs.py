"""The README opens with what a newcomer needs, and every relative link of the README and docs/ resolves."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "benchmarks" / "README.md",
    ROOT / "experiment" / "README.md",
    *sorted((ROOT / "experiment" / "docs").glob("*.md")),
]


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked.read_text()), f"{page.name}: {target}"


def test_readme_first_screen_is_what_it_is_install_use_and_the_links():
    readme = (ROOT / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", readme, flags=re.M)
    assert headings[:3] == ["Install", "Use it inside a model", "API at a glance"]
    top = readme[: readme.index("## API at a glance")]
    assert "(docs/tutorial.md)" in top and "(experiment/README.md)" in top
    assert "GOMP" not in top and "MT19937" not in top
    assert len(top.splitlines()) < 60


def test_model_page_code_runs():
    """docs/model.md's code block runs as written: one memory read by two readers over three segments, then reset."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "model.md").read_text(), flags=re.S)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], "docs/model.md", "exec"), namespace)
    memory, read, hidden = namespace["memory"], namespace["read"], namespace["hidden"]
    assert hidden.shape == (2, 16, 64) and len(namespace["reminded_attentions"]) == 2
    assert read.working.shape == (2, 8, 64) and read.working.requires_grad  # the write keeps its gradient
    assert read.reminded.size(1) > 0 and read.reminded_mask.shape == read.reminded.shape[:2]
    assert memory.memoria.memory_length == 0  # the reset at the end
