"""Async client for the Plex Media Server HTTP API (JSON only).

Built on the behaviour documented in the project's Plex notes (docs/plex-api.md):

- ``Accept: application/json`` on every request, or the server answers XML;
- the token in the ``X-Plex-Token`` header, never in a URL (URLs end up in logs);
- one ``X-Plex-Client-Identifier`` per config entry;
- 401 is decided on the status alone: its body is HTML;
- listings are always paged with both ``X-Plex-Container-Start`` and
  ``-Size`` (Size alone is ignored), looping on ``offset + size < totalSize``
  because the server may return fewer items than asked;
- date filters use ``>>=`` in the query *key* (plain ``>=`` is not a date
  operator); ``updatedAt`` falls back to ``addedAt`` if a server rejects it;
- optional fields are absent, not null, and ids are opaque strings;
- trashed episodes (``deletedAt``: file gone, auto-empty off) are not mirrored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
import hashlib
from typing import Any

import aiohttp
import orjson

from .errors import (
    MediaServerAuthError,
    MediaServerForbiddenError,
    MediaServerNotFoundError,
    MediaServerProtocolError,
    WrongServerError,
)
from .http import HttpClient, objects, to_int, to_seconds
from .images import MediaImage, media_image
from .models import Episode, EpisodeRow, Library, ServerInfo, ServerKind, Show, episode_row
from .paging import PARSE_STEP, Page, fetch_all
from .push import PushTarget, websocket_url

PRODUCT = "Episode Sync"
VERSION = "0.1.0"
#: Show rows are small: larger pages keep the show listing to one request.
SHOW_PAGE_SIZE = 1000
#: plexapi's "light" set (base.py ``_EXCLUDES``): the mirror needs none of these.
_LIGHT = {
    "excludeElements": "Media,Genre,Country,Guid,Collection,Director,Writer,Role,Producer,Similar",
    "excludeFields": "summary,tagline",
    "includeCollections": "0",
    "skipRefresh": "1",
}
TYPE_SHOW = 2
TYPE_EPISODE = 4


def _bool(value: Any) -> bool:
    """Lenient booleans: JSON true/false, 0/1 and "0"/"1" all occur."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true")
    return bool(value)


class PlexClient(HttpClient):
    """One Plex Media Server, reached with a token."""

    has_library_markers = True
    trusts_added_at = True

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        token: str,
        *,
        client_id: str,
        verify_ssl: bool = True,
        timeout: float | None = None,
        page_size: int = 500,
        max_concurrency: int = 5,
    ) -> None:
        """Bind to a server; the session is Home Assistant's shared one."""
        self._connect(session, url, server="Plex", verify_ssl=verify_ssl, timeout=timeout)
        self.token = token
        self._client_id = client_id
        self.page_size = page_size
        #: Pages of one listing fetched at once once the total is known.
        self._concurrency = max_concurrency
        #: Some servers may reject ``updatedAt`` on episodes; then ``addedAt``.
        self._delta_field = "updatedAt"

    # -- transport ------------------------------------------------------------------

    def _headers(self, *, auth: bool = True) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "X-Plex-Client-Identifier": self._client_id,
            "X-Plex-Product": PRODUCT,
            "X-Plex-Version": VERSION,
            "X-Plex-Platform": "Home Assistant",
            "X-Plex-Device-Name": "Home Assistant",
        }
        if auth:
            headers["X-Plex-Token"] = self.token
        return headers

    async def _get(
        self, path: str, params: Mapping[str, str] | None = None, *, auth: bool = True
    ) -> dict[str, Any]:
        """GET a path and return its ``MediaContainer``."""
        body = await self._http.request(
            "GET", path, headers=self._headers(auth=auth), params=params
        )
        if body.lstrip()[:1] == b"<":
            raise MediaServerProtocolError(f"Plex sent XML or HTML for {path}, not JSON")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as err:
            raise MediaServerProtocolError(f"Plex sent malformed JSON for {path}") from err
        container = data.get("MediaContainer") if isinstance(data, dict) else None
        if not isinstance(container, dict):
            raise MediaServerProtocolError(f"Plex sent no MediaContainer for {path}")
        return container

    async def _paged[T](
        self,
        path: str,
        params: Mapping[str, str],
        parse: Callable[[list[dict[str, Any]]], Awaitable[list[T]]],
        *,
        page_size: int | None = None,
    ) -> list[T]:
        """Every ``Metadata`` row of a listing, parsed page by page (docs: plex §3).

        Start and Size are always sent together (Size alone is ignored);
        a missing ``totalSize`` means this page is everything (plexapi).
        """

        async def page(start: int, size: int) -> Page[T]:
            container = await self._get(
                path,
                {
                    **params,
                    "X-Plex-Container-Start": str(start),
                    "X-Plex-Container-Size": str(size),
                },
            )
            rows = objects(container.get("Metadata") or [], f"Plex's Metadata for {path}")
            return Page(await parse(rows), len(rows), to_int(container.get("totalSize")))

        return await fetch_all(page, page_size or self.page_size, self._concurrency)

    async def image(self, item: Show | Episode) -> MediaImage:
        """The item's artwork at its stored ``thumb`` path, fetched with the token.

        The path comes from the server's own listing, never from a caller; a
        missing or non-relative one (an agent's absolute URL) is "no artwork".
        """
        if self.image_version(item) is None or item.thumb is None:
            raise MediaServerNotFoundError(f"Plex has no artwork for {item.id}")
        body = await self._images.request(
            "GET", item.thumb, headers={**self._headers(), "Accept": "image/*"}
        )
        return media_image(body, item.thumb)

    @staticmethod
    def image_version(item: Show | Episode) -> str | None:
        """A short tag of the item's artwork, new when the art changes; None without art.

        The ``thumb`` path ends in the art's update stamp, so its hash changes
        with the art (docs: plex §5).
        """
        if not item.thumb or not item.thumb.startswith("/"):
            return None
        return hashlib.blake2s(item.thumb.encode(), digest_size=4).hexdigest()

    def push_target(self) -> PushTarget:
        """The notification socket (docs: plex §7), the token in a header, not the URL."""
        return PushTarget(
            url=websocket_url(self._http.url) + "/:/websockets/notifications",
            headers=self._headers(),
            ssl=self._verify_ssl,
        )

    # -- identity ---------------------------------------------------------------------

    async def identity(self) -> ServerInfo:
        """Check that the URL is a Plex server, before trusting it with the token.

        ``/identity`` needs no token; where it is refused without one (docs:
        plex §2.1, seen on plex.direct addresses), it is asked once more with
        it, and a refusal then is the token's (``MediaServerAuthError``).
        """
        try:
            try:
                container = await self._get("/identity", auth=False)
            except MediaServerAuthError:
                container = await self._get("/identity")
        except (
            MediaServerProtocolError,
            MediaServerNotFoundError,
            MediaServerForbiddenError,  # Plex answers 401, not 403: something else answers
        ) as err:
            raise WrongServerError("the URL does not answer like a Plex server") from err
        machine = container.get("machineIdentifier")
        if not machine:
            raise WrongServerError("the URL does not answer like a Plex server")
        return ServerInfo(
            kind=ServerKind.PLEX,
            server_id=str(machine),
            name="",
            version=str(container.get("version", "")),
        )

    async def server_info(self) -> ServerInfo:
        """Return the server's identity and name (authenticated ``GET /``)."""
        container = await self._get("/")
        try:
            return ServerInfo(
                kind=ServerKind.PLEX,
                server_id=str(container["machineIdentifier"]),
                name=str(container.get("friendlyName") or "Plex"),
                version=str(container.get("version", "")),
            )
        except KeyError as err:
            raise MediaServerProtocolError("Plex sent no machineIdentifier") from err

    # -- Backend protocol ---------------------------------------------------------------

    async def libraries(self) -> list[Library]:
        """Every TV section with its change markers."""
        container = await self._get("/library/sections")
        libraries = []
        for row in objects(container.get("Directory") or [], "Plex's library sections"):
            if row.get("type") != "show":
                continue
            try:
                key = str(row["key"])
            except KeyError as err:
                raise MediaServerProtocolError("Plex sent a section without key") from err
            marker = ":".join(
                str(row.get(name, ""))
                for name in ("contentChangedAt", "scannedAt", "updatedAt", "uuid")
            )
            libraries.append(
                Library(
                    id=key,
                    title=str(row.get("title") or key),
                    marker=marker,
                    refreshing=_bool(row.get("refreshing")),
                )
            )
        return libraries

    async def shows(self, library_id: str) -> list[Show]:
        """Every show of a section with its leaf counts."""
        return await self._paged(
            f"/library/sections/{library_id}/all",
            {"type": str(TYPE_SHOW), "sort": "id", **_LIGHT},
            lambda rows: _shows(rows, library_id),
            page_size=SHOW_PAGE_SIZE,
        )

    async def episodes(self, library_id: str) -> list[EpisodeRow]:
        """Every episode of a section, as mirror rows: one flat, paged listing (no season walk)."""
        return await self._paged(
            f"/library/sections/{library_id}/all",
            {"type": str(TYPE_EPISODE), "sort": "id", **_LIGHT},
            lambda rows: _episodes(rows, library_id),
        )

    async def show_episodes(self, library_id: str, show_id: str) -> list[EpisodeRow]:
        """Every episode of one show (``allLeaves``)."""
        return await self._paged(
            f"/library/metadata/{show_id}/allLeaves",
            # No file I/O on the server for a metadata path (docs: plex §2.8, §6);
            # a stable order while paging, as for the section listings (docs: plex §3).
            {"sort": "id", **_LIGHT, "checkFiles": "0"},
            lambda rows: _episodes(rows, library_id),
        )

    async def changed_episodes(self, library_ids: Sequence[str], since: int) -> list[EpisodeRow]:
        """Episodes updated at or after server time ``since``, per section."""
        changed: list[EpisodeRow] = []
        for library_id in library_ids:
            changed.extend(await self._delta(library_id, since))
        return changed

    async def _delta(self, library_id: str, since: int) -> list[EpisodeRow]:
        path = f"/library/sections/{library_id}/all"
        while True:
            # The operator belongs to the key: yarl sends ``updatedAt%3E%3E=…``,
            # as plexapi does; plain ``>=`` is no date operator (docs: plex §4).
            params = {"type": str(TYPE_EPISODE), "sort": "id", **_LIGHT}
            params[f"{self._delta_field}>>"] = str(since)
            try:
                return await self._paged(path, params, lambda rows: _episodes(rows, library_id))
            except MediaServerProtocolError as err:
                if err.status != 400 or self._delta_field == "addedAt":
                    raise
                # ``updatedAt`` is not an advertised field: fall back to ``addedAt``
                # and let the show counts catch what it misses (docs: plex §9.4).
                self._delta_field = "addedAt"


async def _shows(rows: list[dict[str, Any]], library_id: str) -> list[Show]:
    """Parse show rows, skipping anything that is not a show."""
    return [_show(row, library_id) for row in rows if row.get("type", "show") == "show"]


def _show(row: Mapping[str, Any], library_id: str) -> Show:
    try:
        return Show(
            id=str(row["ratingKey"]),
            library_id=library_id,
            title=str(row.get("title", "")),
            episode_count=to_int(row.get("leafCount"), 0) or 0,
            watched_count=to_int(row.get("viewedLeafCount"), 0) or 0,
            thumb=row.get("thumb"),
            # Present once something was watched (docs: plex §9.3(b)).
            last_viewed_at=to_int(row.get("lastViewedAt")),
        )
    except KeyError as err:
        raise MediaServerProtocolError("Plex sent a show without ratingKey") from err


async def _episodes(rows: list[dict[str, Any]], library_id: str) -> list[EpisodeRow]:
    """Parse episode rows, handing the event loop back every ``PARSE_STEP`` rows."""
    episodes: list[EpisodeRow] = []
    for index, row in enumerate(rows):
        if index % PARSE_STEP == PARSE_STEP - 1:
            await asyncio.sleep(0)
        if row.get("type", "episode") != "episode":
            continue
        if "deletedAt" in row:
            # Trashed (file gone, "empty trash automatically" off): not a real
            # episode, so the mirror drops it and agrees with a ``leafCount``
            # that leaves trash out (docs: plex §8). Listings still show it.
            continue
        try:
            air = row.get("originallyAvailableAt")
            episodes.append(
                episode_row(
                    id=str(row["ratingKey"]),
                    show_id=str(row["grandparentRatingKey"]),
                    library_id=library_id,
                    season=to_int(row.get("parentIndex")),
                    number=to_int(row.get("index")),
                    title=str(row.get("title", "")),
                    # "YYYY-MM-DD", sometimes with " HH:MM:SS" (docs: plex §5).
                    air_date=str(air)[:10] if air else None,
                    air_time=(str(air)[11:16] or None) if air else None,
                    # Always sent in practice; a row without it falls back to its
                    # ``updatedAt`` (never earlier than the add) rather than failing
                    # every sync of the library for one odd item.
                    added_at=to_int(row.get("addedAt")) or to_int(row.get("updatedAt"), 0) or 0,
                    watched=(to_int(row.get("viewCount"), 0) or 0) > 0,
                    updated_at=to_int(row.get("updatedAt")),
                    thumb=row.get("thumb"),
                    duration=to_seconds(row.get("duration"), 1000),
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise MediaServerProtocolError(f"Plex sent an incomplete episode: {err!r}") from err
    return episodes
