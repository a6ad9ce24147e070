"""Finding media servers on the local network, the way their own apps do.

- Plex GDM ("G'Day Mate"): ``M-SEARCH * HTTP/1.1`` to the multicast group
  239.0.0.250, UDP 32414; each server answers with HTTP-like header lines,
  ``Content-Type: plex/media-server``, ``Resource-Identifier`` (its
  ``machineIdentifier``), ``Name`` and ``Port``, from its own address
  [pkkid/python-plexapi plexapi/gdm.py, which Home Assistant's Plex
  integration uses].
- Jellyfin: ``who is JellyfinServer?`` broadcast to UDP 7359; each server
  answers ``{"Address", "Id", "Name", "EndpointAddress"}`` (its
  ``ServerDiscoveryInfo``) [jellyfin/jellyfin Emby.Server.Implementations/
  Udp/UdpServer.cs; jellyfin.org/docs "Networking: auto discovery"].

Both only reach the local subnet (not another VLAN, nor out of a Docker
bridge network): finding nothing is normal, and never an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
import logging
from typing import Any

import orjson

from .models import ServerKind

_LOGGER = logging.getLogger(__name__)

#: Seconds to listen for answers after the probes went out.
DISCOVERY_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FoundServer:
    """A server that answered a probe: enough to prefill the config flow."""

    kind: ServerKind
    #: Plex ``machineIdentifier``, Jellyfin server ``Id``.
    server_id: str
    name: str
    url: str


def parse_gdm(data: bytes, host: str) -> FoundServer | None:
    """A Plex server from a GDM answer (None for players and anything else)."""
    lines = data.decode("utf-8", "replace").splitlines()
    if not lines or "200 OK" not in lines[0]:
        return None
    headers = {
        name.strip().lower(): value.strip()
        for name, sep, value in (line.partition(":") for line in lines[1:])
        if sep
    }
    server_id = headers.get("resource-identifier")
    if "plex/media-server" not in headers.get("content-type", "") or not server_id:
        return None
    port = headers.get("port") or "32400"
    if not port.isdigit():
        return None
    return FoundServer(
        kind=ServerKind.PLEX,
        server_id=server_id,
        name=headers.get("name") or "Plex",
        url=f"http://{host}:{port}",
    )


def parse_jellyfin(data: bytes, host: str) -> FoundServer | None:
    """A Jellyfin server from its discovery answer (None for anything else)."""
    try:
        info: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(info, dict):
        return None
    server_id, address = info.get("Id"), info.get("Address")
    if not isinstance(server_id, str) or not isinstance(address, str) or not server_id:
        return None
    if not address.startswith(("http://", "https://")):
        return None
    return FoundServer(
        kind=ServerKind.JELLYFIN,
        server_id=server_id,
        name=str(info.get("Name") or "Jellyfin"),
        url=address.rstrip("/"),
    )


@dataclass(frozen=True, slots=True)
class Probe:
    """One discovery protocol: what to send where, and how to read the answers."""

    message: bytes
    target: tuple[str, int]
    parse: Callable[[bytes, str], FoundServer | None]


PLEX_GDM = Probe(b"M-SEARCH * HTTP/1.1\r\n\r\n", ("239.0.0.250", 32414), parse_gdm)
JELLYFIN_DISCOVERY = Probe(b"who is JellyfinServer?", ("255.255.255.255", 7359), parse_jellyfin)


class _Collector(asyncio.DatagramProtocol):
    """Reads the answers to one probe, once per server."""

    def __init__(self, parse: Callable[[bytes, str], FoundServer | None]) -> None:
        self._parse = parse
        self.found: dict[str, FoundServer] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if (server := self._parse(data, str(addr[0]))) is not None:
            self.found.setdefault(server.server_id, server)

    def error_received(self, exc: Exception) -> None:
        _LOGGER.debug("Discovery socket error: %s", exc)


async def discover(probes: Sequence[Probe], listen: float = DISCOVERY_TIMEOUT) -> list[FoundServer]:
    """Send each probe once, listen for ``listen`` seconds, return who answered."""
    loop = asyncio.get_running_loop()
    collectors: list[_Collector] = []
    transports: list[asyncio.DatagramTransport] = []
    try:
        for probe in probes:
            try:
                transport, collector = await loop.create_datagram_endpoint(
                    partial(_Collector, probe.parse),
                    local_addr=("0.0.0.0", 0),  # noqa: S104 - answers come from any LAN host
                    allow_broadcast=True,
                )
                transports.append(transport)
                collectors.append(collector)
                transport.sendto(probe.message, probe.target)
            except OSError as err:  # no network, no route to the group
                _LOGGER.debug("Discovery probe to %s not sent: %s", probe.target, err)
        if transports:
            await asyncio.sleep(listen)
    finally:
        for transport in transports:
            transport.close()
    return [server for collector in collectors for server in collector.found.values()]
