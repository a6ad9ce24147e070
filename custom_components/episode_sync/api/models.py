"""Typed models shared by the clients and the sync engine.

Parsed once at the edge (the clients), immutable afterwards: frozen, slotted
dataclasses with plain fields. Episodes travel and are mirrored as plain
tuples of the same fields (``EpisodeRow``): the clients parse into rows, and
an ``Episode`` is built from one when it is read.
Ids are opaque strings on every server (Plex ratingKeys "often look numeric",
Jellyfin ids are 32 hex digits, Emby's are numeric strings).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Self


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
    UnplayedItemCount``). ``last_viewed_at`` is the latest view of any of its
    episodes where the server says (Plex ``lastViewedAt``, epoch s): it moves
    when one episode is watched and another unwatched, which the counts hide.
    ``etag`` is the server's opaque stamp of the show's own record where it
    has one (Jellyfin's series ``Etag``): it moves when the series is saved
    again, as when its newest file changes.
    """

    id: str
    library_id: str
    title: str
    episode_count: int
    watched_count: int
    thumb: str | None = None
    last_viewed_at: int | None = None
    etag: str | None = None


@dataclass(frozen=True, slots=True)
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

    @classmethod
    def from_row(cls, row: EpisodeRow) -> Self:
        """The episode a mirror row holds (a row is the fields, in order)."""
        return cls(*row)


#: An episode as the mirror holds it: ``Episode``'s fields, in their order, in
#: a plain tuple. CPython's cyclic garbage collector does not track a tuple of
#: strings, numbers and ``None`` (3.14 leaves it untracked from the start, 3.13
#: untracks it at the first collection), while it tracks every instance of a class,
#: and each of its full passes (Home Assistant's process runs them from time to
#: time, whoever allocated) walks every tracked object: 100,000 ``Episode``
#: objects made every such pass about 20 ms longer on a fast machine, for as
#: long as the mirror lived; 100,000 rows add nothing (``script/bench``
#: measures a pass with and without the mirror). Rows are also quicker to
#: build: the stored mirror loads in half the time.
type EpisodeRow = tuple[
    str,  # id
    str,  # show_id
    str,  # library_id
    int | None,  # season
    int | None,  # number
    str,  # title
    str | None,  # air_date
    int,  # added_at
    bool,  # watched
    int | None,  # updated_at
    str | None,  # thumb
    int | None,  # duration
    str | None,  # air_time
]


def episode_row(
    *,
    id: str,
    show_id: str,
    library_id: str,
    season: int | None,
    number: int | None,
    title: str,
    air_date: str | None,
    added_at: int,
    watched: bool,
    updated_at: int | None = None,
    thumb: str | None = None,
    duration: int | None = None,
    air_time: str | None = None,
) -> EpisodeRow:
    """A mirror row, from ``Episode``'s fields by name (what the clients parse into)."""
    return (
        id,
        show_id,
        library_id,
        season,
        number,
        title,
        air_date,
        added_at,
        watched,
        updated_at,
        thumb,
        duration,
        air_time,
    )


class At:
    """Where each of ``Episode``'s fields sits in an ``EpisodeRow``."""

    ID: Final = 0
    SHOW_ID: Final = 1
    LIBRARY_ID: Final = 2
    SEASON: Final = 3
    NUMBER: Final = 4
    TITLE: Final = 5
    AIR_DATE: Final = 6
    ADDED_AT: Final = 7
    WATCHED: Final = 8
    UPDATED_AT: Final = 9
    THUMB: Final = 10
    DURATION: Final = 11
    AIR_TIME: Final = 12
