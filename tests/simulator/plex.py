"""A Plex Media Server simulator (aiohttp) for tests, script/develop and script/bench.

Implements the simulator checklist of the project's Plex notes (docs/plex-api.md
§10) for the endpoints the integration uses:

- auth: every path but ``/identity`` answers **401 text/html** with the HTML
  body real servers send, whatever ``Accept`` says; the token is accepted as a
  header or ``?X-Plex-Token=`` (DESC §Headers; bstascavage/plexReport#48);
- content negotiation: without ``Accept: application/json`` the answer is XML
  (DESC §Content Types), so a client that forgets the header fails visibly;
- 404 HTML for unknown items, sections and paths;
- shapes: ``MediaContainer``; ``Directory[]`` for sections, ``Metadata[]`` for
  items; ``ratingKey`` and section ``key`` as strings; ``hidden`` as 0/1;
  optional fields absent (``viewCount``/``lastViewedAt`` only when watched,
  ``index`` absent on unnumbered episodes);
- paging: Start and Size honoured only when both are present (as headers or
  query), ``Size=0`` count probes, ``limit=``, an optional server-side page cap
  that serves fewer items than asked; ``X-Plex-Container-Start`` and
  ``X-Plex-Container-Total-Size`` response headers (DESC §Pagination; PLX);
- filters: ``addedAt``/``updatedAt``/``lastViewedAt`` with strict ``>>=`` and
  ``<<=``, percent-encoded or raw, relative values (``-300``, ``-3w``, ``mon``);
  plain ``>=`` on a date is ignored (or 400 behind a switch); unknown filter
  fields 400 (switchable); OR by commas;
- ``contentChangedAt``: one server-wide counter starting at an arbitrary large
  value, bumped by every content change and stamped on the section; watch-state
  changes do not bump it unless ``watch_bumps_content_changed``;
- a show's ``updatedAt`` does not move when episodes are added or removed;
  ``leafCount``/``viewedLeafCount``/``childCount`` are always recomputed;
- marking unwatched removes ``viewCount`` and ``lastViewedAt`` and does not
  bump ``updatedAt`` (switchable);
- ratingKeys are non-sequential strings, never reused; re-match = new key.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .common import SimServer
from .library import SimClock, SimEpisode, SimLibraryModel, SimShow

UNAUTHORIZED_HTML = (
    "<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1></body></html>"
)
NOT_FOUND_HTML = (
    "<html><head><title>Not Found</title></head><body><h1>404 Not Found</h1></body></html>"
)
_DATE_FIELDS = ("addedAt", "updatedAt", "lastViewedAt")
_KNOWN_FIELDS = {
    *_DATE_FIELDS,
    "title",
    "index",
    "parentIndex",
    "viewCount",
    "unwatched",
    "trash",
    "show.id",
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
    "push",
    "pop",
    "or",
}
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
        self.gte_on_date_is_400 = False
        self.unknown_filter_400 = True
        self.ignore_trimming = False
        self.identity_requires_auth = False
        self.unwatch_bumps_updated_at = False
        self.updated_at_filter_supported = True
        # contentChangedAt is a server-wide counter, not a time (docs: plex §5).
        self._content_counter = 41_632_394
        self._next_key = 1000
        self._section_markers: dict[str, dict[str, Any]] = {}
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
        if kind == "library_removed":
            self._section_markers.pop(library_id, None)
            return
        if kind == "watched":
            episode = item
            assert isinstance(episode, SimEpisode)
            if not episode.watched and self.unwatch_bumps_updated_at:
                episode.updated_at = int(self.clock.now())
            if not self.watch_bumps_content_changed:
                return
        markers = self._markers(library_id)
        self._content_counter += 1
        markers["contentChangedAt"] = self._content_counter
        markers["scannedAt"] = int(self.clock.now())

    def rotate_token(self) -> str:
        """Issue a new token; the old one gets 401 from now on."""
        self.token = hashlib.sha1(f"{self.token}-rotated".encode()).hexdigest()[:20]
        return self.token

    def start_scan(self, section_id: str) -> None:
        """A scan starts: the section reports ``refreshing: true``."""
        self._markers(section_id)["refreshing"] = True

    def end_scan(self, section_id: str) -> None:
        """The scan ends: ``scannedAt`` moves."""
        markers = self._markers(section_id)
        markers["refreshing"] = False
        markers["scannedAt"] = int(self.clock.now())

    # -- routes -------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        """Add the PMS routes."""
        app.router.add_get("/identity", self._identity)
        app.router.add_get("/", self._root)
        app.router.add_get("/library/sections", self._sections)
        app.router.add_get("/library/sections/{section}/all", self._section_all)
        app.router.add_get("/library/sections/{section}/allLeaves", self._section_leaves)
        app.router.add_get("/library/metadata/{ids}", self._metadata)
        app.router.add_get("/library/metadata/{key}/allLeaves", self._show_leaves)
        app.router.add_get("/library/metadata/{key}/children", self._children)
        app.router.add_get("/library/metadata/{key}/thumb/{stamp}", self._thumb)
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
        return self._not_found()

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
                for season in sorted(show.season_ids)
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

    async def _show_leaves(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request)) is not None:
            return denied
        show = self.model.find_show(request.match_info["key"])
        if show is None:
            return self._not_found()
        rows = [self._episode_row(e) for e in show.episodes.values() if not e.virtual]
        return self._listing(request, rows, library_id=show.library_id, title=show.title)

    async def _children(self, request: web.Request) -> web.Response:
        """A show's seasons, or a season's episodes (what a naive walk asks for)."""
        if (denied := self._guard(request)) is not None:
            return denied
        key = request.match_info["key"]
        show = self.model.find_show(key)
        if show is not None:
            rows = [self._season_row(show, s) for s in sorted(show.season_ids)]
            return self._listing(request, rows, library_id=show.library_id, title=show.title)
        for library in self.model.libraries.values():
            for show in library.shows.values():
                season = next((n for n, k in show.season_ids.items() if k == key), None)
                if season is not None:
                    rows = [
                        self._episode_row(e)
                        for e in show.episodes.values()
                        if e.season == season and not e.virtual
                    ]
                    return self._listing(
                        request, rows, library_id=show.library_id, title=show.title
                    )
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
        return self._reply(request, {"size": len(rows), "Metadata": rows})

    async def _thumb(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request)) is not None:
            return denied
        key = request.match_info["key"]
        if self.model.find_show(key) is None and self.model.find_episode(key) is None:
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
        self, request: web.Request, rows: list[dict[str, Any]], *, library_id: str, title: str
    ) -> web.Response:
        query = request.query
        filtered = self._filter(request, rows)
        if isinstance(filtered, web.Response):
            return filtered
        sort = query.get("sort", "id")
        # Cached section rows are already in id order.
        rows = filtered if sort in ("id", "id:asc") else self._sort(filtered, sort)
        if "limit" in query:
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
            container.update(size=len(page), totalSize=total, offset=start)
            headers = {
                "X-Plex-Container-Start": str(start),
                "X-Plex-Container-Total-Size": str(total),
            }
        else:
            page = rows
            container.update(size=len(page))
        if not self.ignore_trimming:
            page = [self._trim(row, query) for row in page]
        if page:
            container["Metadata"] = page
        return self._reply(request, container, **headers)

    def _filter(
        self, request: web.Request, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]] | web.Response:
        # Parse the raw query: the operator is part of the key (``addedAt>>=``),
        # sent percent-encoded (``addedAt%3E%3E=``) or raw.
        now = self.clock.now()
        for part in request.query_string.split("&"):
            if not part:
                continue
            raw_key, _, raw_value = part.partition("=")
            key, value = unquote(raw_key), unquote(raw_value)
            if key in _NON_FILTERS:
                continue
            match = re.fullmatch(r"([A-Za-z.]+?)(>>|<<|!|>|<|=)?", key)
            if match is None:
                return web.Response(status=400, text="bad filter")
            name, op = match.group(1), match.group(2) or ""
            if name not in _KNOWN_FIELDS:
                if self.unknown_filter_400:
                    return web.Response(status=400, text=f"unknown field {name}")
                continue
            if name == "updatedAt" and not self.updated_at_filter_supported:
                return web.Response(status=400, text="updatedAt is not a filter here")
            if name in _DATE_FIELDS:
                if op in (">", "<"):
                    # Plain >= / <= is no date operator (docs: plex §4).
                    if self.gte_on_date_is_400:
                        return web.Response(status=400, text="bad date operator")
                    continue
                if op not in (">>", "<<"):
                    continue
                bound = _resolve_time(value, now)
                if op == ">>":
                    rows = [r for r in rows if r.get(name) is not None and r[name] > bound]
                else:
                    rows = [r for r in rows if r.get(name) is not None and r[name] < bound]
            elif name == "show.id":
                wanted = set(value.split(","))
                rows = [r for r in rows if r.get("grandparentRatingKey") in wanted]
            else:
                wanted = set(value.split(","))
                rows = [r for r in rows if str(r.get(name, "")) in wanted]
        return rows

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
        return {k: v for k, v in row.items() if k not in drop} if drop - {""} else row

    # -- rows --------------------------------------------------------------------------

    def _show_row(self, show: SimShow) -> dict[str, Any]:
        real = show.real_episodes()
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
            "childCount": len(show.season_ids),
            "leafCount": len(real),
            "viewedLeafCount": len(watched),
            "thumb": f"/library/metadata/{show.id}/thumb/{show.updated_at}",
            "art": f"/library/metadata/{show.id}/art/{show.updated_at}",
            "Genre": [{"tag": "Drama"}],
        }
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
            "leafCount": sum(1 for e in show.real_episodes() if e.season == season),
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
        if season_key is not None:
            row["parentRatingKey"] = season_key
            row["parentIndex"] = episode.season
            row["parentTitle"] = f"Season {episode.season}"
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


def _resolve_time(value: str, now: float) -> float:
    """An absolute epoch value, or a relative one (``-300``, ``-3w``) on the server clock."""
    match = re.fullmatch(r"-(\d+)(mon|[mhdwy])?", value)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return now - amount * (_UNITS[unit] if unit else 1)
    return float(value)
