"""Persistence of the mirror and the sync bookkeeping (SPEC §4).

Two stores per config entry:

- ``episode_sync.<entry_id>.status``: small, written after every sync;
- ``episode_sync.<entry_id>.library``: the mirror, written only when a sync
  changed it, once per sync.

The mirror is stored compactly (one list per episode, short keys) because a
library of 100,000 episodes is encoded as JSON on every write. Each show's
episode rows are stored as one JSON *string* (layout 1.2): Home Assistant
parses the file in an executor thread that holds the interpreter, and a file
of 1,000 strings parses in a fraction of the time of 100,000 nested lists;
the rows are then decoded show by show on the loop, handing it back as it goes. A file that is
corrupt or not in the expected shape is logged and answered with an empty
mirror, which makes the next sync a full one; it never stops the set-up.

Home Assistant's ``Store`` logs a failed write (a full disk) and carries on, so
each library file carries a ``generation`` that the status file names: a pair
whose generations differ (the library write failed, the status one did not)
is not trusted, and the next start runs a full sync instead of an incremental
one from a cursor newer than its mirror.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
import secrets
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.storage import Store
import orjson

from .api.models import At, EpisodeRow, Show
from .compat import STORE_OFF_LOOP
from .const import DOMAIN, LOGGER
from .sync import YIELD_EVERY, LibraryMirror, Mirror, ShowMirror, SyncState

STATUS_VERSION = 1
LIBRARY_VERSION = 1
#: 2: each show's rows are one JSON string (1: a JSON list). 3: each removal
#: remembered carries its show's title (2: without; read as unknown). Minor
#: bumps, so an older release reads the file as unreadable and rebuilds it
#: with a full sync instead of refusing to set up.
LIBRARY_MINOR_VERSION = 3

# Positions in an episode's stored list. Append only: a new field goes at the
# end and older lists are read with it missing.
_EPISODE_FIELDS = (
    "id",
    "season",
    "number",
    "title",
    "air_date",
    "added_at",
    "watched",
    "updated_at",
    "thumb",
    "duration",
    "air_time",
)


@dataclass(slots=True)
class Owed:
    """What the next sync still owes, kept in the status file.

    A reload (a reauth, an options change) or a restart must not forget a
    forced full sync that could not run, a library a push message reported
    changed, the played episodes it named, or the new episodes found before
    Home Assistant had started (mirrored, not announced yet).
    """

    force_full: bool = False
    dirty_libraries: set[str] = field(default_factory=set)
    played_items: set[str] = field(default_factory=set)
    #: Syncs in a row whose incremental attempt met a protocol error and ran full.
    delta_failures: int = 0
    unannounced: set[str] = field(default_factory=set)


def encode_owed(owed: Owed) -> dict[str, Any]:
    """Turn what is owed into JSON-ready data."""
    return {
        "full_sync": owed.force_full,
        "dirty_libraries": sorted(owed.dirty_libraries),
        "played_items": sorted(owed.played_items),
        "delta_failures": owed.delta_failures,
        "unannounced": sorted(owed.unannounced),
    }


def decode_owed(data: Any) -> Owed:
    """Rebuild what is owed; anything unreadable owes nothing (the mirror is still good)."""
    try:
        return Owed(
            force_full=data.get("full_sync") is True,
            dirty_libraries={str(i) for i in data.get("dirty_libraries", ())},
            played_items={str(i) for i in data.get("played_items", ())},
            delta_failures=int(data.get("delta_failures", 0)),
            unannounced={str(i) for i in data.get("unannounced", ())},
        )
    except (AttributeError, TypeError, ValueError):
        return Owed()


class _VersionedStore(Store[dict[str, Any]]):
    """A Store whose migrations are the one place that knows old layouts."""

    async def _async_migrate_func(
        self, old_major_version: int, old_minor_version: int, old_data: dict[str, Any]
    ) -> dict[str, Any]:
        # Version 1 is the first layout: there is nothing older to migrate yet.
        # A future layout converts ``old_data`` here, step by step.
        return old_data


class _LibraryStore(_VersionedStore):
    """The mirror's store: knows the older minor layouts of the library file."""

    async def _async_migrate_func(
        self, old_major_version: int, old_minor_version: int, old_data: dict[str, Any]
    ) -> dict[str, Any]:
        if old_major_version == 1 and old_minor_version < 2:
            await _rows_to_strings(old_data)
        return old_data


async def _rows_to_strings(data: dict[str, Any]) -> None:
    """Layout 1.1 -> 1.2: each show's row list becomes one JSON string, in place.

    Lenient: anything not in the expected shape is left for ``decode_mirror``
    to reject (which means a full sync, never a failed set-up).
    """
    done = 0
    for library in data.get("libraries") or () if isinstance(data, dict) else ():
        for show in library.get("shows") or () if isinstance(library, dict) else ():
            if isinstance(show, list) and len(show) == 6 and isinstance(show[5], list):
                rows = show[5]
                show[5] = orjson.dumps(rows).decode()
                done += len(rows) + 1
                if done >= YIELD_EVERY:
                    done = 0
                    await asyncio.sleep(0)


async def encode_mirror(mirror: Mirror) -> dict[str, Any]:
    """Turn the mirror into compact JSON-ready data, yielding to the loop as it goes.

    Each show's episode rows are serialized here, a few shows at a time, into
    one JSON string per show (layout 1.2), handed to the store as an
    ``orjson.Fragment`` of that string: the store's own serialization of a
    100,000-episode mirror then only joins finished bytes instead of holding
    the interpreter for the whole document (escaping 12 MB of strings there
    took as long again), and loading it parses 1,000 strings instead of
    100,000 lists.
    """
    libraries = []
    for library in mirror.libraries.values():
        shows = []
        done = 0
        for entry in library.shows.values():
            # The mirror's row without the show and library ids (the show's
            # entry holds them) and with ``watched`` as 0 or 1: ``_EPISODE_FIELDS``.
            rows = [
                (
                    row[At.ID],
                    *row[At.SEASON : At.WATCHED],
                    int(row[At.WATCHED]),
                    *row[At.UPDATED_AT :],
                )
                for row in entry.rows.values()
            ]
            show = entry.show
            shows.append(
                [
                    show.id,
                    show.title,
                    show.episode_count,
                    show.watched_count,
                    show.thumb,
                    orjson.Fragment(orjson.dumps(orjson.dumps(rows).decode())),
                    show.last_viewed_at,
                    show.etag,
                ]
            )
            done += len(rows) + 1
            if done >= YIELD_EVERY:
                done = 0
                await asyncio.sleep(0)
        libraries.append({"id": library.id, "title": library.title, "shows": shows})
    removed = {eid: list(lately) for eid, lately in mirror.removed.items()}
    return {"server_id": mirror.server_id, "libraries": libraries, "removed": removed}


def decode_mirror(data: Mapping[str, Any]) -> Mirror:
    """Rebuild the mirror from stored data; raise ``ValueError`` on a bad shape."""
    steps = _decode(data)
    try:
        while True:
            next(steps)
    except StopIteration as done:
        mirror: Mirror = done.value
    return mirror


async def async_decode_mirror(data: Mapping[str, Any]) -> Mirror:
    """``decode_mirror``, handing the event loop back every ``YIELD_EVERY`` episodes.

    Decoding 100,000 episodes in one go held Home Assistant's loop for about
    half a second at start-up.
    """
    steps = _decode(data)
    try:
        while True:
            next(steps)
            await asyncio.sleep(0)
    except StopIteration as done:
        mirror: Mirror = done.value
    return mirror


#: A stored row padded to every field (older rows lack the fields added later).
_PADDING = (None,) * len(_EPISODE_FIELDS)


def _decode(data: Mapping[str, Any]) -> Generator[None, None, Mirror]:
    """The decoder, pausing (yielding) every ``YIELD_EVERY`` episodes."""
    try:
        libraries: dict[str, LibraryMirror] = {}
        done = 0
        for lib in data["libraries"]:
            library_id = str(lib["id"])
            shows: dict[str, ShowMirror] = {}
            for stored in lib["shows"]:
                # Fields after the rows are appended: files written before lack them.
                show_id, title, count, watched, thumb, rows, *later = stored
                last_viewed_at, etag = (*later, None, None)[:2]
                show = Show(
                    id=str(show_id),
                    library_id=library_id,
                    title=str(title),
                    episode_count=int(count),
                    watched_count=int(watched),
                    thumb=thumb,
                    last_viewed_at=last_viewed_at,
                    etag=etag,
                )
                episodes: dict[str, EpisodeRow] = {}
                for row in orjson.loads(rows):
                    (
                        episode_id,
                        season,
                        number,
                        episode_title,
                        air_date,
                        added_at,
                        seen,
                        updated_at,
                        episode_thumb,
                        duration,
                        air_time,
                    ) = (*row, *_PADDING)[: len(_EPISODE_FIELDS)]
                    episodes[str(episode_id)] = (
                        str(episode_id),
                        show.id,
                        library_id,
                        season,
                        number,
                        str(episode_title),
                        air_date,
                        int(added_at),
                        bool(seen),
                        updated_at,
                        episode_thumb,
                        duration,
                        air_time,
                    )
                shows[show.id] = ShowMirror.build(show, episodes)
                done += len(episodes) + 1
                if done >= YIELD_EVERY:
                    done = 0
                    yield
            libraries[library_id] = LibraryMirror(
                id=library_id, title=str(lib["title"]), shows=shows
            )
        server_id = data["server_id"]
        # Absent from files written before episodes removed lately were kept;
        # the show's title from layout 1.3 on.
        removed = {
            str(eid): (
                int(added_at),
                float(removed_at),
                str(show_id),
                season,
                number,
                str(title[0]) if title else "",
            )
            for eid, (added_at, removed_at, show_id, season, number, *title) in data.get(
                "removed", {}
            ).items()
        }
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"unexpected mirror layout: {err!r}") from err
    return Mirror(
        server_id=str(server_id) if server_id is not None else None,
        libraries=libraries,
        removed=removed,
    )


def encode_state(state: SyncState) -> dict[str, Any]:
    """Turn the engine's bookkeeping into JSON-ready data."""
    return {
        "last_full_sync": state.last_full_sync,
        "last_incremental_sync": state.last_incremental_sync,
        "cursor": state.cursor,
        "cursors": dict(state.cursors),
        "markers": dict(state.markers),
        "shows_checked": dict(state.shows_checked),
        "libraries_listed": state.libraries_listed,
        "selection": sorted(state.selection),
        "held_back": dict(state.held_back),
    }


def decode_state(data: Mapping[str, Any]) -> SyncState:
    """Rebuild the engine's bookkeeping; raise ``ValueError`` on a bad shape."""
    try:
        return SyncState(
            last_full_sync=_optional(data.get("last_full_sync"), float),
            last_incremental_sync=_optional(data.get("last_incremental_sync"), float),
            cursor=_optional(data.get("cursor"), int),
            cursors={
                str(k): cursor
                for k, v in data.get("cursors", {}).items()
                if (cursor := _optional(v, int)) is not None
            },
            markers={str(k): str(v) for k, v in data.get("markers", {}).items()},
            shows_checked={str(k): float(v) for k, v in data.get("shows_checked", {}).items()},
            libraries_listed=_optional(data.get("libraries_listed"), float),
            selection=frozenset(str(i) for i in data.get("selection", ())),
            held_back={str(k): int(v) for k, v in data.get("held_back", {}).items()},
        )
    except (AttributeError, TypeError, ValueError) as err:
        raise ValueError(f"unexpected status layout: {err!r}") from err


def _optional[T: (int, float)](value: Any, kind: type[T]) -> T | None:
    """A stored number, checked now: a string cursor would only fail mid-sync."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return kind(value)


class EpisodeSyncStore:
    """The two stores of one config entry."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Create (not yet load) the stores of a config entry."""
        self._status = _VersionedStore(hass, STATUS_VERSION, f"{DOMAIN}.{entry_id}.status")
        if STORE_OFF_LOOP:
            self._library = _LibraryStore(
                hass,
                LIBRARY_VERSION,
                f"{DOMAIN}.{entry_id}.library",
                minor_version=LIBRARY_MINOR_VERSION,
                serialize_in_event_loop=False,  # type: ignore[call-arg,unused-ignore]
            )
        else:  # pragma: no cover - HA before 2025.12
            self._library = _LibraryStore(
                hass,
                LIBRARY_VERSION,
                f"{DOMAIN}.{entry_id}.library",
                minor_version=LIBRARY_MINOR_VERSION,
            )
        #: Library-store writes so far (diagnostics and the benchmark report it).
        self.library_writes = 0
        #: The generation of the library file on disk, which the status file
        #: names: a random token per write, so a stale file never carries the
        #: one of a later write (a counter could restart and name it again).
        #: Older releases wrote counters, compared the same way.
        self._generation: str | int | None = None
        #: Summary of the last sync, as stored in the status store.
        self.last_result: dict[str, Any] = {}
        #: What the next sync owes, as stored in the status store.
        self.owed = Owed()
        #: The status file as last written or read (None: there is none).
        self._status_data: dict[str, Any] | None = None

    async def async_load(self) -> tuple[Mirror, SyncState]:
        """Load the mirror and bookkeeping; an unreadable pair means "start over".

        The two files are only trusted together: a mirror without its
        bookkeeping (or the reverse) cannot be synced incrementally.
        """
        try:
            status = await self._status.async_load()
            library = await self._library.async_load()
            if status is None or library is None:
                if status is not None or library is not None:
                    LOGGER.warning(
                        "Only one of the two stored files of the mirror was found;"
                        " a full sync will rebuild it"
                    )
                return Mirror(), SyncState()
            state, mirror = decode_state(status), await async_decode_mirror(library)
            if library.get("generation") != status.get("library_generation"):
                LOGGER.warning(
                    "The stored mirror is older than its bookkeeping (a write failed);"
                    " a full sync will rebuild it"
                )
                return Mirror(), SyncState()
            self._generation = library.get("generation")
            self.last_result = dict(status.get("last_result") or {})
            self.owed = decode_owed(status.get("owed", {}))
            self._status_data = status
        except (ValueError, OSError, HomeAssistantError) as err:
            # HomeAssistantError: Store's JSON loader wraps an unreadable file (OSError).
            LOGGER.warning("Stored mirror is unreadable, a full sync will rebuild it: %s", err)
            return Mirror(), SyncState()
        return mirror, state

    async def async_save(
        self, state: SyncState, last_result: dict[str, Any], mirror: Mirror | None, owed: Owed
    ) -> None:
        """Persist a committed sync: the mirror only when it changed (``mirror`` not None)."""
        if mirror is not None:
            self._generation = secrets.token_hex(8)
            encoded = await encode_mirror(mirror)
            await self._library.async_save({**encoded, "generation": self._generation})
            self.library_writes += 1
        self.last_result = last_result
        await self._write_status(
            {
                **encode_state(state),
                "last_result": last_result,
                "library_generation": self._generation,
            },
            owed,
        )

    async def async_save_owed(self, owed: Owed) -> None:
        """Persist what the next sync owes, when it changed since the last write.

        Nothing is written before the first committed sync: that sync is a
        full one, which owes nothing afterwards.
        """
        if self._status_data is not None and owed != self.owed:
            await self._write_status(self._status_data, owed)

    async def _write_status(self, data: dict[str, Any], owed: Owed) -> None:
        self._status_data = {**data, "owed": encode_owed(owed)}
        self.owed = owed  # the coordinator hands a copy (``owed`` builds it)
        await self._status.async_save(self._status_data)

    async def async_remove(self) -> None:
        """Delete both files (the config entry is being removed)."""
        await self._status.async_remove()
        await self._library.async_remove()
