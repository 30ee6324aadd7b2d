"""Per-row status summaries of an engram memory (``EngramsInfo``), as the 1.1.0 ``status_summary`` gives them."""

from typing import Any, Optional

import torch

from .types import EngramConnection, EngramInfo, EngramsInfo

#: ``EngramType`` value -> name, for the live types (0 is NULL and never summarised).
TYPE_NAMES = {1: "WORKING", 2: "SHORTTERM", 3: "LONGTERM"}


def engrams_info_from_arrays(
    ids: torch.Tensor,
    types: torch.Tensor,
    lifespan: torch.Tensor,
    age: Optional[torch.Tensor],
    counts: torch.Tensor,
) -> EngramsInfo:
    """Build one row's ``EngramsInfo`` from its live engrams.

    Args:
        ids: engram ids in memory-slot order, shaped [Live]
        types: ``EngramType`` values (1-3) shaped [Live]
        lifespan: lifespans shaped [Live], float32 (or float64 for hand-made histories)
        age: ages shaped [Live], or None when age is not tracked
        counts: induce counts among these engrams shaped [Live, Live]; the diagonal holds the fire counts
    Returns:
        the summary; edge weight ``counts[i, j] / counts[i, i]`` in float32, edges of weight > 0 between distinct ids
    """
    counts = counts.to("cpu", torch.int32)
    fire_counts = counts.diagonal()
    # The published package divides int32 by int32, i.e. in float32; doing the same keeps weights bit-equal.
    weights = counts.float() / fire_counts.float().unsqueeze(1)  # [Live, Live]
    ids = ids.cpu()
    keep = (weights > 0) & (ids.unsqueeze(1) != ids.unsqueeze(0))  # [Live, Live]

    id_list = ids.tolist()
    sources, targets = keep.nonzero(as_tuple=True)  # row-major: outgoing edges grouped by source in slot order
    edge_weights = weights[sources, targets].tolist()
    edge_cofires = counts[sources, targets].tolist()
    outgoing: list[list[EngramConnection]] = [[] for _ in id_list]
    edges: dict[tuple[int, int], EngramConnection] = {}
    for source, target, weight, cofire in zip(sources.tolist(), targets.tolist(), edge_weights, edge_cofires):
        edge = EngramConnection(id_list[source], id_list[target], weight, cofire)
        outgoing[source].append(edge)
        edges[edge.source_id, edge.target_id] = edge

    # Incoming edges of i list sources j in slot order, with weight[j, i] and (as the reference does) counts[i, j].
    targets_t, sources_t = keep.t().nonzero(as_tuple=True)
    in_weights = weights[sources_t, targets_t].tolist()
    in_cofires = counts[targets_t, sources_t].tolist()
    incoming: list[list[EngramConnection]] = [[] for _ in id_list]
    for target, source, weight, cofire in zip(targets_t.tolist(), sources_t.tolist(), in_weights, in_cofires):
        incoming[target].append(EngramConnection(id_list[source], id_list[target], weight, cofire))

    type_list = types.tolist()
    lifespan_list = lifespan.tolist()
    age_list = age.tolist() if age is not None else [None] * len(id_list)
    by_type: dict[int, list[int]] = {1: [], 2: [], 3: []}
    engrams: dict[int, EngramInfo] = {}
    for slot, (engram_id, type_value, fire_count) in enumerate(zip(id_list, type_list, fire_counts.tolist())):
        by_type[type_value].append(engram_id)
        engrams[engram_id] = EngramInfo(
            id=engram_id,
            type=TYPE_NAMES[type_value],
            lifespan=lifespan_list[slot],
            age=age_list[slot],
            fire_count=fire_count,
            outgoings=tuple(outgoing[slot]),
            incoming=tuple(incoming[slot]),
        )
    return EngramsInfo(
        engrams=engrams, edges=edges, working=tuple(by_type[1]), shortterm=tuple(by_type[2]), longterm=tuple(by_type[3])
    )


def status_summary(engrams: Any) -> list[EngramsInfo]:
    """Summarise every batch row of an ``Engrams``-like object.

    Args:
        engrams: has ``data`` [B, M, D], ``induce_counts`` [B, M, M], ``engrams_types`` [B, M], ``lifespan`` [B, M],
            ``age`` [B, M] or None, ``engram_ids`` [B, M], ``track_age`` and ``track_engram_id``
    Returns:
        one ``EngramsInfo`` per batch row; NULL slots are left out
    """
    if not engrams.track_engram_id or engrams.engram_ids is None:
        raise ValueError("status_summary needs engram ids: build the memory with track_id=True (or keep_history=True)")
    types = engrams.engrams_types.cpu()
    summaries = []
    for row in range(types.size(0)):
        slots = (types[row] != 0).nonzero(as_tuple=True)[0]  # [Live]
        counts = engrams.induce_counts[row].cpu()[slots][:, slots]  # [Live, Live]
        age = engrams.age[row].cpu()[slots] if engrams.track_age else None
        summaries.append(
            engrams_info_from_arrays(
                engrams.engram_ids[row].cpu()[slots],
                types[row][slots],
                engrams.lifespan[row].cpu()[slots],
                age,
                counts,
            )
        )
    return summaries


def _connection_as_plain(edge: EngramConnection) -> tuple:
    return (edge.source_id, edge.target_id, edge.weight, edge.cofire_count)


def summary_as_plain(summary: EngramsInfo) -> dict[str, Any]:
    """An ``EngramsInfo`` as plain lists, tuples, numbers and strings (``memoria.history.files`` reads it back)."""
    engrams = [
        (
            info.id,
            info.type,
            info.lifespan,
            info.age,
            info.fire_count,
            [_connection_as_plain(e) for e in info.outgoings],
            [_connection_as_plain(e) for e in info.incoming],
        )
        for info in summary.engrams.values()
    ]
    return {
        "engrams": engrams,
        "edges": [_connection_as_plain(edge) for edge in summary.edges.values()],
        "edge_keys": [tuple(key) for key in summary.edges.keys()],
        "working": list(summary.working),
        "shortterm": list(summary.shortterm),
        "longterm": list(summary.longterm),
    }


def _connection(reader: Any, value: Any, field: str) -> EngramConnection:
    source, target, weight, cofire_count = reader.items(value, field, 4)
    return EngramConnection(
        reader.integer(source, field), reader.integer(target, field), reader.real(weight, field),
        reader.integer(cofire_count, field),
    )  # fmt: skip


def summary_from_plain(reader: Any, encoded: Any, field: str) -> EngramsInfo:
    """The ``EngramsInfo`` of ``summary_as_plain``'s output, every entry checked by ``reader`` (``fail``, ``new``,
    ``items``, ``integer``, ``real``: ``memoria.history.state``'s), whose errors name ``field``."""
    names = ("engrams", "edges", "edge_keys", "working", "shortterm", "longterm")
    if not isinstance(encoded, dict) or not set(names) <= set(encoded):
        reader.fail(field, f"None or a dict of {list(names)}", type(encoded).__name__)
    reader.new(encoded, field)
    engrams = {}
    for index, entry in enumerate(reader.items(encoded["engrams"], f"{field}['engrams']")):
        where = f"{field}['engrams'][{index}]"
        engram_id, type_name, lifespan, age, fire_count, outgoings, incoming = reader.items(entry, where, 7)
        if not isinstance(type_name, str) or type_name not in TYPE_NAMES.values():
            reader.fail(f"{where} type", f"one of {list(TYPE_NAMES.values())}", repr(type_name)[:80])
        engrams[reader.integer(engram_id, where)] = EngramInfo(
            id=engram_id,
            type=type_name,
            lifespan=reader.real(lifespan, where),
            age=None if age is None else reader.integer(age, where),
            fire_count=reader.integer(fire_count, where),
            outgoings=tuple(_connection(reader, e, where) for e in reader.items(outgoings, where)),
            incoming=tuple(_connection(reader, e, where) for e in reader.items(incoming, where)),
        )
    edges, keys = reader.items(encoded["edges"], f"{field}['edges']"), encoded["edge_keys"]
    if len(reader.items(keys, f"{field}['edge_keys']")) != len(edges):
        reader.fail(f"{field}['edge_keys']", "as long as its edges")
    by_type = {
        name: tuple(reader.integer(i, f"{field}[{name!r}]") for i in reader.items(encoded[name], field))
        for name in ("working", "shortterm", "longterm")
    }
    return EngramsInfo(
        engrams=engrams,
        edges={
            tuple(reader.integer(i, f"{field}['edge_keys']") for i in reader.items(key, field, 2)): _connection(
                reader, edge, f"{field}['edges']"
            )
            for key, edge in zip(keys, edges)
        },
        **by_type,
    )
