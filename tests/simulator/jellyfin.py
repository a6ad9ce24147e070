"""A Jellyfin server simulator (aiohttp) for tests, script/develop and script/bench.

Implements the simulator checklist of the project's Jellyfin notes
(docs/jellyfin-api.md §10) for what the integration uses:

1. version modes 10.8, 10.10, 10.11 and 12.0, reported by ``/System/Info/Public``;
2. auth parsing: ``MediaBrowser`` scheme in any case, ``Key="value"`` pairs,
   URL-decoded, ``?ApiKey=`` always; ``X-Emby-Token``, ``X-Emby-Authorization``,
   ``api_key`` and the ``Emby`` scheme only in legacy mode (on for 10.x, off
   for 12.0: JF commit a6ae68433a);
3. login: 400 without Client/Device/DeviceId/Version, 401 ``text/plain``
   "Error processing request." on bad credentials, and a new login by the same
   user and DeviceId revokes the older tokens (SessionManager);
4. a bad or revoked token: 401 with an empty body; 503 + Retry-After while
   "starting up" (10.11+); ``/Items`` without ``userId``: 400 "userId is
   required" for an API key (10.9+) and for everyone on 10.8;
   ``/Items/Latest`` and ``/Shows/NextUp`` without a user: 404;
5. API keys (``create_api_key``, the one set ``api_keys`` the HTTP routes and
   the socket both read): no user, so ``RecursiveItemCount`` and
   ``UserData`` only with ``userId``; ``/Shows/{id}/Episodes`` and
   ``/Shows/{id}/Seasons`` list virtual items unless ``isMissing=false`` (in
   any case; for users too while ``display_missing_episodes``, the
   pessimistic default);
6. wire format: 32-hex ids, 7-digit fractional ``Z`` dates, "0001-01-01…" for
   unset, case-insensitive query names and enum values, lists as commas or
   repeated names, PascalCase keys;
7. QueryResult with ``StartIndex`` echoed; ``Limit=0`` gives [] and the true
   total; ``EnableTotalRecordCount=false`` makes the total the page length;
   an optional page cap serves fewer items than asked; ``/Items/Latest`` a
   bare array;
8. fields gating: DateCreated, Etag, Path, ProviderIds, Overview, ParentId,
   ChildCount, RecursiveItemCount, DateLastMediaAdded only when asked;
   DateLastSaved never;
9. save model: a hidden DateLastSaved, NULL until the first refresh
   (``first_refresh_delay``), set again on metadata edits and file
   replacements (``model.replace_file``, which also sets DateCreated again,
   §4.1), never on played toggles; ``Etag`` = md5 of its ticks;
10. delta filters: 10.11/12.0: both parameters mean DateLastSaved >= T (NULL
    excluded); 10.9/10.10: ``MinDateLastSaved`` alone answers 500 (the unbound
    SQL parameter of SqliteItemRepository, jellyfin/jellyfin#17542), on 10.8 it
    finds nothing, and with both given the ForUser value is the bound (both
    SQL clauses use its placeholder); the ForUser variant works everywhere;
11. DateCreated is the file's birth time, chosen by the test;
12. series: RecursiveItemCount (real episodes), UserData.UnplayedItemCount,
    ChildCount (seasons), DateLastMediaAdded; re-saved (new Etag) only when
    DateLastMediaAdded moves or the series itself is edited (``model.edit_show``);
13. virtual episodes never count; ``ExcludeLocationTypes=Virtual``,
    ``LocationTypes=…`` (ItemsController's IsVirtualItem rule) and
    ``IsMissing=false`` drop them; ``/Shows/Upcoming`` includes them;
14. deletion removes the row (no delta query reports it);
15. the HTTP ``Date`` header follows the simulated clock (SimServer);
16. routes ``/Users/{uid}/Views``, ``/UserViews`` (10.9+), ``/Items`` and
    ``/Users/{uid}/Items`` (series, seasons and episodes; direct children of
    ``ParentId`` unless ``Recursive=true``, the libraries without a parent;
    every kind without ``IncludeItemTypes``), ``/Shows/{id}/Episodes``
    (``seasonId``/``season``), ``/Shows/{id}/Seasons`` (never paged),
    ``/Items/{id}/Images/Primary``, ``/Items/Latest`` (by DateCreated, grouped
    into series, played hidden), ``/Shows/NextUp``, ``/Shows/Upcoming``
    (PremiereDate from yesterday on); the ``/emby`` prefix up to 10.11, 404 on 12.0;
18. per-route request counters (``count_by_route``) and the model's mutations
    as hooks for scan, edit, delete and play.

The websocket (item 17) is tests/simulator/jellyfin_push.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
import hashlib
import itertools
import json
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .common import SimServer
from .jellyfin_push import JellyfinPush
from .library import SimClock, SimEpisode, SimLibraryModel, SimShow

NEVER = "0001-01-01T00:00:00.0000000Z"
#: A 1x1 PNG: enough to prove the bytes arrive.
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
_TICKS_AT_EPOCH = 621_355_968_000_000_000
#: What an ``/Items`` parent holds: series, (series, season number), (series, episode),
#: each produced lazily (a series listing never walks 100,000 episodes).
type _Selection = tuple[
    Iterable[SimShow], Iterable[tuple[SimShow, int]], Iterable[tuple[SimShow, SimEpisode]]
]


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
        utc_offset: float = 2 * 3600.0,
    ) -> None:
        """Create the server; ``model.generate(...)`` fills it."""
        self.version = version
        self.users = dict(users if users is not None else {"alice": "secret"})
        self.name = name
        self.server_id = server_id or hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()
        self.page_cap = page_cap
        self.legacy_auth = self.version_tuple < (12, 0) if legacy_auth is None else legacy_auth
        self.first_refresh_delay = first_refresh_delay
        self.starting_up = starting_up
        #: The server's time zone, seconds east of UTC: a date sent without an
        #: offset is read in it (docs: jellyfin §2, checklist 10). Not UTC by
        #: default, so that a client forgetting the ``Z`` fails its tests.
        self.utc_offset = utc_offset
        self._counter = itertools.count(1)
        self.user_ids = {user: self._new_id() for user in self.users}
        #: token -> (user id, device id)
        self.tokens: dict[str, tuple[str, str]] = {}
        #: The address discovery announces (``PublishedServerUrl``); None: the one
        #: served on. In a container without it, the container's own address.
        self.published_url: str | None = None
        #: Admin-created API keys: authenticated, but no user (CustomAuthenticationHandler).
        self.api_keys: set[str] = set()
        #: Users whose "allow access from all devices" is off: user -> the
        #: DeviceIds they may sign in from. Any other device's sign-in is a
        #: SecurityException, 403 (SessionManager.AuthenticateNewSessionInternal).
        self.allowed_devices: dict[str, set[str]] = {}
        #: Users see missing (virtual) episodes in /Shows/{id}/Episodes unless
        #: isMissing=false, as with DisplayMissingEpisodes on (pessimistic;
        #: API keys always do, TvShowsController).
        self.display_missing_episodes = True
        #: The user setting HidePlayedInLatest (Jellyfin's default: on).
        self.hide_played_in_latest = True
        #: ``/Items`` with a library ``ParentId`` and ``IncludeItemTypes`` but
        #: no ``Recursive=true``: the direct children only (default, the
        #: released ItemsController), or recursive as HEAD does (docs:
        #: jellyfin §2 "do not rely on that").
        self.library_types_imply_recursive = False
        self._pending: list[tuple[float, SimEpisode]] = []
        #: The ``/socket`` websocket (tests/simulator/jellyfin_push.py).
        self.push = JellyfinPush(self)
        super().__init__(clock=clock, latency=latency)
        self.model = SimLibraryModel(
            clock=self.clock,
            id_factory=self._new_id,
            on_change=self._on_change,
            before_change=self._before_change,
        )
        self.model.add_library(title="Movies", kind="movies")
        #: Series DateLastMediaAdded as last saved (the series row's own save).
        self._series_media_added: dict[str, int | None] = {}

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """Major and minor version, what the behaviour switches compare."""
        return tuple(int(p) for p in self.version.split(".")[:2])

    # -- auto discovery -----------------------------------------------------------------

    def discovery_answer(self, probe: bytes) -> bytes | None:
        """The ``ServerDiscoveryInfo`` answer to ``who is JellyfinServer?`` (UdpServer.cs).

        The server matches the text case-insensitively and answers with its
        published address.
        """
        if b"who is jellyfinserver?" not in probe.lower():
            return None
        address = self.published_url or self.url
        info = {"Address": address, "Id": self.server_id, "Name": self.name}
        return json.dumps({**info, "EndpointAddress": None}).encode()

    # -- ids, saves --------------------------------------------------------------------

    def _new_id(self) -> str:
        return hashlib.md5(
            f"{self.name}-{next(self._counter)}".encode(), usedforsecurity=False
        ).hexdigest()

    def _on_change(self, kind: str, library_id: str, item: object) -> None:
        self.invalidate()
        self.push.on_change(kind, library_id, item)
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
        # Played toggles are user data: they never save the series (§4.5).
        if kind != "watched" and (show := self.model.find_show(item.show_id)) is not None:
            self._resave_series(show)

    def _before_change(self, kind: str, show: SimShow) -> None:
        # Record the series' DateLastMediaAdded as it stands before the change
        # (generated series have none recorded until then).
        self._media_added(show)

    def _refresh_pending(self) -> None:
        now = self.clock.now()
        for due, episode in list(self._pending):
            if due <= now:
                self.invalidate()
                episode.saved_at = due
                self._pending.remove((due, episode))

    @staticmethod
    def _newest_file(episodes: list[SimEpisode]) -> int | None:
        return max((e.file_created_at or e.added_at for e in episodes), default=None)

    def _media_added(self, show: SimShow) -> int | None:
        """The series' DateLastMediaAdded as last saved (generated shows: their newest file)."""
        if show.id not in self._series_media_added:
            self._series_media_added[show.id] = self._newest_file(show.real_episodes())
        return self._series_media_added[show.id]

    def _resave_series(self, show: SimShow) -> None:
        """A series is saved again only when its DateLastMediaAdded moves (§4.6).

        The value from before the change was recorded by ``_before_change``.
        """
        latest = self._newest_file(show.real_episodes())
        if self._media_added(show) != latest:
            self._series_media_added[show.id] = latest
            show.saved_at = self.clock.now()

    def create_api_key(self) -> str:
        """An admin-created API key: valid everywhere, but carries no user."""
        key = self._new_id()
        self.api_keys.add(key)
        return key

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

    def _is_api_key(self, request: web.Request) -> bool:
        return self._token(request) in self.api_keys

    def _request_user(self, request: web.Request, q: dict[str, str]) -> str | None:
        """The user a call runs as: ``userId=``, the path's user, else the token's.

        An API key has no user of its own, and any user id may be passed with
        it (RequestHelpers.GetUserId). An unknown id is no user.
        """
        wanted = q.get("userid") or request.match_info.get("uid")
        if wanted is not None:
            return wanted if wanted in self.user_ids.values() else None
        return self._user(request)

    # -- routes -----------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        """Add the routes, with and without the legacy ``/emby`` prefix."""
        for prefix in ("", "/emby"):
            app.router.add_get(prefix + "/System/Info/Public", self._public_info)
            app.router.add_post(prefix + "/Users/AuthenticateByName", self._login)
            app.router.add_get(prefix + "/Users/{uid}/Views", self._views)
            app.router.add_get(prefix + "/UserViews", self._views)
            app.router.add_get(prefix + "/Items", self._items)
            app.router.add_get(prefix + "/Items/Latest", self._latest)
            app.router.add_get(prefix + "/Users/{uid}/Items/Latest", self._latest)
            app.router.add_get(prefix + "/Shows/NextUp", self._next_up)
            app.router.add_get(prefix + "/Shows/Upcoming", self._upcoming)
            app.router.add_get(prefix + "/Users/{uid}/Items", self._items)
            app.router.add_get(prefix + "/Shows/{sid}/Episodes", self._show_episodes)
            app.router.add_get(prefix + "/Shows/{sid}/Seasons", self._seasons)
            app.router.add_get(prefix + "/Items/{iid}/Images/Primary", self._primary_image)
        app.router.add_get("/socket", self.push.handler)
        # aiohttp 3.11 (HA 2025.4) types the signal oddly; 3.12+ accepts it as is.
        app.on_shutdown.append(self.push.shutdown)  # type: ignore[arg-type,unused-ignore]

    def _gate(self, request: web.Request, *, auth: bool = True) -> web.Response | None:
        if request.path.startswith("/emby/") and self.version_tuple >= (12, 0):
            return web.Response(status=404)
        if self.starting_up and self.version_tuple >= (10, 11):
            return web.Response(status=503, headers={"Retry-After": "5"})
        if auth and self._user(request) is None and not self._is_api_key(request):
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
        if device not in self.allowed_devices.get(user, {device}):
            return web.Response(status=403, text="Error processing request.")
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
        if self._request_user(request, _query(request)) is None:
            return web.Response(status=404)  # an API key without userId: no such user
        items = self.view_rows()
        return web.json_response({"Items": items, "TotalRecordCount": len(items), "StartIndex": 0})

    def view_rows(self) -> list[dict[str, Any]]:
        """The libraries as the user's root folder lists them (CollectionFolders)."""
        return [
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

    # -- item listings ------------------------------------------------------------------------

    def _delta_bound(self, q: dict[str, str]) -> float | web.Response | None:
        """The ``DateLastSaved >= T`` bound of a delta query, or the answer that replaces it.

        docs: jellyfin §4.4 and checklist 10. 10.11+ (EF Core): both names
        mean ``DateLastSaved >= T``, so both given means both bounds. Before
        (SqliteItemRepository 10.7.7-10.10.7) each branch emits the
        placeholder ``@MinDateLastSavedForUser`` and the MinDateLastSaved one
        binds ``@MinDateLastSaved``: with both given, both clauses read the
        ForUser value (the other bind finds no placeholder); alone, the
        placeholder stays unbound: an empty result on 10.8, a 500 on
        10.9/10.10 (the likely outcomes, UNCONFIRMED; jellyfin/jellyfin#17542).
        """
        plain, for_user = q.get("mindatelastsaved"), q.get("mindatelastsavedforuser")
        if self.version_tuple >= (10, 11):
            bounds = [_parse_time(v, self.utc_offset) for v in (plain, for_user) if v is not None]
            return max(bounds) if bounds else None
        if for_user is not None:
            return _parse_time(for_user, self.utc_offset)
        if plain is None:
            return None
        if self.version_tuple < (10, 9):
            return self._page(q, [])
        return web.Response(status=500, text="Error processing request.")

    async def _items(self, request: web.Request) -> web.Response:
        """``/Items`` and ``/Users/{uid}/Items`` (JF Jellyfin.Api/Controllers/ItemsController.cs).

        Without ``Recursive=true`` a ``ParentId`` gives its direct children
        only (a library: its series; a series: its seasons; a season: its
        episodes), and no ``ParentId`` gives the user's root folder, whose
        children are the libraries, whatever ``IncludeItemTypes`` says
        (``folder.GetChildren``, unpaged). ``Ids`` without a parent finds
        items anywhere. Without ``IncludeItemTypes`` every kind is listed.
        docs: jellyfin §2 "Recursive=true: Always send it".
        """
        if (refused := self._gate(request)) is not None:
            return refused
        self._refresh_pending()
        q = _query(request)
        # 10.8 always needs a user here; 10.9+ only for API keys (ItemsController).
        no_user_given = "userid" not in q and "uid" not in request.match_info
        if no_user_given and (self.version_tuple < (10, 9) or self._is_api_key(request)):
            return web.Response(status=400, text="userId is required")
        user = self._request_user(request, q)
        user_data = user is not None and q.get("enableuserdata", "true").lower() != "false"
        since = self._delta_bound(q)
        if isinstance(since, web.Response):
            return since
        parent = q.get("parentid")
        ids = _csv(q, "ids")
        types = _csv(q, "includeitemtypes")
        recursive = q.get("recursive", "").lower() == "true"
        if (
            not recursive
            and self.library_types_imply_recursive
            and types
            and parent in self.model.libraries
        ):
            recursive = True
        if parent is None and not recursive and not ids:
            # The root folder's children, unfiltered and unpaged (folder.GetChildren).
            views = self.view_rows()
            start = int(q.get("startindex", "0"))
            return web.json_response(
                {"Items": views, "TotalRecordCount": len(views), "StartIndex": start}
            )
        if parent is not None and not self._known_parent(parent):
            # An unknown ParentId is no 404: LibraryManager.GetParentItem throws
            # ArgumentException("Invalid parent id") in 10.8 to 10.11
            # (Emby.Server.Implementations/Library/LibraryManager.cs), which the
            # exception middleware answers 400 with its generic text (docs: jellyfin §1).
            return web.Response(status=400, text="Error processing request.")
        key = (
            *sorted(
                (k, v)
                for k, v in q.items()
                if k not in ("startindex", "limit", "enabletotalrecordcount")
            ),
            ("@user_data", str(user_data)),
            ("@recursive", str(recursive)),
        )
        rows = self.cached(
            key, lambda: self._item_rows(q, parent, recursive, since, ids, types, user_data)
        )
        return self._page(q, rows)

    def _known_parent(self, parent: str) -> bool:
        return (
            parent in self.model.libraries
            or self.model.find_show(parent) is not None
            or self.model.find_season(parent) is not None
        )

    def _select(self, parent: str | None, *, recursive: bool) -> _Selection | None:
        """Series, seasons and episodes under ``parent`` (None: the whole server).

        All descendants with ``recursive``, else the direct children only;
        None for an unknown parent.
        """
        if parent is None or parent in self.model.libraries:
            libraries = (
                list(self.model.libraries.values())
                if parent is None
                else [self.model.libraries[parent]]
            )
            shows = [s for lib in libraries for s in lib.shows.values()]
            if not recursive and parent is not None:
                return shows, (), ()
            return (
                shows,
                ((s, n) for s in shows for n in sorted(s.season_ids)),
                ((s, e) for s in shows for e in s.episodes.values()),
            )
        if (show := self.model.find_show(parent)) is not None:
            return (
                (),
                ((show, n) for n in sorted(show.season_ids)),
                # A series' own children: its seasons, and episodes that have none.
                ((show, e) for e in show.episodes.values() if recursive or e.season is None),
            )
        if (found := self.model.find_season(parent)) is not None:
            show, number = found
            return (), (), ((show, e) for e in show.episodes.values() if e.season == number)
        return None

    def _item_rows(
        self,
        q: dict[str, str],
        parent: str | None,
        recursive: bool,
        since: float | None,
        ids: set[str],
        types: set[str],
        user_data: bool,
    ) -> list[dict[str, Any]]:
        """Every row an ``/Items`` query selects, before paging."""
        # A parent given with Ids is still a parent filter: the Ids path of
        # ItemsController keeps ParentId (direct children unless recursive).
        selected = self._select(parent, recursive=recursive or parent is None)
        assert selected is not None
        shows, seasons, episodes = selected
        fields = _row_fields(q)
        wants_virtual = _virtual_filter(q)

        def keep(item_id: str, saved_at: float | None, virtual: bool) -> bool:
            if ids and item_id not in ids:
                return False
            if since is not None and (saved_at is None or saved_at < since):
                return False
            return all(want is None or virtual == want for want in wants_virtual)

        rows: list[dict[str, Any]] = []
        if not types or "series" in types:
            rows.extend(
                self._series_row(show, fields, user_data)
                for show in shows
                if keep(show.id, show.saved_at, virtual=False)
            )
        if not types or "season" in types:
            rows.extend(
                self._season_row(show, number, fields, user_data)
                for show, number in seasons
                if keep(
                    show.season_ids[number],
                    show.season_saved_at.get(number),
                    virtual=_season_is_virtual(show, number),
                )
            )
        if not types or "episode" in types:
            rows.extend(
                self._episode_row(show, episode, fields, user_data)
                for show, episode in episodes
                if keep(episode.id, episode.saved_at, virtual=episode.virtual)
            )
        return rows

    def _lists_missing(self, request: web.Request, q: dict[str, str], virtual: bool) -> bool:
        """Whether ``/Shows/{id}/Episodes`` or ``/Seasons`` lists a (virtual?) item.

        ``isMissing=true``/``false`` keeps only missing / only real items (any
        case: ASP.NET binds booleans case-insensitively). Without it,
        placeholders come back for API keys and for users with
        DisplayMissingEpisodes (TvShowsController; docs: jellyfin §2, §10 item 5).
        """
        missing = q.get("ismissing", "").lower()
        if missing in ("true", "false"):
            return virtual == (missing == "true")
        return not virtual or self._is_api_key(request) or self.display_missing_episodes

    async def _show_episodes(self, request: web.Request) -> web.Response:
        """``/Shows/{id}/Episodes``: paged by the controller, not the library query.

        TvShowsController.GetEpisodes lists the whole series, then applies
        ``startIndex``/``limit`` itself (``ApplyPaging``) and always answers
        ``TotalRecordCount = episodes.Count``: it takes no
        ``EnableTotalRecordCount``, and no page comes back shorter than asked.
        """
        if (refused := self._gate(request)) is not None:
            return refused
        show = self.model.find_show(request.match_info["sid"])
        if show is None:
            return web.Response(status=404)
        q = _query(request)
        fields = _row_fields(q)
        season: int | None = None
        if (season_id := q.get("seasonid")) is not None:
            found = self.model.find_season(season_id)
            if found is None:
                return web.Response(status=404, text=f"No season exists with Id {season_id}")
            show, season = found
        elif "season" in q:
            season = int(q["season"])
        user_data = (
            self._request_user(request, q) is not None
            and q.get("enableuserdata", "true").lower() != "false"
        )
        rows = [
            self._episode_row(show, e, fields, user_data)
            for e in show.episodes.values()
            if self._lists_missing(request, q, e.virtual) and (season is None or e.season == season)
        ]
        return self._page(q, rows, by_controller=True)

    async def _seasons(self, request: web.Request) -> web.Response:
        """``/Shows/{id}/Seasons``: ``userId``, ``isMissing``, ``isSpecialSeason``, ``Fields``.

        The route takes no ``StartIndex``/``Limit`` (TvShowsController.GetSeasons):
        the whole list comes back whatever paging is asked, ``StartIndex`` 0.
        """
        if (refused := self._gate(request)) is not None:
            return refused
        show = self.model.find_show(request.match_info["sid"])
        if show is None:
            return web.Response(status=404)
        q = _query(request)
        fields = _row_fields(q)
        user_data = (
            self._request_user(request, q) is not None
            and q.get("enableuserdata", "true").lower() != "false"
        )
        special = q.get("isspecialseason", "").lower()
        rows = [
            self._season_row(show, number, fields, user_data)
            for number in sorted(show.season_ids)
            if self._lists_missing(request, q, _season_is_virtual(show, number))
            and (special not in ("true", "false") or (number == 0) == (special == "true"))
        ]
        return web.json_response({"Items": rows, "TotalRecordCount": len(rows), "StartIndex": 0})

    async def _primary_image(self, request: web.Request) -> web.Response:
        # Real servers serve images anonymously; the simulator asks for the
        # token so a test proves the client sends it.
        if (refused := self._gate(request)) is not None:
            return refused
        item_id = request.match_info["iid"]
        found = self.model.find_show(item_id) or self.model.find_episode(item_id)
        if found is None or not found.has_image:
            return web.Response(status=404)
        return web.Response(body=PNG_1X1, content_type="image/png")

    # -- "new episode" routes (docs: jellyfin §7) ---------------------------------------

    def _scope(self, q: dict[str, str], key: str = "parentid") -> list[SimShow]:
        """The shows a ``parentId`` (library or series) or ``seriesId`` selects."""
        parent = q.get(key)
        if parent is None:
            return [s for lib in self.model.libraries.values() for s in lib.shows.values()]
        if parent in self.model.libraries:
            return list(self.model.libraries[parent].shows.values())
        show = self.model.find_show(parent)
        return [show] if show is not None else []

    async def _latest(self, request: web.Request) -> web.Response:
        """``/Items/Latest``: a bare array by DateCreated, grouped into series by default.

        404 without a user; played items hidden when ``isPlayed`` is omitted
        and HidePlayedInLatest is on; ``limit`` defaults to 20 and counts
        groups (JF UserLibraryController.GetLatestMedia, UserViewManager).
        """
        if (refused := self._gate(request)) is not None:
            return refused
        q = _query(request)
        if self._request_user(request, q) is None:
            return web.Response(status=404)
        types = _csv(q, "includeitemtypes")
        fields = _row_fields(q)
        played = q.get("isplayed", "").lower()

        def listed(episode: SimEpisode) -> bool:
            if played:  # an explicit isPlayed wins over HidePlayedInLatest
                return episode.watched == (played == "true")
            return not (self.hide_played_in_latest and episode.watched)

        episodes = [
            (show, e)
            for show in self._scope(q)
            for e in show.real_episodes()
            if (not types or "episode" in types) and listed(e)
        ]
        episodes.sort(key=lambda pair: pair[1].file_created_at or pair[1].added_at, reverse=True)
        limit = int(q.get("limit", "20"))
        # The server fetches the newest ``limit * 2`` items, then folds them into
        # at most ``limit`` groups (UserViewManager.GetItemsForLatestItems).
        groups: dict[str, list[tuple[SimShow, SimEpisode]]] = {}
        for show, episode in episodes[: limit * 2]:
            key = show.id if q.get("groupitems", "true").lower() != "false" else episode.id
            if key not in groups and len(groups) >= limit:
                break
            groups.setdefault(key, []).append((show, episode))
        result: list[dict[str, Any]] = []
        for group in groups.values():
            show, episode = group[0]
            if len(group) == 1:
                result.append(self._episode_row(show, episode, fields))
            else:
                # Several new episodes fold into their series; ChildCount counts them.
                result.append({**self._series_row(show, fields, True), "ChildCount": len(group)})
        return web.json_response(result)

    async def _next_up(self, request: web.Request) -> web.Response:
        """``/Shows/NextUp``: per series in progress, the first unplayed episode after the
        last played one, most recently watched series first (404 without a user)."""
        if (refused := self._gate(request)) is not None:
            return refused
        q = _query(request)
        if self._request_user(request, q) is None:
            return web.Response(status=404)
        fields = _row_fields(q)
        found: list[tuple[int, dict[str, Any]]] = []
        shows = self._scope(q, "seriesid") if "seriesid" in q else self._scope(q)
        for show in shows:
            ordered = sorted(show.real_episodes(), key=lambda e: (e.season or 0, e.number or 0))
            played = [i for i, e in enumerate(ordered) if e.watched]
            if not played:
                continue
            following = [e for e in ordered[played[-1] + 1 :] if not e.watched]
            if following:
                last_seen = max(e.last_viewed_at or 0 for e in ordered if e.watched)
                found.append((last_seen, self._episode_row(show, following[0], fields)))
        found.sort(key=lambda pair: pair[0], reverse=True)
        return self._page(q, [row for _, row in found])

    async def _upcoming(self, request: web.Request) -> web.Response:
        """``/Shows/Upcoming``: episodes premiering from yesterday (UTC) on, by premiere date,
        virtual placeholders included (TvShowsController.GetUpcomingEpisodes:
        ``MinPremiereDate = DateTime.UtcNow.Date.AddDays(-1)``)."""
        if (refused := self._gate(request)) is not None:
            return refused
        q = _query(request)
        user_data = self._request_user(request, q) is not None
        fields = _row_fields(q)
        today = datetime.fromtimestamp(self.clock.now(), UTC).date()
        since = (today - timedelta(days=1)).isoformat()
        pairs = [
            (show, e)
            for show in self._scope(q)
            for e in show.episodes.values()
            if e.deleted_at is None and e.air_date and e.air_date[:10] >= since
        ]
        pairs.sort(key=lambda pair: (pair[1].air_date or "", pair[1].id))
        rows = [self._episode_row(show, e, fields, user_data) for show, e in pairs]
        return self._page(q, rows)

    def _page(
        self, q: dict[str, str], rows: list[dict[str, Any]], *, by_controller: bool = False
    ) -> web.Response:
        """One page of a QueryResult; ``by_controller``: paged as GetEpisodes does."""
        start = int(q.get("startindex", "0"))
        limit = int(q["limit"]) if "limit" in q else None
        if limit is not None and self.page_cap is not None and not by_controller:
            limit = min(limit, self.page_cap)
        page = rows[start:] if limit is None else rows[start : start + limit]
        counted = by_controller or q.get("enabletotalrecordcount", "true").lower() != "false"
        total = len(rows) if counted else len(page)
        return web.json_response({"Items": page, "TotalRecordCount": total, "StartIndex": start})

    # -- rows --------------------------------------------------------------------------------

    def _series_row(self, show: SimShow, fields: set[str], user_data: bool) -> dict[str, Any]:
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
        }
        _add_images(row, show.has_image, _etag(show.saved_at), fields)
        # Counts and user data need a user (Folder.FillUserDataDtoValues): an
        # API key without userId never sees them (docs: jellyfin §3).
        if user_data:
            row["UserData"] = {
                "UnplayedItemCount": sum(1 for e in real if not e.watched),
                "PlayCount": 0,
                "Played": all(e.watched for e in real) and bool(real),
                "Key": show.id,
            }
        if "recursiveitemcount" in fields and user_data:
            row["RecursiveItemCount"] = len(real)
        if "childcount" in fields:
            row["ChildCount"] = len(show.season_ids)
        if "etag" in fields:
            row["Etag"] = _etag(show.saved_at)
        if "datecreated" in fields:
            row["DateCreated"] = _date(show.added_at)
        if "datelastmediaadded" in fields:
            row["DateLastMediaAdded"] = _date(self._media_added(show))
        if "providerids" in fields:
            row["ProviderIds"] = {"Tvdb": str(int(show.id[:7], 16))}
        if "path" in fields:
            row["Path"] = f"/media/tv/{show.title}"
        if "overview" in fields:
            row["Overview"] = f"The story of {show.title}."
        return row

    def _season_row(
        self, show: SimShow, number: int, fields: set[str], user_data: bool
    ) -> dict[str, Any]:
        """A Season: user data with a user, counts and Etag when asked (docs: jellyfin §3)."""
        episodes = [e for e in show.episodes.values() if e.season == number]
        real = [e for e in episodes if not e.virtual and e.deleted_at is None]
        saved_at = show.season_saved_at.get(number)
        row: dict[str, Any] = {
            "Name": "Specials" if number == 0 else f"Season {number}",
            "ServerId": self.server_id,
            "Id": show.season_ids[number],
            "IsFolder": True,
            "Type": "Season",
            "IndexNumber": number,
            "SeriesId": show.id,
            "SeriesName": show.title,
            "LocationType": "Virtual" if _season_is_virtual(show, number) else "FileSystem",
        }
        if user_data:
            row["UserData"] = {
                "UnplayedItemCount": sum(1 for e in real if not e.watched),
                "PlayCount": 0,
                "Played": all(e.watched for e in real) and bool(real),
                "Key": f"{show.id}{number:03d}",
            }
        if "recursiveitemcount" in fields and user_data:
            row["RecursiveItemCount"] = len(real)
        if "childcount" in fields:
            row["ChildCount"] = len(episodes)
        if "etag" in fields:
            row["Etag"] = _etag(saved_at)
        if "datecreated" in fields:
            row["DateCreated"] = _date(saved_at)
        if "parentid" in fields:
            row["ParentId"] = show.id
        if "path" in fields:
            row["Path"] = f"/media/tv/{show.title}/Season {number:02d}"
        return row

    def _episode_row(
        self, show: SimShow, episode: SimEpisode, fields: set[str], user_data: bool = True
    ) -> dict[str, Any]:
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
            "RunTimeTicks": episode.duration_ms * 10_000,
        }
        _add_images(row, episode.has_image, _etag(episode.saved_at), fields)
        if user_data:
            row["UserData"] = {
                "PlaybackPositionTicks": 0,
                "PlayCount": episode.view_count,
                "IsFavorite": False,
                "Played": episode.watched,
                "Key": episode.guid,
                "ItemId": "00000000000000000000000000000000",
            }
        if episode.number is not None:
            row["IndexNumber"] = episode.number
        if episode.season is not None:
            row["ParentIndexNumber"] = episode.season
        if episode.air_date:
            row["PremiereDate"] = episode.air_date + "T00:00:00.0000000Z"
        if user_data and episode.last_viewed_at is not None:
            row["UserData"]["LastPlayedDate"] = _date(episode.last_viewed_at)[:23] + "Z"
        if "datecreated" in fields:
            row["DateCreated"] = _date(episode.file_created_at or episode.added_at)
        if "etag" in fields:
            row["Etag"] = _etag(episode.saved_at)
        if "parentid" in fields:
            row["ParentId"] = season_id or show.id
        if "path" in fields:
            row["Path"] = f"/media/tv/{show.title}/S{episode.season or 0:02d}/{episode.id}.mkv"
        if "providerids" in fields:
            row["ProviderIds"] = {"Tvdb": str(int(episode.id[:7], 16))}
        if "overview" in fields:
            row["Overview"] = f"An episode of {show.title}."
        return row


def _season_is_virtual(show: SimShow, number: int) -> bool:
    """A season holding only missing (virtual) episodes is itself a placeholder."""
    episodes = [e for e in show.episodes.values() if e.season == number]
    return bool(episodes) and all(e.virtual for e in episodes)


def _virtual_filter(q: dict[str, str]) -> tuple[bool | None, bool | None]:
    """What ``/Items`` requires of ``IsVirtualItem``: (location filter, ``IsMissing``).

    ItemsController: ``ExcludeLocationTypes`` with ``Virtual`` means real
    items only; then ``LocationTypes`` with 1-3 values means virtual items
    exactly when it names ``Virtual`` (so ``FileSystem,Remote,Offline`` drops
    the placeholders, and ``FileSystem,Virtual`` keeps only them), all four
    filter nothing. ``IsMissing=true/false`` (any case) keeps only missing /
    only real items. docs: jellyfin §2 (``ExcludeLocationTypes`` row), §10 item 13.
    """
    location: bool | None = None
    if "virtual" in _csv(q, "excludelocationtypes"):
        location = False
    wanted = _csv(q, "locationtypes")
    if 0 < len(wanted) < 4:
        location = "virtual" in wanted
    missing = {"true": True, "false": False}.get(q.get("ismissing", "").lower())
    return location, missing


def _query(request: web.Request) -> dict[str, str]:
    """Query names case-insensitive; a repeated name joins its values with commas.

    ASP.NET binds query names case-insensitively and Jellyfin's
    CommaDelimitedCollectionModelBinder takes ``a,b`` as well as ``x=a&x=b``.
    """
    q: dict[str, str] = {}
    for key, value in request.query.items():
        name = key.lower()
        q[name] = f"{q[name]},{value}" if name in q else value
    return q


#: Pseudo-fields ``_row_fields`` adds: the rows carry image tags, and the Primary one.
_IMAGES = "@images"
_PRIMARY = "@primary"
#: A blurhash (the format's own example): Jellyfin sends one beside each tag.
_BLURHASH = "LEHV6nWB2yk8pyo0adR*.7kCMdnj"


def _row_fields(q: dict[str, str]) -> set[str]:
    """The ``Fields`` a listing asked for, plus what its image options let through.

    Jellyfin.Api ``DtoExtensions.AddAdditionalDtoOptions``: ``EnableImages``
    defaults to true, ``ImageTypeLimit`` to no limit, and an empty
    ``EnableImageTypes`` means every type.
    """
    fields = _csv(q, "fields")
    if q.get("enableimages", "true").lower() != "false":
        fields.add(_IMAGES)
        types = _csv(q, "enableimagetypes")
        if int(q.get("imagetypelimit") or 1 << 31) > 0 and (not types or "primary" in types):
            fields.add(_PRIMARY)
    return fields


def _add_images(row: dict[str, Any], has_image: bool, tag: str, fields: set[str]) -> None:
    """An item's image fields as ``DtoService.AttachBasicFields`` writes them.

    ``ImageBlurHashes`` always (empty without images); ``ImageTags`` only
    with images enabled, empty when the item has none of the types asked.
    """
    row["ImageBlurHashes"] = {}
    if _IMAGES in fields:
        row["ImageTags"] = {}
        if has_image and _PRIMARY in fields:
            row["ImageTags"]["Primary"] = tag
            row["ImageBlurHashes"]["Primary"] = {tag: _BLURHASH}


def _csv(q: dict[str, str], name: str) -> set[str]:
    """A comma list parameter, lower-cased (enum values bind case-insensitively)."""
    return {v.strip().lower() for v in q.get(name, "").split(",")} - {""}


def _parse_time(value: str, utc_offset: float) -> float:
    """``2026-09-01T10:00:00Z``; a value without offset is server-local (``.ToUniversalTime()``)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone(timedelta(seconds=utc_offset)))
    return parsed.timestamp()
