"""Experiment configs: JSON files that state only what they change.

A config may name the configs it builds on::

    {"extends": ["memoria.json", "_cpu.json"], "unset": ["model.memory_init"], "model": {"n_embd": 128}}

Every config is a patch. Resolving one applies, in order, each parent of ``extends`` (a path or a list of paths,
relative to the file; each parent is applied with its own parents first), then removes this file's ``unset``
entries (dotted paths, each of which must exist at that point), then merges this file's own entries on top:
objects merge key by key, any other value (numbers, strings, lists, null) replaces the inherited one. The resolved
config holds neither ``extends`` nor ``unset``. A file reached twice in one resolution is refused, whether through
a cycle or through two parents sharing an ancestor (the second would silently re-apply the ancestor's values over
the first's changes).

Files whose name starts with ``_`` are parts other configs extend (a size's setting, a dataset's), not configs to
train; ``load_config`` applies ``--override`` entries after resolution and checks the result is runnable.
"""

import copy
import json
from pathlib import Path
from typing import Any, Optional, Sequence

INHERITANCE_KEYS = ("extends", "unset")


class ConfigError(ValueError):
    """A config that cannot be resolved: a missing parent, a cycle, a bad ``unset`` entry, malformed JSON."""


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``patch`` merged on top (neither is changed): objects merge key by key, other values replace."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def unset_by_path(config: dict[str, Any], dotted_key: str, source: Path) -> None:
    """Remove the entry ``dotted_key`` (``"trainer.val_check_interval"``) from ``config``; it must exist."""
    *sections, last = dotted_key.split(".")
    node: Any = config
    for section in sections:
        node = node.get(section) if isinstance(node, dict) else None
    if not isinstance(node, dict) or last not in node:
        raise ConfigError(f"{source}: unset {dotted_key!r}: the config it extends has no such entry")
    del node[last]


def _read(path: Path, chain: Sequence[Path]) -> dict[str, Any]:
    if not path.is_file():
        origin = f" (extended by {chain[-1]})" if chain else ""
        raise ConfigError(f"config {path} does not exist{origin}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a JSON object, got {type(raw).__name__}")
    return raw


def _as_list(value: Any, key: str, path: Path) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{path}: {key!r} must be a string or a list of strings, got {value!r}")
    return values


def _apply(path: Path, base: dict[str, Any], chain: list[Path], seen: set[Path]) -> dict[str, Any]:
    """``base`` with the config at ``path`` applied as a patch (its parents first)."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in [*chain[chain.index(path) :], path])
        raise ConfigError(f"configs extend each other in a cycle: {cycle}")
    if path in seen:
        raise ConfigError(
            f"{path} is reached twice while resolving {chain[0]}: two of its parents share it; "
            "extend it once (apply the second as a part that does not extend it)"
        )
    seen.add(path)
    raw = _read(path, chain)
    chain = [*chain, path]
    for parent in _as_list(raw.get("extends", []), "extends", path):
        base = _apply(path.parent / parent, base, chain, seen)
    base = copy.deepcopy(base)
    for dotted_key in _as_list(raw.get("unset", []), "unset", path):
        unset_by_path(base, dotted_key, path)
    return deep_merge(base, {key: value for key, value in raw.items() if key not in INHERITANCE_KEYS})


def resolve_config(path: str | Path) -> dict[str, Any]:
    """The config at ``path`` with everything it extends applied (see the module docstring)."""
    return _apply(Path(path), {}, [], set())


def set_by_path(config: dict[str, Any], dotted_key: str, value: Any) -> None:
    """``set_by_path(c, "a.b", 1)`` sets ``c["a"]["b"] = 1``, creating missing sections."""
    *sections, last = dotted_key.split(".")
    node = config
    for section in sections:
        child = node.setdefault(section, {})
        if not isinstance(child, dict):
            raise ValueError(f"cannot set {dotted_key}: {section} is {child!r}, not a section")
        node = child
    node[last] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``; the value is JSON when it parses, else a string."""
    key, separator, raw = text.partition("=")
    if not separator or not key:
        raise ValueError(f"override {text!r} is not of the form key.path=value")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def load_config(path: str | Path, overrides: Sequence[str] = (), required: Optional[Sequence[str]] = None) -> dict:
    """Resolve the config at ``path``, apply ``key.path=value`` overrides in order, and check that it names a
    ``task``, a ``model`` and an ``output_dir`` (or the entries ``required`` lists)."""
    config = resolve_config(path)
    for override in overrides:
        set_by_path(config, *parse_override(override))
    for entry in ("task", "model", "output_dir") if required is None else required:
        if entry not in config:
            raise ValueError(f"{path}: config has no {entry!r} entry")
    return config
