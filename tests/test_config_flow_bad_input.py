"""Bad input in the config flow: each mistake gets its own clear error, then the flow succeeds.

Every server here is real and on 127.0.0.1: the simulators (also over HTTPS
with a self-signed certificate made at test time), a web page that is no
media server, a redirecting proxy, a port nobody listens on, a server that
holds its answers. Only the host-name lookup is simulated (at the resolver,
for a name of the reserved ``.invalid`` domain, RFC 6761 §6.4): the test
harness allows no lookups.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
import ipaddress
from pathlib import Path
import socket
import ssl
import threading
from typing import Any
from unittest.mock import patch

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    CONF_PASSWORD,
    CONF_TOKEN,
    CONF_URL,
    CONF_USERNAME,
    CONF_VERIFY_SSL,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest

from custom_components.episode_sync.api import http
from custom_components.episode_sync.const import CONF_LIBRARIES, DOMAIN
from tests.helpers import plex_entry, tv_library_ids
from tests.simulator.common import Fault
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator

UNKNOWN_HOST = "http://media-server.invalid:32400"


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A held request fails after half a second, not 30."""
    monkeypatch.setattr(http, "DEFAULT_TIMEOUT", 0.5)


class _NameNotFound(AbstractResolver):
    """A resolver that finds no name, as the system's does for a mistyped host.

    Home Assistant's test harness disables host-name lookups altogether, so the
    one fault no local server can produce is made here, at the resolver: the
    connector turns it into ``ClientConnectorDNSError`` exactly as it does
    with a real lookup (IP addresses never reach a resolver).
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise OSError(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        """Nothing to release."""

    real_close = close  # what Home Assistant calls when its sessions close


@pytest.fixture(autouse=True)
def no_name_resolves() -> Iterator[None]:
    """Home Assistant's sessions get the resolver above."""
    with patch(
        "homeassistant.helpers.aiohttp_client._async_make_resolver",
        new=lambda hass: _NameNotFound(),
    ):
        yield


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for 127.0.0.1, made now."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Episode Sync test server")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory: Path = tmp_path_factory.mktemp("tls")
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


class _OwnLoop:
    """Runs a simulator on an event loop of its own, in a thread: a server apart.

    A client that rejects the certificate resets the connection mid-handshake;
    asyncio reports that on the *server's* loop, which would be Home
    Assistant's (and fail the test) if the server shared it.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    async def run[T](self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join)
        self.loop.close()


async def _over_tls[S: (PlexSimulator, JellyfinSimulator)](
    sim: S, tls_context: ssl.SSLContext
) -> AsyncIterator[S]:
    """Serve a small library over HTTPS, on a loop of its own."""
    sim.model.generate(shows=2, seasons=1, episodes=2, seed=3)
    own = _OwnLoop()
    await own.run(sim.start(ssl_context=tls_context))
    yield sim
    await own.run(sim.close())
    await own.stop()


@pytest.fixture
async def tls_plex(
    socket_enabled: Any, tls_context: ssl.SSLContext
) -> AsyncIterator[PlexSimulator]:
    """The Plex simulator over HTTPS with a self-signed certificate."""
    async for sim in _over_tls(PlexSimulator(name="TLS Plex"), tls_context):
        yield sim


@pytest.fixture
async def tls_jellyfin(
    socket_enabled: Any, tls_context: ssl.SSLContext
) -> AsyncIterator[JellyfinSimulator]:
    """The Jellyfin simulator over HTTPS with a self-signed certificate."""
    async for sim in _over_tls(JellyfinSimulator(name="TLS Jellyfin"), tls_context):
        yield sim


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def web_page(socket_enabled: Any) -> AsyncIterator[str]:
    """A web server that is not a media server (a NAS's admin page), answering HTML."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>DiskStation</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner, url = await _serve(app)
    yield url
    await runner.cleanup()


@pytest.fixture
async def redirects(socket_enabled: Any) -> AsyncIterator[dict[str, str]]:
    """A proxy that sends plain HTTP to HTTPS, and one that sends everyone to a login page."""

    async def to_https(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"https://127.0.0.1:9{request.path_qs}")

    async def to_login(request: web.Request) -> web.Response:
        if request.path == "/login":
            return web.Response(text="<form>Sign in</form>", content_type="text/html")
        raise web.HTTPFound("/login?next=" + request.path)

    runners = []
    urls = {}
    for name, handler in (("https", to_https), ("login", to_login)):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner, urls[name] = await _serve(app)
        runners.append(runner)
    yield urls
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def closed_port() -> str:
    """A URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def _step(hass: HomeAssistant, choice: str) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": choice}
    )
    assert result["step_id"] == choice
    return str(result["flow_id"])


async def _finish(hass: HomeAssistant, flow_id: str, result: Any, library_ids: list[str]) -> None:
    """From the libraries step to a loaded entry (the entry is set up for real)."""
    assert result["type"] is FlowResultType.FORM, result.get("errors")
    assert result["step_id"] == "libraries"
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_LIBRARIES: library_ids})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert result["result"].state is ConfigEntryState.LOADED


async def test_plex_bad_input_then_success(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    jellyfin_sim: JellyfinSimulator,
    tls_plex: PlexSimulator,
    web_page: str,
    redirects: dict[str, str],
    closed_port: str,
) -> None:
    """Each mistake on the Plex step shows its own error; the same flow then succeeds."""
    flow_id = await _step(hass, "plex")
    token = plex_sim.token
    slow = plex_sim.add_fault(Fault(kind="timeout", delay=1.0, times=-1))
    cases: list[tuple[dict[str, Any], str]] = [
        ({CONF_URL: "not a url", CONF_TOKEN: token}, "invalid_url"),
        ({CONF_URL: "192.168.1.10:32400", CONF_TOKEN: token}, "invalid_url"),
        ({CONF_URL: UNKNOWN_HOST, CONF_TOKEN: token}, "unknown_host"),
        ({CONF_URL: closed_port, CONF_TOKEN: token}, "cannot_connect"),
        ({CONF_URL: web_page, CONF_TOKEN: token}, "not_a_plex_server"),
        ({CONF_URL: jellyfin_sim.url, CONF_TOKEN: token}, "not_a_plex_server"),
        ({CONF_URL: tls_plex.url, CONF_TOKEN: tls_plex.token}, "ssl_error"),
        ({CONF_URL: redirects["https"], CONF_TOKEN: token}, "redirected"),
        ({CONF_URL: redirects["login"], CONF_TOKEN: token}, "redirected"),
        ({CONF_URL: plex_sim.url, CONF_TOKEN: token}, "timeout"),
    ]
    for user_input, error in cases:
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_VERIFY_SSL: True, **user_input}
        )
        assert result["type"] is FlowResultType.FORM, user_input
        assert result["step_id"] == "plex"
        assert result["errors"] == {"base": error}, user_input
    assert slow.fired == 1  # the slow server was asked once and held the answer
    assert tls_plex.requests == []  # the handshake failed: no request reached it

    # The self-signed server, with certificate checks off: accepted, and it syncs.
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: tls_plex.url, CONF_TOKEN: tls_plex.token, CONF_VERIFY_SSL: False}
    )
    await _finish(hass, flow_id, result, tv_library_ids(tls_plex.model))
    assert tls_plex.count("/library/sections") >= 2  # the flow's check and the first sync


async def test_jellyfin_bad_input_then_success(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    jellyfin_sim: JellyfinSimulator,
    tls_jellyfin: JellyfinSimulator,
    web_page: str,
    redirects: dict[str, str],
    closed_port: str,
) -> None:
    """The same mistakes on the Jellyfin step, then a self-signed server with checks off."""
    flow_id = await _step(hass, "jellyfin")
    login = {CONF_USERNAME: "alice", CONF_PASSWORD: "secret"}
    slow = jellyfin_sim.add_fault(Fault(kind="timeout", delay=1.0, times=-1))
    cases: list[tuple[str, str]] = [
        ("not a url", "invalid_url"),
        ("jellyfin.local:8096", "invalid_url"),
        (UNKNOWN_HOST, "unknown_host"),
        (closed_port, "cannot_connect"),
        (web_page, "not_a_jellyfin_server"),
        (plex_sim.url, "not_a_jellyfin_server"),
        (tls_jellyfin.url, "ssl_error"),
        (redirects["https"], "redirected"),
        (redirects["login"], "redirected"),
        (jellyfin_sim.url, "timeout"),
    ]
    for url, error in cases:
        result = await hass.config_entries.flow.async_configure(
            flow_id, {**login, CONF_URL: url, CONF_VERIFY_SSL: True}
        )
        assert result["type"] is FlowResultType.FORM, url
        assert result["step_id"] == "jellyfin"
        assert result["errors"] == {"base": error}, url
    assert slow.fired == 1
    assert tls_jellyfin.requests == []

    result = await hass.config_entries.flow.async_configure(
        flow_id, {**login, CONF_URL: tls_jellyfin.url, CONF_VERIFY_SSL: False}
    )
    await _finish(hass, flow_id, result, tv_library_ids(tls_jellyfin.model))
    assert tls_jellyfin.count("/Items") >= 2  # the first sync's listings


async def test_certificate_error_at_runtime_says_what_to_do(
    hass: HomeAssistant, tls_plex: PlexSimulator
) -> None:
    """An entry whose server's certificate fails the check: not ready, with the remedy."""
    entry = plex_entry(tls_plex)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.reason is not None
    assert "TLS certificate could not be verified" in entry.reason
    assert "Verify SSL certificate" in entry.reason
    assert tls_plex.token not in entry.reason
