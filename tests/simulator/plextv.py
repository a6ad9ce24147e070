"""A plex.tv stand-in (aiohttp on 127.0.0.1): PIN sign-in and the account's resources.

Shapes follow what the public clients parse:

- ``POST /api/v2/pins?strong=true`` -> ``{"id", "code", "product", "trusted", "qr",
  "clientIdentifier", "expiresIn", "createdAt", "expiresAt", "authToken": null, …}``
  (python-plexapi ``myplex.py`` ``MyPlexPinLogin._getCode``/``_checkLogin`` read
  ``id``, ``code`` and ``authToken``; jjlawren/python-plexauth ``plexauth.py`` the same
  keys from the JSON answer);
- ``GET /api/v2/pins/{id}`` -> the same object, ``authToken`` set once the user
  signed in; an expired or declined PIN is gone: 404;
- ``GET /api/v2/resources?includeHttps=1&includeRelay=1`` -> a JSON list of devices
  with ``name``, ``product``, ``clientIdentifier``, ``provides`` ("server" for a PMS),
  ``owned``, ``accessToken`` (per server, not the account token) and ``connections``
  ``[{protocol, address, port, uri, local, relay, IPv6}]`` (plexapi ``MyPlexResource``
  and ``ResourceConnection._loadData``); 401 for a bad account token.

Without ``Accept: application/json`` the answer is XML, as plexapi (which parses
XML from these endpoints) expects of the real service. A request without
``X-Plex-Client-Identifier`` is refused with 400: the identifier ties the PIN to
the install (UNCONFIRMED for the real service; the pessimistic choice).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
import itertools
from typing import Any

from aiohttp import web

from .common import SimServer
from .library import SimClock
from .plex import PlexSimulator

ACCOUNT_TOKEN = "plextv-account-token"


@dataclass(kw_only=True)
class SimPin:
    """A PIN and what the simulated user does with it."""

    id: int
    code: str
    client_id: str
    auth_token: str | None = None
    polls: int = 0
    #: On this poll (1 = the first) the user signs in with ``grant_token``…
    grant_after: int | None = None
    grant_token: str | None = None
    #: …or declines (the PIN disappears: 404 from this poll on).
    decline_after: int | None = None
    gone: bool = False


@dataclass(kw_only=True)
class SimConnection:
    """One address of a server as plex.tv lists it."""

    uri: str
    local: bool
    relay: bool = False

    def render(self) -> dict[str, Any]:
        """The JSON object plex.tv sends (plexapi ``ResourceConnection``)."""
        scheme, _, rest = self.uri.partition("://")
        address, _, port = rest.rstrip("/").rpartition(":")
        return {
            "protocol": scheme,
            "address": address,
            "port": int(port),
            "uri": self.uri,
            "local": self.local,
            "relay": self.relay,
            "IPv6": False,
        }


@dataclass(kw_only=True)
class SimResource:
    """A device of the account (a Plex Media Server unless ``provides`` says otherwise)."""

    name: str
    machine_id: str
    access_token: str
    connections: list[SimConnection] = field(default_factory=list)
    owned: bool = True
    provides: str = "server"

    def render(self) -> dict[str, Any]:
        """The JSON object plex.tv sends (plexapi ``MyPlexResource``)."""
        return {
            "name": self.name,
            "product": "Plex Media Server" if "server" in self.provides else "Plex Web",
            "productVersion": "1.41.6.9685-d301f511a",
            "platform": "Linux",
            "platformVersion": "6.8",
            "device": "PC",
            "clientIdentifier": self.machine_id,
            "createdAt": "2024-01-01T00:00:00Z",
            "lastSeenAt": "2026-01-01T00:00:00Z",
            "provides": self.provides,
            "ownerId": None if self.owned else 4242,
            "sourceTitle": None if self.owned else "a friend",
            "publicAddress": "203.0.113.7",
            "accessToken": self.access_token,
            "owned": self.owned,
            "home": False,
            "synced": False,
            "relay": any(c.relay for c in self.connections),
            "presence": True,
            "httpsRequired": False,
            "publicAddressMatches": True,
            "dnsRebindingProtection": False,
            "natLoopbackSupported": True,
            "connections": [c.render() for c in self.connections],
        }


class PlexTvSimulator(SimServer):
    """plex.tv with one account."""

    def __init__(
        self,
        *,
        account_token: str = ACCOUNT_TOKEN,
        clock: SimClock | None = None,
        latency: float = 0.0,
    ) -> None:
        """Create the service; ``add_server`` fills the account."""
        self.account_token = account_token
        self.pins: dict[int, SimPin] = {}
        self.resources: list[SimResource] = []
        self._pin_ids = itertools.count(2_000_000_001, 97)
        #: What the user will do with the next PIN created (see ``authorize_next_pin``).
        self._next: dict[str, Any] = {}
        #: Set by every PIN poll, for tests that must wait for the first one.
        self.pin_polled = asyncio.Event()
        super().__init__(clock=clock, latency=latency)

    # -- test hooks -------------------------------------------------------------------

    def add_server(
        self,
        plex: PlexSimulator | None = None,
        *,
        connections: list[SimConnection] | None = None,
        name: str | None = None,
        machine_id: str | None = None,
        owned: bool = True,
        provides: str = "server",
    ) -> SimResource:
        """List a server on the account; by default one local connection to ``plex``.

        The server's access token is the simulated PMS's own token, which the
        fixtures make differ from the account token, as for a shared server.
        """
        if plex is not None:
            name, machine_id = name or plex.name, machine_id or plex.machine_id
            token = plex.token
            if connections is None:
                connections = [SimConnection(uri=plex.url, local=True)]
        else:
            token = f"token-of-{machine_id}"
        assert name, "a server needs a name"
        assert machine_id, "a server needs a machine id"
        resource = SimResource(
            name=name,
            machine_id=machine_id,
            access_token=token,
            connections=connections or [],
            owned=owned,
            provides=provides,
        )
        self.resources.append(resource)
        return resource

    def authorize_next_pin(self, token: str | None = None, *, after_polls: int = 1) -> None:
        """The user signs in with the next PIN; its ``after_polls``-th poll sees the token."""
        self._next = {"grant_after": after_polls, "grant_token": token or self.account_token}

    def decline_next_pin(self, *, after_polls: int = 1) -> None:
        """The user declines the next PIN (or lets it expire): 404 from that poll on."""
        self._next = {"decline_after": after_polls}

    # -- routes -------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        """Add the plex.tv routes the integration uses."""
        app.router.add_post("/api/v2/pins", self._create_pin)
        app.router.add_get("/api/v2/pins/{id}", self._check_pin)
        app.router.add_get("/api/v2/resources", self._resources)

    @staticmethod
    def _reply(request: web.Request, payload: Any, status: int = 200) -> web.Response:
        if "application/json" not in request.headers.get("Accept", ""):
            return web.Response(
                status=status,
                text='<?xml version="1.0" encoding="UTF-8"?>\n<pin/>',
                content_type="application/xml",
            )
        return web.json_response(payload, status=status)

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response(
            {"errors": [{"code": 1000 + status, "message": message, "status": status}]},
            status=status,
        )

    def _render_pin(self, pin: SimPin) -> dict[str, Any]:
        now = int(self.clock.now())
        return {
            "id": pin.id,
            "code": pin.code,
            "product": "Episode Sync",
            "trusted": False,
            "qr": f"https://plex.tv/api/v2/pins/qr/{pin.code}",
            "clientIdentifier": pin.client_id,
            "location": {"code": "DE", "country": "Germany", "city": "Berlin"},
            "expiresIn": 1800,
            "createdAt": now,
            "expiresAt": now + 1800,
            "authToken": pin.auth_token,
            "newRegistration": None,
        }

    async def _create_pin(self, request: web.Request) -> web.Response:
        client_id = request.headers.get("X-Plex-Client-Identifier")
        if not client_id:
            return self._error(400, "X-Plex-Client-Identifier is missing")
        pin_id = next(self._pin_ids)
        pin = SimPin(id=pin_id, code=f"code{pin_id:x}", client_id=client_id, **self._next)
        self._next = {}
        self.pins[pin.id] = pin
        return self._reply(request, self._render_pin(pin), status=201)

    async def _check_pin(self, request: web.Request) -> web.Response:
        self.pin_polled.set()
        pin = self.pins.get(int(request.match_info["id"]))
        if pin is None or pin.gone:
            return self._error(404, "Code not found or expired")
        pin.polls += 1
        if pin.decline_after is not None and pin.polls >= pin.decline_after:
            pin.gone = True
            return self._error(404, "Code not found or expired")
        if pin.grant_after is not None and pin.polls >= pin.grant_after:
            pin.auth_token = pin.grant_token
        return self._reply(request, self._render_pin(pin))

    async def _resources(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Plex-Token") != self.account_token:
            return self._error(401, "Invalid authentication token")
        return self._reply(request, [r.render() for r in self.resources])
