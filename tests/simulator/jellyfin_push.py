"""The Jellyfin simulator's ``/socket`` (docs: jellyfin-api.md §6, §10 item 17).

What the server code does (Emby.Server.Implementations: WebSocketManager,
SessionWebSocketListener, LibraryChangedNotifier, UserDataChangeNotifier):

- auth by ``?ApiKey=`` or the ``Authorization: MediaBrowser … Token=`` header;
  a bad or missing token is refused with **403** before the upgrade;
- ``ForceKeepAlive`` (``Data`` = ``keepalive_timeout``, 60) right after the
  connect; a client ``KeepAlive`` is answered with a ``KeepAlive``; every
  ``check_every`` seconds sockets silent for 3/4 of the timeout get another
  ForceKeepAlive and those silent for ``idle_timeout`` (default 60) are closed;
- ``LibraryChanged`` is batched: the batch is flushed once
  ``library_update_duration`` seconds (server default 30) pass with no new
  event, in the exact ``LibraryUpdateInfo`` shape including ``IsEmpty``, and
  only to sockets **with a user** (an API key has none, jellyfin#13479);
- ``UserDataChanged`` on played toggles, to user sockets;
- nothing is replayed after a reconnect; ``drop()`` closes every socket.

Timers run on the event loop's clock, so tests move them with
``async_fire_time_changed``.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
import json
from typing import TYPE_CHECKING, Any
import uuid

from aiohttp import WSMsgType, web

from .library import SimEpisode, SimShow

if TYPE_CHECKING:
    from .jellyfin import JellyfinSimulator

type Message = dict[str, Any]


class _Session:
    """One connected socket."""

    def __init__(self, ws: web.WebSocketResponse, user_id: str | None) -> None:
        self.ws = ws
        self.user_id = user_id
        self.last_seen = asyncio.get_running_loop().time()
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue()


class JellyfinPush:
    """The sockets of one Jellyfin simulator."""

    def __init__(self, sim: JellyfinSimulator) -> None:
        """Serve notifications of ``sim``'s model."""
        self._sim = sim
        #: The user's root folder: where a library that comes or goes is reported.
        self.user_root_id = uuid.uuid4().hex
        self.keepalive_timeout = 60
        #: Seconds of silence after which the server closes a socket (None: never).
        self.idle_timeout: float | None = 60.0
        self.check_every = 12.0
        self.library_update_duration = 30.0
        #: Messages written to clients so far (all sockets).
        self.messages_sent = 0
        #: Client KeepAlive messages received.
        self.keepalives_received = 0
        self.sessions: list[_Session] = []
        self._batch: dict[str, list[str]] = _empty_batch()
        self._flush_timer: asyncio.TimerHandle | None = None

    @property
    def api_keys(self) -> set[str]:
        """The server's API keys (``JellyfinSimulator.api_keys``, the one source of truth).

        A key the HTTP routes accept opens a socket too, with no user behind
        it, so it never receives ``LibraryChanged`` (docs: jellyfin §6,
        checklist 17). Kept here as an alias: adding to it adds to the server's.
        """
        return self._sim.api_keys

    @api_keys.setter
    def api_keys(self, keys: set[str]) -> None:
        self._sim.api_keys = keys

    @property
    def connected(self) -> int:
        """Open sockets."""
        return len(self.sessions)

    # -- the route -------------------------------------------------------------------

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """``GET /socket``: 403 before the upgrade on a bad token, else a session.

        While the server starts (10.11+), its startup middleware answers this
        route as every other: 503 with ``Retry-After``, never an upgrade.
        """
        if (refused := self._sim._gate(request, auth=False)) is not None:
            return refused
        token = self._sim._token(request)
        if token in self._sim.tokens:
            user_id: str | None = self._sim.tokens[token][0]
        elif token in self._sim.api_keys:
            user_id = None
        else:
            # SecurityException before the upgrade -> ExceptionMiddleware 403.
            return web.Response(status=403, text="Error processing request.")
        ws = web.WebSocketResponse(autoping=True)
        ws.headers["Date"] = self._sim.http_date()  # the 101 is dated by the server clock too
        await ws.prepare(request)
        session = _Session(ws, user_id)
        self.sessions.append(session)
        loop = asyncio.get_running_loop()
        writer = loop.create_task(self._write(session))
        watchdog = loop.create_task(self._watch(session))
        self._send(session, "ForceKeepAlive", self.keepalive_timeout)
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                session.last_seen = loop.time()
                with contextlib.suppress(ValueError):
                    if json.loads(message.data).get("MessageType") == "KeepAlive":
                        self.keepalives_received += 1
                        self._send(session, "KeepAlive")
        finally:
            self.sessions.remove(session)
            watchdog.cancel()
            session.queue.put_nowait(None)
            await asyncio.wait({writer, watchdog})
        return ws

    async def _write(self, session: _Session) -> None:
        while (message := await session.queue.get()) is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await session.ws.send_str(json.dumps(message))

    async def _watch(self, session: _Session) -> None:
        """Repeat ForceKeepAlive to quiet sockets; close the silent ones."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.check_every)
            if self.idle_timeout is None:
                continue
            silent = loop.time() - session.last_seen
            if silent >= self.idle_timeout:
                await session.ws.close(code=1001, message=b"keepalive timeout")
                return
            if silent >= self.idle_timeout * 0.75:
                self._send(session, "ForceKeepAlive", self.keepalive_timeout)

    def _send(self, session: _Session, kind: str, data: Any = None) -> None:
        message: Message = {"MessageType": kind, "MessageId": uuid.uuid4().hex}
        if data is not None:
            message["Data"] = data
        session.queue.put_nowait(message)
        self.messages_sent += 1

    async def drop(self) -> None:
        """Close every socket (a restart or a network cut)."""
        for session in list(self.sessions):
            await session.ws.close(code=1001, message=b"going away")

    async def shutdown(self, app: web.Application) -> None:
        """Stop the timer and close the sockets when the simulator stops."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        await self.drop()

    # -- what a change sends --------------------------------------------------------------

    def on_change(self, kind: str, library_id: str, item: object) -> None:
        """Batch library changes; send user-data changes at once."""
        if kind == "watched":
            assert isinstance(item, SimEpisode)
            self._user_data(item)
            return
        batch = self._batch
        if isinstance(item, SimEpisode):
            show = self._sim.model.find_show(item.show_id)
            season = show.season_ids.get(item.season or 0) if show is not None else None
            if kind == "episode_added":
                batch["ItemsAdded"].append(item.id)
                if season:
                    batch["FoldersAddedTo"].append(season)
                batch["ItemsUpdated"].append(item.show_id)
            elif kind == "episode_removed":
                batch["ItemsRemoved"].append(item.id)
                if season:
                    batch["FoldersRemovedFrom"].append(season)
            else:
                batch["ItemsUpdated"].append(item.id)
        elif isinstance(item, SimShow) and kind == "show_updated":
            batch["ItemsUpdated"].append(item.id)
        elif isinstance(item, SimShow):
            key = "ItemsAdded" if kind == "show_added" else "ItemsRemoved"
            batch[key].append(item.id)
            folder = "FoldersAddedTo" if kind == "show_added" else "FoldersRemovedFrom"
            batch[folder].append(library_id)
        elif kind in ("library_added", "library_removed"):
            # A library is a folder of the physical root, which the server
            # reports as the user's root folder (TranslatePhysicalItemToUserLibrary).
            added = kind == "library_added"
            batch["ItemsAdded" if added else "ItemsRemoved"].append(library_id)
            batch["FoldersAddedTo" if added else "FoldersRemovedFrom"].append(self.user_root_id)
        else:
            return  # "library_wiped": its shows' removals were batched one by one
        # Flushed once the duration passes with no new event (LibraryChangedNotifier).
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self._flush_timer = asyncio.get_running_loop().call_later(
            self.library_update_duration, self.flush
        )

    def flush(self) -> None:
        """Send the batched ``LibraryChanged`` to the user sessions."""
        self._flush_timer = None
        batch, self._batch = self._batch, _empty_batch()
        if batch["FoldersAddedTo"] or batch["FoldersRemovedFrom"]:
            # GetTopParentIds lists every one of the user's root folders, not the
            # changed ones, whenever a folder gained or lost children: so a
            # client learns nothing about which library changed from it
            # [jellyfin Emby.Server.Implementations/EntryPoints/LibraryChangedNotifier.cs].
            batch["CollectionFolders"] = [row["Id"] for row in self._sim.view_rows()]
        info: dict[str, Any] = {key: list(dict.fromkeys(ids)) for key, ids in batch.items()}
        info["IsEmpty"] = not any(batch.values())
        for session in self.sessions:
            if session.user_id is not None:
                self._send(session, "LibraryChanged", info)

    def _user_data(self, episode: SimEpisode) -> None:
        for session in self.sessions:
            if session.user_id is None:
                continue
            entry: dict[str, Any] = {
                "Played": episode.watched,
                "PlayCount": episode.view_count,
                "PlaybackPositionTicks": 0,
                "IsFavorite": False,
                "Key": episode.guid,
                "ItemId": episode.id,
            }
            if episode.last_viewed_at is not None:
                played = datetime.fromtimestamp(episode.last_viewed_at, UTC)
                entry["LastPlayedDate"] = played.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
            self._send(
                session, "UserDataChanged", {"UserId": session.user_id, "UserDataList": [entry]}
            )


def _empty_batch() -> dict[str, list[str]]:
    return {
        "FoldersAddedTo": [],
        "FoldersRemovedFrom": [],
        "ItemsAdded": [],
        "ItemsRemoved": [],
        "ItemsUpdated": [],
        "CollectionFolders": [],
    }
