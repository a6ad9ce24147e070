"""The HTTP transport both clients share: one request path, one error mapping.

It counts requests (the sync budgets are counted in requests), reads the
server's clock from the first answer's ``Date`` header (RFC 9110 §6.6.1), and
turns every transport or status failure into the error hierarchy of
``errors.py``, deciding on the status alone: a Plex 401 body is HTML, a
Jellyfin 401 body is empty (docs: plex §1, jellyfin §1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from .errors import (
    MediaServerAuthError,
    MediaServerConnectionError,
    MediaServerForbiddenError,
    MediaServerHostNotFoundError,
    MediaServerNotFoundError,
    MediaServerProtocolError,
    MediaServerRedirectError,
    MediaServerSSLError,
    MediaServerTimeoutError,
    MediaServerUnavailableError,
)
from .images import IMAGE_TIMEOUT

#: Seconds a request may take, connection included, when the client is given
#: no timeout of its own. Read at each request (tests shorten it).
DEFAULT_TIMEOUT = 30.0


class HttpTransport:
    """Requests to one server, counted and mapped to the clients' errors."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        server: str,
        verify_ssl: bool,
        timeout: float | None = None,
    ) -> None:
        """Bind to a base URL; ``server`` names it in error messages."""
        self._session = session
        self.url = url.rstrip("/")
        self._server = server
        # True: aiohttp's default verification (the session decides); False: none.
        self._ssl = bool(verify_ssl)
        self._timeout = timeout
        self.request_count = 0
        self.server_clock: int | None = None

    def reset_stats(self) -> None:
        """Start counting requests and reading the server clock afresh."""
        self.request_count = 0
        self.server_clock = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> bytes:
        """Send one request and return the body of a 2xx answer."""
        self.request_count += 1
        timeout = self._timeout if self._timeout is not None else DEFAULT_TIMEOUT
        try:
            async with asyncio.timeout(timeout):
                async with self._session.request(
                    method,
                    self.url + path,
                    params=params or {},
                    json=json,
                    headers=dict(headers),
                    ssl=self._ssl,
                    allow_redirects=False,
                ) as response:
                    body = await response.read()
                    status = response.status
                    if self.server_clock is None:
                        self.server_clock = _http_date(response.headers.get("Date"))
                    retry_after = response.headers.get("Retry-After")
        except TimeoutError as err:
            raise MediaServerTimeoutError(
                f"{self._server} did not answer {path} within {timeout:g} s"
            ) from err
        except aiohttp.ClientConnectorDNSError as err:
            raise MediaServerHostNotFoundError(
                f"{self._server} host {err.host} could not be resolved"
            ) from err
        except aiohttp.ClientSSLError as err:
            # Certificate errors and failed handshakes alike (aiohttp's
            # ClientConnectorCertificateError and ClientConnectorSSLError).
            raise MediaServerSSLError(
                f"{self._server}'s TLS certificate could not be verified (turn off"
                f" Verify SSL certificate for a self-signed one): {err}"
            ) from err
        except aiohttp.ClientError as err:
            raise MediaServerConnectionError(
                f"{self._server} request {path} failed: {err}"
            ) from err
        if status == 401:
            raise MediaServerAuthError(f"{self._server} refused the credentials")
        if 300 <= status < 400:
            raise MediaServerRedirectError(
                f"{self._server} answered {status} (a redirect) to {path}", status=status
            )
        if status == 403:
            raise MediaServerForbiddenError(f"{self._server} refused {path} to this account")
        if status == 404:
            raise MediaServerNotFoundError(f"{self._server} has no {path}")
        if status == 429 or status >= 500:
            raise MediaServerUnavailableError(
                f"{self._server} answered {status} to {path}",
                status=status,
                retry_after=_seconds(retry_after),
            )
        if not 200 <= status < 300:
            raise MediaServerProtocolError(
                f"{self._server} answered {status} to {path}", status=status
            )
        return body


class HttpClient:
    """The bookkeeping the sync engine reads from a client, kept by its transport."""

    _http: HttpTransport

    def _connect(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        server: str,
        verify_ssl: bool,
        timeout: float | None,
    ) -> None:
        """Make the media server's two transports: the sync's and the artwork's.

        Artwork goes through a transport of its own, so an image request is
        never counted as a sync request nor moves the sync's server clock.
        """
        self._http = HttpTransport(
            session, url, server=server, verify_ssl=verify_ssl, timeout=timeout
        )
        self._images = HttpTransport(
            session, url, server=server, verify_ssl=verify_ssl, timeout=IMAGE_TIMEOUT
        )
        self._verify_ssl = verify_ssl

    @property
    def request_count(self) -> int:
        """HTTP requests made since the last ``reset_stats``."""
        return self._http.request_count

    @property
    def server_clock(self) -> int | None:
        """Server time from the ``Date`` of the first answer since ``reset_stats``."""
        return self._http.server_clock

    def reset_stats(self) -> None:
        """Start counting afresh."""
        self._http.reset_stats()


def objects(value: Any, what: str) -> list[dict[str, Any]]:
    """A JSON list of objects (a listing's items); anything else is a protocol error.

    Checked once per page, so that a garbled item fails as a bad answer, not
    as an ``AttributeError`` deep in a parser.
    """
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise MediaServerProtocolError(f"{what} is not a list of objects")
    return value


def to_int(value: Any, default: int | None = None) -> int | None:
    """An int from JSON that may carry it as a number or a string; ``default`` otherwise."""
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def to_seconds(value: Any, per_second: int) -> int | None:
    """Whole seconds of a duration sent in ``per_second`` units (ms, ticks); None if absent."""
    units = to_int(value)
    return units // per_second if units is not None and units > 0 else None


def _http_date(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError):
        return None


def _seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is rare and ignored)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
