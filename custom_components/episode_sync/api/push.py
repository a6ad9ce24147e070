"""The servers' push channels: websockets that say when a library changed.

No Home Assistant imports. A socket here only *hints*: it never tells the
mirror what to add or remove, because both channels are lossy (frames are
missed while disconnected and never replayed); the caller answers hints with
a sync, which confirms every change (docs: plex §7, jellyfin §6).

- Plex: ``/:/websockets/notifications``; frames are
  ``{"NotificationContainer": {"type": …, <Payload>: [...]}}`` and every entry
  of the array counts (Tautulli read only ``[0]``, a bug).
- Jellyfin: ``/socket``; answers ``ForceKeepAlive`` (``Data`` seconds) with a
  ``KeepAlive`` every ``Data / 2`` *seconds* (the TS SDK waits milliseconds,
  a units bug: jellyfin-sdk-typescript src/websocket/websocket-service.ts).

Credentials travel in headers only: a token in the websocket URL would end up
in aiohttp's exception messages (they carry the URL) and from there in logs.
Traffic here is not counted as sync requests (SPEC §7).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
import contextlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp
import orjson

from .errors import MediaServerAuthError, MediaServerConnectionError, MediaServerRedirectError

#: The identifier of real library entries; DVR/EPG providers
#: (``tv.plex.providers.epg.*``) send look-alikes, fake deletes included
#: (Tautulli/Tautulli#1221).
PLEX_LIBRARY_IDENTIFIER = "com.plexapp.plugins.library"
#: Timeline states (plexapi alert.py; PKC websocket.py).
PLEX_STATE_CREATED = 0
PLEX_STATE_PROCESSED = 5
PLEX_STATE_DELETED = 9
#: PMS 1.43 reports a deletion with this item type (docs: plex §7).
PLEX_TYPE_DELETED = -1
PLEX_SCAN_ACTIVITY = "library.update.section"
#: Older servers append ": Extra information may still be downloading…".
PLEX_SCAN_COMPLETE = "Library scan complete"
#: python-plexwebsocket runs ``ws_connect(uri, heartbeat=15)``.
PLEX_HEARTBEAT = 15.0
#: Kestrel answers websocket pings itself; the KeepAlive messages are the
#: application-level liveness Jellyfin checks (SessionWebSocketListener).
JELLYFIN_HEARTBEAT = 30.0
CONNECT_TIMEOUT = 30.0


class HintKind(StrEnum):
    """What a push message says happened."""

    #: An item was added or changed (Plex timeline).
    CHANGED = "changed"
    #: An item was deleted (Plex timeline).
    DELETED = "deleted"
    #: A library scan ended (Plex activity or status).
    SCAN_ENDED = "scan_ended"
    #: Jellyfin's batched ``LibraryChanged``.
    LIBRARY_CHANGED = "library_changed"
    #: Jellyfin's ``UserDataChanged`` (played toggles).
    USER_DATA = "user_data"


@dataclass(frozen=True, slots=True)
class PushHint:
    """One reason to sync; ids are strings, as the mirror keeps them."""

    kind: HintKind
    #: The library concerned, when the message says (Plex ``sectionID``).
    library_id: str | None = None
    item_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PushTarget:
    """Where a client's push channel is and how to authenticate to it."""

    #: ``ws://`` or ``wss://`` URL; it never carries a credential.
    url: str
    headers: Mapping[str, str]
    ssl: bool


def _str(value: Any) -> str | None:
    """Ids arrive as ints (2018 logs) or strings (PMS 1.43): normalise with ``str()``."""
    return None if value is None or value == "" else str(value)


def plex_hints(frame: Any) -> list[PushHint]:
    """Every hint of one Plex notification frame (docs: plex §7)."""
    container = frame.get("NotificationContainer") if isinstance(frame, dict) else None
    if not isinstance(container, dict):
        return []
    kind = container.get("type")
    if kind == "timeline":
        return [
            hint
            for entry in _entries(container, "TimelineEntry")
            if (hint := _timeline_hint(entry)) is not None
        ]
    if kind == "activity":
        hints = []
        for entry in _entries(container, "ActivityNotification"):
            activity = entry.get("Activity")
            if not isinstance(activity, dict) or entry.get("event") != "ended":
                continue
            if activity.get("type") != PLEX_SCAN_ACTIVITY:
                continue
            context = activity.get("Context")
            section = context.get("librarySectionID") if isinstance(context, dict) else None
            hints.append(PushHint(HintKind.SCAN_ENDED, library_id=_str(section)))
        return hints
    if kind == "status":
        return [
            PushHint(HintKind.SCAN_ENDED)
            for entry in _entries(container, "StatusNotification")
            if str(entry.get("title", "")).startswith(PLEX_SCAN_COMPLETE)
        ]
    # playing, progress, reachability, transcodeSession.*, preference…
    return []


def _entries(container: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    entries = container.get(key)
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, dict)]


def _timeline_hint(entry: Mapping[str, Any]) -> PushHint | None:
    if entry.get("identifier") != PLEX_LIBRARY_IDENTIFIER:
        return None
    state, meta = entry.get("state"), entry.get("metadataState")
    section, item = _str(entry.get("sectionID")), _str(entry.get("itemID"))
    if section is not None and not section.isdigit():
        # Sections are numbered from 1. Anything else (a "-1", as a deletion's
        # ``type: -1`` entry might carry: it "tells you only the id", docs:
        # plex §7; UNCONFIRMED) names no section: every library is looked at.
        section = None
    if state == PLEX_STATE_DELETED or meta == "deleted" or entry.get("type") == PLEX_TYPE_DELETED:
        return PushHint(HintKind.DELETED, library_id=section, item_id=item)
    if state == PLEX_STATE_PROCESSED or (state == PLEX_STATE_CREATED and meta == "created"):
        return PushHint(HintKind.CHANGED, library_id=section, item_id=item)
    # States 1-4 and 6 are steps of the same change: the state 5 entry follows.
    return None


def jellyfin_hints(message: Any) -> list[PushHint]:
    """The hints of one Jellyfin socket message (docs: jellyfin §6)."""
    if not isinstance(message, dict):
        return []
    kind, data = message.get("MessageType"), message.get("Data")
    if kind == "LibraryChanged" and isinstance(data, dict):
        lists = (
            "ItemsAdded",
            "ItemsRemoved",
            "ItemsUpdated",
            "FoldersAddedTo",
            "FoldersRemovedFrom",
            "CollectionFolders",
        )
        if data.get("IsEmpty") is True and not any(data.get(name) for name in lists):
            return []
        # No library to aim at: the ids are of episodes, seasons and series,
        # and ``CollectionFolders`` lists all the user's libraries whenever a
        # folder gained or lost children [jellyfin Emby.Server.Implementations/
        # EntryPoints/LibraryChangedNotifier.cs GetTopParentIds]. One
        # incremental sync of the server costs no more than a targeted one.
        return [PushHint(HintKind.LIBRARY_CHANGED)]
    if kind == "UserDataChanged" and isinstance(data, dict):
        # Played state is in no delta: the sync re-lists the shows of the
        # items named (a swap within one show leaves its counts as they were).
        entries = data.get("UserDataList")
        return [
            PushHint(HintKind.USER_DATA, item_id=_str(entry.get("ItemId")))
            for entry in (entries if isinstance(entries, list) else ())
            if isinstance(entry, dict)
        ] or [PushHint(HintKind.USER_DATA)]
    return []


type HintCallback = Callable[[list[PushHint]], None]


class NotificationSocket:
    """One server's push channel: connect, read until it closes, hand over hints."""

    server = ""
    #: Handshake statuses that mean "these credentials are refused".
    auth_statuses: frozenset[int] = frozenset({401})
    heartbeat = PLEX_HEARTBEAT
    #: The header carrying the credential when it is one a redirect keeps:
    #: aiohttp's handshake follows redirects, dropping only ``Authorization``
    #: and cookies when one leads to another host (aiohttp
    #: ClientSession._request). The socket's address is then first asked,
    #: with every header but that one, whether it redirects.
    kept_credential: str | None = None

    def __init__(self, session: aiohttp.ClientSession, target: PushTarget) -> None:
        """Bind to a target; the session is Home Assistant's shared one."""
        self._session = session
        self._target = target
        #: Messages read since this object was made (tests wait on it).
        self.received = 0

    async def listen(self, on_open: Callable[[], None], on_hints: HintCallback) -> None:
        """Connect, call ``on_open``, then read until the server closes the socket.

        Raises ``MediaServerAuthError`` when the handshake refuses the
        credentials, ``MediaServerConnectionError`` when the socket cannot be
        opened or fails; returns when the server closes it.
        """
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if self.kept_credential is not None:
                    await self._refuse_a_redirect(self.kept_credential)
                ws = await self._session.ws_connect(
                    self._target.url,
                    headers=dict(self._target.headers),
                    heartbeat=self.heartbeat,
                    ssl=self._target.ssl,
                    autoclose=True,
                )
        except aiohttp.WSServerHandshakeError as err:
            if err.status in self.auth_statuses:
                raise MediaServerAuthError(
                    f"{self.server} refused the credentials on its notification socket"
                ) from err
            # Not str(err): aiohttp's message carries the URL.
            raise MediaServerConnectionError(
                f"{self.server} refused the notification socket ({err.status})"
            ) from err
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise MediaServerConnectionError(
                f"{self.server} notification socket could not connect ({type(err).__name__})"
            ) from err
        try:
            async with ws:
                on_open()
                await self._read(ws, on_hints)
        finally:
            await self._closed()

    async def _refuse_a_redirect(self, credential: str) -> None:
        """Raise ``MediaServerRedirectError`` when the socket's address redirects.

        Asked without the credential; a redirect is never followed, as the
        HTTP requests never follow one either (``http.py``).
        """
        url = "http" + self._target.url.removeprefix("ws")  # ws: -> http:, wss: -> https:
        headers = {k: v for k, v in self._target.headers.items() if k != credential}
        async with self._session.get(
            url, headers=headers, allow_redirects=False, ssl=self._target.ssl
        ) as reply:
            if 300 <= reply.status < 400:
                raise MediaServerRedirectError(
                    f"{self.server} redirects its notification socket ({reply.status}):"
                    " enter the server's own address",
                    status=reply.status,
                )

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, on_hints: HintCallback) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue  # ping/pong are answered by aiohttp; binary is not used
            self.received += 1
            try:
                payload = orjson.loads(message.data)
            except orjson.JSONDecodeError:
                continue  # one bad frame does not end the channel
            hints = await self._handle(ws, payload)
            if hints:
                on_hints(hints)
        if ws.exception() is not None:
            raise MediaServerConnectionError(
                f"{self.server} notification socket failed ({type(ws.exception()).__name__})"
            )

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, payload: Any) -> list[PushHint]:
        """The hints of one message (subclasses also answer protocol messages)."""
        raise NotImplementedError

    async def _closed(self) -> None:
        """Clean up after the socket closed (subclasses stop their timers)."""


class PlexNotifications(NotificationSocket):
    """Plex's ``/:/websockets/notifications`` (401 on the handshake: reauth).

    The token travels in ``X-Plex-Token``, a header a redirect to another
    host would carry along: the address is checked first.
    """

    server = "Plex"
    kept_credential = "X-Plex-Token"

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, payload: Any) -> list[PushHint]:
        """Every relevant entry of a frame."""
        return plex_hints(payload)


class JellyfinNotifications(NotificationSocket):
    """Jellyfin's ``/socket`` (403 before the upgrade on a bad token: reauth)."""

    server = "Jellyfin"
    auth_statuses = frozenset({401, 403})
    heartbeat = JELLYFIN_HEARTBEAT

    def __init__(self, session: aiohttp.ClientSession, target: PushTarget) -> None:
        """Bind to a target; keepalives start when the server asks for them."""
        super().__init__(session, target)
        self._keepalive: asyncio.Task[None] | None = None
        #: Seconds between our KeepAlive messages (``ForceKeepAlive`` Data / 2).
        self.keepalive_interval: float | None = None

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, payload: Any) -> list[PushHint]:
        """Answer ForceKeepAlive; turn library and user-data messages into hints."""
        if isinstance(payload, dict) and payload.get("MessageType") == "ForceKeepAlive":
            timeout = payload.get("Data")
            seconds = float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else 60
            self._start_keepalive(ws, seconds / 2)
            return []
        return jellyfin_hints(payload)

    def _start_keepalive(self, ws: aiohttp.ClientWebSocketResponse, interval: float) -> None:
        if self._keepalive is not None and self.keepalive_interval == interval:
            return  # the server repeats ForceKeepAlive to quiet sockets
        if self._keepalive is not None:
            self._keepalive.cancel()
        self.keepalive_interval = interval
        self._keepalive = asyncio.get_running_loop().create_task(self._send_keepalives(ws))

    async def _send_keepalives(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        assert self.keepalive_interval is not None
        with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
            while not ws.closed:
                await ws.send_str('{"MessageType":"KeepAlive"}')
                await asyncio.sleep(self.keepalive_interval)

    async def _closed(self) -> None:
        if self._keepalive is not None:
            task, self._keepalive = self._keepalive, None
            task.cancel()
            # wait() never raises the inner CancelledError, so our own
            # cancellation (an unload) still propagates.
            await asyncio.wait({task})


def websocket_url(base: str) -> str:
    """The ``ws(s)://`` form of an ``http(s)://`` base URL."""
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://")
    return "ws://" + base.removeprefix("http://")
