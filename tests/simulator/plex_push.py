"""The Plex simulator's ``/:/websockets/notifications`` (docs: plex-api.md §7, §10).

What real servers send, as the public captures show it:

- 401 ``text/html`` on the handshake without the token or with a wrong one
  (header or ``?X-Plex-Token=``);
- a model change emits an ``activity`` ``library.update.section`` started /
  updated / ended (with ``Context.librarySectionID``), the ``timeline`` states
  of the item (``0`` with ``metadataState: "created"``, then 1-4, then 5), and
  a ``status`` "Library scan complete";
- deletes come in two modes: ``legacy`` (``state: 9``,
  ``metadataState: "deleted"``, int ids, 2018 logs) and ``1.43``
  (``type: -1``, string ids);
- switches: ``flood`` (~150 frames per change: 80 activity, 52 progress and
  the timeline, as a PMS 1.43 capture counted), ``batch_entries`` (the
  timeline entries of a change in one frame), ``epg_noise`` (EPG look-alike
  entries, fake deletes included, in every timeline frame), ``noise()``
  (``playing``/``progress``/EPG frames), ``drop_frames`` (the next N frames are
  lost), ``disconnect()`` (a forced close);
- watch-state changes send nothing (PlexTraktSync#495).

Frames are queued per socket synchronously when the model changes and written
by one task per socket, so ``frames_sent`` is exact as soon as the mutation
returns (tests wait until the client has read that many).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any, Literal
import uuid

from aiohttp import WSMsgType, web

from .library import SimEpisode, SimShow

if TYPE_CHECKING:
    from .plex import PlexSimulator

LIBRARY = "com.plexapp.plugins.library"
EPG = "tv.plex.providers.epg.cloud:4"
TYPE_SHOW, TYPE_EPISODE = 2, 4

type Frame = dict[str, Any]


def _container(kind: str, key: str, entries: list[dict[str, Any]]) -> Frame:
    return {"NotificationContainer": {"type": kind, "size": len(entries), key: entries}}


class PlexPush:
    """The notification sockets of one Plex simulator."""

    def __init__(self, sim: PlexSimulator) -> None:
        """Serve notifications of ``sim``'s model."""
        self._sim = sim
        self.delete_mode: Literal["legacy", "1.43"] = "legacy"
        self.flood = False
        self.batch_entries = False
        self.epg_noise = False
        #: The next this many frames are lost (not sent, not counted).
        self.drop_frames = 0
        #: Frames written to clients so far (all sockets).
        self.frames_sent = 0
        self.frames_dropped = 0
        self._queues: dict[web.WebSocketResponse, asyncio.Queue[Frame | None]] = {}

    @property
    def connected(self) -> int:
        """Open notification sockets."""
        return len(self._queues)

    # -- the route -------------------------------------------------------------------

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """``GET /:/websockets/notifications``: 401 without the token, else a socket."""
        if not self._sim._authorized(request):
            return self._sim._unauthorized()
        ws = web.WebSocketResponse(autoping=True)
        ws.headers["Date"] = self._sim.http_date()  # the 101 carries the server clock too
        await ws.prepare(request)
        queue: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._queues[ws] = queue
        writer = asyncio.get_running_loop().create_task(self._write(ws, queue))
        try:
            async for message in ws:  # clients send nothing but pings
                if message.type is WSMsgType.ERROR:
                    break
        finally:
            self._queues.pop(ws, None)
            queue.put_nowait(None)
            await writer
        return ws

    async def _write(self, ws: web.WebSocketResponse, queue: asyncio.Queue[Frame | None]) -> None:
        while (frame := await queue.get()) is not None:
            text = frame["__raw__"] if "__raw__" in frame else json.dumps(frame)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(text)

    def send(self, frames: list[Frame]) -> None:
        """Queue frames for every open socket (dropping the next ``drop_frames``)."""
        for frame in frames:
            if self.drop_frames:
                self.drop_frames -= 1
                self.frames_dropped += 1
                continue
            for queue in self._queues.values():
                queue.put_nowait(frame)
                self.frames_sent += 1

    def send_raw(self, data: str) -> None:
        """Queue a text frame as is (e.g. not JSON: a client must survive it)."""
        for queue in self._queues.values():
            queue.put_nowait({"__raw__": data})
            self.frames_sent += 1

    async def disconnect(self) -> None:
        """Close every socket, as a server restart or a network cut would."""
        for ws in list(self._queues):
            await ws.close(code=1001, message=b"going away")

    async def shutdown(self, app: web.Application) -> None:
        """Close the sockets when the simulator stops (aiohttp ``on_shutdown``)."""
        await self.disconnect()

    # -- what a change sends --------------------------------------------------------------

    def on_change(self, kind: str, library_id: str, item: object) -> None:
        """Emit what PMS emits for a model change (nothing for watch state)."""
        if kind == "watched":
            return  # no dependable event for watch state (docs: plex §5)
        section = library_id
        if kind in ("episode_added", "show_added", "episode_updated", "show_updated"):
            assert isinstance(item, (SimEpisode, SimShow))
            timeline = self._added(section, item, created=kind.endswith("_added"))
        elif kind in ("episode_removed", "show_removed"):
            assert isinstance(item, (SimEpisode, SimShow))
            timeline = [self._deleted(section, item)]
        else:  # library wiped or removed: only the scan tells
            timeline = []
        self.send(self._scan(section, timeline))

    def _entry(self, section: str, item: SimEpisode | SimShow, **fields: Any) -> dict[str, Any]:
        kind = TYPE_EPISODE if isinstance(item, SimEpisode) else TYPE_SHOW
        title = item.title
        entry: dict[str, Any] = {
            "identifier": LIBRARY,
            "sectionID": section,
            "itemID": item.id,
            "type": kind,
            "title": title,
            "updatedAt": int(self._sim.clock.now()),
            **fields,
        }
        if isinstance(item, SimEpisode):
            entry["parentItemID"] = item.show_id
            entry["rootItemID"] = item.show_id
        return entry

    def _added(
        self, section: str, item: SimEpisode | SimShow, *, created: bool
    ) -> list[dict[str, Any]]:
        """Timeline 0 (created) -> 1 -> 3 -> 4 -> 5 for a new item; 1 -> 4 -> 5 for an edit."""
        states: list[tuple[int, str | None]] = (
            [(0, "created"), (1, "loading"), (3, "loading"), (4, "loading"), (5, None)]
            if created
            else [(1, "loading"), (4, "loading"), (5, None)]
        )
        entries = []
        for state, meta in states:
            fields: dict[str, Any] = {"state": state}
            if meta is not None:
                fields["metadataState"] = meta
            entries.append(self._entry(section, item, **fields))
        return entries

    def _deleted(self, section: str, item: SimEpisode | SimShow) -> dict[str, Any]:
        if self.delete_mode == "legacy":
            # 2018 logs: int ids, state 9 and metadataState "deleted".
            entry = self._entry(section, item, state=9, metadataState="deleted")
            entry["sectionID"], entry["itemID"] = int(section), int(item.id)
            return entry
        # PMS 1.43: type -1, string ids; no state or metadataState to go by.
        return {
            "identifier": LIBRARY,
            "sectionID": section,
            "itemID": item.id,
            "type": -1,
            "state": 9 if isinstance(item, SimShow) else 0,
            "updatedAt": int(self._sim.clock.now()),
        }

    def _scan(self, section: str, timeline: list[dict[str, Any]]) -> list[Frame]:
        """The frames of one section scan around the timeline entries of a change."""
        scan_id = str(uuid.uuid4())

        def activity(event: str, progress: int) -> Frame:
            return _container(
                "activity",
                "ActivityNotification",
                [
                    {
                        "event": event,
                        "uuid": scan_id,
                        "Activity": {
                            "uuid": scan_id,
                            "type": "library.update.section",
                            "cancellable": True,
                            "userID": 1,
                            "title": "Scanning",
                            "subtitle": "TV Shows",
                            "progress": progress,
                            "Context": {"librarySectionID": section},
                        },
                    }
                ],
            )

        def timeline_frame(entries: list[dict[str, Any]]) -> Frame:
            if self.epg_noise:
                entries = [*entries, *_epg_entries(section)]
            return _container("timeline", "TimelineEntry", entries)

        if self.batch_entries and timeline:
            timeline_frames = [timeline_frame(timeline)]
        else:
            timeline_frames = [timeline_frame([entry]) for entry in timeline]
        frames = [activity("started", 0), *timeline_frames]
        if self.flood:
            # 80 activity, 52 progress and 14 timeline frames in all (a 1.43 capture).
            frames.extend(activity("updated", n % 100) for n in range(80))
            frames.extend(_progress(n) for n in range(52))
            if timeline:  # a real scan repeats the intermediate states of its items
                frames.extend(
                    timeline_frame(
                        [{**timeline[0], "state": 1 + n % 4, "metadataState": "loading"}]
                    )
                    for n in range(14 - len(timeline_frames))
                )
        else:
            frames.append(activity("updated", 50))
        frames.append(activity("ended", 100))
        frames.append(
            _container("status", "StatusNotification", [{"title": "Library scan complete"}])
        )
        return frames

    def noise(self) -> None:
        """Frames that are not library changes: playback, progress, EPG look-alikes.

        The EPG entries name the TV sections, so only the identifier tells them apart.
        """
        sections = [lib.id for lib in self._sim.model.libraries.values() if lib.kind == "show"]
        self.send(
            [
                *(
                    _container("timeline", "TimelineEntry", _epg_entries(section))
                    for section in sections
                ),
                _container(
                    "playing",
                    "PlaySessionStateNotification",
                    [
                        {
                            "sessionKey": "12",
                            "guid": "",
                            "ratingKey": "1001",
                            "key": "/library/metadata/1001",
                            "viewOffset": 120_000,
                            "playQueueItemID": 7,
                            "state": "playing",
                        }
                    ],
                ),
                _progress(1),
                _container(
                    "activity",
                    "ActivityNotification",
                    [
                        {
                            "event": "ended",
                            "Activity": {"type": "library.refresh.items", "progress": 100},
                        }
                    ],
                ),
                _container("status", "StatusNotification", [{"title": "Backing up database"}]),
            ]
        )


def _progress(n: int) -> Frame:
    return _container(
        "progress",
        "ProgressNotification",
        [{"message": f"Scanning item {n}", "identifier": LIBRARY}],
    )


def _epg_entries(section: str) -> list[dict[str, Any]]:
    """EPG provider entries: look like library ones, fake deletes included (Tautulli#1221)."""
    return [
        {"identifier": EPG, "sectionID": section, "itemID": "77", "type": 4, "state": 9},
        {
            "identifier": EPG,
            "sectionID": section,
            "itemID": "78",
            "type": 4,
            "state": 0,
            "metadataState": "created",
        },
        {"identifier": EPG, "sectionID": section, "itemID": "79", "type": -1, "state": 5},
    ]
