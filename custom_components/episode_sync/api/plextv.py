"""Async client for plex.tv: the PIN sign-in and the account's server list.

Users rarely know where to find a Plex token, so the config flow can sign in
with plex.tv instead. The protocol, as python-plexapi (``myplex.py``
``MyPlexPinLogin``, ``MyPlexResource``, ``ResourceConnection``) and
jjlawren/python-plexauth (``plexauth.py``, which Home Assistant core's Plex
integration uses) speak it:

1. ``POST /api/v2/pins?strong=true`` with the ``X-Plex-Product`` and the
   install's ``X-Plex-Client-Identifier`` -> ``{"id": 123, "code": "…", …,
   "authToken": null}``;
2. the user opens ``https://app.plex.tv/auth#!?clientID=…&code=…&context[device][product]=…``
   and signs in;
3. ``GET /api/v2/pins/{id}`` until ``authToken`` is set (plexapi polls every
   second, plexauth every three); a PIN that expired or was declined is gone
   (404);
4. ``GET /api/v2/resources?includeHttps=1&includeRelay=1`` with the account
   token lists the devices; servers ``provide`` "server" and carry their own
   ``accessToken`` (the one to use for that server: a shared server does not
   accept the account token) and their ``connections``.

Tokens never appear in a ``repr`` nor in an error message: both end up in logs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
import math
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from yarl import URL

from .errors import (
    MediaServerConnectionError,
    MediaServerError,
    MediaServerNotFoundError,
    MediaServerProtocolError,
)
from .http import HttpTransport, to_int
from .plex import PRODUCT, VERSION

#: Read at call time, so tests (and a simulator) can stand in for plex.tv.
PLEX_TV_URL = "https://plex.tv"
#: The page where the user signs in; plexapi and plexauth both use the ``#!?`` form.
AUTH_APP_URL = "https://app.plex.tv/auth#!?"
#: How long the user has to sign in, and how often plex.tv is asked meanwhile.
PIN_TIMEOUT = 300.0
PIN_POLL_INTERVAL = 2.0
#: plexapi ``MyPlexResource.DEFAULT_LOCATION_ORDER``: the LAN first, the relay last.
LOCATION_ORDER = ("local", "remote", "relay")


class PlexTvPinExpiredError(MediaServerError):
    """The PIN is gone (plex.tv answered 404): it expired or the user declined."""


class PlexTvSignInTimeoutError(MediaServerError):
    """The user did not sign in before the time was up."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlexPin:
    """A sign-in PIN: ``id`` to poll, ``code`` for the auth page."""

    id: str
    code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlexConnection:
    """One address under which plex.tv says a server answers."""

    uri: str
    address: str
    port: int | None
    local: bool
    relay: bool

    @property
    def location(self) -> str:
        """``local``, ``remote`` or ``relay``, as plexapi classifies a connection."""
        if self.relay:
            return "relay"
        return "local" if self.local else "remote"

    def matches(self, url: str) -> bool:
        """Whether ``url`` names this connection (by its URI's host or its address, and port)."""
        wanted = URL(url)
        uri = URL(self.uri)
        return wanted.host in (uri.host, self.address) and wanted.port in (uri.port, self.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlexServerResource:
    """A Plex Media Server the account can reach, with the token to use for it."""

    name: str
    machine_id: str
    owned: bool
    connections: tuple[PlexConnection, ...]
    #: Kept out of ``repr``: a dataclass printed into a log must not leak it.
    access_token: str = field(repr=False)

    def preferred_connections(self, url: str | None = None) -> list[PlexConnection]:
        """Connections to try, best first: ``url``'s match, then local, remote, relay.

        As plexapi (``preferred_connections``) does, the local addresses of a
        server the account does not own are left out: they belong to someone
        else's network.
        """
        usable = [c for c in self.connections if self.owned or not c.local]
        ordered = sorted(usable, key=lambda c: LOCATION_ORDER.index(c.location))
        if url:
            ordered.sort(key=lambda c: not c.matches(url))
        return ordered

    def matches(self, url: str) -> bool:
        """Whether one of the server's connections is ``url``."""
        return any(c.matches(url) for c in self.connections)


class PlexTvClient:
    """plex.tv, reached with the install's client identifier."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        client_id: str,
        url: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Bind to plex.tv (or ``url``); the session is Home Assistant's shared one."""
        self._http = HttpTransport(
            session, url or PLEX_TV_URL, server="plex.tv", verify_ssl=True, timeout=timeout
        )
        self._client_id = client_id

    def _headers(self, token: str | None = None) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "X-Plex-Client-Identifier": self._client_id,
            "X-Plex-Product": PRODUCT,
            "X-Plex-Version": VERSION,
        }
        if token is not None:
            headers["X-Plex-Token"] = token
        return headers

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        token: str | None = None,
    ) -> Any:
        body = await self._http.request(method, path, headers=self._headers(token), params=params)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as err:
            raise MediaServerProtocolError(f"plex.tv sent malformed JSON for {path}") from err

    # -- sign-in ----------------------------------------------------------------------

    async def create_pin(self) -> PlexPin:
        """Ask plex.tv for a strong PIN (the kind the auth page takes)."""
        data = await self._json("POST", "/api/v2/pins", params={"strong": "true"})
        if not isinstance(data, dict) or data.get("id") is None or not data.get("code"):
            raise MediaServerProtocolError("plex.tv sent no PIN")
        return PlexPin(id=str(data["id"]), code=str(data["code"]))

    def auth_url(self, pin: PlexPin) -> str:
        """The page where the user signs in and allows this install."""
        params = {
            "clientID": self._client_id,
            "code": pin.code,
            "context[device][product]": PRODUCT,
        }
        return AUTH_APP_URL + urlencode(params)

    async def check_pin(self, pin: PlexPin) -> str | None:
        """The account token once the user signed in, None while waiting."""
        try:
            data = await self._json("GET", f"/api/v2/pins/{pin.id}")
        except MediaServerNotFoundError as err:
            raise PlexTvPinExpiredError("the plex.tv PIN expired or was declined") from err
        token = data.get("authToken") if isinstance(data, dict) else None
        return str(token) if token else None

    async def wait_for_token(
        self, pin: PlexPin, *, give_up_after: float | None = None, interval: float | None = None
    ) -> str:
        """Poll the PIN until the user signed in; give up after ``give_up_after`` seconds.

        Counted in polls rather than read off a clock, so the number of requests
        is known: ``ceil(give_up_after / interval)``, the first one at once.
        A poll that fails to reach plex.tv is not the end of the sign-in.
        The defaults are the module's constants, read now (tests shorten them).
        """
        interval = PIN_POLL_INTERVAL if interval is None else interval
        give_up_after = PIN_TIMEOUT if give_up_after is None else give_up_after
        failure: MediaServerConnectionError | None = None
        for attempt in range(max(1, math.ceil(give_up_after / interval))):
            if attempt:
                await asyncio.sleep(interval)
            try:
                token = await self.check_pin(pin)
            except MediaServerConnectionError as err:
                # A Wi-Fi blip or a 502 from plex.tv during the minutes the user
                # takes to sign in must not cost them the sign-in: ask again.
                failure = err
                continue
            failure = None
            if token is not None:
                return token
        if failure is not None:
            raise failure  # plex.tv stayed unreachable to the end: say so, not "too slow"
        raise PlexTvSignInTimeoutError("nobody signed in to plex.tv in time")

    # -- servers ------------------------------------------------------------------------

    async def servers(self, token: str) -> list[PlexServerResource]:
        """The Plex Media Servers the account can reach (owned and shared)."""
        data = await self._json(
            "GET",
            "/api/v2/resources",
            params={"includeHttps": "1", "includeRelay": "1"},
            token=token,
        )
        if not isinstance(data, list):
            raise MediaServerProtocolError("plex.tv sent no resource list")
        return [
            _server(row)
            for row in data
            if isinstance(row, dict)
            and "server" in str(row.get("provides", "")).split(",")
            # A share not yet accepted comes without a token: nothing to connect with.
            and row.get("accessToken")
        ]


def _server(row: dict[str, Any]) -> PlexServerResource:
    try:
        return PlexServerResource(
            name=str(row.get("name") or "Plex"),
            machine_id=str(row["clientIdentifier"]),
            owned=bool(row.get("owned", True)),
            connections=tuple(
                PlexConnection(
                    uri=str(conn["uri"]),
                    address=str(conn.get("address", "")),
                    port=to_int(conn.get("port")),
                    local=bool(conn.get("local")),
                    relay=bool(conn.get("relay")),
                )
                for conn in row.get("connections") or []
            ),
            access_token=str(row["accessToken"]),
        )
    except (KeyError, TypeError) as err:
        raise MediaServerProtocolError(f"plex.tv sent an incomplete server: {err!r}") from err
