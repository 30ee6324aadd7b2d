"""Plain records that describe the memory's state and its history (the 1.1.0 ``memoria.types`` API).

Every record is a frozen, slotted dataclass so that summaries can be compared with ``==``, hashed where their
fields allow it, and pickled.
"""

from dataclasses import dataclass
from typing import Literal, Optional, Sequence, Tuple


@dataclass(slots=True, frozen=True)
class EngramConnection:
    """A directed edge of the Hebbian graph, from ``source_id`` to ``target_id``."""

    #: Engram id the edge leaves.
    source_id: int
    #: Engram id the edge reaches.
    target_id: int
    #: ``cofire_count / fire_count(source)``: how often the target fired when the source fired.
    weight: float
    #: Steps in which both engrams fired.
    cofire_count: int


@dataclass(slots=True, frozen=True)
class EngramInfo:
    """One live engram at one step."""

    #: Engram id.
    id: int
    #: Type name: ``"WORKING"``, ``"SHORTTERM"`` or ``"LONGTERM"``.
    type: Literal["WORKING", "SHORTTERM", "LONGTERM"]
    #: Remaining lifespan.
    lifespan: float
    #: Adjust steps survived, ``None`` when age is not tracked.
    age: Optional[int]
    #: Steps in which the engram fired.
    fire_count: int
    #: Edges from this engram, in memory-slot order of their targets.
    outgoings: Tuple[EngramConnection, ...]
    #: Edges into this engram, in memory-slot order of their sources.
    incoming: Tuple[EngramConnection, ...]

    @property
    def cofire_counts(self) -> dict[int, int]:
        """Target engram id -> steps in which both fired, for every outgoing edge."""
        return {edge.target_id: edge.cofire_count for edge in self.outgoings}


@dataclass(slots=True, frozen=True)
class EngramsInfo:
    """The state of one batch row's memory at one step."""

    #: Engram id -> its information, in memory-slot order.
    engrams: dict[int, EngramInfo]
    #: ``(source_id, target_id)`` -> edge, for every edge of positive weight.
    edges: dict[Tuple[int, int], EngramConnection]
    #: Ids of the working engrams, in memory-slot order.
    working: Tuple[int, ...]
    #: Ids of the short-term engrams, in memory-slot order.
    shortterm: Tuple[int, ...]
    #: Ids of the long-term engrams, in memory-slot order.
    longterm: Tuple[int, ...]


@dataclass(slots=True, frozen=True)
class Firing:
    """One engram firing at one step."""

    #: Step (index into the history) at which the fire count rose.
    timestep: int
    #: Engram id.
    engram_id: int
    #: Lifespan gained at that step, not counting the decrement of 1 every step applies.
    lifespan_gain: float


@dataclass(slots=True, frozen=True)
class EngramHistory:
    """Everything a history knows about one engram."""

    #: Engram id.
    id: int
    #: First step at which the engram was alive.
    creation_timestep: int
    #: First step at which it was gone again, ``None`` while alive.
    deletion_timestep: Optional[int]
    #: Number of steps it has been alive.
    duration: Optional[int]
    #: Steps at which it fired.
    firing_times: list[int]
    #: Its firings, in step order.
    firings: list[Firing]
    #: The row summaries of the steps it was alive, in step order.
    summaries: Sequence[EngramsInfo]
