"""experiment/README.md links the task docs and carries their CPU result tables and commands unchanged."""

import re
from pathlib import Path

import pytest

EXPERIMENT = Path(__file__).parents[2] / "experiment"
README = (EXPERIMENT / "README.md").read_text()


def test_links_point_to_existing_docs():
    links = set(re.findall(r"\]\((docs/[^)#]+)\)", README))
    pages = {link for link in links if link.endswith(".md")}
    assert pages == {"docs/language_modeling.md", "docs/classification.md", "docs/infinity_former.md"}
    assert all((EXPERIMENT / link).is_file() for link in links)  # the pages and the analysis pictures


@pytest.mark.parametrize("doc", ["language_modeling.md"])
def test_cpu_tables_and_commands_match_the_docs(doc):
    text = (EXPERIMENT / "docs" / doc).read_text()
    measured = text[text.index("Measured here") :]
    table = [line for line in measured.splitlines() if line.startswith("|")]
    assert len(table) >= 5 and all(line in README.splitlines() for line in table)
    blocks = re.findall(r"```\w*\n(.*?)```", text, flags=re.S)
    cpu_commands = [block for block in blocks if re.search(r"(tiny|long_range)_\$m\.json", block)]
    assert len(cpu_commands) == 1 and cpu_commands[0] in README


def test_the_classification_doc_points_to_the_readme_table():
    text = (EXPERIMENT / "docs" / "classification.md").read_text()
    assert "(../README.md#classification-long-range-check-generated-documents)" in text
    section = README[README.index("### Classification: long-range check") :]
    assert "python -m experiment.scripts.seed_table runs/classification/*_seed*" in section
    assert "| Memoria BERT | last segment + memory |" in section


def test_names_the_corpus_and_the_paper_claims():
    assert "apt-get install -y bible-kjv" in README
    assert README.count("**Paper's claim**") == 3  # sorting, language modelling, classification
