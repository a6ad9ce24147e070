"""What both simulators share: request log, latency, fault injection, Date header.

Every request passes through ``SimServer.middleware`` in this order: record it
in the log, wait the configured latency, apply the first matching fault, then
run the real handler and stamp the server clock's ``Date`` header on the reply
(the Jellyfin client takes its delta cursor from that header, so the header
must follow the simulated clock, not the host's).

Every answer that is sent at all carries that ``Date`` (checklists: jellyfin
§10 item 15): injected faults (a slow answer is dated when it is finally
sent, a malformed or truncated body too) and aiohttp's own errors (an
unrouted path) included, since aiohttp would otherwise fill in the host's
clock. Only a ``reset`` sends nothing, so nothing is dated.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
import email.utils
import json
import ssl
from typing import Any, Literal

from aiohttp import web

from .library import SimClock

type Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FaultKind = Literal["status", "reset", "timeout", "malformed", "truncated", "mutate"]


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    #: The route template that served it (``/library/metadata/{ids}``), or ""
    #: for a path no route knows: what "per endpoint" counters group by.
    route: str = ""


@dataclass(kw_only=True)
class Fault:
    """A fault to inject on matching requests.

    ``path`` matches when it is a substring of the request path (``None``
    matches every request); ``param``, when given, must also be the name of one
    of the request's query parameters (Plex's delta: ``updatedAt>>``). The first
    ``skip`` matching requests pass, then the fault fires ``times`` times
    (``-1``: forever). Kinds:

    - ``status``: answer ``status`` with ``body``/``headers`` (e.g. Retry-After);
    - ``reset``: drop the TCP connection without an answer;
    - ``timeout``: hold the request for ``delay`` seconds before answering;
    - ``malformed``: 200 with a body that is not JSON;
    - ``truncated``: 200 announcing the full length, then half the body and a close;
    - ``mutate``: 200 with the real JSON passed through ``mutate`` first.
    """

    kind: FaultKind
    path: str | None = None
    status: int = 500
    body: str = ""
    content_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)
    skip: int = 0
    times: int = 1
    delay: float = 3600.0
    mutate: Callable[[Any], Any] | None = None
    param: str | None = None
    fired: int = 0

    def matches(self, request: web.Request) -> bool:
        """Whether this fault applies to the request (and counts it)."""
        if self.path is not None and self.path not in request.path:
            return False
        if self.param is not None and self.param not in request.query:
            return False
        if self.times != -1 and self.fired >= self.times + self.skip:
            return False
        self.fired += 1
        return self.fired > self.skip


class SimServer:
    """Base of both simulators: an aiohttp app on 127.0.0.1 with instrumentation."""

    def __init__(self, *, clock: SimClock | None = None, latency: float = 0.0) -> None:
        """Create the app; subclasses add their routes in ``setup_routes``."""
        self.clock = clock or SimClock()
        self.latency = latency
        self.requests: list[LoggedRequest] = []
        self.faults: list[Fault] = []
        self.bytes_sent = 0
        self.app = web.Application(middlewares=[self._middleware])
        self.setup_routes(self.app)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._discovery: asyncio.DatagramTransport | None = None
        #: Rendered listings, kept until the content changes (``invalidate``):
        #: at 100,000 episodes, rendering every row for every page would make
        #: the simulator, not the client, the bottleneck of the benchmark.
        self._listings: dict[Hashable, list[dict[str, Any]]] = {}

    def setup_routes(self, app: web.Application) -> None:
        """Add the server's routes (overridden by each simulator)."""
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Serve on ``host:port`` (0 picks a free port), over TLS with ``ssl_context``."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        bound_port = sockets[0].getsockname()[1]
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://{host}:{bound_port}"
        return self.url

    async def close(self) -> None:
        """Stop serving."""
        if self._discovery is not None:
            self._discovery.close()
            self._discovery = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def start_discovery(self) -> tuple[str, int]:
        """Answer LAN discovery probes on a UDP port of 127.0.0.1; return the address.

        The real responders listen on a fixed port for a broadcast or a
        multicast group; tests send their probe to this address instead.
        """
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Responder(self.discovery_answer), local_addr=("127.0.0.1", 0)
        )
        self._discovery = transport
        host, port = transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def discovery_answer(self, probe: bytes) -> bytes | None:
        """The server's answer to a discovery datagram, None to stay silent."""
        raise NotImplementedError

    @property
    def port(self) -> int:
        """The HTTP port served on."""
        return int(self.url.rsplit(":", 1)[1])

    # -- instrumentation ------------------------------------------------------

    def count(self, path: str | None = None, *, method: str | None = None) -> int:
        """Requests logged so far, optionally only those whose path contains ``path``."""
        return sum(
            1
            for r in self.requests
            if (path is None or path in r.path) and (method is None or r.method == method)
        )

    def count_by_route(self) -> Counter[str]:
        """Requests logged so far per route template (checklists: instrumentation)."""
        return Counter(r.route for r in self.requests)

    def clear_log(self) -> None:
        """Forget the logged requests (and the byte counter)."""
        self.requests.clear()
        self.bytes_sent = 0

    def add_fault(self, fault: Fault) -> Fault:
        """Inject a fault; it stays until it has fired ``times`` times."""
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.faults.clear()

    def invalidate(self) -> None:
        """Forget rendered listings (called on every content change)."""
        self._listings.clear()

    def cached(
        self, key: Hashable, build: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """A rendered listing, built once per content version. Callers never mutate it."""
        rows = self._listings.get(key)
        if rows is None:
            rows = self._listings[key] = build()
        return rows

    def http_date(self) -> str:
        """The server clock as an RFC 7231 ``Date`` value."""
        return email.utils.formatdate(self.clock.now(), usegmt=True)

    # -- the middleware -------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(
            LoggedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                route=_route_of(request),
            )
        )
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = next((f for f in self.faults if f.matches(request)), None)
        if fault is not None and fault.kind not in ("mutate", "truncated"):
            return await self._apply_fault(fault, request)
        try:
            response = await handler(request)
        except web.HTTPException as err:
            # aiohttp's own answers (no route, wrong method): the server clock too.
            err.headers["Date"] = self.http_date()
            raise
        if fault is not None and fault.kind == "truncated" and isinstance(response, web.Response):
            return await self._truncate(request, bytes(response.body))  # type: ignore[arg-type]
        if fault is not None and fault.mutate is not None and isinstance(response, web.Response):
            payload = fault.mutate(json.loads(response.body))  # type: ignore[arg-type]
            response = web.json_response(payload, status=response.status)
        response.headers["Date"] = self.http_date()
        if isinstance(response, web.Response) and response.body is not None:
            self.bytes_sent += len(response.body)  # type: ignore[arg-type]
        return response

    async def _apply_fault(self, fault: Fault, request: web.Request) -> web.StreamResponse:
        if fault.kind == "status":
            return web.Response(
                status=fault.status,
                text=fault.body,
                content_type=fault.content_type,
                headers={"Date": self.http_date(), **fault.headers},
            )
        if fault.kind == "reset":
            assert request.transport is not None
            request.transport.abort()
            # The handler must still return something; nobody will read it.
            return web.Response(status=500)
        if fault.kind == "timeout":
            await asyncio.sleep(fault.delay)
            # Dated when it is finally sent, not when the request came in.
            return web.Response(status=504, headers={"Date": self.http_date()})
        if fault.kind == "malformed":
            return web.Response(
                status=200,
                text='{"MediaContainer": {"size": 3, "Metad',
                content_type="application/json",
                headers={"Date": self.http_date()},
            )
        raise AssertionError(fault.kind)

    async def _truncate(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """Announce the full length of the real answer, send half of it, then close."""
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Date": self.http_date()}
        )
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.close()
        return response


def _route_of(request: web.Request) -> str:
    """The template of the route that matched, "" for an unknown path."""
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else ""
    # Catch-all routes (Plex's HTML 404) are no endpoint.
    return "" if "{tail" in template else template


class _Responder(asyncio.DatagramProtocol):
    """A discovery responder: each probe is answered to its sender, as servers do."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self._answer = answer
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self._transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self._transport is not None and (reply := self._answer(data)) is not None:
            self._transport.sendto(reply, addr)
