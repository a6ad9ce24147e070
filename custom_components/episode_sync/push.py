"""Push: the server's notification socket triggers syncs; polling slows down meanwhile.

The socket only hints (docs: plex §7 "it only speeds up a poll; it is never
the source of truth", jellyfin §6 "missed messages are never replayed"):

- a relevant message marks its library dirty and asks for a sync through a
  trailing ``Debouncer`` (``immediate=False``): Plex sends ~150 frames for one
  new item, and a flood within the cooldown yields exactly one sync;
- every (re)connect asks for one sync, because frames sent while we were
  away are lost;
- while the socket is up the coordinator polls every ``push_scan_interval``
  minutes as a safety net, while it is down every ``scan_interval``;
- a lost socket reconnects with exponential backoff (python-plexwebsocket's
  ``min(2**(n-1) * 30, 300)`` s); a handshake that refuses the credentials
  (Plex 401, Jellyfin 403) stops the listener instead of looping, and a sync
  asks the HTTP API whether they are wrong (then it starts the reauth) or only
  the socket is refused (a proxy).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import timedelta
import time
from typing import TYPE_CHECKING, Final

from homeassistant.const import CONF_VERIFY_SSL
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.debounce import Debouncer

from .api.errors import MediaServerAuthError, MediaServerError
from .api.jellyfin import JellyfinClient
from .api.push import (
    HintKind,
    JellyfinNotifications,
    NotificationSocket,
    PlexNotifications,
    PushHint,
)
from .const import (
    CONF_LIBRARIES,
    CONF_PUSH_SCAN_INTERVAL,
    CONF_PUSH_UPDATES,
    CONF_SCAN_INTERVAL,
    LOGGER,
    option,
)

if TYPE_CHECKING:
    from . import EpisodeSyncConfigEntry
    from .coordinator import EpisodeSyncCoordinator

#: Seconds to wait before reconnect attempt n (1-based; the last one repeats):
#: python-plexwebsocket's ``min(2**(n-1) * 30, 300)``. Tests shorten it.
RECONNECT_DELAYS: tuple[float, ...] = tuple(min(2 ** (n - 1) * 30, 300) for n in range(1, 6))
#: Plex: one new item emits ~156 frames over several seconds; docs: plex §7
#: advise 5-10 s. The trailing debounce counts from the first frame, so take
#: the upper end to let a scan finish inside one window.
PLEX_COOLDOWN: Final = 10.0
#: Jellyfin batches server-side (LibraryUpdateDuration, 30 s by default) and
#: sends one message; the cooldown only merges it with user-data messages.
JELLYFIN_COOLDOWN: Final = 2.0


#: A connection that lasted this long held: the next wait starts the backoff
#: over. One closed sooner (a proxy that accepts and then drops it) goes on
#: backing off, or each reconnect and its catch-up sync would come every 30 s.
HELD_FOR: Final = RECONNECT_DELAYS[-1]


def reconnect_delay(attempt: int) -> float:
    """Seconds before reconnect attempt ``attempt`` (1-based)."""
    return RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS)) - 1]


class PushListener:
    """One entry's notification socket, kept open for as long as the entry is loaded."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: EpisodeSyncConfigEntry,
        coordinator: EpisodeSyncCoordinator,
        socket: NotificationSocket,
        *,
        cooldown: float,
    ) -> None:
        """Bind the socket to the entry's coordinator."""
        self._hass = hass
        self._entry = entry
        self._coordinator = coordinator
        self.socket = socket
        options = entry.options
        self._libraries: Collection[str] = frozenset(options.get(CONF_LIBRARIES, []))
        self._poll = timedelta(minutes=option(options, CONF_SCAN_INTERVAL))
        self._push_poll = timedelta(minutes=option(options, CONF_PUSH_SCAN_INTERVAL))
        self.connected = False
        #: Completed connects (each is followed by one sync).
        self.connects = 0
        #: Waits since a connection last held (the backoff's position).
        self.retries = 0
        self._opened_at: float | None = None
        self._debouncer: Debouncer[None] = Debouncer(
            hass, LOGGER, cooldown=cooldown, immediate=False, function=self._sync
        )
        #: The pushed sync running, and whether more was heard meanwhile.
        self._syncing: asyncio.Task[None] | None = None
        self._again = False

    @callback
    def start(self) -> None:
        """Run the listener as a background task of the entry (cancelled on unload)."""
        self._entry.async_on_unload(self._debouncer.async_shutdown)
        self._entry.async_create_background_task(
            self._hass, self._run(), name=f"episode_sync push {self._entry.title}"
        )

    @callback
    def _sync(self) -> None:
        """Sync as a background task of the entry, one at a time.

        Not a task that Home Assistant's start-up waits for, and one that an
        unload cancels (the sync commits nothing then). What is heard while
        it runs asks for one more, debounced again once it is done, so that
        a scan longer than a sync does not queue one sync per cooldown.
        """
        if self._syncing is not None:
            self._again = True
            return
        self._syncing = self._entry.async_create_background_task(
            self._hass,
            self._coordinator.async_refresh(),
            name=f"episode_sync sync (pushed) {self._entry.title}",
        )
        self._syncing.add_done_callback(self._synced)

    @callback
    def _synced(self, _task: asyncio.Task[None]) -> None:
        self._syncing = None
        if self._again:
            self._again = False
            self._debouncer.async_schedule_call()

    async def _run(self) -> None:
        while True:
            try:
                await self.socket.listen(self._opened, self._hints)
                LOGGER.debug("%s closed its notification socket", self.socket.server)
            except MediaServerAuthError as err:
                self._set_connected(False)
                if await self._refused_for_good(err):
                    return
            except MediaServerError as err:
                LOGGER.debug("%s", err)
            except Exception:
                # A message no parser expected must not end push for good
                # (polling would stay at the slow interval): log, reconnect.
                LOGGER.exception("%s notification socket failed", self.socket.server)
            self._set_connected(False)
            opened_at, self._opened_at = self._opened_at, None
            if opened_at is not None and time.monotonic() - opened_at >= HELD_FOR:
                self.retries = 0
            self.retries += 1
            await asyncio.sleep(reconnect_delay(self.retries))

    async def _refused_for_good(self, err: MediaServerAuthError) -> bool:
        """The handshake refused the credentials: a sync asks the HTTP API whether it agrees.

        A reverse proxy that does not pass WebSockets refuses the handshake
        too (403), and a reauth cannot help there. The sync sends the same
        credentials: refused there, the coordinator starts the reauth as at
        any poll; accepted, only the socket is refused. Either way push stops
        until the entry is reloaded. A sync that fails otherwise (the server
        is down) decides nothing: the socket is tried again later.
        """
        coordinator = self._coordinator
        await coordinator.async_refresh()
        # Checked first: a success leaves an older failure in ``last_exception``.
        if coordinator.last_update_success:
            LOGGER.warning(
                "%s refused its notification socket but accepts the credentials (a reverse"
                " proxy that does not pass WebSockets?); push updates stop, polling every %s"
                " continues",
                self.socket.server,
                self._poll,
            )
            return True
        if isinstance(coordinator.last_exception, ConfigEntryAuthFailed):
            LOGGER.warning("%s; push updates stop until the entry is re-authenticated", err)
            return True
        return False

    @callback
    def _opened(self) -> None:
        LOGGER.debug("%s notification socket connected", self.socket.server)
        self.connects += 1
        self._opened_at = time.monotonic()
        self._set_connected(True)
        # Whatever happened while the socket was down was not sent to us.
        self._debouncer.async_schedule_call()

    @callback
    def _hints(self, hints: list[PushHint]) -> None:
        wanted = [h for h in hints if h.library_id is None or h.library_id in self._libraries]
        if not wanted:
            return  # a library the user did not select
        # Dirty now, so that a poll running before the debounce ends sees them too.
        self._coordinator.dirty_libraries.update(
            h.library_id for h in wanted if h.library_id is not None
        )
        # Played state is in no delta, and a swap within one show hides from
        # its counts: the sync re-lists the shows of the items named.
        self._coordinator.played_items.update(
            h.item_id for h in wanted if h.kind is HintKind.USER_DATA and h.item_id is not None
        )
        self._debouncer.async_schedule_call()

    @callback
    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        self._coordinator.set_update_interval(self._push_poll if connected else self._poll)


@callback
def async_start_push(
    hass: HomeAssistant, entry: EpisodeSyncConfigEntry, coordinator: EpisodeSyncCoordinator
) -> PushListener | None:
    """Start the entry's push listener unless the user turned push off."""
    if not option(entry.options, CONF_PUSH_UPDATES):
        return None
    client = coordinator.client
    session = async_get_clientsession(hass, verify_ssl=bool(entry.data.get(CONF_VERIFY_SSL, True)))
    target = client.push_target()
    socket: NotificationSocket
    if isinstance(client, JellyfinClient):
        socket = JellyfinNotifications(session, target)
        cooldown = JELLYFIN_COOLDOWN
    else:
        socket = PlexNotifications(session, target)
        cooldown = PLEX_COOLDOWN
    listener = PushListener(hass, entry, coordinator, socket, cooldown=cooldown)
    listener.start()
    return listener
