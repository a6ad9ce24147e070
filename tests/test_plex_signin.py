"""Plex sign-in with plex.tv (token left empty), against plex.tv and Plex simulators over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
import logging
from typing import Any
from unittest.mock import patch
from urllib.parse import parse_qs

import aiohttp
from homeassistant import config_entries
from homeassistant.const import CONF_TOKEN, CONF_URL, CONF_VERIFY_SSL
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import EVENT_DATA_ENTRY_FLOW_PROGRESSED, FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.episode_sync.api import plextv
from custom_components.episode_sync.api.errors import MediaServerProtocolError
from custom_components.episode_sync.api.plextv import (
    PlexConnection,
    PlexServerResource,
    PlexTvClient,
)
from custom_components.episode_sync.const import (
    CONF_CLIENT_ID,
    CONF_LIBRARIES,
    CONF_SERVER,
    CONF_SERVER_TYPE,
    DOMAIN,
)
from tests.helpers import plex_entry, tv_library_ids
from tests.simulator.common import Fault
from tests.simulator.plex import PlexSimulator
from tests.simulator.plextv import ACCOUNT_TOKEN, PlexTvSimulator, SimConnection
from tests.test_config_flow import closed_port_url

type SimFactory = Callable[..., Coroutine[Any, Any, PlexSimulator]]

#: Polls before giving up in these tests: PIN_TIMEOUT / PIN_POLL_INTERVAL.
POLLS = 3


@pytest.fixture(autouse=True)
def no_setup() -> Any:
    """The flow is tested on its own: creating an entry does not set it up."""
    with patch("custom_components.episode_sync.async_setup_entry", return_value=True):
        yield


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll plex.tv every 10 ms and give up after three polls (5 minutes for users)."""
    monkeypatch.setattr(plextv, "PIN_POLL_INTERVAL", 0.01)
    monkeypatch.setattr(plextv, "PIN_TIMEOUT", 0.01 * POLLS)


@pytest.fixture
async def make_plex(socket_enabled: Any) -> AsyncIterator[SimFactory]:
    """Start more Plex simulators (each with one TV library); all are closed at the end."""
    sims: list[PlexSimulator] = []

    async def make(**kwargs: Any) -> PlexSimulator:
        sim = PlexSimulator(**kwargs)
        sim.model.generate(shows=2, seasons=1, episodes=2, seed=2)
        await sim.start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.close()


async def _start(hass: HomeAssistant, **user_input: Any) -> dict[str, Any]:
    """Open the plex step and submit it with the token left empty."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "plex"}
    )
    assert result["step_id"] == "plex"
    return await hass.config_entries.flow.async_configure(  # type: ignore[no-any-return]
        result["flow_id"], {CONF_VERIFY_SSL: True, **user_input}
    )


async def _signed_in(hass: HomeAssistant, result: dict[str, Any]) -> dict[str, Any]:
    """Let the PIN poll end, check the frontend was told, and fetch the next step."""
    assert result["type"] is FlowResultType.EXTERNAL_STEP
    assert result["step_id"] == "plex_signin"
    progressed = async_capture_events(hass, EVENT_DATA_ENTRY_FLOW_PROGRESSED)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert [e.data["flow_id"] for e in progressed] == [result["flow_id"]]
    # What the frontend does on that event: fetch the flow, which is now past the page.
    return await hass.config_entries.flow.async_configure(  # type: ignore[no-any-return]
        result["flow_id"]
    )


def _auth_query(url: str) -> dict[str, list[str]]:
    prefix = "https://app.plex.tv/auth#!?"
    assert url.startswith(prefix)
    return parse_qs(url.removeprefix(prefix))


async def test_one_server_signs_in_with_its_own_token(
    hass: HomeAssistant, plex_sim: PlexSimulator, plextv_sim: PlexTvSimulator
) -> None:
    plextv_sim.add_server(plex_sim)
    plextv_sim.authorize_next_pin(after_polls=2)
    result = await _start(hass)
    pin = next(iter(plextv_sim.pins.values()))
    query = _auth_query(result["url"])
    client_id = query["clientID"][0]
    assert query["code"] == [pin.code]
    assert query["context[device][product]"] == ["Episode Sync"]
    assert result["description_placeholders"] == {"minutes": "0.0005"}

    result = await _signed_in(hass, result)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "libraries"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(plex_sim.model)}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    assert entry.unique_id == plex_sim.machine_id
    assert entry.title == plex_sim.name
    assert entry.data == {
        CONF_SERVER_TYPE: "plex",
        CONF_URL: plex_sim.url,
        CONF_TOKEN: plex_sim.token,  # the server's access token, not the account token
        CONF_VERIFY_SSL: True,
        CONF_CLIENT_ID: client_id,
    }
    assert plex_sim.token != ACCOUNT_TOKEN
    assert ACCOUNT_TOKEN not in str(entry.data)
    # One PIN, polled until the second poll saw the token, one server listing.
    assert plextv_sim.count("/api/v2/pins", method="POST") == 1
    assert plextv_sim.count(f"/api/v2/pins/{pin.id}", method="GET") == 2
    assert plextv_sim.count("/api/v2/resources") == 1
    assert all(
        r.headers["X-Plex-Client-Identifier"] == client_id
        and r.headers["Accept"] == "application/json"
        and r.headers["X-Plex-Product"] == "Episode Sync"
        for r in plextv_sim.requests
    )
    # The probe and the validation; the account token never went to the server.
    assert plex_sim.count("/identity") == 2
    assert {r.headers.get("X-Plex-Token") for r in plex_sim.requests} <= {None, plex_sim.token}


async def test_several_servers_offer_a_choice(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    plextv_sim: PlexTvSimulator,
    make_plex: SimFactory,
) -> None:
    other = await make_plex(name="Other Plex", token="other-server-token")
    plextv_sim.add_server(plex_sim)
    # A friend's server: reached over its remote address (its LAN is not ours).
    plextv_sim.add_server(
        other,
        owned=False,
        connections=[
            SimConnection(uri=closed_port_url(), local=True),
            SimConnection(uri=other.url, local=False),
        ],
    )
    # Devices that are not servers, and a share not yet accepted (no token), are left out.
    plextv_sim.add_server(name="Phone", machine_id="phone-1", connections=[], provides="player")
    plextv_sim.add_server(other, machine_id="pending-share").access_token = ""
    plextv_sim.authorize_next_pin()
    result = await _signed_in(hass, await _start(hass))
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "plex_server"
    options = result["data_schema"].schema[CONF_SERVER].config["options"]
    assert options == [
        {"value": plex_sim.machine_id, "label": plex_sim.name},
        {"value": other.machine_id, "label": other.name},
    ]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_SERVER: other.machine_id}
    )
    assert result["step_id"] == "libraries"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(other.model)}
    )
    entry = result["result"]
    assert entry.unique_id == other.machine_id
    assert entry.data[CONF_URL] == other.url
    assert entry.data[CONF_TOKEN] == "other-server-token"
    assert plex_sim.requests == []


async def test_local_connection_preferred_over_remote_and_relay(
    hass: HomeAssistant, plextv_sim: PlexTvSimulator, make_plex: SimFactory
) -> None:
    """One server at three addresses: two simulators with the same identity, one dead port."""
    local = await make_plex(name="Home", token="home-token")
    relay = await make_plex(name="Home", token="home-token", machine_id=local.machine_id)
    plextv_sim.add_server(
        local,
        connections=[
            SimConnection(uri=relay.url, local=False, relay=True),
            SimConnection(uri=closed_port_url(), local=False),
            SimConnection(uri=local.url + "/", local=True),
        ],
    )
    plextv_sim.authorize_next_pin()
    result = await _signed_in(hass, await _start(hass))
    assert result["step_id"] == "libraries"
    assert hass.config_entries.flow.async_get(result["flow_id"])  # still going
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(local.model)}
    )
    assert result["result"].data[CONF_URL] == local.url
    assert relay.requests == []


async def test_unreachable_and_foreign_addresses_are_skipped(
    hass: HomeAssistant, plextv_sim: PlexTvSimulator, make_plex: SimFactory
) -> None:
    """The LAN address is dead, the remote one answers as another server: the relay it is."""
    home = await make_plex(name="Home", token="home-token")
    stranger = await make_plex(name="Stranger")
    plextv_sim.add_server(
        home,
        connections=[
            SimConnection(uri=home.url, local=False, relay=True),
            SimConnection(uri=stranger.url, local=False),
            SimConnection(uri=closed_port_url(), local=True),
        ],
    )
    plextv_sim.authorize_next_pin()
    result = await _signed_in(hass, await _start(hass))
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(home.model)}
    )
    assert result["result"].data[CONF_URL] == home.url
    # The stranger was asked who it is, and nothing else (no token went there).
    assert [r.path for r in stranger.requests] == ["/identity"]
    assert home.count("/identity") == 2


async def test_typed_url_picks_the_server_and_connection(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    plextv_sim: PlexTvSimulator,
    make_plex: SimFactory,
) -> None:
    relay = await make_plex(
        token=plex_sim.token, name=plex_sim.name, machine_id=plex_sim.machine_id
    )
    other = await make_plex(name="Other Plex")
    plextv_sim.add_server(other)
    plextv_sim.add_server(
        plex_sim,
        connections=[
            SimConnection(uri=plex_sim.url, local=True),
            SimConnection(uri=relay.url, local=False, relay=True),
        ],
    )
    plextv_sim.authorize_next_pin()
    # The user typed the relay's address: that server, that address, no choice.
    result = await _signed_in(hass, await _start(hass, **{CONF_URL: relay.url + "/"}))
    assert result["step_id"] == "libraries"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(relay.model)}
    )
    assert result["result"].data[CONF_URL] == relay.url
    assert plex_sim.requests == []
    assert other.requests == []


async def test_typed_url_matching_nothing_still_offers_every_server(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    plextv_sim: PlexTvSimulator,
    make_plex: SimFactory,
) -> None:
    plextv_sim.add_server(plex_sim)
    plextv_sim.add_server(await make_plex(name="Other Plex"))
    plextv_sim.authorize_next_pin()
    result = await _signed_in(hass, await _start(hass, **{CONF_URL: closed_port_url()}))
    assert result["step_id"] == "plex_server"


@pytest.mark.parametrize("owned", [True, False], ids=["not listed", "a shared server's LAN one"])
async def test_typed_url_plextv_does_not_offer_is_tried_first(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    plextv_sim: PlexTvSimulator,
    make_plex: SimFactory,
    owned: bool,
) -> None:
    """plex.tv lists only an address Home Assistant cannot reach (a container's own), or
    the typed one as a shared server's LAN address, left out otherwise: the typed one
    answers as one of the account's servers, which is then used there."""
    if owned:
        unreachable = SimConnection(uri=closed_port_url(), local=True)
        plextv_sim.add_server(plex_sim, connections=[unreachable])
    else:
        plextv_sim.add_server(plex_sim, owned=False)
    plextv_sim.add_server(await make_plex(name="Other Plex"))
    plextv_sim.authorize_next_pin()
    result = await _signed_in(hass, await _start(hass, **{CONF_URL: plex_sim.url}))
    assert result["step_id"] == "libraries"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(plex_sim.model)}
    )
    assert result["result"].data[CONF_URL] == plex_sim.url
    assert result["result"].data[CONF_TOKEN] == plex_sim.token


async def test_timeout_aborts(hass: HomeAssistant, plextv_sim: PlexTvSimulator) -> None:
    result = await _signed_in(hass, await _start(hass))  # nobody signs in
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "signin_timeout"
    assert plextv_sim.count("/api/v2/pins/", method="GET") == POLLS
    assert plextv_sim.count("/api/v2/resources") == 0


async def test_declined_pin_aborts(hass: HomeAssistant, plextv_sim: PlexTvSimulator) -> None:
    plextv_sim.decline_next_pin(after_polls=2)
    result = await _signed_in(hass, await _start(hass))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "signin_declined"
    assert plextv_sim.count("/api/v2/pins/", method="GET") == 2


async def test_account_without_servers_aborts(
    hass: HomeAssistant, plextv_sim: PlexTvSimulator
) -> None:
    plextv_sim.add_server(name="Phone", machine_id="phone-1", connections=[], provides="player")
    plextv_sim.authorize_next_pin()
    result = await _signed_in(hass, await _start(hass))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_servers"


async def test_plextv_down_when_asking_for_a_pin_then_up(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    plextv_sim: PlexTvSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plextv, "PLEX_TV_URL", closed_port_url())
    result = await _start(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "plex"
    assert result["errors"] == {"base": "plextv_unreachable"}  # not the server's address
    monkeypatch.setattr(plextv, "PLEX_TV_URL", plextv_sim.url)
    plextv_sim.add_server(plex_sim)
    plextv_sim.authorize_next_pin()
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_VERIFY_SSL: True}
    )
    result = await _signed_in(hass, result)
    assert result["step_id"] == "libraries"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(kind="status", path="/api/v2/resources", status=503), "cannot_connect"),
        # plex.tv unreachable through every poll; aiohttp retries a GET whose
        # kept-alive connection drops, so every one is reset.
        (Fault(kind="status", path="/api/v2/pins/", status=502, times=-1), "cannot_connect"),
        (Fault(kind="reset", path="/api/v2/pins/", times=-1), "cannot_connect"),
        # A poll that fails is asked again: the sign-in goes on (reason None).
        (Fault(kind="status", path="/api/v2/pins/", status=502), None),
        (
            Fault(kind="status", path="/api/v2/pins/", status=429, headers={"Retry-After": "1"}),
            None,
        ),
        (Fault(kind="reset", path="/api/v2/pins/", times=2), None),
        (Fault(kind="malformed", path="/api/v2/resources"), "cannot_connect"),
        (Fault(kind="mutate", path="/api/v2/resources", mutate=lambda _: {}), "cannot_connect"),
        (
            Fault(
                kind="mutate",
                path="/api/v2/resources",
                mutate=lambda rows: [{k: v for k, v in rows[0].items() if k != "clientIdentifier"}],
            ),
            "cannot_connect",
        ),
    ],
)
async def test_plextv_failures_while_and_after_signing_in(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    plextv_sim: PlexTvSimulator,
    fault: Fault,
    reason: str | None,
) -> None:
    plextv_sim.add_server(plex_sim)
    # The first poll may be under way already: the fault hits it or the next one.
    plextv_sim.authorize_next_pin(after_polls=2)
    result = await _start(hass)
    plextv_sim.add_fault(fault)
    result = await _signed_in(hass, result)
    if reason is None:
        assert result["step_id"] == "libraries"
    else:
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == reason


async def test_refused_account_token_aborts(
    hass: HomeAssistant, plex_sim: PlexSimulator, plextv_sim: PlexTvSimulator
) -> None:
    plextv_sim.add_server(plex_sim)
    plextv_sim.authorize_next_pin("a-revoked-token")
    result = await _signed_in(hass, await _start(hass))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_auth"


async def test_already_configured_server_aborts(
    hass: HomeAssistant, plex_sim: PlexSimulator, plextv_sim: PlexTvSimulator
) -> None:
    plex_entry(plex_sim).add_to_hass(hass)
    plextv_sim.add_server(plex_sim)
    plextv_sim.authorize_next_pin()
    result = await _signed_in(hass, await _start(hass))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_server_that_fails_shows_the_choice_again(
    hass: HomeAssistant, plex_sim: PlexSimulator, plextv_sim: PlexTvSimulator
) -> None:
    """No address answers, then the server has no TV library; each time the user may retry."""
    plextv_sim.add_server(plex_sim)
    plex_sim.add_fault(Fault(kind="status", path="/identity", status=503))
    plextv_sim.authorize_next_pin()
    result = await _signed_in(hass, await _start(hass))
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "plex_server"
    assert result["errors"] == {"base": "server_unreachable"}
    with patch("custom_components.episode_sync.api.plex.PlexClient.libraries", return_value=[]):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_SERVER: plex_sim.machine_id}
        )
    assert result["errors"] == {"base": "no_tv_libraries"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_SERVER: plex_sim.machine_id}
    )
    assert result["step_id"] == "libraries"


async def test_closing_the_dialog_stops_polling(
    hass: HomeAssistant, plextv_sim: PlexTvSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plextv, "PIN_POLL_INTERVAL", 3600.0)
    monkeypatch.setattr(plextv, "PIN_TIMEOUT", 7200.0)
    result = await _start(hass)
    flow_id = result["flow_id"]
    async with asyncio.timeout(5):  # a guard, not a measurement: the first poll arrives
        await plextv_sim.pin_polled.wait()
    # The frontend may fetch the flow again while the user signs in: still the same page.
    again = await hass.config_entries.flow.async_configure(flow_id)
    assert again["type"] is FlowResultType.EXTERNAL_STEP
    assert again["url"] == result["url"]
    hass.config_entries.flow.async_abort(flow_id)
    # The poll (asleep for an hour) was cancelled: nothing is left to wait for.
    await hass.async_block_till_done(wait_background_tasks=True)
    assert plextv_sim.count("/api/v2/pins/", method="GET") == 1
    assert hass.config_entries.flow.async_progress() == []


async def test_token_path_still_needs_a_url(
    hass: HomeAssistant, plex_sim: PlexSimulator, plextv_sim: PlexTvSimulator
) -> None:
    result = await _start(hass, **{CONF_TOKEN: plex_sim.token})
    assert result["errors"] == {"base": "url_required"}
    assert plex_sim.requests == []
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: plex_sim.url, CONF_TOKEN: plex_sim.token}
    )
    assert result["step_id"] == "libraries"
    assert plextv_sim.requests == []  # a token means no plex.tv at all


async def test_invalid_typed_url_refused_before_plextv(
    hass: HomeAssistant, plextv_sim: PlexTvSimulator
) -> None:
    result = await _start(hass, **{CONF_URL: "not a url"})
    assert result["errors"] == {"base": "invalid_url"}
    assert plextv_sim.requests == []


@pytest.mark.parametrize("listed", [True, False], ids=["listed", "not listed by plex.tv"])
async def test_reauth_signs_in_again(
    hass: HomeAssistant, plex_sim: PlexSimulator, plextv_sim: PlexTvSimulator, listed: bool
) -> None:
    """At the entry's address, whether plex.tv lists it or only one out of reach."""
    entry = plex_entry(plex_sim)
    entry.add_to_hass(hass)
    new_token = plex_sim.rotate_token()
    unreachable = [SimConnection(uri=closed_port_url(), local=True)]
    plextv_sim.add_server(plex_sim, **({} if listed else {"connections": unreachable}))
    plextv_sim.authorize_next_pin()
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    result = await _signed_in(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_TOKEN] == new_token
    assert entry.data[CONF_URL] == plex_sim.url
    # The same install: plex.tv saw the entry's client identifier.
    assert {r.headers["X-Plex-Client-Identifier"] for r in plextv_sim.requests} == {
        entry.data[CONF_CLIENT_ID]
    }


async def test_reauth_with_an_account_that_cannot_see_the_server(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    plextv_sim: PlexTvSimulator,
    make_plex: SimFactory,
) -> None:
    entry = plex_entry(plex_sim)
    entry.add_to_hass(hass)
    plextv_sim.add_server(await make_plex(name="Other Plex"))
    plextv_sim.authorize_next_pin()
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: " "})
    result = await _signed_in(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "server_not_on_account"


async def test_no_token_in_the_logs(
    hass: HomeAssistant,
    plextv_sim: PlexTvSimulator,
    make_plex: SimFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    home = await make_plex(name="Home", token="home-server-secret")
    stranger = await make_plex(name="Stranger", token="stranger-secret")
    plextv_sim.add_server(
        home,
        connections=[
            SimConnection(uri=closed_port_url(), local=True),
            SimConnection(uri=stranger.url, local=False),
            SimConnection(uri=home.url, local=False, relay=True),
        ],
    )
    plextv_sim.authorize_next_pin(after_polls=2)
    result = await _signed_in(hass, await _start(hass))
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(home.model)}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert "address skipped" in caplog.text  # the DEBUG lines were captured
    for secret in (ACCOUNT_TOKEN, "home-server-secret", "stranger-secret"):
        assert secret not in caplog.text


# -- the client on its own --------------------------------------------------------------


async def test_client_rejects_what_is_no_pin(plextv_sim: PlexTvSimulator) -> None:
    async with aiohttp.ClientSession() as session:
        client = PlexTvClient(session, client_id="c1")
        plextv_sim.add_fault(Fault(kind="mutate", path="/api/v2/pins", mutate=lambda _: []))
        with pytest.raises(MediaServerProtocolError, match="no PIN"):
            await client.create_pin()
        pin = await client.create_pin()
        assert pin.id in {str(i) for i in plextv_sim.pins}


def test_connections_ordered_and_shared_servers_keep_lan_addresses_out() -> None:
    local = PlexConnection(
        uri="http://10.0.0.2:32400", address="10.0.0.2", port=32400, local=True, relay=False
    )
    remote = PlexConnection(
        uri="https://203-0-113-7.abc.plex.direct:32400",
        address="203.0.113.7",
        port=32400,
        local=False,
        relay=False,
    )
    relay = PlexConnection(
        uri="https://relay.plex.direct:8443",
        address="198.51.100.1",
        port=8443,
        local=False,
        relay=True,
    )
    owned = PlexServerResource(
        name="Home",
        machine_id="m1",
        owned=True,
        connections=(relay, remote, local),
        access_token="secret",
    )
    assert owned.preferred_connections() == [local, remote, relay]
    # The address plex.tv gives matches as well as the plex.direct name.
    assert owned.preferred_connections("http://203.0.113.7:32400") == [remote, local, relay]
    assert owned.matches("https://203-0-113-7.abc.plex.direct:32400")
    assert not owned.matches("http://203.0.113.7:8080")
    shared = PlexServerResource(
        name="Friend", machine_id="m2", owned=False, connections=(local, relay), access_token="s"
    )
    assert shared.preferred_connections() == [relay]
    assert "secret" not in repr(owned)
