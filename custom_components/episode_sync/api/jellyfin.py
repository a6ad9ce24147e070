"""Async client for the Jellyfin HTTP API.

Built on the behaviour documented in the project's Jellyfin notes
(docs/jellyfin-api.md):

- one DeviceId per config entry, made once in the config flow: a new login
  with the same DeviceId retires that device's older tokens, so the client
  signs in only on reauth, never at every start (§1);
- the token travels in ``Authorization: MediaBrowser …, Token="…"``, the only
  scheme Jellyfin 12 still accepts by default (§1 legacy mode);
- the delta filter is version-gated: ``MinDateLastSaved`` alone is broken
  before 10.11 (unbound SQL parameter), ``MinDateLastSavedForUser`` works on
  every version and never looks at user data (§4.4, jellyfin/jellyfin#17542);
- virtual (missing) episodes are excluded everywhere (§2, §3);
- ``DateCreated`` is the file's birth time, so the engine does not trust it as
  "added" (``trusts_added_at = False``, §4.1);
- ids are opaque strings; "0001-01-01…" means unset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from .errors import (
    MediaServerAuthError,
    MediaServerForbiddenError,
    MediaServerNotFoundError,
    MediaServerProtocolError,
    MediaServerUnavailableError,
    WrongServerError,
)
from .http import HttpClient, objects, to_int, to_seconds
from .images import MediaImage, media_image
from .models import Episode, EpisodeRow, Library, ServerInfo, ServerKind, Show, episode_row
from .paging import PARSE_STEP, Page, fetch_all
from .push import PushTarget, websocket_url

CLIENT_NAME = "Home Assistant"
DEVICE_NAME = "Episode Sync"
SERIES_PAGE_SIZE = 1000
#: Below this version ``MinDateLastSaved`` alone fails; use the ForUser variant.
DELTA_FIX_VERSION = (10, 11)


@dataclass(frozen=True, slots=True, kw_only=True)
class JellyfinLogin:
    """What ``AuthenticateByName`` gives back."""

    access_token: str
    user_id: str
    server_id: str
    user_name: str


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _timestamp(value: Any) -> int | None:
    """Epoch seconds of a Jellyfin date; None for missing or "0001-01-01…"."""
    if not value or not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


class JellyfinClient(HttpClient):
    """One Jellyfin server, reached as one user."""

    has_library_markers = False
    trusts_added_at = False

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        device_id: str,
        token: str | None = None,
        user_id: str | None = None,
        verify_ssl: bool = True,
        timeout: float | None = None,
        page_size: int = 500,
        max_concurrency: int = 5,
        client_version: str = "1.0.0",
    ) -> None:
        """Bind to a server; the session is Home Assistant's shared one."""
        self._connect(session, url, server="Jellyfin", verify_ssl=verify_ssl, timeout=timeout)
        self._device_id = device_id
        self.token = token
        self.user_id = user_id
        self.page_size = page_size
        #: Pages of one listing fetched at once once the total is known.
        self._concurrency = max_concurrency
        self._client_version = client_version
        self.version: tuple[int, ...] | None = None

    # -- transport ------------------------------------------------------------------

    def authorization_header(self) -> str:
        """The ``Authorization: MediaBrowser …`` value (values URL-encoded, §1)."""
        fields = {
            "Client": CLIENT_NAME,
            "Device": DEVICE_NAME,
            "DeviceId": self._device_id,
            "Version": self._client_version,
        }
        if self.token:
            fields["Token"] = self.token
        return "MediaBrowser " + ", ".join(
            f'{key}="{quote(value, safe="")}"' for key, value in fields.items()
        )

    def push_target(self) -> PushTarget:
        """The ``/socket`` (docs: jellyfin §6), the token in ``Authorization``, not the URL."""
        return PushTarget(
            url=websocket_url(self._http.url) + "/socket",
            headers={"Authorization": self.authorization_header()},
            ssl=self._verify_ssl,
        )

    async def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request, its JSON answer parsed."""
        payload = await self._http.request(
            method,
            path,
            headers={"Accept": "application/json", "Authorization": self.authorization_header()},
            params=params,
            json=body,
        )
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as err:
            raise MediaServerProtocolError(f"Jellyfin sent malformed JSON for {path}") from err

    async def _items[T](
        self,
        path: str,
        params: Mapping[str, str],
        parse: Callable[[list[dict[str, Any]]], Awaitable[list[T]]],
        *,
        page_size: int | None = None,
    ) -> list[T]:
        """Every item of a QueryResult listing.

        Only the first page asks for the total (the count query costs the
        server); the others follow at the stride the server really serves.
        """

        async def page(start: int, size: int) -> Page[T]:
            first = start == 0
            reply = await self._request(
                "GET",
                path,
                {
                    **params,
                    "StartIndex": str(start),
                    "Limit": str(size),
                    "EnableTotalRecordCount": "true" if first else "false",
                },
            )
            if not isinstance(reply, dict):
                raise MediaServerProtocolError(f"Jellyfin sent no Items list for {path}")
            rows = objects(reply.get("Items"), f"Jellyfin's Items for {path}")
            total = reply.get("TotalRecordCount") if first else None
            return Page(await parse(rows), len(rows), total if isinstance(total, int) else None)

        return await fetch_all(
            page, page_size or self.page_size, self._concurrency, page_while_full=True
        )

    def _user(self) -> str:
        if not self.user_id:
            raise MediaServerAuthError("not signed in")
        return self.user_id

    async def image(self, item: Show | Episode) -> MediaImage:
        """The item's primary image: a series' poster, an episode's still or its series' poster.

        Listings carry no image data, so whether an episode has a still is
        found out here. Asked for in the listings (only the Primary tag), it
        added about 140 bytes and two dictionaries to every row, and that
        set off a full pass of the garbage collector (150 ms on the loop) in
        a 100,000-episode full sync (``script/bench``). Without a still (a
        404), the series' poster stands in, as Jellyfin's own web client
        falls back to the series' image for an episode without one
        (jellyfin-web ``cardBuilder``), so a card never shows a broken image.
        """
        try:
            return await self._primary_image(item.id)
        except MediaServerNotFoundError:
            if isinstance(item, Show):
                raise
        return await self._primary_image(item.show_id)

    async def _primary_image(self, item_id: str) -> MediaImage:
        path = f"/Items/{quote(item_id, safe='')}/Images/Primary"
        body = await self._images.request(
            "GET",
            path,
            headers={"Accept": "image/*", "Authorization": self.authorization_header()},
        )
        return media_image(body, path)

    @staticmethod
    def image_version(item: Show | Episode) -> str | None:
        """Every item has a primary-image path (see ``image``); no version.

        The mirror keeps no image tags (listings ask ``EnableImages=false``).
        """
        return ""

    # -- identity ---------------------------------------------------------------------

    async def public_info(self) -> ServerInfo:
        """Check that the URL is a Jellyfin server (no auth needed); remember its version."""
        try:
            info = await self._request("GET", "/System/Info/Public")
        except (
            MediaServerProtocolError,
            MediaServerNotFoundError,
            MediaServerAuthError,
            MediaServerForbiddenError,  # a public route refused: something else answers
        ) as err:
            raise WrongServerError("the URL does not answer like a Jellyfin server") from err
        if not isinstance(info, dict) or "Jellyfin" not in str(info.get("ProductName", "")):
            raise WrongServerError("the URL does not answer like a Jellyfin server")
        try:
            self.version = _version(str(info["Version"]))
            return ServerInfo(
                kind=ServerKind.JELLYFIN,
                server_id=str(info["Id"]),
                name=str(info.get("ServerName") or "Jellyfin"),
                version=str(info["Version"]),
            )
        except KeyError as err:
            raise WrongServerError("the server sent no Id or Version") from err

    async def server_info(self) -> ServerInfo:
        """The server's identity (public information)."""
        return await self.public_info()

    async def login(self, username: str, password: str) -> JellyfinLogin:
        """Sign in once; keeps the token and user id for the following calls."""
        self.token = None
        reply = await self._request(
            "POST", "/Users/AuthenticateByName", body={"Username": username, "Pw": password}
        )
        try:
            login = JellyfinLogin(
                access_token=str(reply["AccessToken"]),
                user_id=str(reply["User"]["Id"]),
                server_id=str(reply.get("ServerId") or reply["User"]["ServerId"]),
                user_name=str(reply["User"].get("Name", username)),
            )
        except (KeyError, TypeError) as err:
            raise MediaServerProtocolError("Jellyfin sent an incomplete login reply") from err
        self.token, self.user_id = login.access_token, login.user_id
        return login

    # -- Backend protocol ---------------------------------------------------------------

    async def libraries(self) -> list[Library]:
        """The user's TV libraries."""
        views = await self._request("GET", f"/Users/{self._user()}/Views")
        if not isinstance(views, dict):
            raise MediaServerProtocolError("Jellyfin sent no Items list for the views")
        items = objects(views.get("Items"), "Jellyfin's views")
        tv = [item for item in items if item.get("CollectionType") == "tvshows"]
        if any("Id" not in item for item in tv):
            # Never read as "this library is gone": that would drop its mirror.
            raise MediaServerProtocolError("Jellyfin sent a TV library without Id")
        return [
            Library(id=str(item["Id"]), title=str(item.get("Name") or item["Id"])) for item in tv
        ]

    async def shows(self, library_id: str) -> list[Show]:
        """Every series of a library with its episode and unplayed counts.

        A library gone from the server answers 400, as any unknown ParentId
        does (the server throws "Invalid parent id", and its answer's text is
        a generic one): the library list tells a gone library from a bad
        request, and a gone one is ``MediaServerNotFoundError``.
        """
        try:
            return await self._items(
                "/Items",
                {
                    "userId": self._user(),
                    "ParentId": library_id,
                    "IncludeItemTypes": "Series",
                    "Recursive": "true",
                    "Fields": "Etag,RecursiveItemCount",
                    "EnableUserData": "true",
                    "EnableImages": "false",
                },
                lambda items: _series(items, library_id),
                # Series rows are small: one page per library keeps an unchanged
                # sync at one request per library (docs: jellyfin §9 step 1).
                page_size=SERIES_PAGE_SIZE,
            )
        except MediaServerProtocolError as err:
            if err.status == 400 and all(lib.id != library_id for lib in await self.libraries()):
                raise MediaServerNotFoundError(f"Jellyfin has no library {library_id}") from err
            raise

    def _episode_params(self) -> dict[str, str]:
        return {
            "userId": self._user(),
            "IncludeItemTypes": "Episode",
            "Recursive": "true",
            "ExcludeLocationTypes": "Virtual",
            "Fields": "DateCreated",
            "EnableUserData": "true",
            "EnableImages": "false",
        }

    async def episodes(self, library_id: str) -> list[EpisodeRow]:
        """Every real episode of a library, paged library-wide (no season walk), as mirror rows."""
        return await self._items(
            "/Items",
            {**self._episode_params(), "ParentId": library_id},
            lambda items: _episodes(items, library_id),
        )

    async def show_episodes(self, library_id: str, show_id: str) -> list[EpisodeRow]:
        """Every real episode of one series (``isMissing=false`` drops placeholders)."""
        return await self._items(
            f"/Shows/{show_id}/Episodes",
            {
                "userId": self._user(),
                "isMissing": "false",
                "Fields": "DateCreated",
                "EnableUserData": "true",
                "EnableImages": "false",
            },
            lambda items: _episodes(items, library_id),
        )

    async def changed_episodes(self, library_ids: Sequence[str], since: int) -> list[EpisodeRow]:
        """Episodes saved at or after server time ``since``: one query for the server.

        The answer spans every library; the engine places episodes by series.
        The filter's name depends on the version, read once per client: a
        server rolled back since (10.11 to 10.10 after a failed upgrade)
        answers the newer name with a 500, so on a 500 the version is read
        again, and the query asked again only when it changed.
        """
        if self.version is None:
            await self.public_info()
        known = self.version
        try:
            return await self._changed_since(since)
        except MediaServerUnavailableError as err:
            if err.status != 500:
                raise
            await self.public_info()
            if self.version == known:
                raise
        return await self._changed_since(since)

    async def _changed_since(self, since: int) -> list[EpisodeRow]:
        assert self.version is not None
        name = (
            "MinDateLastSaved" if self.version >= DELTA_FIX_VERSION else "MinDateLastSavedForUser"
        )
        stamp = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return await self._items(
            "/Items", {**self._episode_params(), name: stamp}, lambda items: _episodes(items, "")
        )


async def _series(items: list[dict[str, Any]], library_id: str) -> list[Show]:
    """Parse series rows with their episode and watched counts."""
    shows = []
    for item in items:
        try:
            # Filled only for a user with user data on (docs: jellyfin §3): read
            # as 0 it would make every series look emptied, so it is required.
            total = int(item["RecursiveItemCount"])
            unplayed = int((item.get("UserData") or {}).get("UnplayedItemCount", total))
            shows.append(
                Show(
                    id=str(item["Id"]),
                    library_id=library_id,
                    title=str(item.get("Name", "")),
                    episode_count=total,
                    watched_count=max(0, total - unplayed),
                    etag=str(item["Etag"]) if item.get("Etag") else None,
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise MediaServerProtocolError(f"Jellyfin sent a bad series: {err!r}") from err
    return shows


async def _episodes(items: list[dict[str, Any]], library_id: str) -> list[EpisodeRow]:
    """Parse episode rows, handing the event loop back every ``PARSE_STEP`` rows."""
    episodes: list[EpisodeRow] = []
    for index, item in enumerate(items):
        if index % PARSE_STEP == PARSE_STEP - 1:
            await asyncio.sleep(0)
        if item.get("Type", "Episode") != "Episode" or item.get("LocationType") == "Virtual":
            continue
        try:
            premiere = item.get("PremiereDate")
            episodes.append(
                episode_row(
                    id=str(item["Id"]),
                    show_id=str(item["SeriesId"]),
                    library_id=library_id,
                    season=to_int(item.get("ParentIndexNumber")),
                    number=to_int(item.get("IndexNumber")),
                    title=str(item.get("Name", "")),
                    air_date=premiere[:10]
                    if isinstance(premiere, str) and not premiere.startswith("0001")
                    else None,
                    added_at=_timestamp(item.get("DateCreated")) or 0,
                    watched=bool((item.get("UserData") or {}).get("Played", False)),
                    # RunTimeTicks are 100 ns units (.NET ticks).
                    duration=to_seconds(item.get("RunTimeTicks"), 10_000_000),
                )
            )
        except (KeyError, TypeError) as err:
            raise MediaServerProtocolError(f"Jellyfin sent an incomplete episode: {err!r}") from err
    return episodes
