"""Hyperpartisan news detection (SemEval-2019 Task 4, by-article): raw files -> labelled articles -> splits.

The by-article release holds two XML files:

- ``articles-training-byarticle-20181122.xml``: ``<articles><article id=".." title="..">HTML body</article>...``
- ``ground-truth-training-byarticle-20181122.xml``: ``<articles><article id=".." hyperpartisan="true|false" .../>``

Articles are returned in file order; their position in that order is the integer key that Longformer's
``hp-splits.json`` uses (``{"train": [positions], "dev": [...], "test": [...]}``). Split files may instead list
article ids as strings. Articles shared between splits are reported by :func:`check_split_overlap`, and
:func:`split_articles` refuses them unless told otherwise (the hp-splits lists the paper used share 51 of their 65
test articles with train and 7 with dev).
"""

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

SPLIT_NAMES = ("train", "dev", "test")
# Names other tools use for the same splits.
SPLIT_ALIASES = {"validation": "dev", "valid": "dev", "val": "dev"}
# Tags after which a line break keeps paragraphs apart in the stripped text.
BLOCK_TAGS = {"p", "br", "div", "blockquote", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table"}

PathLike = Union[str, Path]


class HyperpartisanFormatError(ValueError):
    """A Hyperpartisan file does not follow the SemEval-2019 Task 4 format."""


class SplitOverlapError(ValueError):
    """The same article appears in more than one split."""


@dataclass(frozen=True)
class Article:
    """One labelled article: ``position`` is its index in file order (the hp-splits key)."""

    position: int
    article_id: str
    title: str
    text: str
    label: int  # 1 = hyperpartisan, 0 = not

    def full_text(self, include_title: bool = True) -> str:
        """Title and body separated by a blank line (or the body alone)."""
        return f"{self.title}\n\n{self.text}" if include_title and self.title else self.text


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment, with a line break after each block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: List[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in BLOCK_TAGS:
            self.parts.append("\n")


def strip_html(fragment: str) -> str:
    """Plain text of an HTML fragment: tags removed, entities decoded, one paragraph per line."""
    extractor = _TextExtractor()
    extractor.feed(fragment)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def _iter_article_elements(path: Path) -> Iterator[ET.Element]:
    """Yields every top-level ``<article>`` element, clearing it afterwards (the by-publisher files are GBs)."""
    if not path.is_file():
        raise FileNotFoundError(f"Hyperpartisan file not found: {path}")
    try:
        depth = 0
        root_tag = None
        for event, element in ET.iterparse(str(path), events=("start", "end")):
            if event == "start":
                if depth == 0:
                    root_tag = element.tag
                depth += 1
                continue
            depth -= 1
            if depth == 1 and element.tag == "article":
                yield element
                element.clear()
        if root_tag != "articles":
            raise HyperpartisanFormatError(f"{path}: root element must be <articles>, found <{root_tag}>")
    except ET.ParseError as error:
        raise HyperpartisanFormatError(f"{path}: not well-formed XML ({error})") from error


def _article_id(element: ET.Element, path: Path, index: int) -> str:
    article_id = element.get("id")
    if not article_id:
        raise HyperpartisanFormatError(f"{path}: article #{index} has no id attribute")
    return article_id


def read_articles(path: PathLike) -> List[Tuple[str, str, str]]:
    """Reads an ``articles-*.xml`` file into ``(id, title, plain text)`` tuples, in file order."""
    path = Path(path)
    articles, seen = [], set()
    for index, element in enumerate(_iter_article_elements(path)):
        article_id = _article_id(element, path, index)
        if article_id in seen:
            raise HyperpartisanFormatError(f"{path}: duplicate article id {article_id!r}")
        seen.add(article_id)
        # The body is the element's inner markup; serialise it back so nested tags and entities strip uniformly.
        inner = (element.text or "") + "".join(ET.tostring(child, encoding="unicode") for child in element)
        articles.append((article_id, element.get("title", ""), strip_html(inner)))
    return articles


def read_ground_truth(path: PathLike) -> Dict[str, int]:
    """Reads a ``ground-truth-*.xml`` file into ``{article id: 1 if hyperpartisan else 0}``."""
    path = Path(path)
    labels: Dict[str, int] = {}
    for index, element in enumerate(_iter_article_elements(path)):
        article_id = _article_id(element, path, index)
        value = element.get("hyperpartisan")
        if value not in ("true", "false"):
            raise HyperpartisanFormatError(
                f"{path}: article {article_id!r} has hyperpartisan={value!r}, expected 'true' or 'false'"
            )
        if article_id in labels:
            raise HyperpartisanFormatError(f"{path}: duplicate ground truth for article {article_id!r}")
        labels[article_id] = int(value == "true")
    return labels


def load_articles(articles_path: PathLike, ground_truth_path: PathLike) -> List[Article]:
    """Joins an articles file with its ground truth; every article must have exactly one label and vice versa."""
    raw = read_articles(articles_path)
    labels = read_ground_truth(ground_truth_path)
    missing = [article_id for article_id, _, _ in raw if article_id not in labels]
    if missing:
        raise HyperpartisanFormatError(f"{len(missing)} article(s) have no ground truth, e.g. {missing[:5]}")
    unused = sorted(set(labels) - {article_id for article_id, _, _ in raw})
    if unused:
        raise HyperpartisanFormatError(f"{len(unused)} ground-truth label(s) have no article, e.g. {unused[:5]}")
    return [
        Article(position, article_id, title, text, labels[article_id])
        for position, (article_id, title, text) in enumerate(raw)
    ]


def load_articles_from_hub(name: str = "hyperpartisan_news_detection", config: str = "byarticle") -> List[Article]:
    """The same articles through the ``datasets`` library (needs it installed and a network connection).

    The hub copy has no article ids, so each article's id is its position as a string.
    """
    try:
        import datasets
    except ImportError as error:  # optional dependency
        raise ImportError("load_articles_from_hub needs the `datasets` package: pip install datasets") from error
    rows = datasets.load_dataset(name, config, split="train")
    return [
        Article(position, str(position), row.get("title") or "", strip_html(row["text"]), int(row["hyperpartisan"]))
        for position, row in enumerate(rows)
    ]


@dataclass
class SplitOverlap:
    """Articles (by position) that two or more splits share."""

    shared: Dict[Tuple[str, str], List[int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.shared.values())

    def report(self, sizes: Optional[Dict[str, int]] = None) -> str:
        """One line per pair of splits, e.g. ``test ∩ train: 51 of 65 test articles``."""
        lines = []
        for (first, second), positions in self.shared.items():
            if positions:
                of = f" of {sizes[second]} {second} articles" if sizes else ""
                lines.append(f"{first} ∩ {second}: {len(positions)}{of} (positions {positions[:10]}...)")
        return "\n".join(lines) if lines else "no article is shared between splits"


def read_split_file(path: PathLike) -> Dict[str, List[Union[int, str]]]:
    """Reads a split file: JSON ``{"train": [...], "dev": [...], "test": [...]}``.

    Entries are article positions (integers, the hp-splits convention) or article ids (strings).
    ``validation``/``valid``/``val`` are accepted for ``dev``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise HyperpartisanFormatError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(raw, dict):
        raise HyperpartisanFormatError(f"{path}: expected a JSON object of split name -> list of articles")
    splits: Dict[str, List[Union[int, str]]] = {}
    for name, entries in raw.items():
        name = SPLIT_ALIASES.get(name, name)
        if name not in SPLIT_NAMES:
            raise HyperpartisanFormatError(f"{path}: unknown split {name!r}, expected one of {SPLIT_NAMES}")
        if not isinstance(entries, list) or not all(isinstance(e, (int, str)) and e is not True for e in entries):
            raise HyperpartisanFormatError(f"{path}: split {name!r} must be a list of integers or strings")
        splits[name] = entries
    absent = [name for name in SPLIT_NAMES if name not in splits]
    if absent:
        raise HyperpartisanFormatError(f"{path}: missing split(s) {absent}")
    return splits


def resolve_split(entries: Sequence[Union[int, str]], articles: Sequence[Article]) -> List[int]:
    """Positions of a split's entries (integers are positions, strings are article ids)."""
    by_id = {article.article_id: article.position for article in articles}
    positions = []
    for entry in entries:
        if isinstance(entry, int):
            if not 0 <= entry < len(articles):
                raise HyperpartisanFormatError(f"split position {entry} is outside 0..{len(articles) - 1}")
            positions.append(entry)
        elif entry in by_id:
            positions.append(by_id[entry])
        else:
            raise HyperpartisanFormatError(f"split lists unknown article id {entry!r}")
    return positions


def check_split_overlap(splits: Dict[str, Sequence[int]]) -> SplitOverlap:
    """Positions shared by each pair of splits (ordered as in :data:`SPLIT_NAMES`)."""
    overlap = SplitOverlap()
    names = [name for name in SPLIT_NAMES if name in splits]
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            overlap.shared[(first, second)] = sorted(set(splits[first]) & set(splits[second]))
    return overlap


def split_articles(
    articles: Sequence[Article], split_path: PathLike, allow_overlap: bool = False
) -> Dict[str, List[Article]]:
    """Splits articles by a split file; raises :class:`SplitOverlapError` on shared articles unless allowed."""
    positions = {name: resolve_split(entries, articles) for name, entries in read_split_file(split_path).items()}
    overlap = check_split_overlap(positions)
    if overlap and not allow_overlap:
        sizes = {name: len(p) for name, p in positions.items()}
        raise SplitOverlapError(
            f"{split_path}: splits share articles (pass allow_overlap=True to use them anyway):\n"
            + overlap.report(sizes)
        )
    return {name: [articles[p] for p in positions[name]] for name in SPLIT_NAMES}
