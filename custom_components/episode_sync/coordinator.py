"""The coordinator: runs the sync engine on a schedule and tells Home Assistant.

One place maps the clients' errors onto Home Assistant's (``_async_update_data``);
one place persists a committed sync (before the in-memory mirror moves on; a
write that Home Assistant could not make is found at the next start, see
``store``); one place fires the new-episode events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import math
import time
from typing import TYPE_CHECKING, Any

from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryError, HomeAssistantError
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.helpers.start import async_at_started
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from .api.errors import (
    MediaServerAuthError,
    MediaServerConnectionError,
    MediaServerError,
    MediaServerForbiddenError,
    MediaServerUnavailableError,
    ServerChangedError,
)
from .api.models import At, Episode, EpisodeRow, ServerInfo, Show
from .client import MediaClient
from .compat import update_failed
from .const import (
    CONF_EXCLUDE_KEYWORDS,
    CONF_FULL_SYNC_DAYS,
    CONF_HIDE_SPECIALS,
    CONF_LIBRARIES,
    CONF_MAX_CONCURRENCY,
    CONF_NEW_EPISODE_DAYS,
    CONF_SCAN_INTERVAL,
    DOMAIN,
    EVENT_MANY_NEW_EPISODES,
    EVENT_NEW_EPISODE,
    LOGGER,
    MAX_EVENTS_PER_SYNC,
    option,
)
from .image_proxy import ImagePaths
from .store import EpisodeSyncStore, Owed
from .sync import FullSyncReason, Mirror, SyncEngine, SyncMode, SyncResult, SyncState

if TYPE_CHECKING:
    from . import EpisodeSyncConfigEntry

#: Consecutive syncs whose delta failed (and ran full instead) before a repair issue.
DELTA_FAILURES_FOR_ISSUE = 3
#: The longest ``Retry-After`` obeyed (s): a server asking for more is asked again then.
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DisplayFilter:
    """What users are shown: the one place the display options are applied.

    The sensor, its card data, the calendar, ``get_new_episodes``, the bus
    events and the event entity all ask ``visible``; hidden episodes stay in
    the mirror (a changed option reloads the entry and takes effect at once).
    """

    #: Lower-cased words; a show whose title contains one is hidden.
    keywords: tuple[str, ...] = ()
    hide_specials: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> DisplayFilter:
        """Read the entry's options (comma-separated keywords, matched case-insensitively)."""
        text = str(option(options, CONF_EXCLUDE_KEYWORDS))
        return cls(
            keywords=tuple(word.strip().casefold() for word in text.split(",") if word.strip()),
            hide_specials=bool(option(options, CONF_HIDE_SPECIALS)),
        )

    def hides_show(self, title: str) -> bool:
        """Whether every episode of a show with this title is hidden."""
        folded = title.casefold()
        return any(word in folded for word in self.keywords)

    def hides_season(self, season: int | None) -> bool:
        """Whether the episodes of this season are hidden, whatever their show (specials)."""
        return self.hide_specials and season == 0

    def visible(self, show_title: str, season: int | None) -> bool:
        """Whether an episode of this show and season is shown and announced."""
        return not self.hides_season(season) and not self.hides_show(show_title)


def episode_code(season: int | None, number: int | None) -> str:
    """``S01E02``; ``S01`` or ``E02`` when one index is missing; "" when both are."""
    return (f"S{season:02d}" if season is not None else "") + (
        f"E{number:02d}" if number is not None else ""
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeView:
    """One mirrored episode as users see it (attributes, events, action answers)."""

    episode: Episode
    server: str
    library: str
    show: str
    #: The show's model (for its poster) and the entry's image paths. Paths are
    #: signed when a view is shown, not for every new episode of a big import.
    show_item: Show | None = field(default=None, compare=False)
    images: ImagePaths | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, str | int | None]:
        """The SPEC §7 shape: integer season/episode, ISO UTC added_at, string ids.

        Plus ``poster`` (the show's) and ``thumb`` (the episode's): signed,
        relative Home Assistant paths of the image view, or None.
        """
        e = self.episode
        images, show = self.images, self.show_item
        return {
            "server": self.server,
            "library": self.library,
            "show": self.show,
            "season": e.season,
            "episode": e.number,
            "title": e.title,
            "air_date": e.air_date,
            "added_at": datetime.fromtimestamp(e.added_at, UTC).isoformat(),
            "episode_id": e.id,
            "show_id": e.show_id,
            "poster": images.path(show) if images is not None and show is not None else None,
            "thumb": images.path(e) if images is not None else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncSnapshot:
    """What the entities read: the mirror and the last sync, computed once per update."""

    mirror: Mirror
    last_sync: datetime | None
    last_full_sync: datetime | None
    mode: SyncMode
    duration: float
    api_calls: int
    #: Episodes added within ``new_episode_days``, newest first.
    new_episodes: tuple[EpisodeView, ...]


#: Repair issues about one library of an entry: ``<kind>_<entry id>_<library id>``.
LIBRARY_ISSUES = ("mass_removal", "library_missing")
#: And about the entry as a whole: ``<kind>_<entry id>``.
ENTRY_ISSUES = ("delta_failing",)


def issue_id(kind: str, entry_id: str, library_id: str | None = None) -> str:
    """The id of a repair issue about an entry, or about one of its libraries."""
    return f"{kind}_{entry_id}" if library_id is None else f"{kind}_{entry_id}_{library_id}"


def raised_issues(
    hass: HomeAssistant, entry_id: str, kinds: Sequence[str] = LIBRARY_ISSUES + ENTRY_ISSUES
) -> set[str]:
    """The ids of the repair issues raised about an entry (of these kinds)."""
    prefixes = tuple(issue_id(kind, entry_id) for kind in kinds)
    return {
        issue_id
        for domain, issue_id in ir.async_get(hass).issues
        if domain == DOMAIN and issue_id.startswith(prefixes)
    }


def failure_key(err: MediaServerError) -> str:
    """The translation key that tells the user why the server could not be synced."""
    if isinstance(err, MediaServerConnectionError):
        return "cannot_connect"
    if isinstance(err, MediaServerForbiddenError):
        return "forbidden"
    return "invalid_response"


class EpisodeSyncCoordinator(DataUpdateCoordinator[SyncSnapshot]):
    """Keeps one server's mirror up to date."""

    config_entry: EpisodeSyncConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: EpisodeSyncConfigEntry,
        client: MediaClient,
        store: EpisodeSyncStore,
        server: ServerInfo,
    ) -> None:
        """Bind the coordinator to an entry, its client and its store."""
        options = entry.options
        scan_interval = timedelta(minutes=option(options, CONF_SCAN_INTERVAL))
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {entry.title}",
            update_interval=scan_interval,
            always_update=False,
        )
        self.client = client
        self.store = store
        self.server = server
        #: The polling interval asked for (push connected: the slow one), and the usual one.
        self._interval = self._scan_interval = scan_interval
        self.engine = SyncEngine(
            client,
            server_id=server.server_id,
            library_ids=options.get(CONF_LIBRARIES, []),
            max_concurrency=option(options, CONF_MAX_CONCURRENCY),
            full_sync_interval=86_400 * option(options, CONF_FULL_SYNC_DAYS),
        )
        self.new_episode_days: int = option(options, CONF_NEW_EPISODE_DAYS)
        self.display_filter = DisplayFilter.from_options(options)
        self.images = ImagePaths(hass, entry.entry_id, client, lambda: self.mirror)
        self.mirror = Mirror()
        self.state = SyncState()
        self.last_result: SyncResult | None = None
        # What the next sync owes; the stored part is added once it is loaded.
        self._force_full = False
        self._delta_failures = 0
        #: Libraries a push channel reported changed, looked at by the next sync.
        self.dirty_libraries: set[str] = set()
        #: Episodes and shows a push channel reported played or unplayed: the
        #: next sync re-lists their shows.
        self.played_items: set[str] = set()
        #: What the running sync took on (a forced full sync, dirty libraries,
        #: played items): still owed until it commits, given back if it does not.
        self._taken = Owed()
        #: One sync at a time: a poll, a push-started sync and the button share
        #: the mirror (Home Assistant before 2025.11 runs refreshes side by side).
        self._sync_lock = asyncio.Lock()
        #: Held while a sync commits: shutdown waits for a commit, not a sync.
        self._commit_lock = asyncio.Lock()
        self._unsub_stop: CALLBACK_TYPE | None = hass.bus.async_listen_once(
            EVENT_HOMEASSISTANT_STOP, self._async_stopping
        )
        #: Called with the events' data of every new episode (the event entity).
        self.new_episode_listeners: list[Callable[[dict[str, Any]], None]] = []
        #: ``time.monotonic()`` before which no sync asks the server (its ``Retry-After``).
        self._not_before = 0.0
        #: New episodes found before anyone can hear of them (see
        #: ``async_start_announcing``); None once they are announced as found.
        self._unannounced: list[EpisodeRow] | None = []

    async def _async_setup(self) -> None:
        """Load the stored mirror, and what the last coordinator owed, before the first sync."""
        self.mirror, self.state = await self.store.async_load()
        owed = self.store.owed
        self._force_full |= owed.force_full
        self._delta_failures = owed.delta_failures
        self.dirty_libraries |= owed.dirty_libraries
        self.played_items |= owed.played_items
        if self._unannounced is not None and owed.unannounced:
            # Found by a coordinator that went before Home Assistant had started.
            self._unannounced.extend(
                row
                for library in self.mirror.libraries.values()
                for show in library.shows.values()
                for row in show.rows.values()
                if row[At.ID] in owed.unannounced
            )

    @callback
    def async_start_announcing(self) -> None:
        """Announce new episodes from now on, and those found so far once HA has started.

        The set-up's first sync runs before the event entity and the device
        exist, and at boot before automations listen (they attach when Home
        Assistant has started): episodes added while Home Assistant was down
        would otherwise be announced to no one.
        """

        @callback
        def start(hass: HomeAssistant) -> None:
            found, self._unannounced = self._unannounced, None
            if found:
                # As mirrored now: a sync since may have renamed or removed them.
                self._announce(self._as_mirrored(found))
                self._announced()

        self.config_entry.async_on_unload(async_at_started(self.hass, start))

    def _announced(self) -> None:
        """Episodes saved as unannounced are announced: save that (a restart must not again)."""
        self.config_entry.async_create_task(
            self.hass, self.store.async_save_owed(self.owed), "episode_sync announced"
        )

    @property
    def owed(self) -> Owed:
        """What the next sync still owes, the running one's work included (diagnostics too)."""
        return self._owed(self._taken)

    def _owed(self, taken: Owed) -> Owed:
        """What is owed, with ``taken`` as the running sync's work."""
        return Owed(
            self._force_full or taken.force_full,
            self.dirty_libraries | taken.dirty_libraries,
            self.played_items | taken.played_items,
            self._delta_failures,
            {row[At.ID] for row in self._unannounced or ()},
        )

    @property
    def paused_for(self) -> float:
        """Seconds the server asked us to wait before the next request (0: none)."""
        return max(self._not_before - time.monotonic(), 0.0)

    async def async_shutdown(self) -> None:
        """Stop, leaving what is still owed for the entry's next coordinator.

        A sync still running commits nothing once shutdown is asked for
        (unload cancels a poll or a push-started sync; a forced one runs on),
        and what it took on is in what is owed. One already committing is waited
        for, so that the next coordinator loads stores no one writes.
        """
        await super().async_shutdown()
        if self._unsub_stop is not None:
            self._unsub_stop()
            self._unsub_stop = None
        async with self._commit_lock:
            await self.store.async_save_owed(self.owed)

    async def _async_stopping(self, _event: Event) -> None:
        """Home Assistant stops (entries are not unloaded): keep what is owed for the restart."""
        self._unsub_stop = None  # a listener that fired is gone already
        async with self._commit_lock:  # after a commit that is writing
            await self.store.async_save_owed(self.owed)

    async def async_force_full_sync(self) -> None:
        """Run a full sync now (action and button); say so when it could not run.

        The full sync stays owed: the next sync that reaches the server runs it.
        Shielded: a script stopped meanwhile (``mode: restart``) cancels its
        wait, not the sync, which would commit yet be recorded as failed.
        """
        self._force_full = True
        await asyncio.shield(
            self.hass.async_create_task(self.async_refresh(), "episode_sync full sync")
        )
        if not self.last_update_success:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="full_sync_failed",
                translation_placeholders={"error": str(self.last_exception)},
            )

    def set_update_interval(self, interval: timedelta) -> None:
        """Poll at a new interval from now on (push connected or not).

        Not while a reauth is pending: Home Assistant stopped polling then.
        """
        self._interval = interval
        wanted = self._next_interval(failed=not self.last_update_success)
        if wanted != self.update_interval:
            self.update_interval = wanted
            if self.last_update_success or not isinstance(
                self.last_exception, ConfigEntryAuthFailed
            ):
                self._schedule_refresh()

    def _next_interval(self, *, failed: bool) -> timedelta:
        """The interval to the next poll: never push's slow one after a failed sync.

        The socket can stay up while the server fails syncs (a scan holding
        its database, a proxy's 502); the last good values would otherwise
        stay unavailable until the slow safety-net poll.
        """
        return min(self._interval, self._scan_interval) if failed else self._interval

    async def _async_update_data(self) -> SyncSnapshot:
        """Sync, persist, then announce; one sync at a time."""
        async with self._sync_lock:
            try:
                snapshot = await self._sync()
            except UpdateFailed:
                self.update_interval = self._next_interval(failed=True)
                raise
            self.update_interval = self._next_interval(failed=False)
            return snapshot

    async def _sync(self) -> SyncSnapshot:
        """Sync, persist, then announce; map every client error in this one place."""
        if (wait := self.paused_for) > 0:
            # The server asked for a pause (503 or 429 with Retry-After): every
            # sync, pushed or forced too, waits; what it owes stays owed.
            raise update_failed(
                wait,
                translation_domain=DOMAIN,
                translation_key="server_asked_to_wait",
                translation_placeholders={"seconds": str(math.ceil(wait))},
            )
        async with self._commit_lock:
            pass  # a commit its cancelled poll left running ends first: start from it
        taken = self._taken = Owed(self._force_full, self.dirty_libraries, self.played_items)
        self._force_full, self.dirty_libraries, self.played_items = False, set(), set()
        try:
            result = await self.engine.sync(
                self.mirror,
                self.state,
                force_full=taken.force_full,
                dirty=taken.dirty_libraries,
                played=taken.played_items,
            )
        except BaseException as err:
            # Owed again: a forced sync that could not run, a look at a dirty
            # library, the played items; also when the sync was cancelled.
            self._give_back()
            if isinstance(err, MediaServerError):
                raise self._failure(err) from err
            raise
        # Shielded: an unload or Home Assistant's stop cancels a running poll,
        # and a commit cut between its two writes leaves a library file that
        # its status file does not name (a full sync at the next start, and
        # the episodes this sync found never announced).
        commit = self.config_entry.async_create_task(
            self.hass, self._commit_unless_shut_down(result), "episode_sync commit"
        )
        await asyncio.shield(commit)
        return self.snapshot()

    async def _commit_unless_shut_down(self, result: SyncResult) -> None:
        async with self._commit_lock:
            if self._shutdown_requested:
                # Unloaded meanwhile: the entry's next coordinator does this again.
                self._give_back()
            else:
                await self._commit(result)

    async def _commit(self, result: SyncResult) -> None:
        """Persist a sync's result, then take it on and announce what it found."""
        new = result.new_episodes
        self._report_delta_failures(result)  # counted in what is owed, saved next
        owed = self._owed(Owed())  # what this sync took on is done once this is saved
        if self._unannounced is not None:
            # Owed, and saved so, until Home Assistant has started.
            owed.unannounced.update(row[At.ID] for row in new)
        await self.store.async_save(
            result.state,
            _summary(result),
            result.mirror if result.mirror_changed else None,
            owed,
        )
        self._taken = Owed()
        previous = self.mirror
        self.mirror, self.state, self.last_result = result.mirror, result.state, result
        LOGGER.debug(
            "%s sync of %s: %d requests, %d added, %d removed, %d updated in %.2fs",
            result.mode,
            self.server.name,
            result.api_calls,
            len(result.added),
            len(result.removed),
            result.updated,
            result.duration,
        )
        self._report_libraries(result, previous)
        # Held until now, not only until the start: announced from the mirror
        # they are in, even when Home Assistant started while this was saved.
        if (waiting := self._unannounced) is not None:
            waiting.extend(new)
        elif new:
            self._announce(new)
            if owed.unannounced:  # saved as owed: Home Assistant started meanwhile
                self._announced()

    def _give_back(self) -> None:
        """What the running sync took on is owed again (it commits nothing)."""
        taken, self._taken = self._taken, Owed()
        self._force_full |= taken.force_full
        self.dirty_libraries |= taken.dirty_libraries
        self.played_items |= taken.played_items

    def _failure(self, err: MediaServerError) -> Exception:
        """Home Assistant's exception for a sync the client failed, and what follows from it."""
        if isinstance(err, MediaServerAuthError):
            return ConfigEntryAuthFailed(translation_domain=DOMAIN, translation_key="auth_failed")
        if isinstance(err, ServerChangedError):
            # The set-up checks the identity too and stops there, with this error.
            self.hass.config_entries.async_schedule_reload(self.config_entry.entry_id)
            return ConfigEntryError(
                translation_domain=DOMAIN,
                translation_key="wrong_server",
                translation_placeholders={"name": err.name},
            )
        retry_after = None
        if isinstance(err, MediaServerUnavailableError) and err.retry_after:
            retry_after = min(max(err.retry_after, 0.0), MAX_RETRY_AFTER)
            self._not_before = time.monotonic() + retry_after
        return update_failed(
            retry_after,
            translation_domain=DOMAIN,
            translation_key=failure_key(err),
            translation_placeholders={"error": str(err)},
        )

    def _report_libraries(self, result: SyncResult, previous: Mirror) -> None:
        """Raise a repair issue per library held back or gone; clear those that are not.

        A held-back mass removal waits for the next sync's confirmation. A
        selected library the server no longer has (removed, or re-created,
        which gives it a new id) leaves the mirror, and nothing else would
        tell the user to select it again in the options.
        """
        titles = {
            lid: lib.title
            for lid, lib in (*previous.libraries.items(), *self.mirror.libraries.items())
        }
        raised: set[str] = set()
        for library_id, count in result.held_back.items():
            title = titles.get(library_id, library_id)
            raised.add(self._raise_issue("mass_removal", library_id, library=title, count=count))
        for library_id in self.engine.library_ids - self.mirror.libraries.keys():
            title = titles.get(library_id, library_id)
            raised.add(self._raise_issue("library_missing", library_id, library=title))
        entry_id = self.config_entry.entry_id
        for stale in raised_issues(self.hass, entry_id, LIBRARY_ISSUES) - raised:
            ir.async_delete_issue(self.hass, DOMAIN, stale)

    def _report_delta_failures(self, result: SyncResult) -> None:
        """Raise a repair issue when the delta keeps failing; clear it after a clean delta.

        Each such sync still succeeds (as a full one), so nothing else would
        tell the user that every sync now lists the whole library.
        """
        if result.mode is SyncMode.INCREMENTAL:
            self._delta_failures = 0
            failing = issue_id("delta_failing", self.config_entry.entry_id)
            ir.async_delete_issue(self.hass, DOMAIN, failing)
            return
        if result.reason is not FullSyncReason.PROTOCOL_ERROR:
            return  # a forced or scheduled full sync says nothing about the delta
        self._delta_failures += 1
        if self._delta_failures >= DELTA_FAILURES_FOR_ISSUE:
            self._raise_issue("delta_failing", count=self._delta_failures)

    def _raise_issue(
        self, kind: str, library_id: str | None = None, **placeholders: str | int
    ) -> str:
        """Raise (or refresh) a warning repair issue about this server; return its id.

        Nothing to fix in a flow: each issue clears itself.
        """
        raised = issue_id(kind, self.config_entry.entry_id, library_id)
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            raised,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key=kind,
            translation_placeholders={
                "server": self.server.name,
                **{name: str(value) for name, value in placeholders.items()},
            },
        )
        return raised

    def snapshot(self) -> SyncSnapshot:
        """Compute what the entities show from the mirror and the last sync."""
        assert self.last_result is not None  # every update runs a sync first
        result = self.last_result
        return SyncSnapshot(
            mirror=self.mirror,
            last_sync=_time(self.state.last_incremental_sync),
            last_full_sync=_time(self.state.last_full_sync),
            mode=result.mode,
            duration=result.duration,
            api_calls=result.api_calls,
            new_episodes=tuple(self.new_episodes(self.new_episode_days)),
        )

    def new_episodes(self, days: float, limit: int | None = None) -> list[EpisodeView]:
        """Episodes added within ``days``, newest first, from the mirror only."""
        since = dt_util.utcnow().timestamp() - days * 86_400
        visible = self.display_filter.visible
        # Shows with nothing that recent are skipped whole: this runs after
        # every sync, and a 100,000-episode walk would hold the event loop.
        found = [
            (episode, library.title, show.show)
            for library in self.mirror.libraries.values()
            for show in library.shows.values()
            if show.latest_added >= since
            for episode in show.episodes.values()
            if episode.added_at >= since and visible(show.show.title, episode.season)
        ]
        found.sort(key=lambda item: (item[0].added_at, item[0].id), reverse=True)
        if limit is not None:
            found = found[:limit]
        return [self._view(e, lib, show) for e, lib, show in found]

    def _view(self, episode: Episode, library: str, show: Show | None) -> EpisodeView:
        return EpisodeView(
            episode=episode,
            server=self.server.name,
            library=library,
            show=show.title if show is not None else "",
            show_item=show,
            images=self.images,
        )

    def _announce(self, new_episodes: Sequence[EpisodeRow]) -> None:
        """Fire the bus events of SPEC §5: ≤ 25 per sync, then one summary."""
        devices = dr.async_entries_for_config_entry(
            dr.async_get(self.hass), self.config_entry.entry_id
        )
        device = devices[0] if devices else None
        shows = self._shows()

        def show_of(row: EpisodeRow) -> tuple[str, Show | None]:
            return shows.get((row[At.LIBRARY_ID], row[At.SHOW_ID]), ("", None))

        def title_of(row: EpisodeRow) -> str:
            show = show_of(row)[1]
            return show.title if show is not None else ""

        visible = self.display_filter.visible
        added = sorted(
            (row for row in new_episodes if visible(title_of(row), row[At.SEASON])),
            key=lambda row: (row[At.ADDED_AT], row[At.ID]),
        )
        for row in added[:MAX_EVENTS_PER_SYNC]:
            data = {
                "config_entry_id": self.config_entry.entry_id,
                "device_id": device.id if device else None,
                **self._view(Episode.from_row(row), *show_of(row)).as_dict(),
            }
            self.hass.bus.async_fire(EVENT_NEW_EPISODE, data)
            for listener in self.new_episode_listeners:
                listener(data)
        rest = added[MAX_EVENTS_PER_SYNC:]
        if rest:
            self.hass.bus.async_fire(
                EVENT_MANY_NEW_EPISODES,
                {
                    "config_entry_id": self.config_entry.entry_id,
                    "device_id": device.id if device else None,
                    "server": self.server.name,
                    "count": len(rest),
                    "shows": sorted({title_of(e) for e in rest}),
                },
            )

    def _as_mirrored(self, rows: Sequence[EpisodeRow]) -> list[EpisodeRow]:
        """The rows as the mirror holds them now, without those it no longer holds."""
        found = []
        for row in rows:
            library = self.mirror.libraries.get(row[At.LIBRARY_ID])
            show = library.shows.get(row[At.SHOW_ID]) if library is not None else None
            if show is not None and (current := show.rows.get(row[At.ID])) is not None:
                found.append(current)
        return found

    def _shows(self) -> dict[tuple[str, str], tuple[str, Show | None]]:
        """(library id, show id) -> (library title, show), for the announcements."""
        return {
            (library.id, show_id): (library.title, entry.show)
            for library in self.mirror.libraries.values()
            for show_id, entry in library.shows.items()
        }


def _summary(result: SyncResult) -> dict[str, Any]:
    """The last sync, as the status store keeps it (no episode data, no secrets)."""
    return {
        "mode": result.mode.value,
        "reason": result.reason.value if result.reason else None,
        "started_at": result.started_at,
        "duration": round(result.duration, 3),
        "api_calls": result.api_calls,
        "added": len(result.added),
        "removed": len(result.removed),
        "updated": result.updated,
        "rekeyed": result.rekeyed,
        "held_back": dict(result.held_back),
    }


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None
