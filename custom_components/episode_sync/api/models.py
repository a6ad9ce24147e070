"""Typed models shared by the clients and the sync engine.

Parsed once at the edge (the clients), immutable afterwards: the engine keeps
thousands of them, so they are frozen, slotted dataclasses with plain fields.
Ids are opaque strings on every server (Plex ratingKeys "often look numeric",
Jellyfin ids are 32 hex digits, Emby's are numeric strings).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ServerKind(StrEnum):
    """The media servers Episode Sync can mirror."""

    PLEX = "plex"
    JELLYFIN = "jellyfin"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInfo:
    """Who a server is: its stable id, display name and version."""

    kind: ServerKind
    server_id: str
    name: str
    version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Library:
    """A TV library (Plex section of type ``show``, Jellyfin ``tvshows`` view).

    ``marker`` is the server's cheap change marker for the whole library, an
    opaque string compared for equality only (Plex: contentChangedAt,
    scannedAt, updatedAt and uuid). ``None`` when the server has none
    (Jellyfin), in which case the engine looks at the library on every sync.
    ``refreshing`` is true while the server scans it: the engine then syncs it
    but does not trust the marker, so it looks again after the scan.
    """

    id: str
    title: str
    marker: str | None = None
    refreshing: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Show:
    """A show as listed by the server, with the counts used to spot changes.

    ``episode_count`` counts the show's real episodes (Plex ``leafCount``,
    Jellyfin ``RecursiveItemCount``) and ``watched_count`` the watched ones
    (Plex ``viewedLeafCount``, Jellyfin ``RecursiveItemCount -
    UnplayedItemCount``).
    """

    id: str
    library_id: str
    title: str
    episode_count: int
    watched_count: int
    thumb: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Episode:
    """One mirrored episode.

    ``added_at`` is epoch seconds, UTC. ``updated_at`` is the server's own
    last-change stamp in epoch seconds when it has one (Plex ``updatedAt``),
    else ``None`` (Jellyfin exposes no such field). ``air_date`` is
    ``YYYY-MM-DD``; ``air_time`` is the time of day it aired (``HH:MM``, the
    server's local time) when the server has one (Plex over-the-air
    recordings), else ``None``. ``duration`` is the runtime in seconds, when
    known. ``season`` and ``number`` are ``None`` when the server has no index
    for the episode.
    """

    id: str
    show_id: str
    library_id: str
    season: int | None
    number: int | None
    title: str
    air_date: str | None
    added_at: int
    watched: bool
    updated_at: int | None = None
    thumb: str | None = None
    duration: int | None = None
    air_time: str | None = None
