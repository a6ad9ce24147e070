"""A Plex Media Server simulator (aiohttp) for tests, script/develop and script/bench.

Implements the simulator checklist of the project's Plex notes (docs/plex-api.md
§10) for the endpoints the integration uses:

- auth: every path but ``/identity`` answers **401 text/html** with the HTML
  body real servers send, whatever ``Accept`` says; the token is accepted as a
  header or ``?X-Plex-Token=`` (DESC §Headers; bstascavage/plexReport#48);
- content negotiation: without ``Accept: application/json`` the answer is XML
  (DESC §Content Types), so a client that forgets the header fails visibly;
- 404 HTML for unknown items, sections and paths (after the token check: an
  unknown path without the token is a 401, auth comes before routing);
- shapes: ``MediaContainer``; ``Directory[]`` for sections, ``Metadata[]`` for
  items; ``ratingKey`` and section ``key`` as strings; ``hidden`` as 0/1;
  optional fields absent (``viewCount``/``lastViewedAt`` only when watched,
  ``index`` absent on unnumbered episodes);
- paging: Start and Size honoured only when both are present (as headers or
  query), ``Size=0`` count probes, an optional server-side page cap that
  serves fewer items than asked; ``X-Plex-Container-Start`` and
  ``X-Plex-Container-Total-Size`` response headers (DESC §Pagination; PLX);
  ``limit=N`` caps the rows and leaves the true total out (no ``totalSize``);
  rows in stable ``sort=`` order (unsorted, a show's ``allLeaves`` come in
  season and episode order); ``allLeaves`` (section and show) paged alike;
- filters: the operators of DESC §Operators per field type (docs: plex §4):
  dates (``addedAt``/``updatedAt``/``lastViewedAt``) ``=``, ``!=`` and strict
  ``>>=``/``<<=``; integers (``index``, ``parentIndex``, ``viewCount``,
  ``year``) ``=``, ``!=``, strict ``>>=``/``<<=`` and inclusive ``>=``/``<=``;
  strings (``title``) ``=`` contains, ``!=``, ``==`` equals, ``!==``, ``<=``
  begins with, ``>=`` ends with; booleans (``trash``, ``unwatched``) ``=1``/
  ``=0``/``!=``; any other operator 400; percent-encoded or raw; relative
  date values (``-300``, ``-3w``, ``mon``, ``+N``); plain ``>=`` on a date is
  ignored (or 400 behind a switch); unknown filter fields 400 (switchable);
  OR by commas and by ``push/or/pop`` groups, nested (DESC §Boolean
  Operators); ``episode.`` scoping;
- ``includeCollections=0`` accepted; ``Guid[]`` only with ``includeGuids=1``;
  trimming (``excludeFields``/``excludeElements``) honoured unless
  ``ignore_trimming`` (DESC: "requests, not guarantees");
- ``/library/metadata/{a,b,c}`` returns the items that exist (one unknown id: 404;
  ``metadata_list_404_on_unknown`` makes any unknown id a 404, UNCONFIRMED);
- trash mode: with ``auto_empty_trash`` off, ``delete_file`` keeps the episode
  with ``deletedAt`` (still listed; ``trash=1`` lists only trash); whether it
  counts in ``leafCount`` is ``trash_counts_in_leaf_count`` (default no);
- scans: ``start_scan``/``scan_progress``/``end_scan`` drive ``refreshing``,
  ``/library/sections/{id}/timeline`` (``updateQueueSize``) and ``/activities``
  (``library.update.section`` with ``Context.librarySectionID`` and ``progress``);
- ``contentChangedAt``: one server-wide counter starting at an arbitrary large
  value, bumped by every content change and stamped on the section; watch-state
  changes do not bump it unless ``watch_bumps_content_changed``, and a metadata
  edit does unless ``edit_bumps_content_changed`` is off (what moves it is
  UNCONFIRMED, docs: plex §5; the checklist's default is kept);
- a show's ``updatedAt`` does not move when episodes are added or removed
  (it does when the show itself is edited, ``model.edit_show``);
  ``leafCount``/``viewedLeafCount``/``childCount`` are always recomputed, and
  a season emptied of its episodes leaves ``childCount``, ``type=3`` and
  ``/children``;
- marking unwatched removes ``viewCount`` and ``lastViewedAt`` and does not
  bump ``updatedAt`` (switchable);
- ratingKeys are non-sequential strings, never reused; re-match = new key;
- instrumentation: ``count_by_route`` (per endpoint), ``count_by_client`` (per
  ``X-Plex-Client-Identifier``) and ``protocol_violations`` (no JSON Accept, no
  client id, an unpaged listing, plain ``>=`` on a date).

The websocket is tests/simulator/plex_push.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
import hashlib
import re
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from .common import LoggedRequest, SimServer
from .library import SimClock, SimEpisode, SimLibraryModel, SimShow
from .plex_push import PlexPush

UNAUTHORIZED_HTML = (
    "<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1></body></html>"
)
NOT_FOUND_HTML = (
    "<html><head><title>Not Found</title></head><body><h1>404 Not Found</h1></body></html>"
)
_DATE_FIELDS = ("addedAt", "updatedAt", "lastViewedAt")
#: The filterable fields and their types (DESC §Fields; the server's own
#: ``Field`` table in HA fixtures/library_tvshows_metadata.xml).
_FIELD_TYPES = {
    **dict.fromkeys(_DATE_FIELDS, "date"),
    "title": "string",
    "index": "integer",
    "parentIndex": "integer",
    "viewCount": "integer",
    "year": "integer",
    "unwatched": "boolean",
    "trash": "boolean",
    "show.id": "tag",
}
#: Operators per field type (docs: plex §4; DESC §Operators, which also gives
#: strings ``!=`` "does not contain" and ``!==`` "does not equal"). Plain
#: ``>=``/``<=`` on a date is handled apart (ignored, or 400 behind a switch).
_OPERATORS = {
    "integer": {"=", "!=", ">>=", "<<=", "<=", ">="},
    "boolean": {"=", "!="},
    "tag": {"=", "!="},
    "string": {"=", "!=", "==", "!==", "<=", ">="},
    "date": {"=", "!=", ">>=", "<<="},
}
#: Parameters that are not filters.
_NON_FILTERS = {
    "type",
    "sort",
    "limit",
    "includeCollections",
    "includeGuids",
    "excludeElements",
    "excludeFields",
    "includeFields",
    "skipRefresh",
    "checkFiles",
    "excludeAllLeaves",
    "X-Plex-Container-Start",
    "X-Plex-Container-Size",
    "X-Plex-Token",
    "X-Plex-Client-Identifier",
    "X-Plex-Product",
    "X-Plex-Version",
    "X-Plex-Platform",
    "X-Plex-Device-Name",
}
#: Listings a client must page (docs: plex §1 "always page", §3).
PAGED_ROUTES = frozenset(
    {
        "/library/sections/{section}/all",
        "/library/sections/{section}/allLeaves",
        "/library/metadata/{key}/allLeaves",
        "/library/metadata/{key}/children",
    }
)
#: Image routes: a client asks for image bytes there, not JSON.
_IMAGE_ROUTES = frozenset({"/library/metadata/{key}/thumb/{stamp}"})
_GROUPING = ("push", "or", "pop")
type _Row = dict[str, Any]
type _Predicate = Callable[[_Row], bool]
_UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800, "mon": 2_592_000, "y": 31_536_000}


class PlexSimulator(SimServer):
    """A Plex Media Server with one library model."""

    def __init__(
        self,
        *,
        token: str = "plex-token",
        clock: SimClock | None = None,
        latency: float = 0.0,
        name: str = "Sim Plex",
        machine_id: str | None = None,
        version: str = "1.41.6.9685-d301f511a",
        page_cap: int | None = None,
    ) -> None:
        """Create the server; ``model.generate(...)`` fills it."""
        self.token = token
        self.name = name
        self.machine_id = machine_id or hashlib.sha1(name.encode()).hexdigest()
        self.version = version
        self.page_cap = page_cap
        # Switches (defaults are the pessimistic, documented behaviours).
        self.watch_bumps_content_changed = False
        self.edit_bumps_content_changed = True
        self.gte_on_date_is_400 = False
        self.unknown_filter_400 = True
        self.ignore_trimming = False
        self.identity_requires_auth = False
        self.unwatch_bumps_updated_at = False
        self.updated_at_filter_supported = True
        #: "Empty trash automatically after every scan" (on by default in PMS).
        #: Off: ``delete_file`` keeps the episode with ``deletedAt`` (docs: plex §8).
        self.auto_empty_trash = True
        #: Whether trashed episodes count in ``leafCount`` (UNCONFIRMED, docs:
        #: plex §8). Default no: the listings still show them, so counts and
        #: listings disagree, the case a client must survive.
        self.trash_counts_in_leaf_count = False
        #: A ``/library/metadata/a,b,c`` list with an unknown id: the items that
        #: exist (default, checklist) or a 404 for the whole list (UNCONFIRMED,
        #: docs: plex §2.8 "do not trust the status code").
        self.metadata_list_404_on_unknown = False
        #: Per section: items a running scan still has to process, and its progress.
        self._update_queue: dict[str, int] = {}
        self._scan_progress: dict[str, int] = {}
        # contentChangedAt is a server-wide counter, not a time (docs: plex §5).
        self._content_counter = 41_632_394
        self._next_key = 1000
        self._section_markers: dict[str, dict[str, Any]] = {}
        #: The notification websocket (tests/simulator/plex_push.py).
        self.push = PlexPush(self)
        super().__init__(clock=clock, latency=latency)
        self.model = SimLibraryModel(
            clock=self.clock, id_factory=self._new_key, on_change=self._on_change
        )
        movies = self.model.add_library(title="Movies", kind="movie", library_id="1")
        self._markers(movies.id)

    # -- ids and markers --------------------------------------------------------------

    def _new_key(self) -> str:
        # Non-sequential and never reused: a stride that is not 1.
        self._next_key += 7
        return str(self._next_key)

    def _markers(self, section_id: str) -> dict[str, Any]:
        now = int(self.clock.now())
        return self._section_markers.setdefault(
            section_id,
            {"contentChangedAt": 0, "scannedAt": now, "updatedAt": now, "refreshing": False},
        )

    def _on_change(self, kind: str, library_id: str, item: object) -> None:
        self.invalidate()
        self.push.on_change(kind, library_id, item)
        if kind == "library_removed":
            self._section_markers.pop(library_id, None)
            self._scan_progress.pop(library_id, None)
            self._update_queue.pop(library_id, None)
            return
        if kind == "watched":
            episode = item
            assert isinstance(episode, SimEpisode)
            if not episode.watched and self.unwatch_bumps_updated_at:
                episode.updated_at = int(self.clock.now())
            if not self.watch_bumps_content_changed:
                return
        if kind == "episode_updated" and not self.edit_bumps_content_changed:
            return
        markers = self._markers(library_id)
        self._content_counter += 1
        markers["contentChangedAt"] = self._content_counter
        markers["scannedAt"] = int(self.clock.now())

    def rotate_token(self) -> str:
        """Issue a new token; the old one gets 401 from now on."""
        self.token = hashlib.sha1(f"{self.token}-rotated".encode()).hexdigest()[:20]
        return self.token

    def start_scan(self, section_id: str, *, queue: int = 0) -> None:
        """A scan starts: ``refreshing: true``, a running activity, ``queue`` items pending."""
        self._markers(section_id)["refreshing"] = True
        self._scan_progress[section_id] = 0
        self._update_queue[section_id] = queue

    def scan_progress(self, section_id: str, progress: int, *, queue: int | None = None) -> None:
        """A running scan reports ``progress`` percent (and optionally a new queue size)."""
        self._scan_progress[section_id] = progress
        if queue is not None:
            self._update_queue[section_id] = queue

    def end_scan(self, section_id: str) -> None:
        """The scan ends: ``scannedAt`` moves, the activity and the queue are gone."""
        markers = self._markers(section_id)
        markers["refreshing"] = False
        markers["scannedAt"] = int(self.clock.now())
        self._scan_progress.pop(section_id, None)
        self._update_queue.pop(section_id, None)

    def delete_file(self, episode_id: str) -> SimEpisode:
        """An episode's file is deleted on disk and a scan notices.

        With auto-empty on the item goes; with it off it stays with
        ``deletedAt`` set, listable with ``trash=1``
        (support.plex.tv/hc/en-us/articles/200289526; docs: plex §8).
        """
        if self.auto_empty_trash:
            return self.model.remove_episode(episode_id)
        return self.model.trash_episode(episode_id)

    # -- GDM discovery ----------------------------------------------------------------

    def discovery_answer(self, probe: bytes) -> bytes | None:
        """A GDM answer to ``M-SEARCH`` (header lines as plexapi/gdm.py documents them)."""
        if not probe.startswith(b"M-SEARCH * HTTP/1."):
            return None
        return (
            "HTTP/1.0 200 OK\r\n"
            "Content-Type: plex/media-server\r\n"
            f"Resource-Identifier: {self.machine_id}\r\n"
            f"Name: {self.name}\r\n"
            f"Port: {self.port}\r\n"
            f"Updated-At: {int(self.clock.now())}\r\n"
            f"Version: {self.version}\r\n"
        ).encode()

    # -- instrumentation (docs: plex §10 last item) -------------------------------------

    @staticmethod
    def client_id_of(request: LoggedRequest) -> str:
        """The request's ``X-Plex-Client-Identifier`` (header or query), "" when absent."""
        return request.headers.get("X-Plex-Client-Identifier") or request.query.get(
            "X-Plex-Client-Identifier", ""
        )

    def count_by_client(self) -> Counter[str]:
        """Requests logged so far per client identifier."""
        return Counter(self.client_id_of(r) for r in self.requests)

    def protocol_violations(self) -> list[tuple[LoggedRequest, str]]:
        """Logged requests a real PMS would punish, each with the reason.

        ``no-json-accept`` (PMS answers XML), ``no-client-id`` (one identifier
        per install, docs: plex §1), ``unpaged-listing`` (a listing without
        both Start and Size, docs: plex §3), ``unsorted-listing`` (one paged
        without a ``sort``, whose rows a scan can shift between pages, docs:
        plex §3) and ``plain-gte-on-date`` (``>=``
        or ``<=`` on a date field, which is no date operator, docs: plex §4).
        """
        found: list[tuple[LoggedRequest, str]] = []
        for r in self.requests:
            if r.route not in _IMAGE_ROUTES and "application/json" not in r.headers.get(
                "Accept", ""
            ):
                found.append((r, "no-json-accept"))
            if not self.client_id_of(r):
                found.append((r, "no-client-id"))
            if r.route in PAGED_ROUTES and not all(
                name in r.headers or name in r.query
                for name in ("X-Plex-Container-Start", "X-Plex-Container-Size")
            ):
                found.append((r, "unpaged-listing"))
            if r.route in PAGED_ROUTES and "sort" not in r.query:
                found.append((r, "unsorted-listing"))
            # aiohttp splits ``addedAt>=5`` into the key ``addedAt>`` (``>>=``: ``addedAt>>``).
            if any(
                key.rstrip("<>") in _DATE_FIELDS
                and key[-1:] in "<>"
                and key[-2:] not in (">>", "<<")
                for key in r.query
            ):
                found.append((r, "plain-gte-on-date"))
        return found

    # -- routes -------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        """Add the PMS routes."""
        app.router.add_get("/identity", self._identity)
        app.router.add_get("/", self._root)
        app.router.add_get("/library/sections", self._sections)
        app.router.add_get("/library/sections/{section}/all", self._section_all)
        app.router.add_get("/library/sections/{section}/allLeaves", self._section_leaves)
        app.router.add_get("/library/sections/{section}/timeline", self._timeline)
        app.router.add_get("/activities", self._activities)
        app.router.add_get("/library/metadata/{ids}", self._metadata)
        app.router.add_get("/library/metadata/{key}/allLeaves", self._show_leaves)
        app.router.add_get("/library/metadata/{key}/children", self._children)
        app.router.add_get("/library/metadata/{key}/thumb/{stamp}", self._thumb)
        app.router.add_get("/:/websockets/notifications", self.push.handler)
        # aiohttp 3.11 (HA 2025.4) types the signal oddly; 3.12+ accepts it as is.
        app.on_shutdown.append(self.push.shutdown)  # type: ignore[arg-type,unused-ignore]
        # Any other path: PMS's HTML 404, not aiohttp's plain-text one.
        app.router.add_route("*", "/{tail:.*}", self._unknown_path)

    def _authorized(self, request: web.Request) -> bool:
        token = request.headers.get("X-Plex-Token") or request.query.get("X-Plex-Token")
        return token == self.token

    def _reply(
        self, request: web.Request, container: dict[str, Any], **headers: str
    ) -> web.Response:
        # Without an explicit JSON Accept header PMS answers XML (docs: plex §1).
        if "application/json" not in request.headers.get("Accept", ""):
            attrs = " ".join(
                f'{k}="{v}"' for k, v in container.items() if not isinstance(v, (list, dict))
            )
            return web.Response(
                text=f'<?xml version="1.0" encoding="UTF-8"?>\n<MediaContainer {attrs}/>',
                content_type="application/xml",
                headers=headers,
            )
        return web.json_response({"MediaContainer": container}, headers=headers)

    @staticmethod
    def _unauthorized() -> web.Response:
        return web.Response(status=401, text=UNAUTHORIZED_HTML, content_type="text/html")

    @staticmethod
    def _not_found() -> web.Response:
        return web.Response(status=404, text=NOT_FOUND_HTML, content_type="text/html")

    def _guard(self, request: web.Request) -> web.Response | None:
        return None if self._authorized(request) else self._unauthorized()

    async def _unknown_path(self, request: web.Request) -> web.Response:
        # Auth comes before routing: a path PMS does not have is a 401 too
        # without the token (docs: plex §10 "every endpoint except /identity").
        # (Not ``guard or not_found``: a response is a mapping, falsy when empty, in aiohttp 3.11.)
        refused = self._guard(request)
        return refused if refused is not None else self._not_found()

    async def _identity(self, request: web.Request) -> web.Response:
        if self.identity_requires_auth and not self._authorized(request):
            return self._unauthorized()
        return self._reply(
            request,
            {
                "size": 0,
                "apiVersion": "0.2.0",
                "claimed": True,
                "machineIdentifier": self.machine_id,
                "version": self.version,
            },
        )

    async def _root(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request)) is not None:
            return denied
        return self._reply(
            request,
            {
                "size": 1,
                "friendlyName": self.name,
                "machineIdentifier": self.machine_id,
                "version": self.version,
                "platform": "Linux",
                "myPlex": True,
                "updatedAt": int(self.clock.now()),
                "Directory": [{"key": "library", "title": "library", "count": 1}],
            },
        )

    async def _sections(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request)) is not None:
            return denied
        directory = []
        for library in self.model.libraries.values():
            markers = self._markers(library.id)
            directory.append(
                {
                    "key": library.id,
                    "type": library.kind,
                    "title": library.title,
                    "uuid": library.uuid,
                    "agent": "tv.plex.agents.series"
                    if library.kind == "show"
                    else "tv.plex.agents.movie",
                    "scanner": "Plex TV Series" if library.kind == "show" else "Plex Movie",
                    "language": "en-US",
                    "refreshing": markers["refreshing"],
                    "allowSync": True,
                    "filters": True,
                    "content": True,
                    "directory": True,
                    "hidden": 0,
                    "updatedAt": markers["updatedAt"],
                    "createdAt": library.created_at,
                    "scannedAt": markers["scannedAt"],
                    "contentChangedAt": markers["contentChangedAt"],
                    "thumb": "/:/resources/show.png",
                    "Location": [{"id": int(library.id), "path": f"/mnt/media/{library.id}"}],
                }
            )
        return self._reply(
            request,
            {
                "size": len(directory),
                "identifier": "com.plexapp.plugins.library",
                "title1": "Plex Library",
                "Directory": directory,
            },
        )

    # -- listings -----------------------------------------------------------------------

    async def _section_all(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request)) is not None:
            return denied
        library = self.model.libraries.get(request.match_info["section"])
        if library is None:
            return self._not_found()
        kind = request.query.get("type", "2" if library.kind == "show" else "1")
        rows = self.cached((library.id, kind), lambda: self._section_rows(library, kind))
        return self._listing(request, rows, library_id=library.id, title=library.title)

    def _section_rows(self, library: Any, kind: str) -> list[dict[str, Any]]:
        """Every row of a section listing of one type, in id order."""
        if kind == "2":
            rows = [self._show_row(s) for s in library.shows.values()]
        elif kind == "4":
            rows = [self._episode_row(e) for e in library.episodes() if not e.virtual]
        elif kind == "3":
            rows = [
                self._season_row(show, season)
                for show in library.shows.values()
                for season in self._seasons_of(show)
            ]
        else:
            rows = []
        return sorted(rows, key=lambda r: int(r["ratingKey"]))

    async def _section_leaves(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request)) is not None:
            return denied
        library = self.model.libraries.get(request.match_info["section"])
        if library is None:
            return self._not_found()
        rows = self.cached((library.id, "4"), lambda: self._section_rows(library, "4"))
        return self._listing(request, rows, library_id=library.id, title=library.title)

    async def _timeline(self, request: web.Request) -> web.Response:
        """Section timeline: ``updateQueueSize`` counts items a scan still has to process.

        Fields as plexapi's ``LibraryTimeline`` reads them (plexapi library.py).
        """
        if (denied := self._guard(request)) is not None:
            return denied
        library = self.model.libraries.get(request.match_info["section"])
        if library is None:
            return self._not_found()
        latest = max((e.added_at for e in library.episodes()), default=library.created_at)
        return self._reply(
            request,
            {
                "size": 0,
                "allowSync": True,
                "content": True,
                "identifier": "com.plexapp.plugins.library",
                "latestEntryTime": latest,
                "mediaTagPrefix": "/system/bundle/media/flags/",
                "mediaTagVersion": 1700000000,
                "title1": library.title,
                "updateQueueSize": self._update_queue.get(library.id, 0),
                "viewGroup": "secondary",
            },
        )

    async def _activities(self, request: web.Request) -> web.Response:
        """Running activities: a ``library.update.section`` per scanning section (SPEC)."""
        if (denied := self._guard(request)) is not None:
            return denied
        activities = [
            {
                "uuid": hashlib.sha1(f"scan-{section_id}".encode()).hexdigest()[:36],
                "type": "library.update.section",
                "cancellable": True,
                "userID": 1,
                "title": f"Scanning {self.model.libraries[section_id].title}",
                "subtitle": "",
                "progress": progress,
                # librarySectionID is a string here (docs: plex §7 activity frames).
                "Context": {"librarySectionID": section_id},
            }
            for section_id, progress in self._scan_progress.items()
            if section_id in self.model.libraries
        ]
        container: dict[str, Any] = {"size": len(activities)}
        if activities:
            container["Activity"] = activities
        return self._reply(request, container)

    async def _show_leaves(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request)) is not None:
            return denied
        show = self.model.find_show(request.match_info["key"])
        if show is None:
            return self._not_found()
        # Unsorted, a show's leaves come in season and episode order, which a
        # scan inserting an episode shifts between pages (docs: plex §3).
        leaves = sorted(
            (e for e in show.episodes.values() if not e.virtual),
            key=lambda e: (e.season or 0, e.number or 0, int(e.id)),
        )
        rows = [self._episode_row(e) for e in leaves]
        return self._listing(
            request, rows, library_id=show.library_id, title=show.title, in_id_order=False
        )

    async def _children(self, request: web.Request) -> web.Response:
        """A show's seasons, or a season's episodes (what a naive walk asks for)."""
        if (denied := self._guard(request)) is not None:
            return denied
        key = request.match_info["key"]
        show = self.model.find_show(key)
        if show is not None:
            rows = [self._season_row(show, s) for s in self._seasons_of(show)]
            return self._listing(request, rows, library_id=show.library_id, title=show.title)
        found = self.model.find_season(key)
        if found is not None and found[1] in self._seasons_of(found[0]):
            show, season = found
            rows = [
                self._episode_row(e)
                for e in show.episodes.values()
                if e.season == season and not e.virtual
            ]
            return self._listing(request, rows, library_id=show.library_id, title=show.title)
        return self._not_found()

    async def _metadata(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request)) is not None:
            return denied
        ids = request.match_info["ids"].split(",")
        rows: list[dict[str, Any]] = []
        for key in ids:
            if (episode := self.model.find_episode(key)) is not None:
                rows.append(self._episode_row(episode))
            elif (show := self.model.find_show(key)) is not None:
                rows.append(self._show_row(show))
        if not rows and len(ids) == 1:
            return self._not_found()
        if len(rows) < len(ids) and self.metadata_list_404_on_unknown:
            return self._not_found()
        container: dict[str, Any] = {"size": len(rows)}
        if rows:  # optional elements are left out, not sent empty
            container["Metadata"] = rows
        return self._reply(request, container)

    async def _thumb(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request)) is not None:
            return denied
        key = request.match_info["key"]
        item = self.model.find_show(key) or self.model.find_episode(key)
        if item is None or not item.has_image:
            return self._not_found()
        # A 1x1 PNG: enough to prove the bytes arrive.
        return web.Response(
            body=bytes.fromhex(
                "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
            ),
            content_type="image/png",
        )

    # -- paging and filters ---------------------------------------------------------------

    def _listing(
        self,
        request: web.Request,
        rows: list[dict[str, Any]],
        *,
        library_id: str,
        title: str,
        in_id_order: bool = True,
    ) -> web.Response:
        """One page of ``rows`` (given in the route's own order: ids, unless said otherwise)."""
        query = request.query
        filtered = self._filter(request, rows)
        if isinstance(filtered, web.Response):
            return filtered
        sort = query.get("sort")
        if sort is not None and not (in_id_order and sort in ("id", "id:asc")):
            filtered = self._sort(filtered, sort)
        rows = filtered
        # ``limit=N`` caps the results and omits the true total (DESC §Pagination).
        capped = "limit" in query
        if capped:
            rows = rows[: int(query["limit"])]
        total = len(rows)
        start_raw = request.headers.get(
            "X-Plex-Container-Start", query.get("X-Plex-Container-Start")
        )
        size_raw = request.headers.get("X-Plex-Container-Size", query.get("X-Plex-Container-Size"))
        container: dict[str, Any] = {
            "librarySectionID": int(library_id),
            "librarySectionTitle": title,
            "viewGroup": rows[0]["type"] if rows else "episode",
        }
        headers: dict[str, str] = {}
        # Start and Size count only together; Size alone is ignored (PLX).
        if start_raw is not None and size_raw is not None:
            start, size = int(start_raw), int(size_raw)
            if self.page_cap is not None:
                size = min(size, self.page_cap)
            page = rows[start : start + size]
            container.update(size=len(page), offset=start)
            headers = {"X-Plex-Container-Start": str(start)}
            if not capped:
                container["totalSize"] = total
                headers["X-Plex-Container-Total-Size"] = str(total)
        else:
            page = rows
            container.update(size=len(page))
        if not self.ignore_trimming:
            page = [self._trim(row, query) for row in page]
        if page:
            container["Metadata"] = page
        return self._reply(request, container, **headers)

    def _filter(self, request: web.Request, rows: list[_Row]) -> list[_Row] | web.Response:
        """Apply the query's filter terms: ``&`` is AND, ``push/or/pop`` group (DESC §Boolean)."""
        tokens = self._filter_tokens(request)
        if isinstance(tokens, web.Response):
            return tokens
        if not tokens:
            return rows  # the cached listing itself: no copy for unfiltered pages
        try:
            predicate = _compile(tokens)
        except ValueError as err:
            return web.Response(status=400, text=str(err))
        return [row for row in rows if predicate(row)]

    def _filter_tokens(self, request: web.Request) -> list[_Predicate | str] | web.Response:
        """The query's filter terms and grouping words, in order.

        Parsed from the raw query: the operator is part of the key
        (``addedAt>>=``), sent percent-encoded (``addedAt%3E%3E=``) or raw.
        Each part is decoded once, as a form (``+`` is a space, ``%2B`` a plus).
        """
        now = self.clock.now()
        tokens: list[_Predicate | str] = []
        for part in request.rel_url.raw_query_string.split("&"):
            if not part:
                continue
            raw_key, _, raw_value = part.partition("=")
            key, value = unquote_plus(raw_key), unquote_plus(raw_value)
            if key in _GROUPING:
                tokens.append(key)
                continue
            if key in _NON_FILTERS:
                continue
            # The key holds the operator but its last ``=`` (``addedAt>>``); an
            # encoded ``==`` keeps one ``=`` in the key (``title%3D``), a raw
            # one leaves it at the head of the value (``title==x``: ``=x``).
            match = re.fullmatch(r"([A-Za-z.]+?)(>>|<<|!=|!|>|<|=)?", key)
            if match is None:
                return web.Response(status=400, text="bad filter")
            name, op = match.group(1), (match.group(2) or "") + "="
            if op in ("=", "!=") and value.startswith("="):
                op, value = op + "=", value[1:]
            # ``episode.addedAt`` on a type=4 listing is plain ``addedAt`` (DESC §Field Scoping).
            name = name.removeprefix("episode.")
            kind = _FIELD_TYPES.get(name)
            if kind is None:
                if self.unknown_filter_400:
                    return web.Response(status=400, text=f"unknown field {name}")
                continue
            if name == "updatedAt" and not self.updated_at_filter_supported:
                return web.Response(status=400, text="updatedAt is not a filter here")
            if kind == "date" and op in (">=", "<="):
                # Plain >= / <= is no date operator (docs: plex §4).
                if self.gte_on_date_is_400:
                    return web.Response(status=400, text="bad date operator")
                continue
            if op not in _OPERATORS[kind]:
                return web.Response(status=400, text=f"no operator {op} on {kind} {name}")
            try:
                tokens.append(_term(name, kind, op, value, now))
            except ValueError:
                return web.Response(status=400, text=f"bad value for {name}")
        return tokens

    @staticmethod
    def _sort(rows: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
        field, _, direction = sort.partition(":")
        if field in ("id", ""):
            return sorted(rows, key=lambda r: int(r["ratingKey"]), reverse=direction == "desc")
        return sorted(rows, key=lambda r: r.get(field) or 0, reverse=direction == "desc")

    @staticmethod
    def _trim(row: dict[str, Any], query: Any) -> dict[str, Any]:
        drop = set(query.get("excludeFields", "").split(",")) | set(
            query.get("excludeElements", "").split(",")
        )
        if query.get("includeGuids") != "1":
            drop.add("Guid")
        return {k: v for k, v in row.items() if k not in drop} if drop & row.keys() else row

    # -- rows --------------------------------------------------------------------------

    def _counted(self, show: SimShow) -> list[SimEpisode]:
        """The episodes ``leafCount`` counts (trashed ones only behind the switch)."""
        if self.trash_counts_in_leaf_count:
            return [e for e in show.episodes.values() if not e.virtual]
        return show.real_episodes()

    @staticmethod
    def _seasons_of(show: SimShow) -> list[int]:
        """The show's seasons, Specials included, as PMS lists and counts them.

        Recomputed from the episodes (docs: plex §10 "childCount ... always
        recomputed"): a season holds at least one listed episode (a trashed
        one still is), and the model drops a season with its last episode.
        """
        held = {e.season for e in show.episodes.values() if not e.virtual}
        return [number for number in sorted(show.season_ids) if number in held]

    def _show_row(self, show: SimShow) -> dict[str, Any]:
        real = self._counted(show)
        watched = [e for e in real if e.watched]
        row: dict[str, Any] = {
            "ratingKey": show.id,
            "key": f"/library/metadata/{show.id}/children",
            "type": "show",
            "guid": f"plex://show/{show.id}",
            "title": show.title,
            "summary": f"The story of {show.title}.",
            "year": show.year,
            "addedAt": show.added_at,
            "updatedAt": show.updated_at,
            "childCount": len(self._seasons_of(show)),
            "leafCount": len(real),
            "viewedLeafCount": len(watched),
            "thumb": f"/library/metadata/{show.id}/thumb/{show.updated_at}",
            "art": f"/library/metadata/{show.id}/art/{show.updated_at}",
            "Genre": [{"tag": "Drama"}],
            # External ids: only with includeGuids=1 (SPEC /all params), see _trim.
            "Guid": [{"id": f"tvdb://{int(show.id) * 3}"}],
        }
        # Absent, not empty (docs: plex §10, "optional fields really absent").
        if not show.has_image:
            del row["thumb"], row["art"]
        if watched:
            row["lastViewedAt"] = max(e.last_viewed_at or 0 for e in watched)
        return row

    def _season_row(self, show: SimShow, season: int) -> dict[str, Any]:
        key = show.season_ids[season]
        return {
            "ratingKey": key,
            "key": f"/library/metadata/{key}/children",
            "parentRatingKey": show.id,
            "type": "season",
            "title": "Specials" if season == 0 else f"Season {season}",
            "index": season,
            "leafCount": sum(1 for e in self._counted(show) if e.season == season),
        }

    def _episode_row(self, episode: SimEpisode) -> dict[str, Any]:
        show = self.model.show(episode.show_id)
        season_key = show.season_ids.get(episode.season) if episode.season is not None else None
        row: dict[str, Any] = {
            "ratingKey": episode.id,
            "key": f"/library/metadata/{episode.id}",
            "type": "episode",
            "guid": episode.guid,
            "title": episode.title,
            "summary": "A summary that trimming should drop.",
            "grandparentRatingKey": show.id,
            "grandparentTitle": show.title,
            "grandparentThumb": f"/library/metadata/{show.id}/thumb/{show.updated_at}",
            "year": int(episode.air_date[:4]) if episode.air_date else None,
            "duration": episode.duration_ms,
            "addedAt": episode.added_at,
            "updatedAt": episode.updated_at,
            "thumb": f"/library/metadata/{episode.id}/thumb/{episode.updated_at}",
            "Media": [
                {"id": int(episode.id), "duration": episode.duration_ms, "Part": [{"id": 1}]}
            ],
        }
        if not episode.has_image:
            del row["thumb"]
        if not show.has_image:
            del row["grandparentThumb"]
        if season_key is not None:
            row["parentRatingKey"] = season_key
            row["parentIndex"] = episode.season
            row["parentTitle"] = "Specials" if episode.season == 0 else f"Season {episode.season}"
        if episode.number is not None:
            row["index"] = episode.number
        if episode.air_date:
            # Over-the-air recordings carry a time part (docs: plex §5): model a few.
            stamp = f"{episode.air_date} 20:00:00" if (episode.number or 0) % 7 == 0 else ""
            row["originallyAvailableAt"] = stamp or episode.air_date
        if row["year"] is None:
            del row["year"]
        # Absent, not zero, when unwatched (docs: plex §5).
        if episode.view_count:
            row["viewCount"] = episode.view_count
            row["lastViewedAt"] = episode.last_viewed_at
        if episode.deleted_at is not None:
            row["deletedAt"] = episode.deleted_at
        return row


def _term(name: str, kind: str, op: str, value: str, now: float) -> _Predicate:
    """One filter term as a row predicate (``op`` in full: ``>>=``, ``!==``, ``<=``…).

    A comma inside the value means OR (DESC §Boolean Operators); a negative
    operator (``!=``, ``!==``) holds when no value matches. A field the row
    lacks matches nothing, as NULL in SQL, except ``viewCount``, which PMS
    leaves out when it is 0 (docs: plex §5). Date values may be relative.
    """
    values = value.split(",")
    negate = op in ("!=", "!==")
    if name == "trash":
        # Trashed items carry ``deletedAt`` (SPEC example item; docs: plex §8).
        wanted = ("1" in values) != negate
        return lambda row: ("deletedAt" in row) == wanted
    if name == "unwatched":
        wanted = ("1" in values) != negate
        return lambda row: ("viewCount" not in row) == wanted
    if name == "show.id":
        keys = set(values)
        return lambda row: (row.get("grandparentRatingKey") in keys) != negate
    test: Callable[[Any, Any], bool]
    if kind == "string":
        needles = [v.casefold() for v in values]
        # Inferred: PMS matches titles without regard to case.
        test = {
            "=": lambda have, want: want in have,
            "!=": lambda have, want: want in have,
            "==": lambda have, want: have == want,
            "!==": lambda have, want: have == want,
            "<=": lambda have, want: have.startswith(want),
            ">=": lambda have, want: have.endswith(want),
        }[op]

        def matches(row: _Row) -> bool:
            have = row.get(name)
            if have is None:
                return False
            return any(test(str(have).casefold(), n) for n in needles) != negate

        return matches
    bounds = [_resolve_time(v, now) if kind == "date" else float(int(v)) for v in values]
    # Both date operators are strict (docs: plex §4); integer >>=/<<= are too,
    # and >=/<= are "or equals" (DESC §Operators).
    test = {
        "=": lambda have, want: have == want,
        "!=": lambda have, want: have == want,
        ">>=": lambda have, want: have > want,
        "<<=": lambda have, want: have < want,
        ">=": lambda have, want: have >= want,
        "<=": lambda have, want: have <= want,
    }[op]
    default = 0 if name == "viewCount" else None

    def compares(row: _Row) -> bool:
        have = row.get(name, default)
        if have is None:
            return False
        return any(test(have, b) for b in bounds) != negate

    return compares


def _compile(tokens: list[_Predicate | str]) -> _Predicate:
    """``a & b & push & c & or & d & pop``: AND by default, ``or`` between, ``push/pop`` nest."""
    pos = 0

    def either() -> _Predicate:
        nonlocal pos
        options = [both()]
        while pos < len(tokens) and tokens[pos] == "or":
            pos += 1
            options.append(both())
        return options[0] if len(options) == 1 else (lambda row: any(p(row) for p in options))

    def both() -> _Predicate:
        nonlocal pos
        parts: list[_Predicate] = []
        while pos < len(tokens) and tokens[pos] not in ("or", "pop"):
            token = tokens[pos]
            pos += 1
            if token == "push":
                parts.append(either())
                if pos >= len(tokens) or tokens[pos] != "pop":
                    raise ValueError("push without pop")
                pos += 1
            elif not isinstance(token, str):
                parts.append(token)
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    predicate = either()
    if pos != len(tokens):
        raise ValueError("pop without push")
    return predicate


def _resolve_time(value: str, now: float) -> float:
    """An absolute epoch value, or a relative one on the server clock.

    ``-300``, ``-3w``: that long ago; ``+N``: that far ahead (DESC §Relative Values).
    """
    match = re.fullmatch(r"([-+])(\d+)(mon|[mhdwy])?", value)
    if match:
        sign, amount, unit = match.group(1), int(match.group(2)), match.group(3)
        offset = amount * (_UNITS[unit] if unit else 1)
        return now - offset if sign == "-" else now + offset
    return float(value)
