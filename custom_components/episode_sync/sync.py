"""The sync engine: keeps a mirror of a server's TV libraries up to date cheaply.

No Home Assistant imports: the engine is driven by the coordinator in
production and can be driven by anything else (a benchmark, a fake backend).
It owns every decision (full or incremental, what changed, what to re-fetch)
and every diff; backends (``api/plex.py``, ``api/jellyfin.py``) only fetch.

Per sync (SPEC §3):

1. Cheap change check. Backends with library markers (Plex) list the
   libraries once and the engine skips every library whose marker is the one
   it stored. Backends without (Jellyfin) look at every selected library.
2. For each library to look at: list its shows (with episode and watched
   counts) and fetch the episodes changed since the server-clock cursor
   (one delta query per library on Plex, one per server on Jellyfin).
3. Targeted repair: a show whose counts still disagree with the mirror once
   the delta is applied has its episodes re-fetched and diffed by id.
4. Commit: the result is a new ``Mirror`` object; the caller persists it.
   Nothing is mutated in place, so a sync that raises commits nothing.

A full sync (paged library-wide listings, never per-season walks) runs when
there is no mirror, when forced, when the last one is older than
``full_sync_interval``, when the server's identity changed, and in the same
run when an incremental sync hits a protocol error or ends inconsistent.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field, replace
from enum import StrEnum
import time
from typing import Protocol

from .api.errors import MediaServerNotFoundError, MediaServerProtocolError, ServerChangedError
from .api.models import At, Episode, EpisodeRow, Library, ServerInfo, Show
from .api.paging import bounded_gather, reuse_items

#: The cursor is moved back by this much before each delta query: Plex's
#: ``>>=`` is strict with one-second resolution and Jellyfin leaves a new row's
#: DateLastSaved unset until its first refresh (docs: plex §4, jellyfin §4.8).
CURSOR_OVERLAP = 300

#: A sync that would remove more than this share of a library's episodes, and
#: more than ``MASS_REMOVAL_MIN`` of them, is held back until confirmed: an
#: unmounted drive makes a library look empty (SPEC §5 "Safety").
MASS_REMOVAL_SHARE = 0.5
MASS_REMOVAL_MIN = 10

#: CPU-bound loops over a library hand the event loop back every this many
#: items, so a 100,000-episode full sync never blocks Home Assistant for long.
YIELD_EVERY = 2000

#: Episodes removed from the mirror are remembered this long, and at most
#: ``REMOVED_MEMORY`` of them, or as many as the mirror held (the latest: a
#: library removed whole and back is remembered whole). One that comes back under its id (a
#: share that was offline, Plex's trash restored, a file put back: Jellyfin's
#: item id is a hash of its path, LibraryManager.GetNewItemIdInternal), or
#: under a new id in the same show, season and number (a file replaced by a
#: better one a sync later), or in a show new to the mirror under the title,
#: season and number of one removed lately (a show removed and added back a
#: scan later, which gives it and its episodes new ids), is the episode it
#: was: it keeps its ``added_at`` and is not announced again.
REMOVED_FOR = 30 * 86_400.0
REMOVED_MEMORY = 20_000

#: A removed episode as the mirror remembers it: its ``added_at``, when it was
#: removed (local clock), its show id, season and number, and its show's title
#: casefolded. A plain tuple, like ``EpisodeRow``, so the garbage collector
#: does not track it.
type Removal = tuple[int, float, str, int | None, int | None, str]

#: Markers can miss watch-state changes (Plex does not bump contentChangedAt
#: for them), so each library's shows are re-listed at least this often.
SHOWS_CHECK_INTERVAL = 3600.0
#: Without markers (Jellyfin) the library list is read at least this often,
#: for renames and libraries gone from the user's views (docs: jellyfin §9,
#: step 0: "every 6 h").
LIBRARIES_CHECK_INTERVAL = 6 * 3600.0


class Backend(Protocol):
    """What the engine needs from a media-server client."""

    #: True when ``libraries()`` returns usable per-library change markers.
    has_library_markers: bool
    #: False when the server's "added" date is not the time the episode
    #: arrived (Jellyfin's DateCreated is the file's birth time).
    trusts_added_at: bool
    #: Rows per page of ``episodes()``: what a library's listing costs.
    page_size: int

    @property
    def request_count(self) -> int:
        """HTTP requests made since the last ``reset_stats``."""

    @property
    def server_clock(self) -> int | None:
        """Server time (epoch s) from the first response's ``Date`` since ``reset_stats``."""

    def reset_stats(self) -> None:
        """Start counting requests (and reading the server clock) afresh."""

    async def server_info(self) -> ServerInfo:
        """Return the server's identity."""

    async def libraries(self) -> list[Library]:
        """Return every TV library on the server, with markers where it has them."""

    async def shows(self, library_id: str) -> list[Show]:
        """Return every show of a library (paged)."""

    # Episodes come as mirror rows, never ``Episode`` objects: the mirror is
    # made of them, and the garbage collector does not walk rows (``EpisodeRow``).

    async def episodes(self, library_id: str) -> list[EpisodeRow]:
        """Return every episode of a library (paged, library-wide)."""

    async def show_episodes(self, library_id: str, show_id: str) -> list[EpisodeRow]:
        """Return every episode of one show."""

    async def changed_episodes(self, library_ids: Sequence[str], since: int) -> list[EpisodeRow]:
        """Return episodes of these libraries saved or updated at or after server time ``since``.

        Episodes may come back with an empty library id when the server
        cannot tell (Jellyfin's server-wide delta); the engine places them by
        show.
        """


class SyncMode(StrEnum):
    """How a sync ran."""

    FULL = "full"
    INCREMENTAL = "incremental"


class FullSyncReason(StrEnum):
    """Why a sync ran as a full one."""

    NO_MIRROR = "no_mirror"
    FORCED = "forced"
    SCHEDULED = "scheduled"
    LIBRARIES_CHANGED = "libraries_changed"
    SERVER_CHANGED = "server_changed"
    PROTOCOL_ERROR = "protocol_error"
    INCONSISTENT = "inconsistent"


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowMirror:
    """A show as last listed by the server, with its mirrored episodes.

    Episodes are grouped by show so that a sync touching one show copies one
    small dict, never the whole library: at 100,000 episodes a whole-library
    copy or recount per sync would block Home Assistant's event loop. They are
    held as rows (``EpisodeRow``); ``episodes`` reads them as ``Episode``.
    """

    show: Show
    rows: Mapping[str, EpisodeRow]
    watched: int
    #: The newest ``added_at`` of its episodes when built (0 for none; a
    #: re-keyed episode may take an older one later, so it is an upper bound):
    #: "what is new" skips a show at a glance instead of each of its episodes.
    latest_added: int = 0

    @classmethod
    def build(cls, show: Show, rows: Mapping[str, EpisodeRow]) -> ShowMirror:
        """Create a show entry, counting its watched episodes and finding its newest once."""
        return cls(
            show=show,
            rows=rows,
            watched=sum(row[At.WATCHED] for row in rows.values()),
            latest_added=max((row[At.ADDED_AT] for row in rows.values()), default=0),
        )

    @property
    def episodes(self) -> Mapping[str, Episode]:
        """The show's episodes by id, each built as it is read."""
        return EpisodeMap(self.rows)

    @property
    def mismatch(self) -> tuple[int, int]:
        """How far the server's listed counts (episodes, watched) are from the mirrored ones."""
        return (self.show.episode_count - len(self.rows), self.show.watched_count - self.watched)


class EpisodeMap(Mapping[str, Episode]):
    """Episode rows by id, read as ``Episode`` objects (made on access, not kept)."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Mapping[str, EpisodeRow]) -> None:
        """Wrap a show's rows."""
        self._rows = rows

    def __getitem__(self, episode_id: str) -> Episode:
        """The episode with this id."""
        return Episode.from_row(self._rows[episode_id])

    def __contains__(self, episode_id: object) -> bool:
        """Whether the show has an episode with this id (without building it)."""
        return episode_id in self._rows

    def __iter__(self) -> Iterator[str]:
        """The episode ids."""
        return iter(self._rows)

    def __len__(self) -> int:
        """How many episodes."""
        return len(self._rows)


@dataclass(frozen=True, slots=True, kw_only=True)
class LibraryMirror:
    """One mirrored TV library."""

    id: str
    title: str
    shows: Mapping[str, ShowMirror]

    @property
    def episode_count(self) -> int:
        """Episodes mirrored in this library."""
        return sum(len(s.rows) for s in self.shows.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class Mirror:
    """The whole mirror of one server. Immutable: a sync returns a new one."""

    server_id: str | None = None
    libraries: Mapping[str, LibraryMirror] = field(default_factory=dict)
    #: Episodes removed lately by id; see ``REMOVED_FOR``.
    removed: Mapping[str, Removal] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """True before the first successful sync."""
        return self.server_id is None

    @property
    def show_count(self) -> int:
        """Shows in the mirror."""
        return sum(len(lib.shows) for lib in self.libraries.values())

    @property
    def episode_count(self) -> int:
        """Episodes in the mirror."""
        return sum(lib.episode_count for lib in self.libraries.values())

    def episodes(self) -> Iterable[tuple[LibraryMirror, ShowMirror, Episode]]:
        """Every mirrored episode with its library and show."""
        for library in self.libraries.values():
            for show in library.shows.values():
                for row in show.rows.values():
                    yield library, show, Episode.from_row(row)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncState:
    """The engine's small bookkeeping, persisted in the status store.

    ``cursor`` and ``cursors`` are on the *server's* clock (epoch s); ``last_*``
    and ``shows_checked`` are on the local clock, as they only pace our own
    work. ``markers`` are the library markers committed by the last successful
    sync.
    """

    last_full_sync: float | None = None
    last_incremental_sync: float | None = None
    #: Server time at the start of the last sync (None: nothing mirrored yet).
    cursor: int | None = None
    #: Per library, the server time from which its next delta must look: moved
    #: only by a sync that ran the library's delta. A library its unchanged
    #: markers let a sync skip keeps its cursor, so an edit that moved no
    #: marker is still in its next delta (the hourly show check at the latest).
    #: A library without one (a store from before) uses ``cursor``.
    cursors: Mapping[str, int] = field(default_factory=dict)
    markers: Mapping[str, str] = field(default_factory=dict)
    shows_checked: Mapping[str, float] = field(default_factory=dict)
    #: When the library list was last read (local clock).
    libraries_listed: float | None = None
    #: The libraries the user had selected at the last full sync.
    selection: frozenset[str] = frozenset()
    #: Libraries whose mass removal was held back, with the number of episodes.
    held_back: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncResult:
    """What one sync did; the caller persists ``mirror``/``state`` and fires events."""

    mode: SyncMode
    reason: FullSyncReason | None
    started_at: float
    duration: float
    api_calls: int
    #: Episodes new to the mirror (re-keyed episodes are not new), as rows:
    #: at the first sync this is the whole library.
    added: tuple[EpisodeRow, ...]
    removed: tuple[EpisodeRow, ...]
    updated: int
    rekeyed: int
    mirror: Mirror
    state: SyncState
    #: Whether ``mirror`` differs from the mirror the sync started from.
    mirror_changed: bool
    #: True for the very first sync of a mirror: nothing in it is "new".
    first_sync: bool
    #: Libraries this sync mirrored for the first time (every one at the first
    #: sync; later, one the user just selected): nothing in them is "new".
    first_seen: frozenset[str] = frozenset()

    @property
    def new_episodes(self) -> tuple[EpisodeRow, ...]:
        """The added episodes to announce: none of a library mirrored for the first time.

        Selecting another library (or selecting one again) mirrors thousands of
        episodes the server has had for years; announcing them as new would
        fire a burst of events for nothing (SPEC §5: never on a first sync).
        """
        if self.first_sync:
            return ()
        return tuple(row for row in self.added if row[At.LIBRARY_ID] not in self.first_seen)

    @property
    def held_back(self) -> Mapping[str, int]:
        """Libraries whose mass removal this sync held back (id -> episodes)."""
        return self.state.held_back


class InconsistentSyncError(Exception):
    """Counts still disagree with the server after a targeted repair."""


class _Builder:
    """Builds a new mirror's shows from an old one, recording what changed.

    Every row dict handed to ``show`` was built by this sync, so its
    ``added_at`` values can be settled in place before the (immutable)
    ``ShowMirror`` is created around it. Rules (SPEC §4, §5):

    - a re-keyed episode (same season and number of the same show under a new
      id) is an update: it keeps the ``added_at`` of the episode it replaces
      and is not reported as added;
    - so is an episode of a show id new to the mirror whose show title
      (case-insensitive), season and number are those of an episode of a show
      gone from it, anywhere in the mirror (``settle``): a re-created server
      or a rebuilt database gives every show and episode a new id, and that
      must not announce the whole library as new;
    - so is an episode that comes back under the id, or in the show, season
      and number, of one removed lately (``Mirror.removed``), or in a show
      new to the mirror under the show title, season and number of one;
    - so is an id removed from one show and added to another in one sync
      (shows merged, a show moved to another library: ``settle``);
    - when the server's "added" date cannot be trusted (Jellyfin's
      DateCreated is the file's birth time), a known episode keeps the
      ``added_at`` the mirror gave it, and an episode new to a library the
      mirror already held gets the time the mirror first saw it (in a
      library mirrored for the first time, the server's date stands).
    """

    def __init__(
        self,
        *,
        known_libraries: Collection[str],
        removed_lately: Mapping[str, Removal],
        trusts_added_at: bool,
        seen_at: Callable[[], int],
    ) -> None:
        #: The libraries of the mirror the sync started from.
        self.known_libraries = known_libraries
        self.removed_lately = removed_lately
        #: Episodes back from ``removed_lately``: id -> library id.
        self.restored: dict[str, str] = {}
        #: (show id, season, number) and (show title casefolded, season,
        #: number) -> id of ``removed_lately``, when first needed.
        self._removed_slots: dict[tuple[str, int | None, int], str] | None = None
        self._removed_titled: dict[tuple[str, int | None, int], str] | None = None
        #: The casefolded titles of the shows this sync removes episodes from.
        self._removed_from: dict[str, str] = {}
        self.trusts_added_at = trusts_added_at
        #: "Now" for an episode first seen, when the server's own date is not trusted.
        self.seen_at = seen_at
        self.added: list[EpisodeRow] = []
        self.removed: list[EpisodeRow] = []
        #: Updated episodes per library id.
        self.updated: Counter[str] = Counter()
        self.rekeyed = 0
        #: Anything but episodes changed: shows, titles, counts, libraries.
        self.structure_changed = False
        #: Shows new to the mirror (title, this sync's row dict) and shows
        #: gone from it: ``settle`` pairs their episodes up once all are known.
        self._new_shows: list[tuple[str, dict[str, EpisodeRow]]] = []
        self._gone_shows: list[ShowMirror] = []
        #: The row dicts (this sync's own) that added episodes went into.
        self._added_to: list[dict[str, EpisodeRow]] = []

    def show(self, old: ShowMirror | None, show: Show, rows: dict[str, EpisodeRow]) -> ShowMirror:
        """Settle one show's freshly fetched episode rows against its old entry."""
        before: Mapping[str, EpisodeRow] = old.rows if old is not None else {}
        if old is None or old.show != show:
            self.structure_changed = True
        gone = {eid: row for eid, row in before.items() if eid not in rows}
        slots: dict[tuple[int | None, int | None], EpisodeRow] = {
            (row[At.SEASON], row[At.NUMBER]): row
            for row in gone.values()
            if row[At.NUMBER] is not None
        }
        added_before = len(self.added)
        for episode_id, fetched in list(rows.items()):
            previous = before.get(episode_id)
            if previous is not None:
                if not self.trusts_added_at and fetched[At.ADDED_AT] != previous[At.ADDED_AT]:
                    rows[episode_id] = _added_at(fetched, previous[At.ADDED_AT])
                if previous != rows[episode_id]:
                    self.updated[show.library_id] += 1
                continue
            predecessor = slots.pop((fetched[At.SEASON], fetched[At.NUMBER]), None)
            if predecessor is not None:
                rows[episode_id] = _added_at(fetched, predecessor[At.ADDED_AT])
                del gone[predecessor[At.ID]]
                self.rekeyed += 1
                self.updated[show.library_id] += 1
                continue
            back = self._removed_lately_as(fetched, show.title if old is None else None)
            if back is not None:
                rows[episode_id] = _added_at(fetched, self.removed_lately[back][0])
                self.restored[back] = show.library_id
                if back != episode_id:
                    self.rekeyed += 1  # a re-key that took more than one sync
                self.updated[show.library_id] += 1
                continue
            if show.library_id in self.known_libraries and not self.trusts_added_at:
                rows[episode_id] = _added_at(fetched, self.seen_at())
            self.added.append(rows[episode_id])
        if len(self.added) > added_before:
            self._added_to.append(rows)
        self.removed.extend(gone.values())
        if gone and old is not None:
            self._removed_from[show.id] = old.show.title.casefold()
        if old is None and rows:
            self._new_shows.append((show.title, rows))
        return ShowMirror.build(show, rows)

    def drop(self, old: ShowMirror) -> None:
        """Record a show that is gone from the server."""
        self.structure_changed = True
        self.removed.extend(old.rows.values())
        self._removed_from[old.show.id] = old.show.title.casefold()
        self._gone_shows.append(old)

    async def settle(self) -> None:
        """Pair what was added with what was removed, once every show has been seen.

        An id removed from one show and added to another moved (shows merged,
        a show moved to another library); episodes of new show ids match
        those of gone shows by title, season and number (a re-keyed library).
        Runs before the mass-removal guard, so neither counts as added or
        removed. Row dicts are this sync's own and not yet shared, so the
        matched episodes take their predecessors' ``added_at`` in place. A
        re-created server re-keys every show: the loop is handed back as it goes.
        """
        moved = await self._settle_moves()
        if not self._new_shows or not self._gone_shows:
            return
        slots: dict[tuple[str, int | None, int], EpisodeRow] = {}
        done = 0
        for gone_show in self._gone_shows:
            title = gone_show.show.title.casefold()
            for row in gone_show.rows.values():
                if (number := row[At.NUMBER]) is not None and row[At.ID] not in moved:
                    slots.setdefault((title, row[At.SEASON], number), row)
            done = await _step(done, len(gone_show.rows))
        added = {row[At.ID] for row in self.added}
        matched: set[str] = set()
        replaced: set[str] = set()
        for title, rows in self._new_shows:
            done = await _step(done, len(rows))
            folded = title.casefold()
            for episode_id, row in rows.items():
                if episode_id not in added or (number := row[At.NUMBER]) is None:
                    continue
                predecessor = slots.pop((folded, row[At.SEASON], number), None)
                if predecessor is None:
                    continue
                rows[episode_id] = _added_at(row, predecessor[At.ADDED_AT])
                matched.add(episode_id)
                replaced.add(predecessor[At.ID])
                self.rekeyed += 1
                self.updated[row[At.LIBRARY_ID]] += 1
        if matched:
            self.added = await _rows(self.added, lambda i: i not in matched)
            self.removed = await _rows(self.removed, lambda i: i not in replaced)

    async def _settle_moves(self) -> Collection[str]:
        """Pair the ids both removed and added; return them."""
        if not self.added or not self.removed:
            return set()
        gone = {row[At.ID]: row for row in self.removed}
        moved: dict[str, EpisodeRow] = {}
        done = 0
        for rows in self._added_to:
            for episode_id in gone.keys() & rows.keys():
                rows[episode_id] = _added_at(rows[episode_id], gone[episode_id][At.ADDED_AT])
                self.updated[rows[episode_id][At.LIBRARY_ID]] += 1
                moved[episode_id] = gone[episode_id]
            done = await _step(done, len(rows))
        if not moved:
            return set()
        self.added = await _rows(self.added, lambda i: i not in moved)
        self.removed = await _rows(self.removed, lambda i: i not in moved)
        return moved.keys()

    @property
    def changed(self) -> bool:
        """Whether the new mirror differs from the old one."""
        return bool(self.added or self.removed or self.updated.total() or self.structure_changed)

    def discard(self, library_id: str) -> None:
        """Forget what was recorded for one library (its changes are not applied)."""
        self.added = [row for row in self.added if row[At.LIBRARY_ID] != library_id]
        self.removed = [row for row in self.removed if row[At.LIBRARY_ID] != library_id]
        self.restored = {eid: lid for eid, lid in self.restored.items() if lid != library_id}
        self.updated.pop(library_id, None)

    def _removed_lately_as(self, row: EpisodeRow, new_show_title: str | None) -> str | None:
        """The id of the episode removed lately that ``row`` brings back, if any.

        ``new_show_title`` is the title of the row's show when that show is
        new to the mirror: then a removal of its title matches too.
        """
        if not self.removed_lately:
            return None
        if row[At.ID] in self.removed_lately:
            return row[At.ID]
        if (number := row[At.NUMBER]) is None:
            return None
        if self._removed_slots is None or self._removed_titled is None:
            # Built once, on the first new episode.
            self._removed_slots, self._removed_titled = {}, {}
            for eid, (_, _, show_id, season, n, title) in self.removed_lately.items():
                if n is not None and eid not in self.restored:
                    self._removed_slots[(show_id, season, n)] = eid
                    if title:
                        self._removed_titled[(title, season, n)] = eid
        back = self._removed_slots.pop((row[At.SHOW_ID], row[At.SEASON], number), None)
        if back is None and new_show_title is not None:
            key = (new_show_title.casefold(), row[At.SEASON], number)
            back = self._removed_titled.pop(key, None)
        return back if back not in self.restored else None

    def removed_lately_after(self, now: float, keep: int) -> dict[str, Removal]:
        """``Mirror.removed`` once this sync is applied: its removals in, the restored out.

        At most the ``keep`` latest ones.
        """
        kept = {
            eid: lately for eid, lately in self.removed_lately.items() if eid not in self.restored
        }
        kept.update(
            (
                row[At.ID],
                (
                    row[At.ADDED_AT],
                    now,
                    row[At.SHOW_ID],
                    row[At.SEASON],
                    row[At.NUMBER],
                    self._removed_from.get(row[At.SHOW_ID], ""),
                ),
            )
            for row in self.removed
        )
        if len(kept) > keep:  # the dict's order is the order of removal
            kept = dict(list(kept.items())[-keep:])
        return kept


class SyncEngine:
    """Plans and runs syncs of one server's selected TV libraries."""

    def __init__(
        self,
        backend: Backend,
        *,
        server_id: str,
        library_ids: Collection[str],
        max_concurrency: int = 5,
        full_sync_interval: float = 7 * 86_400,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """Bind the engine to a backend and the user's choices."""
        self._backend = backend
        self._server_id = server_id
        self._library_ids = frozenset(library_ids)
        self._max_concurrency = max(1, max_concurrency)
        self._full_sync_interval = full_sync_interval
        # Looked up at each call (not bound at import) so test clocks apply.
        self._clock = clock or (lambda: time.time())  # noqa: PLW0108

    @property
    def library_ids(self) -> frozenset[str]:
        """The libraries the user selected."""
        return self._library_ids

    async def sync(
        self,
        mirror: Mirror,
        state: SyncState,
        *,
        force_full: bool = False,
        dirty: Collection[str] = (),
        played: Collection[str] = (),
    ) -> SyncResult:
        """Bring the mirror up to date; raise the backend's errors when it cannot.

        ``dirty`` libraries (a push channel reported a change there) are
        looked at even when their marker is the one stored. The shows of the
        ``played`` items (episodes or shows a push channel reported played or
        unplayed) are re-listed: one episode watched and another unwatched
        leave a show's counts as they were, and no delta lists user data.

        Auth and connection errors propagate unchanged: nothing is committed
        and the caller retries later. A protocol error or an inconsistent
        result during an incremental sync is answered by a full sync in the
        same run.
        """
        self._backend.reset_stats()
        run = self._run(mirror, state, force_full, dirty, played)
        return await self._verified(mirror, await run)

    async def _run(
        self,
        mirror: Mirror,
        state: SyncState,
        force_full: bool,
        dirty: Collection[str],
        played: Collection[str],
    ) -> SyncResult:
        started = self._clock()
        reason = self._full_sync_reason(mirror, state, force_full=force_full, now=started)
        if reason is None:
            try:
                return await self._incremental(mirror, state, started, dirty, played)
            except MediaServerProtocolError:
                reason = FullSyncReason.PROTOCOL_ERROR
            except InconsistentSyncError:
                reason = FullSyncReason.INCONSISTENT
        return await self._full(mirror, state, started, reason)

    async def _verified(self, mirror: Mirror, result: SyncResult) -> SyncResult:
        """Check the server's identity when the sync found ids it cannot explain (SPEC §7).

        Episodes under new ids (re-keyed), most of a library gone (held back)
        or a selected library gone: what a rebuilt server looks like, and also
        another server at this address. One request, only then; another
        identity raises ``ServerChangedError`` and nothing is committed.
        """
        vanished = (mirror.libraries.keys() & self._library_ids) - result.mirror.libraries.keys()
        if mirror.is_empty or not (result.rekeyed or result.held_back or vanished):
            return result
        server = await self._backend.server_info()
        if server.server_id != self._server_id:
            raise ServerChangedError(server.name)
        return replace(result, api_calls=self._backend.request_count)

    def _full_sync_reason(
        self, mirror: Mirror, state: SyncState, *, force_full: bool, now: float
    ) -> FullSyncReason | None:
        if mirror.is_empty or state.cursor is None:
            return FullSyncReason.NO_MIRROR
        if mirror.server_id != self._server_id:
            return FullSyncReason.SERVER_CHANGED
        if force_full:
            return FullSyncReason.FORCED
        if state.last_full_sync is None or now - state.last_full_sync >= self._full_sync_interval:
            return FullSyncReason.SCHEDULED
        if not self._library_ids <= state.selection:
            return FullSyncReason.LIBRARIES_CHANGED
        return None

    def _builder(self, mirror: Mirror) -> _Builder:
        now = self._clock()
        return _Builder(
            known_libraries=mirror.libraries.keys(),
            # Another server's ids mean nothing here; old removals are forgotten.
            removed_lately={
                eid: lately
                for eid, lately in mirror.removed.items()
                if mirror.server_id == self._server_id and now - lately[1] < REMOVED_FOR
            },
            trusts_added_at=self._backend.trusts_added_at,
            # Read when needed, after this sync's first answer: the server's clock.
            seen_at=lambda: self._backend.server_clock or int(self._clock()),
        )

    # -- full sync ------------------------------------------------------------------

    async def _full(
        self, mirror: Mirror, state: SyncState, started: float, reason: FullSyncReason
    ) -> SyncResult:
        backend = self._backend
        libraries = [lib for lib in await backend.libraries() if lib.id in self._library_ids]

        async def listed_episodes(library: Library) -> list[EpisodeRow]:
            # Set inside this job's own task: only the episode listing reuses.
            with reuse_items(_reusing(mirror.libraries.get(library.id), backend.trusts_added_at)):
                return await backend.episodes(library.id)

        async def fetch(library: Library) -> tuple[Library, list[Show], list[EpisodeRow]]:
            shows, episodes = await bounded_gather(
                (backend.shows(library.id), listed_episodes(library)), 2
            )
            return library, shows, episodes  # type: ignore[return-value]  # one list per job

        listings = await self._gather(fetch(library) for library in libraries)
        builder = self._builder(mirror)
        new_libraries: dict[str, LibraryMirror] = {}
        vanished: set[str] = set()  # a show 404 (maybe a proxy's): the next sync looks again
        for library, shows, rows in listings:
            by_show: dict[str, dict[str, EpisodeRow]] = {show.id: {} for show in shows}
            for index, row in enumerate(rows):
                if (show_rows := by_show.get(row[At.SHOW_ID])) is not None:
                    show_rows[row[At.ID]] = _placed(row, library.id)
                if index % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # a big library is built in steps, not in one block
            # A show whose rows disagree with its counts was changed while
            # the library was listed (a row can slip between two pages), or
            # the server counts what it does not list (Plex's trash): its own
            # listing tells, and what it still disagrees by is the server's.
            suspects: list[Show] = []
            done = 0
            for show in shows:
                if not _agrees(show, by_show[show.id], None):
                    suspects.append(show)
                done = await _step(done, len(by_show[show.id]) + 1)
            repairs = await self._repairs(library.id, len(rows), suspects)
            gone: set[str] = set()  # since the library was listed
            for show, repaired in zip(suspects, repairs, strict=True):
                if repaired is None:
                    gone.add(show.id)
                    vanished.add(library.id)
                else:
                    by_show[show.id] = repaired
            old = mirror.libraries.get(library.id)
            old_shows: Mapping[str, ShowMirror] = old.shows if old is not None else {}
            new_shows: dict[str, ShowMirror] = {}
            done = 0
            for show in shows:
                if show.id in gone:
                    continue
                new_shows[show.id] = builder.show(old_shows.get(show.id), show, by_show[show.id])
                done = await _step(done, len(by_show[show.id]) + 1)
            for show_id in old_shows.keys() - new_shows.keys():
                builder.drop(old_shows[show_id])
            if old is None or old.title != library.title:
                builder.structure_changed = True
            new_libraries[library.id] = LibraryMirror(
                id=library.id, title=library.title, shows=new_shows
            )
        for library_id in mirror.libraries.keys() - new_libraries.keys():
            builder.structure_changed = True
            if library_id in self._library_ids:  # gone from the server, not unselected
                for old_show in mirror.libraries[library_id].shows.values():
                    builder.drop(old_show)
        now = self._clock()
        new_state = replace(
            state,
            last_full_sync=now,
            last_incremental_sync=now,
            cursor=(cursor := self._next_cursor(state)),
            cursors=dict.fromkeys(new_libraries, cursor),
            libraries_listed=started,
            markers={
                lib.id: lib.marker
                for lib in libraries
                if lib.marker and not lib.refreshing and lib.id not in vanished
            },
            shows_checked=dict.fromkeys(new_libraries, started),
            selection=self._library_ids,
        )
        return await self._result(
            SyncMode.FULL, reason, started, mirror, new_libraries, state, new_state, builder
        )

    # -- incremental sync -------------------------------------------------------------

    async def _incremental(
        self,
        mirror: Mirror,
        state: SyncState,
        started: float,
        dirty: Collection[str] = (),
        played: Collection[str] = (),
    ) -> SyncResult:
        backend = self._backend
        assert state.cursor is not None
        builder = self._builder(mirror)
        libraries = {lid: lib for lid, lib in mirror.libraries.items() if lid in self._library_ids}
        recheck = _shows_holding(libraries, played)
        dirty = {*dirty, *recheck.values()}
        if libraries.keys() != mirror.libraries.keys():
            builder.structure_changed = True  # the user unselected a library
        markers = dict(state.markers)
        shows_checked = dict(state.shows_checked)
        libraries_listed = state.libraries_listed

        def drop_library(library_id: str) -> None:
            """The library is gone from the server: so are its episodes."""
            for show in libraries.pop(library_id).shows.values():
                builder.drop(show)
            markers.pop(library_id, None)
            builder.structure_changed = True  # even a library without shows

        async def listed_shows(library_id: str) -> list[Show] | None:
            try:
                return await backend.shows(library_id)
            except MediaServerNotFoundError:
                if backend.has_library_markers:
                    raise  # listed a moment ago: a proxy's 404, retry later (docs: plex §1)
                return None  # an unknown item: the library is gone (docs: jellyfin §1)

        listed: dict[str, Library] = {}
        if (
            backend.has_library_markers
            or not self._library_ids <= libraries.keys()
            or started - (libraries_listed or 0.0) >= LIBRARIES_CHECK_INTERVAL
        ):
            # Step 1 (SPEC §3): one listing of the libraries and their markers;
            # an unchanged library costs nothing more. Without markers
            # (Jellyfin) the libraries are listed only while a selected one is
            # missing from the mirror (it was gone at the last full sync), and
            # every ``LIBRARIES_CHECK_INTERVAL``.
            on_server = {lib.id: lib for lib in await backend.libraries()}
            if any(lid in on_server and lid not in libraries for lid in self._library_ids):
                # A selected library (re)appeared: it needs a full listing.
                raise InconsistentSyncError("a selected library is not mirrored yet")
            listed = {lid: lib for lid, lib in on_server.items() if lid in libraries}
            for library_id in libraries.keys() - listed.keys():
                drop_library(library_id)
            for library in listed.values():
                if library.title != libraries[library.id].title:
                    libraries[library.id] = replace(libraries[library.id], title=library.title)
                    builder.structure_changed = True
            libraries_listed = started
        to_check: list[str] = list(libraries)
        if backend.has_library_markers:
            to_check = []
            for library in listed.values():
                due = started - shows_checked.get(library.id, 0.0) >= SHOWS_CHECK_INTERVAL
                changed = library.marker != markers.get(library.id) or library.id in dirty
                if library.refreshing or changed or due:
                    to_check.append(library.id)
                    # A scan in progress may still change things: look again next time.
                    if library.marker and not library.refreshing:
                        markers[library.id] = library.marker
                    else:
                        markers.pop(library.id, None)

        shows_of: dict[str, list[Show]] = {}  # the libraries whose delta this sync runs
        if to_check:
            # Steps 2 and 3: show listings and the delta, then targeted repair.
            listings = await self._gather(map(listed_shows, to_check))
            shows_of = {
                lid: shows
                for lid, shows in zip(to_check, listings, strict=True)
                if shows is not None
            }
            for library_id in to_check:
                if library_id not in shows_of:
                    drop_library(library_id)
            delta = await self._delta(state, list(shows_of))
            for library_id, shows in shows_of.items():
                libraries[library_id], vanished = await self._apply_delta(
                    builder, libraries[library_id], shows, delta, recheck.keys()
                )
                shows_checked[library_id] = started
                if vanished:  # maybe a proxy's 404: the next sync looks again
                    markers.pop(library_id, None)
        cursor = self._next_cursor(state)
        cursors = {lid: state.cursors.get(lid, state.cursor) for lid in libraries}
        cursors.update(dict.fromkeys(shows_of, cursor))
        new_state = replace(
            state,
            last_incremental_sync=self._clock(),
            cursor=cursor,
            cursors=cursors,
            markers=markers,
            shows_checked=shows_checked,
            libraries_listed=libraries_listed,
            # Forget unselected libraries, so selecting one again means a full sync.
            selection=state.selection & self._library_ids,
        )
        return await self._result(
            SyncMode.INCREMENTAL, None, started, mirror, libraries, state, new_state, builder
        )

    async def _delta(self, state: SyncState, library_ids: list[str]) -> list[EpisodeRow]:
        """The episodes changed in these libraries since each one's cursor (one query per cursor).

        Libraries checked together share a cursor, so this is one query per
        server-wide delta (Jellyfin) and one per library (Plex), as before.
        """
        by_cursor: dict[int, list[str]] = {}
        for library_id in library_ids:
            since = state.cursors.get(library_id, state.cursor)
            assert since is not None  # an incremental sync has a cursor
            by_cursor.setdefault(since, []).append(library_id)
        delta: list[EpisodeRow] = []
        for since, ids in by_cursor.items():
            delta.extend(await self._backend.changed_episodes(ids, since - CURSOR_OVERLAP))
        return delta

    async def _apply_delta(
        self,
        builder: _Builder,
        library: LibraryMirror,
        shows: list[Show],
        delta: list[EpisodeRow],
        recheck: Collection[str] = (),
    ) -> tuple[LibraryMirror, bool]:
        """Apply a library's show listing and the delta, then repair the shows that disagree.

        The ``recheck`` shows are repaired whatever their counts say. Also
        tell whether a listed show vanished before its repair (a 404).
        """
        listed = {show.id: show for show in shows}
        fresh: dict[str, dict[str, EpisodeRow]] = {}
        for row in delta:
            if (show_id := row[At.SHOW_ID]) in listed:
                if show_id not in fresh:
                    old = library.shows.get(show_id)
                    fresh[show_id] = dict(old.rows) if old is not None else {}
                fresh[show_id][row[At.ID]] = _placed(row, library.id)

        # A show whose counts disagree with the mirror once the delta is in
        # (an episode removed, a watched flag toggled) has its episodes re-fetched.
        suspects = [
            show
            for show in shows
            if show.id in recheck
            or not _agrees(show, fresh.get(show.id), library.shows.get(show.id))
        ]
        repairs = await self._repairs(library.id, library.episode_count, suspects)
        gone: set[str] = set()
        for show, rows in zip(suspects, repairs, strict=True):
            if rows is None:
                gone.add(show.id)
            else:
                fresh[show.id] = rows

        new_shows: dict[str, ShowMirror] = {}
        for show in shows:
            old = library.shows.get(show.id)
            if show.id in gone:
                continue
            if show.id in fresh:
                new_shows[show.id] = entry = builder.show(old, show, fresh[show.id])
                # A mismatch the mirror already held (a Plex server that counts
                # trashed episodes in ``leafCount``) is the server's, not news.
                known = old.mismatch if old is not None else (0, 0)
                if entry.mismatch not in {(0, 0), known}:
                    raise InconsistentSyncError(f"show {show.id} disagrees with its listing")
            elif old is None:
                new_shows[show.id] = builder.show(None, show, {})
            elif old.show != show:
                builder.structure_changed = True
                new_shows[show.id] = replace(old, show=show)
            else:
                new_shows[show.id] = old
        for show_id in library.shows.keys() - new_shows.keys():
            builder.drop(library.shows[show_id])
        return replace(library, shows=new_shows), bool(gone)

    async def _repairs(
        self, library_id: str, episodes: int, suspects: list[Show]
    ) -> list[dict[str, EpisodeRow] | None]:
        """Each suspect show's episodes by id, placed in the library (None: gone).

        Re-listed one show at a time, or all at once: one show costs one
        request; the library's paged listing (of about ``episodes``) one per
        page. When more shows than that disagree (a watch history imported, a
        season of every show marked watched), the library is listed instead.
        """
        pages = -(-episodes // self._backend.page_size)
        listed: list[list[EpisodeRow] | None]
        if len(suspects) <= pages + 1:
            listed = await self._gather(self._repair(library_id, show.id) for show in suspects)
        else:
            rows_of: dict[str, list[EpisodeRow]] = {show.id: [] for show in suspects}
            for row in await self._backend.episodes(library_id):
                if (rows := rows_of.get(row[At.SHOW_ID])) is not None:
                    rows.append(row)
            listed = [rows_of[show.id] for show in suspects]
        return [
            None
            if rows is None
            else {
                row[At.ID]: _placed(row, library_id) for row in rows if row[At.SHOW_ID] == show.id
            }
            for show, rows in zip(suspects, listed, strict=True)
        ]

    async def _repair(self, library_id: str, show_id: str) -> list[EpisodeRow] | None:
        """Re-list one show's episodes; None when the show is gone since it was listed."""
        try:
            return await self._backend.show_episodes(library_id, show_id)
        except MediaServerNotFoundError:
            return None

    # -- commit -------------------------------------------------------------------------

    async def _result(
        self,
        mode: SyncMode,
        reason: FullSyncReason | None,
        started: float,
        old: Mirror,
        libraries: dict[str, LibraryMirror],
        before: SyncState,
        state: SyncState,
        builder: _Builder,
    ) -> SyncResult:
        await builder.settle()  # re-keyed shows are known only once every show was seen
        if not old.is_empty and reason is not FullSyncReason.FORCED:
            state = self._hold_back_mass_removals(old, libraries, before, state, builder)
        else:
            state = replace(state, held_back={})
        changed = builder.changed or old.server_id != self._server_id
        new = old
        if changed:
            new = Mirror(
                server_id=self._server_id,
                libraries=libraries,
                removed=builder.removed_lately_after(
                    self._clock(),
                    # Never less than is remembered: a library removed whole
                    # stays so while the mirror is smaller (REMOVED_FOR bounds it).
                    keep=max(REMOVED_MEMORY, old.episode_count, len(builder.removed_lately)),
                ),
            )
        return SyncResult(
            mode=mode,
            reason=reason,
            started_at=started,
            duration=self._clock() - started,
            api_calls=self._backend.request_count,
            added=tuple(builder.added),
            removed=tuple(builder.removed),
            updated=builder.updated.total(),
            rekeyed=builder.rekeyed,
            mirror=new,
            state=state,
            mirror_changed=changed,
            first_sync=old.is_empty,
            first_seen=frozenset(libraries.keys() - old.libraries.keys()),
        )

    @staticmethod
    def _hold_back_mass_removals(
        old: Mirror,
        libraries: dict[str, LibraryMirror],
        before: SyncState,
        state: SyncState,
        builder: _Builder,
    ) -> SyncState:
        """Keep a library as it was when a sync would empty most of it (SPEC §5).

        The removal is applied when the next sync sees it again (confirmed) or
        when the user forces a full sync; a library that comes back clears
        the hold. The library's marker is dropped so the next sync looks again,
        and its cursor stays where it was, so that the edits this sync saw and
        set aside with the removal are in the next delta too.
        """
        removed = Counter(row[At.LIBRARY_ID] for row in builder.removed)
        held: dict[str, int] = {}
        markers, cursors = dict(state.markers), dict(state.cursors)
        for library_id, count in removed.items():
            kept = old.libraries.get(library_id)
            if kept is None or count <= MASS_REMOVAL_MIN:
                continue
            if count <= kept.episode_count * MASS_REMOVAL_SHARE:
                continue
            if library_id in state.held_back:
                continue  # seen twice in a row: confirmed, apply it
            held[library_id] = count
            builder.discard(library_id)
            markers.pop(library_id, None)
            if (cursor := before.cursors.get(library_id, before.cursor)) is not None:
                cursors[library_id] = cursor
            libraries[library_id] = kept
        return replace(state, held_back=held, markers=markers, cursors=cursors)

    def _next_cursor(self, state: SyncState) -> int:
        """Return the server time from which the next delta must look.

        Read from the server's ``Date`` header at the start of this sync
        (RFC 9110 §6.6.1: an origin server with a clock sends it), so anything
        saved after the sync began is at or after it. Never Home Assistant's
        clock when the server gave one (docs: plex §5, jellyfin §4.8).
        """
        clock = self._backend.server_clock
        if clock is not None:
            return clock
        return state.cursor if state.cursor is not None else int(self._clock())

    async def _gather[T](self, jobs: Iterable[Awaitable[T]]) -> list[T]:
        """Run jobs with at most ``max_concurrency`` at once; fail fast on the first error."""
        return await bounded_gather(jobs, self._max_concurrency)


def _shows_holding(
    libraries: Mapping[str, LibraryMirror], items: Collection[str]
) -> dict[str, str]:
    """The mirrored shows that are, or hold, one of ``items``: show id -> library id.

    ``items`` are usually a few ids, but a whole series marked played names
    each of its episodes: ``isdisjoint`` of two set-likes walks the smaller
    one, so a show costs the lesser of its episodes and the items.
    """
    if not items:
        return {}
    wanted = set(items)
    return {
        show_id: library.id
        for library in libraries.values()
        for show_id, entry in library.shows.items()
        if show_id in wanted or not entry.rows.keys().isdisjoint(wanted)
    }


async def _rows(rows: list[EpisodeRow], keep: Callable[[str], bool]) -> list[EpisodeRow]:
    """The ``rows`` whose id ``keep`` accepts, handing the event loop back as it goes."""
    kept: list[EpisodeRow] = []
    for start in range(0, len(rows), YIELD_EVERY):
        kept.extend(row for row in rows[start : start + YIELD_EVERY] if keep(row[At.ID]))
        await asyncio.sleep(0)
    return kept


async def _step(done: int, rows: int) -> int:
    """Count ``rows`` more rows of work; hand the event loop back every ``YIELD_EVERY``."""
    done += rows
    if done < YIELD_EVERY:
        return done
    await asyncio.sleep(0)
    return 0


def _agrees(show: Show, fresh: Mapping[str, EpisodeRow] | None, old: ShowMirror | None) -> bool:
    """Whether a show's listed counts match its episodes once the delta is applied.

    A show listed exactly as stored, with no delta row, agrees whatever its
    episodes count: the mismatch is one the last repair or full sync already
    saw and kept (a Plex server that counts trashed episodes in ``leafCount``),
    so re-fetching the show on every sync would change nothing (docs: plex
    §9.3(b), "store the server's leafCount, so that a persistent mismatch such
    as trash does not trigger a sweep on every poll"). Once the show moved,
    that kept mismatch still holds: counts that agree only without it hide a
    removal (an episode re-keyed or deleted beside the trashed one).

    A show whose latest view moved disagrees whatever its counts: one episode
    watched and another unwatched leave them as they were (docs: plex
    §9.3(b), "or when viewedLeafCount or lastViewedAt changed"). A latest
    view the mirror does not know yet (a first watch, which moves the counts
    anyway, or a store from before it was kept) is adopted without a repair.

    A series saved again (a new ``etag``: its newest file changed) with no
    row in the delta disagrees too: the episode that changed it has no save
    date yet (Jellyfin's is empty until the item's first refresh, docs:
    jellyfin §4.2, §9 step 1), as one re-matched under a new id, which leaves
    the counts alone. With rows in the delta (a metadata refresh saves every
    series and its episodes) the delta says what changed, and an etag the
    mirror does not know yet (a store from before it was kept) is adopted.
    """
    if old is not None and old.show.last_viewed_at not in (None, show.last_viewed_at):
        return False
    if fresh is None and old is not None and old.show.etag not in (None, show.etag):
        return False
    if fresh is None and old is not None and old.show == show:
        return True
    if fresh is not None:
        counts = (len(fresh), sum(row[At.WATCHED] for row in fresh.values()))
    elif old is not None:
        counts = (len(old.rows), old.watched)
    else:
        counts = (0, 0)
    known = old.mismatch if old is not None else (0, 0)
    return (counts[0] + known[0], counts[1] + known[1]) == (show.episode_count, show.watched_count)


def _reusing(
    old: LibraryMirror | None, trusts_added_at: bool
) -> Callable[[list[EpisodeRow]], list[EpisodeRow]]:
    """Swap each listed row for the mirror's equal one, page by page.

    Equal means what ``_Builder.show`` keeps unchanged: when the server's
    "added" date is not trusted, the mirror's ``added_at`` stands. A full sync
    of an unchanged library then holds one copy of the library, not two: the
    listed duplicates (and their strings) die as each page arrives, which
    matters at 100,000 episodes on a small box.
    """
    shows: Mapping[str, ShowMirror] = old.shows if old is not None else {}

    def reuse(page: list[EpisodeRow]) -> list[EpisodeRow]:
        kept = []
        for row in page:
            entry = shows.get(row[At.SHOW_ID])
            known = entry.rows.get(row[At.ID]) if entry is not None else None
            if known is not None and (
                row == known
                or (not trusts_added_at and _added_at(row, known[At.ADDED_AT]) == known)
            ):
                row = known  # noqa: PLW2901 - the kept row replaces the listed one
            kept.append(row)
        return kept

    return reuse


# The two copies below slice a row around one field; ``At`` keeps the order.


def _added_at(row: EpisodeRow, added_at: int) -> EpisodeRow:
    """The row with another ``added_at``."""
    return (*row[: At.ADDED_AT], added_at, *row[At.WATCHED :])


def _placed(row: EpisodeRow, library_id: str) -> EpisodeRow:
    """The row placed in ``library_id`` (a server-wide delta may not say)."""
    if row[At.LIBRARY_ID] == library_id:
        return row
    return (*row[: At.LIBRARY_ID], library_id, *row[At.SEASON :])
