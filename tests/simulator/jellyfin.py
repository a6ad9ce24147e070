"""A Jellyfin server simulator (aiohttp) for tests, script/develop and script/bench.

Implements the simulator checklist of the project's Jellyfin notes
(docs/jellyfin-api.md §10) for what the integration uses:

1. version modes 10.10, 10.11 and 12.0, reported by ``/System/Info/Public``;
2. auth parsing: ``MediaBrowser`` scheme in any case, ``Key="value"`` pairs,
   URL-decoded, ``?ApiKey=`` always; ``X-Emby-Token``, ``X-Emby-Authorization``,
   ``api_key`` and the ``Emby`` scheme only in legacy mode (on for 10.x, off
   for 12.0: JF commit a6ae68433a);
3. login: 400 without Client/Device/DeviceId/Version, 401 ``text/plain``
   "Error processing request." on bad credentials, and a new login by the same
   user and DeviceId revokes the older tokens (SessionManager);
4. a bad or revoked token: 401 with an empty body; 503 + Retry-After while
   "starting up" (10.11+);
5. virtual episodes are listed by ``/Shows/{id}/Episodes`` unless
   ``isMissing=false``;
6. wire format: 32-hex ids, 7-digit fractional ``Z`` dates, "0001-01-01…" for
   unset, case-insensitive query names, comma lists, PascalCase keys;
7. QueryResult with ``StartIndex`` echoed; ``Limit=0`` gives [] and the true
   total; ``EnableTotalRecordCount=false`` makes the total the page length;
   an optional page cap serves fewer items than asked;
8. fields gating: DateCreated, Etag, ParentId, ChildCount, RecursiveItemCount,
   DateLastMediaAdded only when asked; DateLastSaved never;
9. save model: a hidden DateLastSaved, NULL until the first refresh
   (``first_refresh_delay``), set again on metadata edits, never on played
   toggles; ``Etag`` = md5 of its ticks;
10. delta filters: 10.11/12.0: both parameters mean DateLastSaved >= T (NULL
    excluded); 10.10: ``MinDateLastSaved`` alone answers 500 (the unbound SQL
    parameter of SqliteItemRepository, jellyfin/jellyfin#17542), the ForUser
    variant works;
11. DateCreated is the file's birth time, chosen by the test;
12. series: RecursiveItemCount (real episodes), UserData.UnplayedItemCount,
    ChildCount (seasons), DateLastMediaAdded; re-saved (new Etag) only when
    DateLastMediaAdded moves;
13. virtual episodes never count;
14. deletion removes the row (no delta query reports it);
15. the HTTP ``Date`` header follows the simulated clock (SimServer);
16. routes ``/Users/{uid}/Views``, ``/UserViews`` (10.9+), ``/Items``,
    ``/Users/{uid}/Items``, ``/Shows/{id}/Episodes``, ``/Shows/{id}/Seasons``;
    the ``/emby`` prefix up to 10.11, 404 on 12.0;
18. per-route request counters (SimServer's log).
"""

from __future__ import annotations

from datetime import UTC, datetime
import hashlib
import itertools
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .common import SimServer
from .library import SimClock, SimEpisode, SimLibraryModel, SimShow

NEVER = "0001-01-01T00:00:00.0000000Z"
_TICKS_AT_EPOCH = 621_355_968_000_000_000


def _date(epoch: float | None) -> str:
    """A Jellyfin date: 7 fractional digits and ``Z``."""
    if epoch is None:
        return NEVER
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond * 10:07d}Z"


def _etag(saved_at: float | None) -> str:
    ticks = 0 if saved_at is None else int(saved_at * 10_000_000) + _TICKS_AT_EPOCH
    return hashlib.md5(str(ticks).encode(), usedforsecurity=False).hexdigest()


class JellyfinSimulator(SimServer):
    """A Jellyfin server with one library model and a few users."""

    def __init__(
        self,
        *,
        version: str = "10.11.7",
        users: dict[str, str] | None = None,
        name: str = "Sim Jellyfin",
        server_id: str | None = None,
        clock: SimClock | None = None,
        latency: float = 0.0,
        page_cap: int | None = None,
        legacy_auth: bool | None = None,
        first_refresh_delay: float = 0.0,
        starting_up: bool = False,
    ) -> None:
        """Create the server; ``model.generate(...)`` fills it."""
        self.version = version
        self.version_tuple = tuple(int(p) for p in version.split(".")[:2])
        self.users = dict(users if users is not None else {"alice": "secret"})
        self.name = name
        self.server_id = server_id or hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()
        self.page_cap = page_cap
        self.legacy_auth = self.version_tuple < (12, 0) if legacy_auth is None else legacy_auth
        self.first_refresh_delay = first_refresh_delay
        self.starting_up = starting_up
        self._counter = itertools.count(1)
        self.user_ids = {user: self._new_id() for user in self.users}
        #: token -> (user id, device id)
        self.tokens: dict[str, tuple[str, str]] = {}
        self._pending: list[tuple[float, SimEpisode]] = []
        super().__init__(clock=clock, latency=latency)
        self.model = SimLibraryModel(
            clock=self.clock, id_factory=self._new_id, on_change=self._on_change
        )
        self.model.add_library(title="Movies", kind="movies")
        #: Series DateLastMediaAdded as last saved (the series row's own save).
        self._series_media_added: dict[str, int | None] = {}

    # -- ids, saves --------------------------------------------------------------------

    def _new_id(self) -> str:
        return hashlib.md5(
            f"{self.name}-{next(self._counter)}".encode(), usedforsecurity=False
        ).hexdigest()

    def _on_change(self, kind: str, library_id: str, item: object) -> None:
        self.invalidate()
        if not isinstance(item, SimEpisode):
            return
        now = self.clock.now()
        if kind == "episode_added":
            # A new row has no DateLastSaved until its first refresh (§4.2).
            item.saved_at = None if self.first_refresh_delay else now
            if self.first_refresh_delay:
                self._pending.append((now + self.first_refresh_delay, item))
        elif kind == "episode_updated":
            item.saved_at = now
        if (show := self.model.find_show(item.show_id)) is not None:
            self._resave_series(show)

    def _refresh_pending(self) -> None:
        now = self.clock.now()
        for due, episode in list(self._pending):
            if due <= now:
                self.invalidate()
                episode.saved_at = due
                self._pending.remove((due, episode))

    def _resave_series(self, show: SimShow) -> None:
        """A series is saved again only when its DateLastMediaAdded moves (§4.6)."""
        latest = max((e.file_created_at or e.added_at for e in show.real_episodes()), default=None)
        if self._series_media_added.get(show.id) != latest:
            self._series_media_added[show.id] = latest
            show.saved_at = self.clock.now()

    def revoke_tokens(self) -> None:
        """Every token gets 401 from now on."""
        self.tokens.clear()

    def set_password(self, user: str, password: str) -> None:
        """Change a user's password (existing tokens stay valid, as on Jellyfin)."""
        self.users[user] = password

    # -- auth ----------------------------------------------------------------------------

    @staticmethod
    def _parse_auth(value: str) -> tuple[str, dict[str, str]]:
        scheme, _, rest = value.strip().partition(" ")
        fields: dict[str, str] = {}
        for part in rest.split(","):
            key, _, raw = part.strip().partition("=")
            if key:
                fields[key.strip()] = unquote(raw.strip().strip('"'))
        return scheme.lower(), fields

    def _auth_fields(self, request: web.Request) -> dict[str, str]:
        header = request.headers.get("Authorization")
        if header:
            scheme, fields = self._parse_auth(header)
            if scheme == "mediabrowser" or (scheme == "emby" and self.legacy_auth):
                return fields
            return {}
        legacy = request.headers.get("X-Emby-Authorization")
        if legacy and self.legacy_auth:
            return self._parse_auth(legacy)[1]
        return {}

    def _token(self, request: web.Request) -> str | None:
        query = {k.lower(): v for k, v in request.query.items()}
        token = self._auth_fields(request).get("Token") or query.get("apikey")
        if token is None and self.legacy_auth:
            token = (
                request.headers.get("X-Emby-Token")
                or request.headers.get("X-MediaBrowser-Token")
                or query.get("api_key")
            )
        return token

    def _user(self, request: web.Request) -> str | None:
        token = self._token(request)
        return self.tokens[token][0] if token in self.tokens else None

    # -- routes -----------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        """Add the routes, with and without the legacy ``/emby`` prefix."""
        for prefix in ("", "/emby"):
            app.router.add_get(prefix + "/System/Info/Public", self._public_info)
            app.router.add_post(prefix + "/Users/AuthenticateByName", self._login)
            app.router.add_get(prefix + "/Users/{uid}/Views", self._views)
            app.router.add_get(prefix + "/UserViews", self._views)
            app.router.add_get(prefix + "/Items", self._items)
            app.router.add_get(prefix + "/Users/{uid}/Items", self._items)
            app.router.add_get(prefix + "/Shows/{sid}/Episodes", self._show_episodes)
            app.router.add_get(prefix + "/Shows/{sid}/Seasons", self._seasons)

    def _gate(self, request: web.Request, *, auth: bool = True) -> web.Response | None:
        if request.path.startswith("/emby/") and self.version_tuple >= (12, 0):
            return web.Response(status=404)
        if self.starting_up and self.version_tuple >= (10, 11):
            return web.Response(status=503, headers={"Retry-After": "5"})
        if auth and self._user(request) is None:
            return web.Response(status=401)  # empty body (CustomAuthenticationHandler)
        return None

    async def _public_info(self, request: web.Request) -> web.Response:
        if (refused := self._gate(request, auth=False)) is not None:
            return refused
        return web.json_response(
            {
                "LocalAddress": self.url,
                "ServerName": self.name,
                "Version": self.version,
                "ProductName": "Jellyfin Server",
                "OperatingSystem": "",
                "Id": self.server_id,
                "StartupWizardCompleted": True,
            }
        )

    async def _login(self, request: web.Request) -> web.Response:
        if (refused := self._gate(request, auth=False)) is not None:
            return refused
        fields = self._auth_fields(request)
        if not all(fields.get(k) for k in ("Client", "Device", "DeviceId", "Version")):
            return web.Response(
                status=400, text="Client, Device, DeviceId and Version are required"
            )
        body = await request.json()
        user, password = body.get("Username"), body.get("Pw", "")
        if user not in self.users or self.users[user] != (password or ""):
            return web.Response(status=401, text="Error processing request.")
        user_id, device = self.user_ids[user], fields["DeviceId"]
        # The same user and DeviceId: older tokens are logged out.
        for token, owner in list(self.tokens.items()):
            if owner == (user_id, device):
                del self.tokens[token]
        token = self._new_id()
        self.tokens[token] = (user_id, device)
        return web.json_response(
            {
                "User": {
                    "Name": user,
                    "ServerId": self.server_id,
                    "Id": user_id,
                    "HasPassword": bool(self.users[user]),
                    "Policy": {"IsAdministrator": False, "IsDisabled": False},
                },
                "SessionInfo": {"Id": self._new_id(), "UserId": user_id, "DeviceId": device},
                "AccessToken": token,
                "ServerId": self.server_id,
            }
        )

    async def _views(self, request: web.Request) -> web.Response:
        if (refused := self._gate(request)) is not None:
            return refused
        if request.path.endswith("/UserViews") and self.version_tuple < (10, 9):
            return web.Response(status=404)
        items = [
            {
                "Name": library.title,
                "ServerId": self.server_id,
                "Id": library.id,
                "Etag": _etag(library.created_at),
                "DateCreated": _date(library.created_at),
                "DateLastMediaAdded": NEVER,
                "IsFolder": True,
                "Type": "CollectionFolder",
                "CollectionType": "tvshows" if library.kind == "show" else library.kind,
                "ChildCount": len(library.shows),
                "LocationType": "FileSystem",
                "MediaType": "Unknown",
            }
            for library in self.model.libraries.values()
        ]
        return web.json_response({"Items": items, "TotalRecordCount": len(items), "StartIndex": 0})

    # -- item listings ------------------------------------------------------------------------

    async def _items(self, request: web.Request) -> web.Response:
        if (refused := self._gate(request)) is not None:
            return refused
        self._refresh_pending()
        q = {k.lower(): v for k, v in request.query.items()}
        types = set(q.get("includeitemtypes", "").split(",")) - {""}
        fields = set(q.get("fields", "").split(",")) - {""}
        parent = q.get("parentid")
        since_key = next(
            (k for k in ("mindatelastsaved", "mindatelastsavedforuser") if k in q), None
        )
        if (
            since_key == "mindatelastsaved"
            and "mindatelastsavedforuser" not in q
            and self.version_tuple < (10, 11)
        ):
            # The unbound SQL parameter of 10.9/10.10 (jellyfin/jellyfin#17542).
            return web.Response(status=500, text="Error processing request.")
        since = _parse_time(q[since_key]) if since_key else None
        ids = set(q.get("ids", "").split(",")) - {""}
        if parent and parent not in self.model.libraries and self.model.find_show(parent) is None:
            return web.Response(status=404)
        key = tuple(
            sorted(
                (k, v)
                for k, v in q.items()
                if k not in ("startindex", "limit", "enabletotalrecordcount")
            )
        )
        rows = self.cached(key, lambda: self._item_rows(q, types, fields, parent, since, ids))
        return self._page(q, rows)

    def _item_rows(
        self,
        q: dict[str, str],
        types: set[str],
        fields: set[str],
        parent: str | None,
        since: float | None,
        ids: set[str],
    ) -> list[dict[str, Any]]:
        """Every row an ``/Items`` query selects, before paging."""
        libraries = (
            [self.model.libraries[parent]]
            if parent in self.model.libraries
            else ([] if parent else list(self.model.libraries.values()))
        )
        rows: list[dict[str, Any]] = []
        shows = (
            [self.model.show(parent)]
            if parent and self.model.find_show(parent)
            else [s for lib in libraries for s in lib.shows.values()]
        )
        if "Series" in types:
            for show in shows:
                if since is None or (show.saved_at is not None and show.saved_at >= since):
                    rows.append(self._series_row(show, fields))
        if "Episode" in types:
            exclude_virtual = (
                "virtual" in q.get("excludelocationtypes", "").lower()
                or q.get("ismissing") == "false"
            )
            for show in shows:
                for episode in show.episodes.values():
                    if episode.virtual and exclude_virtual:
                        continue
                    if since is not None and (episode.saved_at is None or episode.saved_at < since):
                        continue
                    if ids and episode.id not in ids:
                        continue
                    rows.append(self._episode_row(show, episode, fields))
        return rows

    async def _show_episodes(self, request: web.Request) -> web.Response:
        if (refused := self._gate(request)) is not None:
            return refused
        show = self.model.find_show(request.match_info["sid"])
        if show is None:
            return web.Response(status=404)
        q = {k.lower(): v for k, v in request.query.items()}
        fields = set(q.get("fields", "").split(",")) - {""}
        season_id = q.get("seasonid")
        rows = [
            self._episode_row(show, e, fields)
            for e in show.episodes.values()
            # Placeholders come back unless isMissing=false (TvShowsController).
            if not (e.virtual and q.get("ismissing") == "false")
            and (season_id is None or show.season_ids.get(e.season or 0) == season_id)
        ]
        return self._page(q, rows)

    async def _seasons(self, request: web.Request) -> web.Response:
        if (refused := self._gate(request)) is not None:
            return refused
        show = self.model.find_show(request.match_info["sid"])
        if show is None:
            return web.Response(status=404)
        rows = [
            {
                "Name": f"Season {number}",
                "Id": season_id,
                "ServerId": self.server_id,
                "Type": "Season",
                "IsFolder": True,
                "IndexNumber": number,
                "SeriesId": show.id,
                "SeriesName": show.title,
            }
            for number, season_id in sorted(show.season_ids.items())
        ]
        return self._page({}, rows)

    def _page(self, q: dict[str, str], rows: list[dict[str, Any]]) -> web.Response:
        start = int(q.get("startindex", "0"))
        limit = int(q["limit"]) if "limit" in q else None
        if limit is not None and self.page_cap is not None:
            limit = min(limit, self.page_cap)
        page = rows[start:] if limit is None else rows[start : start + limit]
        total = (
            len(rows) if q.get("enabletotalrecordcount", "true").lower() != "false" else len(page)
        )
        return web.json_response({"Items": page, "TotalRecordCount": total, "StartIndex": start})

    # -- rows --------------------------------------------------------------------------------

    def _series_row(self, show: SimShow, fields: set[str]) -> dict[str, Any]:
        real = show.real_episodes()
        row: dict[str, Any] = {
            "Name": show.title,
            "ServerId": self.server_id,
            "Id": show.id,
            "IsFolder": True,
            "Type": "Series",
            "Status": "Continuing",
            "ProductionYear": show.year,
            "LocationType": "FileSystem",
            "UserData": {
                "UnplayedItemCount": sum(1 for e in real if not e.watched),
                "PlayCount": 0,
                "Played": all(e.watched for e in real) and bool(real),
                "Key": show.id,
            },
        }
        if "RecursiveItemCount" in fields:
            row["RecursiveItemCount"] = len(real)
        if "ChildCount" in fields:
            row["ChildCount"] = len(show.season_ids)
        if "Etag" in fields:
            row["Etag"] = _etag(show.saved_at)
        if "DateCreated" in fields:
            row["DateCreated"] = _date(show.added_at)
        if "DateLastMediaAdded" in fields:
            row["DateLastMediaAdded"] = _date(self._series_media_added.get(show.id))
        return row

    def _episode_row(self, show: SimShow, episode: SimEpisode, fields: set[str]) -> dict[str, Any]:
        season_id = show.season_ids.get(episode.season) if episode.season is not None else None
        row: dict[str, Any] = {
            "Name": episode.title,
            "ServerId": self.server_id,
            "Id": episode.id,
            "IsFolder": False,
            "Type": "Episode",
            "SeriesName": show.title,
            "SeriesId": show.id,
            "SeasonId": season_id or show.id,
            "SeasonName": f"Season {episode.season}" if episode.season is not None else "",
            "LocationType": "Virtual" if episode.virtual else "FileSystem",
            "MediaType": "Video",
            "ImageTags": {"Primary": _etag(episode.saved_at)},
            "RunTimeTicks": episode.duration_ms * 10_000,
            "UserData": {
                "PlaybackPositionTicks": 0,
                "PlayCount": episode.view_count,
                "IsFavorite": False,
                "Played": episode.watched,
                "Key": episode.guid,
                "ItemId": "00000000000000000000000000000000",
            },
        }
        if episode.number is not None:
            row["IndexNumber"] = episode.number
        if episode.season is not None:
            row["ParentIndexNumber"] = episode.season
        if episode.air_date:
            row["PremiereDate"] = episode.air_date + "T00:00:00.0000000Z"
        if episode.last_viewed_at is not None:
            row["UserData"]["LastPlayedDate"] = _date(episode.last_viewed_at)[:23] + "Z"
        if "DateCreated" in fields:
            row["DateCreated"] = _date(episode.file_created_at or episode.added_at)
        if "Etag" in fields:
            row["Etag"] = _etag(episode.saved_at)
        if "ParentId" in fields:
            row["ParentId"] = season_id
        return row


def _parse_time(value: str) -> float:
    """``2026-09-01T10:00:00Z``; a value without offset is server-local (UTC here)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
