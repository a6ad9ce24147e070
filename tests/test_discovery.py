"""Servers on the local network: Plex GDM, Jellyfin's UDP discovery, Plex mDNS announcements.

The simulators answer probes on a UDP port of 127.0.0.1 as the real
responders do on their fixed ports; the probes are pointed there instead of
at the multicast group and the broadcast address.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
import errno
from ipaddress import ip_address
import json
from typing import Any

from homeassistant.config_entries import (
    SOURCE_IGNORE,
    SOURCE_INTEGRATION_DISCOVERY,
    SOURCE_USER,
    SOURCE_ZEROCONF,
    ConfigEntryState,
)
from homeassistant.const import CONF_TOKEN, CONF_URL, CONF_USERNAME
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from homeassistant.loader import async_get_zeroconf
from homeassistant.setup import async_setup_component
import pytest

from custom_components.episode_sync import config_flow, discovery as discovery_module
from custom_components.episode_sync.api import http
from custom_components.episode_sync.api.discovery import (
    JELLYFIN_DISCOVERY,
    PLEX_GDM,
    FoundServer,
    Probe,
    discover,
    parse_gdm,
    parse_jellyfin,
)
from custom_components.episode_sync.api.models import ServerKind
from custom_components.episode_sync.const import CONF_CLIENT_ID, CONF_LIBRARIES, DOMAIN
from tests.helpers import (
    jellyfin_entry,
    plex_entry,
    setup_entry,
    suggested_values,
    tv_library_ids,
)
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator

#: The simulators answer at once on 127.0.0.1, but on the tests' own loop: a
#: listen well beyond the longest pause a loaded machine gives it.
LISTEN = 1.0
#: The mDNS service type Plex Media Server announces (manifest.json's ``zeroconf``).
PLEX_MDNS_TYPE = "_plexmediasvr._tcp.local."


async def _probes(plex: PlexSimulator, jellyfin: JellyfinSimulator) -> list[Probe]:
    """The two real probes, aimed at the simulators' responders."""
    return [
        replace(PLEX_GDM, target=await plex.start_discovery()),
        replace(JELLYFIN_DISCOVERY, target=await jellyfin.start_discovery()),
    ]


async def test_both_protocols_find_their_servers(
    plex_sim: PlexSimulator, jellyfin_sim: JellyfinSimulator
) -> None:
    found = await discover(await _probes(plex_sim, jellyfin_sim), listen=LISTEN)
    assert sorted(found, key=lambda s: s.kind) == [
        FoundServer(
            kind=ServerKind.JELLYFIN,
            server_id=jellyfin_sim.server_id,
            name=jellyfin_sim.name,
            url=jellyfin_sim.url,
        ),
        FoundServer(
            kind=ServerKind.PLEX,
            server_id=plex_sim.machine_id,
            name=plex_sim.name,
            url=plex_sim.url,  # the answer's sender and its Port header
        ),
    ]


async def test_nothing_answers_and_nothing_fails(socket_enabled: Any) -> None:
    """A probe that cannot be sent, and one nobody answers: no server, no error."""
    silent = replace(PLEX_GDM, target=("127.0.0.1", 9))  # the discard port
    unsendable = replace(JELLYFIN_DISCOVERY, target=("256.0.0.1", 7359))
    assert await discover([silent, unsendable], listen=LISTEN) == []
    assert await discover([], listen=LISTEN) == []


async def test_a_host_without_a_network_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """No socket can be opened (no IPv4 network yet): a fault of the host, so a mock."""

    async def no_network(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(asyncio.get_running_loop(), "create_datagram_endpoint", no_network)
    assert await discover([PLEX_GDM, JELLYFIN_DISCOVERY], listen=LISTEN) == []


@pytest.mark.parametrize(
    "answer",
    [
        b"",
        b"HTTP/1.0 404 Not Found\r\nContent-Type: plex/media-server\r\n",
        # A Plex player answers GDM too (on its own port), but it is no server.
        b"HTTP/1.0 200 OK\r\nContent-Type: plex/media-player\r\nResource-Identifier: x\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: plex/media-server\r\nName: no id\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: plex/media-server\r\nResource-Identifier: x\r\n"
        b"Port: http\r\n",
    ],
)
def test_gdm_answers_that_are_no_server(answer: bytes) -> None:
    assert parse_gdm(answer, "192.168.1.10") is None


def test_gdm_answer_without_port_means_the_default_one() -> None:
    answer = b"HTTP/1.0 200 OK\r\ncontent-type: plex/media-server\r\nresource-identifier: abc\r\n"
    server = parse_gdm(answer, "192.168.1.10")
    assert server is not None
    assert (server.url, server.name) == ("http://192.168.1.10:32400", "Plex")


@pytest.mark.parametrize(
    "answer",
    [
        b"not json",
        b"[]",
        json.dumps({"Address": "http://192.168.1.10:8096", "Name": "no id"}).encode(),
        json.dumps({"Id": "abc", "Address": None}).encode(),
        json.dumps({"Id": "abc", "Address": "192.168.1.10:8096"}).encode(),
    ],
)
def test_jellyfin_answers_that_are_no_server(answer: bytes) -> None:
    assert parse_jellyfin(answer, "192.168.1.10") is None


def _discovered(hass: HomeAssistant) -> list[Any]:
    return [
        flow
        for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if flow["context"]["source"] == SOURCE_INTEGRATION_DISCOVERY
    ]


async def _start(hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch, probes: list[Probe]) -> None:
    """Set the integration up (Home Assistant is running) and let the probes' answers in."""
    real_discover = discovery_module.discover

    async def quick(probes: list[Probe]) -> list[FoundServer]:
        return await real_discover(probes, listen=LISTEN)

    monkeypatch.setattr(discovery_module, "PROBES", probes)
    monkeypatch.setattr(discovery_module, "discover", quick)
    assert await async_setup_component(hass, DOMAIN, {})
    await hass.async_block_till_done(wait_background_tasks=True)


async def test_found_servers_are_offered_with_their_address_filled_in(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    jellyfin_sim: JellyfinSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _start(hass, monkeypatch, await _probes(plex_sim, jellyfin_sim))
    flows = {flow["step_id"]: flow for flow in _discovered(hass)}
    assert flows.keys() == {"plex", "jellyfin"}
    assert flows["plex"]["context"]["title_placeholders"] == {"name": plex_sim.name}
    assert flows["jellyfin"]["context"]["title_placeholders"] == {"name": jellyfin_sim.name}

    # The form shows the found address; the user adds the token and goes on.
    result = await hass.config_entries.flow.async_configure(flows["plex"]["flow_id"])
    assert result["step_id"] == "plex"
    assert suggested_values(result) == {CONF_URL: plex_sim.url}
    result = await hass.config_entries.flow.async_configure(
        flows["plex"]["flow_id"], {CONF_URL: plex_sim.url, CONF_TOKEN: plex_sim.token}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(plex_sim.model)}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == plex_sim.machine_id

    result = await hass.config_entries.flow.async_configure(
        flows["jellyfin"]["flow_id"],
        {CONF_URL: jellyfin_sim.url, CONF_USERNAME: "alice", "password": "secret"},
    )
    assert result["step_id"] == "libraries"


async def test_a_jellyfin_server_set_up_by_hand_is_offered_no_more(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found on the network, then added through *Add integration* instead: the found one goes."""
    probe = replace(JELLYFIN_DISCOVERY, target=await jellyfin_sim.start_discovery())
    await _start(hass, monkeypatch, [probe])
    assert len(_discovered(hass)) == 1
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "jellyfin"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_URL: jellyfin_sim.url, CONF_USERNAME: "alice", "password": "secret"},
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(jellyfin_sim.model)}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert _discovered(hass) == []


async def test_servers_set_up_or_ignored_are_not_offered(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    jellyfin_sim: JellyfinSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Plex server set up, a Jellyfin one set up for one of its users: neither is offered."""
    plex_entry(plex_sim).add_to_hass(hass)
    (await jellyfin_entry(jellyfin_sim)).add_to_hass(hass)
    await _start(hass, monkeypatch, await _probes(plex_sim, jellyfin_sim))
    assert _discovered(hass) == []


async def test_an_ignored_server_is_not_offered_again(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = replace(JELLYFIN_DISCOVERY, target=await jellyfin_sim.start_discovery())
    await _start(hass, monkeypatch, [probe])
    (flow,) = _discovered(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_IGNORE},
        data={"unique_id": flow["context"]["unique_id"], "title": jellyfin_sim.name},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert _discovered(hass) == []

    # The next start finds the server again, and offers nothing.
    await discovery_module.async_discover(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert _discovered(hass) == []


async def test_a_server_found_twice_is_offered_once(
    hass: HomeAssistant, plex_sim: PlexSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = replace(PLEX_GDM, target=await plex_sim.start_discovery())
    await _start(hass, monkeypatch, [probe, probe])
    assert len(_discovered(hass)) == 1
    await discovery_module.async_discover(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert len(_discovered(hass)) == 1


async def _moved_entry(
    hass: HomeAssistant, sim: PlexSimulator | JellyfinSimulator, url: str
) -> Any:
    """An entry of ``sim`` whose address was ``url`` (the server is elsewhere now)."""
    entry = plex_entry(sim) if isinstance(sim, PlexSimulator) else await jellyfin_entry(sim)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_URL: url})
    return entry


async def test_an_entry_follows_its_server_to_a_new_address(
    hass: HomeAssistant,
    media_sim: PlexSimulator | JellyfinSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ``http://<IP>`` address the server left (a new DHCP lease) is replaced, and reloaded."""
    entry = await _moved_entry(hass, media_sim, "http://127.0.0.1:9")
    probe = PLEX_GDM if isinstance(media_sim, PlexSimulator) else JELLYFIN_DISCOVERY
    await _start(hass, monkeypatch, [replace(probe, target=await media_sim.start_discovery())])
    assert entry.data[CONF_URL] == media_sim.url
    assert entry.state is ConfigEntryState.LOADED
    assert _discovered(hass) == []


async def test_an_address_is_kept_unless_the_server_answers_as_itself_at_the_new_one(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    jellyfin_sim: JellyfinSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host name is kept; so is an address when the one announced is not the server's."""
    by_name = await _moved_entry(hass, plex_sim, "http://localhost:9")
    # A Jellyfin container announces an address only it can reach.
    jellyfin_sim.published_url = "http://127.0.0.1:9"
    by_ip = await _moved_entry(hass, jellyfin_sim, "http://127.0.0.1:8")
    await _start(hass, monkeypatch, await _probes(plex_sim, jellyfin_sim))
    assert by_name.data[CONF_URL] == "http://localhost:9"
    assert by_ip.data[CONF_URL] == "http://127.0.0.1:8"
    assert _discovered(hass) == []

    # The announced address answers, but as another server.
    other = JellyfinSimulator(name="Another")
    await other.start()
    try:
        jellyfin_sim.published_url = other.url
        await discovery_module.async_discover(hass)
        await hass.async_block_till_done(wait_background_tasks=True)
        assert by_ip.data[CONF_URL] == "http://127.0.0.1:8"
        (asked,) = other.requests
        assert "Token=" not in asked.headers.get("Authorization", "")  # no credentials
    finally:
        await other.close()
    assert asked.path == "/System/Info/Public"


async def test_an_address_that_still_answers_is_kept(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server with two addresses may announce the other one: the entry's still works."""
    entry = await _moved_entry(hass, jellyfin_sim, jellyfin_sim.url)
    jellyfin_sim.published_url = jellyfin_sim.url + "/emby"  # where 10.11 answers too
    probe = replace(JELLYFIN_DISCOVERY, target=await jellyfin_sim.start_discovery())
    await _start(hass, monkeypatch, [probe])
    assert entry.data[CONF_URL] == jellyfin_sim.url
    assert _discovered(hass) == []


def _twin(sim: PlexSimulator) -> PlexSimulator:
    """The same Plex server (its identity, its library), to start at another address."""
    twin = PlexSimulator(name=sim.name, machine_id=sim.machine_id)
    twin.model.generate(shows=10, seasons=2, episodes=5, seed=1)
    return twin


async def _discover(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch, sim: PlexSimulator
) -> None:
    """One discovery run (Home Assistant is running), its probe answered by ``sim``."""
    probe = replace(PLEX_GDM, target=await sim.start_discovery())
    monkeypatch.setattr(discovery_module, "PROBES", [probe])
    await discovery_module.async_discover(hass)
    await hass.async_block_till_done(wait_background_tasks=True)


async def test_a_loaded_entry_follows_its_server_with_one_reload(
    hass: HomeAssistant, plex_sim: PlexSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server moves while its entry is loaded: the entry, given the new address, is
    reloaded once."""
    entry = plex_entry(plex_sim)
    await _start(hass, monkeypatch, [])
    await setup_entry(hass, entry)
    moved = _twin(plex_sim)
    await moved.start()
    try:
        await plex_sim.close()  # the old address answers no more
        await _discover(hass, monkeypatch, moved)
        assert entry.data[CONF_URL] == moved.url
        assert entry.state is ConfigEntryState.LOADED
        # The new address checked (/identity), then one set-up (/) and its sync.
        assert [r.path for r in moved.requests if r.path in ("/", "/identity")] == [
            "/identity",
            "/",
        ]
    finally:
        await moved.close()


async def test_an_address_that_answers_too_late_is_given_up(
    hass: HomeAssistant, plex_sim: PlexSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry's old address still answers as the server, but only after 2 s: the entry follows.

    A server gone from an address can leave it holding connections (a
    router's, a sleeping NAS's); waited for, this answer would keep the entry.
    """
    monkeypatch.setattr(http, "DEFAULT_TIMEOUT", 3600.0)
    monkeypatch.setattr(config_flow, "ADDRESS_CHECK_TIMEOUT", 0.5)
    old = _twin(plex_sim)
    await old.start()
    try:
        await _start(hass, monkeypatch, [])
        entry = plex_entry(old)
        await setup_entry(hass, entry)
        old.latency = 2.0
        await _discover(hass, monkeypatch, plex_sim)
        assert entry.data[CONF_URL] == plex_sim.url
        assert entry.state is ConfigEntryState.LOADED
    finally:
        await old.close()


# -- mDNS: Home Assistant's zeroconf hands a Plex announcement over -----------------------


def _announcement(sim: PlexSimulator, host: str = "127.0.0.1") -> ZeroconfServiceInfo:
    """What Home Assistant's zeroconf passes on for a Plex server's mDNS announcement."""
    return ZeroconfServiceInfo(
        ip_address=ip_address(host),
        ip_addresses=[ip_address(host)],
        port=sim.port,
        hostname="nas.local.",
        type=PLEX_MDNS_TYPE,
        name=f"{sim.name}.{PLEX_MDNS_TYPE}",
        properties={},
    )


async def _announce(hass: HomeAssistant, sim: PlexSimulator, host: str = "127.0.0.1") -> Any:
    return await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=_announcement(sim, host)
    )


async def test_home_assistant_listens_for_plex_announcements(hass: HomeAssistant) -> None:
    """The manifest's zeroconf type is one Home Assistant matches for Episode Sync."""
    assert {"domain": DOMAIN} in (await async_get_zeroconf(hass))[PLEX_MDNS_TYPE]


async def test_an_announced_plex_server_is_offered_before_any_entry_exists(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """The first server: asked which it is (no token sent), then offered as GDM's are."""
    result = await _announce(hass, plex_sim)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "plex"
    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["context"]["unique_id"] == plex_sim.machine_id
    assert flow["context"]["title_placeholders"] == {"name": plex_sim.name}
    assert suggested_values(result) == {CONF_URL: plex_sim.url}
    (asked,) = plex_sim.requests
    assert asked.path == "/identity"
    assert "X-Plex-Token" not in asked.headers
    assert "X-Plex-Token" not in asked.query
    # The client id sent then is the one the entry keeps.
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: plex_sim.url, CONF_TOKEN: plex_sim.token}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(plex_sim.model)}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert set(plex_sim.count_by_client()) == {result["result"].data[CONF_CLIENT_ID]}

    # Announced again (every start): the server at that address costs no request.
    plex_sim.clear_log()
    result = await _announce(hass, plex_sim)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert plex_sim.requests == []


async def test_an_announced_server_set_up_under_another_address_is_not_offered(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """An entry with a host name: the announced IP address answers as its server."""
    entry = plex_entry(plex_sim)
    entry.add_to_hass(hass)
    by_name = plex_sim.url.replace("127.0.0.1", "localhost")
    hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_URL: by_name})
    result = await _announce(hass, plex_sim)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_URL] == by_name
    assert plex_sim.count("/identity") == 1


async def test_an_announcement_that_is_no_plex_server_is_dropped(
    hass: HomeAssistant, plex_sim: PlexSimulator, jellyfin_sim: JellyfinSimulator
) -> None:
    """Something else at the address, or nothing: no flow, and no error for the user."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_ZEROCONF},
        data=replace(_announcement(plex_sim), port=jellyfin_sim.port),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_a_plex_server"
    await plex_sim.close()
    result = await _announce(hass, plex_sim)
    assert result["reason"] == "not_a_plex_server"
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []


# -- adding a server by hand: the form suggests one found on the network ------------------


def _suggested_url(result: Any) -> Any:
    return suggested_values(result).get(CONF_URL)


async def _form(hass: HomeAssistant, kind: str) -> Any:
    """The user's flow: the menu (the probes go out), then the form of ``kind``."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "user"})
    assert result["type"] is FlowResultType.MENU
    return await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": kind})


async def test_the_add_form_suggests_a_server_found_on_the_network(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    jellyfin_sim: JellyfinSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(discovery_module, "PROBES", await _probes(plex_sim, jellyfin_sim))
    assert _suggested_url(await _form(hass, "jellyfin")) == jellyfin_sim.url
    assert _suggested_url(await _form(hass, "plex")) == plex_sim.url


async def test_the_add_form_suggests_no_server_set_up_already(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    jellyfin_sim: JellyfinSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server set up or ignored is not suggested, another one is; nothing found, nothing."""
    plex_entry(plex_sim).add_to_hass(hass)
    await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_IGNORE},
        data={"unique_id": jellyfin_sim.server_id, "title": jellyfin_sim.name},
    )
    monkeypatch.setattr(discovery_module, "PROBES", await _probes(plex_sim, jellyfin_sim))
    assert _suggested_url(await _form(hass, "plex")) is None
    assert _suggested_url(await _form(hass, "jellyfin")) is None
    other = JellyfinSimulator(name="Another")
    await other.start()
    try:
        probe = replace(JELLYFIN_DISCOVERY, target=await other.start_discovery())
        monkeypatch.setattr(discovery_module, "PROBES", [probe])
        assert _suggested_url(await _form(hass, "jellyfin")) == other.url
    finally:
        await other.close()
    monkeypatch.setattr(discovery_module, "PROBES", [])
    assert _suggested_url(await _form(hass, "jellyfin")) is None
