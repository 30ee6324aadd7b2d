from pathlib import Path

import pytest

from experiment.data.hyperpartisan import (
    HyperpartisanFormatError,
    SplitOverlapError,
    check_split_overlap,
    load_articles,
    read_split_file,
    split_articles,
    strip_html,
)

FIXTURES = Path(__file__).parent / "fixtures" / "hyperpartisan"
ARTICLES = FIXTURES / "articles-byarticle-fixture.xml"
TRUTH = FIXTURES / "ground-truth-byarticle-fixture.xml"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_articles_joins_labels_in_file_order():
    articles = load_articles(ARTICLES, TRUTH)
    assert [a.article_id for a in articles] == ["0000001", "0000004", "0000009", "0000012", "0000015", "0000020"]
    assert [a.position for a in articles] == list(range(6))
    assert [a.label for a in articles] == [0, 1, 0, 1, 0, 1]
    assert articles[0].title == "Council approves new park budget"


def test_html_is_stripped_to_paragraph_lines():
    articles = load_articles(ARTICLES, TRUTH)
    assert articles[0].text == (
        "The city council voted 7 to 2 on Tuesday to approve the park budget.\n"
        "Funding will come from the general fund & a state grant, officials said."
    )
    # Link text is kept, the tag is not; a blockquote is its own line; loose text before a tag counts.
    assert articles[1].text.splitlines() == [
        "The radical elites are at it again, and this plan proves it.",
        "Wake up, patriots!",
        "Only one side is telling the truth.",
    ]
    assert articles[2].text == "Forecasters said the spring was wetter than usual.\nFarmers welcomed the rain."
    assert articles[5].text == "Nothing about this administration\u2019s record deserves praise."
    assert articles[0].full_text().startswith("Council approves new park budget\n\nThe city council")
    assert articles[0].full_text(include_title=False) == articles[0].text


def test_strip_html_decodes_escaped_markup():
    assert strip_html("<p>a &lt;b&gt; <b>bold</b></p><br/>c&nbsp;d") == "a <b> bold\nc d"


def test_positional_and_id_splits_agree():
    articles = load_articles(ARTICLES, TRUTH)
    by_position = split_articles(articles, FIXTURES / "hp-splits.json")
    by_id = split_articles(articles, FIXTURES / "id-splits.json")
    assert by_position == by_id
    assert [len(by_position[s]) for s in ("train", "dev", "test")] == [4, 1, 1]
    assert by_position["test"][0].article_id == "0000020"


def test_overlap_is_reported_and_refused_by_default():
    articles = load_articles(ARTICLES, TRUTH)
    with pytest.raises(SplitOverlapError, match="train ∩ test: 2 of 3 test articles"):
        split_articles(articles, FIXTURES / "hp-splits-overlap.json")
    splits = split_articles(articles, FIXTURES / "hp-splits-overlap.json", allow_overlap=True)
    assert [a.position for a in splits["test"]] == [0, 5, 3]
    overlap = check_split_overlap({"train": [0, 1, 2, 3], "dev": [3], "test": [0, 5, 3]})
    assert overlap.shared == {("train", "dev"): [3], ("train", "test"): [0, 3], ("dev", "test"): [3]}
    assert not check_split_overlap({"train": [0, 1], "dev": [2], "test": [3]})


def test_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_articles(tmp_path / "nope.xml", TRUTH)
    with pytest.raises(FileNotFoundError):
        read_split_file(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "articles_xml, truth_xml, message",
    [
        ("<articles><article id='1'>x", None, "not well-formed"),
        ("<docs><article id='1'>x</article></docs>", None, "root element must be <articles>"),
        ("<articles><article title='t'>x</article></articles>", None, "no id attribute"),
        ("<articles><article id='1'>x</article><article id='1'>y</article></articles>", None, "duplicate article id"),
        ("<articles><article id='1'>x</article><article id='2'>y</article></articles>", None, "have no ground truth"),
        ("<articles></articles>", None, "have no article"),
        (None, "<articles><article id='1' hyperpartisan='yes'/></articles>", "expected 'true' or 'false'"),
    ],
)
def test_malformed_files_raise(tmp_path, articles_xml, truth_xml, message):
    articles = write(tmp_path, "a.xml", articles_xml or "<articles><article id='1'>x</article></articles>")
    truth = write(tmp_path, "g.xml", truth_xml or "<articles><article id='1' hyperpartisan='true'/></articles>")
    with pytest.raises(HyperpartisanFormatError, match=message):
        load_articles(articles, truth)


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "expected a JSON object"),
        ("{not json", "not valid JSON"),
        ('{"train": [0], "dev": [1]}', "missing split"),
        ('{"train": [0], "dev": [1], "test": [2], "extra": []}', "unknown split 'extra'"),
        ('{"train": [0.5], "dev": [1], "test": [2]}', "list of integers or strings"),
        ('{"train": [0], "dev": [1], "test": [99]}', "outside 0..5"),
        ('{"train": [0], "dev": [1], "test": ["zzz"]}', "unknown article id 'zzz'"),
    ],
)
def test_bad_split_files_raise(tmp_path, content, message):
    articles = load_articles(ARTICLES, TRUTH)
    with pytest.raises(HyperpartisanFormatError, match=message):
        split_articles(articles, write(tmp_path, "s.json", content))
