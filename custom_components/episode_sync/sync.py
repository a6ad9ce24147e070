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
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
import time
from typing import Protocol

from .api.errors import MediaServerProtocolError
from .api.models import Episode, Library, ServerInfo, Show
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

#: Markers can miss watch-state changes (Plex does not bump contentChangedAt
#: for them), so each library's shows are re-listed at least this often.
SHOWS_CHECK_INTERVAL = 3600.0


class Backend(Protocol):
    """What the engine needs from a media-server client."""

    #: True when ``libraries()`` returns usable per-library change markers.
    has_library_markers: bool
    #: False when the server's "added" date is not the time the episode
    #: arrived (Jellyfin's DateCreated is the file's birth time).
    trusts_added_at: bool

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

    async def episodes(self, library_id: str) -> list[Episode]:
        """Return every episode of a library (paged, library-wide)."""

    async def show_episodes(self, library_id: str, show_id: str) -> list[Episode]:
        """Return every episode of one show."""

    async def changed_episodes(self, library_ids: Sequence[str], since: int) -> list[Episode]:
        """Return episodes of these libraries saved or updated at or after server time ``since``.

        Episodes may come back with an empty ``library_id`` when the server
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
    copy or recount per sync would block Home Assistant's event loop.
    """

    show: Show
    episodes: Mapping[str, Episode]
    watched: int
    #: The newest ``added_at`` of its episodes when built (0 for none; a
    #: re-keyed episode may take an older one later, so it is an upper bound):
    #: "what is new" skips a show at a glance instead of each of its episodes.
    latest_added: int = 0

    @classmethod
    def build(cls, show: Show, episodes: Mapping[str, Episode]) -> ShowMirror:
        """Create a show entry, counting its watched episodes and finding its newest once."""
        return cls(
            show=show,
            episodes=episodes,
            watched=sum(e.watched for e in episodes.values()),
            latest_added=max((e.added_at for e in episodes.values()), default=0),
        )

    @property
    def agrees(self) -> bool:
        """Whether the mirrored episodes match the counts the server listed."""
        return (
            len(self.episodes) == self.show.episode_count
            and self.watched == self.show.watched_count
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LibraryMirror:
    """One mirrored TV library."""

    id: str
    title: str
    shows: Mapping[str, ShowMirror]

    @property
    def episode_count(self) -> int:
        """Episodes mirrored in this library."""
        return sum(len(s.episodes) for s in self.shows.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class Mirror:
    """The whole mirror of one server. Immutable: a sync returns a new one."""

    server_id: str | None = None
    libraries: Mapping[str, LibraryMirror] = field(default_factory=dict)

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
                for episode in show.episodes.values():
                    yield library, show, episode


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncState:
    """The engine's small bookkeeping, persisted in the status store.

    ``cursor`` is on the *server's* clock (epoch s); ``last_*`` and
    ``shows_checked`` are on the local clock, as they only pace our own work.
    ``markers`` are the library markers committed by the last successful sync.
    """

    last_full_sync: float | None = None
    last_incremental_sync: float | None = None
    cursor: int | None = None
    markers: Mapping[str, str] = field(default_factory=dict)
    shows_checked: Mapping[str, float] = field(default_factory=dict)
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
    #: Episodes new to the mirror (re-keyed episodes are not new).
    added: tuple[Episode, ...]
    removed: tuple[Episode, ...]
    updated: int
    rekeyed: int
    mirror: Mirror
    state: SyncState
    #: Whether ``mirror`` differs from the mirror the sync started from.
    mirror_changed: bool
    #: True for the very first sync of a mirror: nothing in it is "new".
    first_sync: bool

    @property
    def held_back(self) -> Mapping[str, int]:
        """Libraries whose mass removal this sync held back (id -> episodes)."""
        return self.state.held_back


class InconsistentSyncError(Exception):
    """Counts still disagree with the server after a targeted repair."""


class _Builder:
    """Builds a new mirror's shows from an old one, recording what changed.

    Every episode dict handed to ``show`` was built by this sync, so its
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
    - when the server's "added" date cannot be trusted (Jellyfin's
      DateCreated is the file's birth time), a known episode keeps the
      ``added_at`` the mirror gave it, and an episode new to an existing
      mirror gets the time the mirror first saw it.
    """

    def __init__(self, *, first_sync: bool, trusts_added_at: bool, seen_at: int) -> None:
        self.first_sync = first_sync
        self.trusts_added_at = trusts_added_at
        self.seen_at = seen_at
        self.added: list[Episode] = []
        self.removed: list[Episode] = []
        #: Updated episodes per library id.
        self.updated: Counter[str] = Counter()
        self.rekeyed = 0
        #: Anything but episodes changed: shows, titles, counts, libraries.
        self.structure_changed = False
        #: Shows new to the mirror (title, this sync's episode dict) and shows
        #: gone from it: ``settle`` pairs their episodes up once all are known.
        self._new_shows: list[tuple[str, dict[str, Episode]]] = []
        self._gone_shows: list[ShowMirror] = []

    def show(self, old: ShowMirror | None, show: Show, episodes: dict[str, Episode]) -> ShowMirror:
        """Settle one show's freshly fetched episodes against its old entry."""
        before: Mapping[str, Episode] = old.episodes if old is not None else {}
        if old is None or old.show != show:
            self.structure_changed = True
        gone = {eid: e for eid, e in before.items() if eid not in episodes}
        slots: dict[tuple[int | None, int | None], Episode] = {
            (e.season, e.number): e for e in gone.values() if e.number is not None
        }
        for episode_id, fetched in list(episodes.items()):
            previous = before.get(episode_id)
            if previous is not None:
                if not self.trusts_added_at and fetched.added_at != previous.added_at:
                    episodes[episode_id] = replace(fetched, added_at=previous.added_at)
                if previous != episodes[episode_id]:
                    self.updated[show.library_id] += 1
                continue
            predecessor = slots.pop((fetched.season, fetched.number), None)
            if predecessor is not None:
                episodes[episode_id] = replace(fetched, added_at=predecessor.added_at)
                del gone[predecessor.id]
                self.rekeyed += 1
                self.updated[show.library_id] += 1
                continue
            if not self.first_sync and not self.trusts_added_at:
                episodes[episode_id] = replace(fetched, added_at=self.seen_at)
            self.added.append(episodes[episode_id])
        self.removed.extend(gone.values())
        if old is None and episodes:
            self._new_shows.append((show.title, episodes))
        return ShowMirror.build(show, episodes)

    def drop(self, old: ShowMirror) -> None:
        """Record a show that is gone from the server."""
        self.structure_changed = True
        self.removed.extend(old.episodes.values())
        self._gone_shows.append(old)

    def settle(self) -> None:
        """Pair episodes of new show ids with those of gone shows (a re-keyed library).

        Runs once every show has been seen, before the mass-removal guard, so
        re-keyed episodes count neither as added nor as removed. The episode
        dicts of new shows are this sync's own and not yet shared, so the
        matched episodes take their predecessors' ``added_at`` in place.
        """
        if not self._new_shows or not self._gone_shows:
            return
        slots: dict[tuple[str, int | None, int], Episode] = {}
        for gone_show in self._gone_shows:
            title = gone_show.show.title.casefold()
            for e in gone_show.episodes.values():
                if e.number is not None:
                    slots.setdefault((title, e.season, e.number), e)
        added = {e.id for e in self.added}
        matched: set[str] = set()
        replaced: set[str] = set()
        for title, episodes in self._new_shows:
            folded = title.casefold()
            for episode_id, episode in episodes.items():
                if episode_id not in added or episode.number is None:
                    continue
                predecessor = slots.pop((folded, episode.season, episode.number), None)
                if predecessor is None:
                    continue
                episodes[episode_id] = replace(episode, added_at=predecessor.added_at)
                matched.add(episode_id)
                replaced.add(predecessor.id)
                self.rekeyed += 1
                self.updated[episode.library_id] += 1
        if matched:
            self.added = [e for e in self.added if e.id not in matched]
            self.removed = [e for e in self.removed if e.id not in replaced]

    @property
    def changed(self) -> bool:
        """Whether the new mirror differs from the old one."""
        return bool(self.added or self.removed or self.updated.total() or self.structure_changed)

    def discard(self, library_id: str) -> None:
        """Forget what was recorded for one library (its changes are not applied)."""
        self.added = [e for e in self.added if e.library_id != library_id]
        self.removed = [e for e in self.removed if e.library_id != library_id]
        self.updated.pop(library_id, None)


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

    async def sync(
        self,
        mirror: Mirror,
        state: SyncState,
        *,
        force_full: bool = False,
        dirty: Collection[str] = (),
    ) -> SyncResult:
        """Bring the mirror up to date; raise the backend's errors when it cannot.

        ``dirty`` libraries (a push channel reported a change there) are
        looked at even when their marker is the one stored.

        Auth and connection errors propagate unchanged: nothing is committed
        and the caller retries later. A protocol error or an inconsistent
        result during an incremental sync is answered by a full sync in the
        same run.
        """
        started = self._clock()
        self._backend.reset_stats()
        reason = self._full_sync_reason(mirror, state, force_full=force_full, now=started)
        if reason is None:
            try:
                return await self._incremental(mirror, state, started, dirty)
            except MediaServerProtocolError:
                reason = FullSyncReason.PROTOCOL_ERROR
            except InconsistentSyncError:
                reason = FullSyncReason.INCONSISTENT
        return await self._full(mirror, state, started, reason)

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
        return _Builder(
            first_sync=mirror.is_empty,
            trusts_added_at=self._backend.trusts_added_at,
            seen_at=self._backend.server_clock or int(self._clock()),
        )

    # -- full sync ------------------------------------------------------------------

    async def _full(
        self, mirror: Mirror, state: SyncState, started: float, reason: FullSyncReason
    ) -> SyncResult:
        backend = self._backend
        libraries = [lib for lib in await backend.libraries() if lib.id in self._library_ids]

        async def listed_episodes(library: Library) -> list[Episode]:
            # Set inside this job's own task: only the episode listing reuses.
            with reuse_items(_reusing(mirror.libraries.get(library.id), backend.trusts_added_at)):
                return await backend.episodes(library.id)

        async def fetch(library: Library) -> tuple[Library, list[Show], list[Episode]]:
            shows, episodes = await bounded_gather(
                (backend.shows(library.id), listed_episodes(library)), 2
            )
            return library, shows, episodes  # type: ignore[return-value]  # one list per job

        listings = await self._gather(fetch(library) for library in libraries)
        builder = self._builder(mirror)
        new_libraries: dict[str, LibraryMirror] = {}
        for library, shows, episodes in listings:
            by_show: dict[str, dict[str, Episode]] = {show.id: {} for show in shows}
            for index, episode in enumerate(episodes):
                if episode.show_id in by_show:
                    by_show[episode.show_id][episode.id] = _placed(episode, library.id)
                if index % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # a big library is built in steps, not in one block
            old = mirror.libraries.get(library.id)
            old_shows: Mapping[str, ShowMirror] = old.shows if old is not None else {}
            new_shows: dict[str, ShowMirror] = {}
            done = 0
            for show in shows:
                new_shows[show.id] = builder.show(old_shows.get(show.id), show, by_show[show.id])
                done += len(by_show[show.id]) + 1
                if done >= YIELD_EVERY:
                    done = 0
                    await asyncio.sleep(0)
            for show_id in old_shows.keys() - new_shows.keys():
                builder.drop(old_shows[show_id])
            if old is None or old.title != library.title:
                builder.structure_changed = True
            new_libraries[library.id] = LibraryMirror(
                id=library.id, title=library.title, shows=new_shows
            )
        for library_id in mirror.libraries.keys() - new_libraries.keys():
            builder.structure_changed = True
            for old_show in mirror.libraries[library_id].shows.values():
                builder.drop(old_show)
        now = self._clock()
        new_state = replace(
            state,
            last_full_sync=now,
            last_incremental_sync=now,
            cursor=self._next_cursor(state),
            markers={lib.id: lib.marker for lib in libraries if lib.marker and not lib.refreshing},
            shows_checked=dict.fromkeys(new_libraries, started),
            selection=self._library_ids,
        )
        return self._result(
            SyncMode.FULL, reason, started, mirror, new_libraries, new_state, builder
        )

    # -- incremental sync -------------------------------------------------------------

    async def _incremental(
        self, mirror: Mirror, state: SyncState, started: float, dirty: Collection[str] = ()
    ) -> SyncResult:
        backend = self._backend
        assert state.cursor is not None
        builder = self._builder(mirror)
        libraries = {lid: lib for lid, lib in mirror.libraries.items() if lid in self._library_ids}
        if libraries.keys() != mirror.libraries.keys():
            builder.structure_changed = True  # the user unselected a library
        markers = dict(state.markers)
        shows_checked = dict(state.shows_checked)
        to_check: list[str] = list(libraries)

        if backend.has_library_markers:
            # Step 1 (SPEC §3): one listing of the libraries and their markers;
            # an unchanged library costs nothing more.
            on_server = {lib.id: lib for lib in await backend.libraries()}
            if any(lid in on_server and lid not in libraries for lid in self._library_ids):
                # A selected library (re)appeared: it needs a full listing.
                raise InconsistentSyncError("a selected library is not mirrored yet")
            listed = {lid: lib for lid, lib in on_server.items() if lid in libraries}
            to_check = []
            for library_id in libraries.keys() - listed.keys():
                # The library is gone from the server: so are its episodes.
                for show in libraries.pop(library_id).shows.values():
                    builder.drop(show)
                markers.pop(library_id, None)
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
                if library.title != libraries[library.id].title:
                    libraries[library.id] = replace(libraries[library.id], title=library.title)
                    builder.structure_changed = True

        if to_check:
            # Steps 2 and 3: show listings and the delta, then targeted repair.
            listings = await self._gather(backend.shows(lid) for lid in to_check)
            delta = await backend.changed_episodes(to_check, state.cursor - CURSOR_OVERLAP)
            for library_id, shows in zip(to_check, listings, strict=True):
                libraries[library_id] = await self._apply_delta(
                    builder, libraries[library_id], shows, delta
                )
                shows_checked[library_id] = started
        new_state = replace(
            state,
            last_incremental_sync=self._clock(),
            cursor=self._next_cursor(state),
            markers=markers,
            shows_checked=shows_checked,
            # Forget unselected libraries, so selecting one again means a full sync.
            selection=state.selection & self._library_ids,
        )
        return self._result(
            SyncMode.INCREMENTAL, None, started, mirror, libraries, new_state, builder
        )

    async def _apply_delta(
        self, builder: _Builder, library: LibraryMirror, shows: list[Show], delta: list[Episode]
    ) -> LibraryMirror:
        """Apply a library's show listing and the delta, then repair the shows that disagree."""
        listed = {show.id: show for show in shows}
        fresh: dict[str, dict[str, Episode]] = {}
        for episode in delta:
            if episode.show_id in listed:
                if episode.show_id not in fresh:
                    old = library.shows.get(episode.show_id)
                    fresh[episode.show_id] = dict(old.episodes) if old is not None else {}
                fresh[episode.show_id][episode.id] = _placed(episode, library.id)

        # A show whose counts disagree with the mirror once the delta is in
        # (an episode removed, a watched flag toggled) has its episodes re-fetched.
        suspects = [
            show
            for show in shows
            if not _agrees(show, fresh.get(show.id), library.shows.get(show.id))
        ]
        repairs = await self._gather(
            self._backend.show_episodes(library.id, show.id) for show in suspects
        )
        for show, episodes in zip(suspects, repairs, strict=True):
            fresh[show.id] = {
                e.id: _placed(e, library.id) for e in episodes if e.show_id == show.id
            }

        new_shows: dict[str, ShowMirror] = {}
        for show in shows:
            old = library.shows.get(show.id)
            if show.id in fresh:
                new_shows[show.id] = entry = builder.show(old, show, fresh[show.id])
                if not entry.agrees:
                    raise InconsistentSyncError(f"show {show.id} disagrees with its listing")
            elif old is None:
                new_shows[show.id] = builder.show(None, show, {})
            elif old.show != show:
                builder.structure_changed = True
                new_shows[show.id] = replace(old, show=show)
            else:
                new_shows[show.id] = old
        for show_id in library.shows.keys() - listed.keys():
            builder.drop(library.shows[show_id])
        return replace(library, shows=new_shows)

    # -- commit -------------------------------------------------------------------------

    def _result(
        self,
        mode: SyncMode,
        reason: FullSyncReason | None,
        started: float,
        old: Mirror,
        libraries: dict[str, LibraryMirror],
        state: SyncState,
        builder: _Builder,
    ) -> SyncResult:
        builder.settle()  # re-keyed shows are known only once every show was seen
        if not old.is_empty and reason is not FullSyncReason.FORCED:
            state = self._hold_back_mass_removals(old, libraries, state, builder)
        else:
            state = replace(state, held_back={})
        changed = builder.changed or old.server_id != self._server_id
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
            mirror=Mirror(server_id=self._server_id, libraries=libraries) if changed else old,
            state=state,
            mirror_changed=changed,
            first_sync=old.is_empty,
        )

    @staticmethod
    def _hold_back_mass_removals(
        old: Mirror, libraries: dict[str, LibraryMirror], state: SyncState, builder: _Builder
    ) -> SyncState:
        """Keep a library as it was when a sync would empty most of it (SPEC §5).

        The removal is applied when the next sync sees it again (confirmed) or
        when the user forces a full sync; a library that comes back clears
        the hold. The library's marker is dropped so the next sync looks again.
        """
        removed = Counter(e.library_id for e in builder.removed)
        held: dict[str, int] = {}
        markers = dict(state.markers)
        for library_id, count in removed.items():
            before = old.libraries.get(library_id)
            if before is None or count <= MASS_REMOVAL_MIN:
                continue
            if count <= before.episode_count * MASS_REMOVAL_SHARE:
                continue
            if library_id in state.held_back:
                continue  # seen twice in a row: confirmed, apply it
            held[library_id] = count
            builder.discard(library_id)
            markers.pop(library_id, None)
            libraries[library_id] = before
        return replace(state, held_back=held, markers=markers)

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


def _agrees(show: Show, fresh: Mapping[str, Episode] | None, old: ShowMirror | None) -> bool:
    """Whether a show's listed counts match its episodes once the delta is applied.

    A show listed exactly as stored, with no delta row, agrees whatever its
    episodes count: the mismatch is one the last repair or full sync already
    saw and kept (a Plex server that counts trashed episodes in ``leafCount``),
    so re-fetching the show on every sync would change nothing (docs: plex
    §9.3(b), "store the server's leafCount, so that a persistent mismatch such
    as trash does not trigger a sweep on every poll").
    """
    if fresh is None and old is not None and old.show == show:
        return True
    if fresh is not None:
        counts = (len(fresh), sum(e.watched for e in fresh.values()))
    elif old is not None:
        counts = (len(old.episodes), old.watched)
    else:
        counts = (0, 0)
    return counts == (show.episode_count, show.watched_count)


def _reusing(
    old: LibraryMirror | None, trusts_added_at: bool
) -> Callable[[list[Episode]], list[Episode]]:
    """Swap each parsed episode for the mirror's equal one, page by page.

    Equal means what ``_Builder.show`` keeps unchanged: when the server's
    "added" date is not trusted, the mirror's ``added_at`` stands. A full sync
    of an unchanged library then keeps the old objects and creates almost no
    long-lived ones, so the garbage collector has nothing new to walk while
    both mirrors are alive (at 100,000 episodes its passes blocked the loop).
    """
    shows: Mapping[str, ShowMirror] = old.shows if old is not None else {}

    def reuse(page: list[Episode]) -> list[Episode]:
        kept = []
        for episode in page:
            entry = shows.get(episode.show_id)
            known = entry.episodes.get(episode.id) if entry is not None else None
            same = known is not None and (
                episode == known
                or (not trusts_added_at and replace(episode, added_at=known.added_at) == known)
            )
            kept.append(known if same and known is not None else episode)
        return kept

    return reuse


def _placed(episode: Episode, library_id: str) -> Episode:
    """Return the episode placed in ``library_id`` (a server-wide delta may not say)."""
    return episode if episode.library_id == library_id else replace(episode, library_id=library_id)
