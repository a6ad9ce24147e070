"""The config flow, options, reauth and reconfigure, against the simulators over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
import socket
from typing import Any
from unittest.mock import patch

from aiohttp import web
from homeassistant import config_entries
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
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.episode_sync.const import (
    CONF_CLIENT_ID,
    CONF_DEVICE_ID,
    CONF_LIBRARIES,
    CONF_MAX_CONCURRENCY,
    CONF_SCAN_INTERVAL,
    CONF_SERVER_TYPE,
    CONF_USER_ID,
    DOMAIN,
)
from tests.helpers import (
    jellyfin_entry,
    library_choices,
    plex_entry,
    suggested_values,
    tv_library_ids,
)
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator


@pytest.fixture(autouse=True)
def no_setup() -> Any:
    """The flow is tested on its own: creating an entry does not set it up."""
    with patch("custom_components.episode_sync.async_setup_entry", return_value=True):
        yield


@pytest.fixture
async def web_page(socket_enabled: Any) -> AsyncIterator[str]:
    """A web server that is not a media server (a router's page)."""

    async def router_page(request: web.Request) -> web.Response:
        return web.Response(text="<html>Router</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", router_page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def closed_port_url() -> str:
    """A URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def _menu(hass: HomeAssistant, choice: str) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["plex", "jellyfin"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": choice}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == choice
    return result  # type: ignore[no-any-return]


async def test_plex_happy_path(hass: HomeAssistant, plex_sim: PlexSimulator) -> None:
    result = await _menu(hass, "plex")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_URL: plex_sim.url + "/", CONF_TOKEN: plex_sim.token, CONF_VERIFY_SSL: True},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "libraries"
    library_ids = tv_library_ids(plex_sim.model)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: library_ids}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == plex_sim.name
    entry = result["result"]
    assert entry.unique_id == plex_sim.machine_id
    assert entry.data[CONF_SERVER_TYPE] == "plex"
    assert entry.data[CONF_URL] == plex_sim.url
    assert entry.data[CONF_TOKEN] == plex_sim.token
    assert len(entry.data[CONF_CLIENT_ID]) == 32
    assert entry.options[CONF_LIBRARIES] == library_ids
    assert entry.options[CONF_SCAN_INTERVAL] == 10
    # The client identified itself and asked for JSON on every request.
    assert all(r.headers.get("Accept") == "application/json" for r in plex_sim.requests)


async def test_jellyfin_happy_path(hass: HomeAssistant, jellyfin_sim: JellyfinSimulator) -> None:
    result = await _menu(hass, "jellyfin")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_URL: jellyfin_sim.url,
            CONF_USERNAME: "alice",
            CONF_PASSWORD: "secret",
            CONF_VERIFY_SSL: True,
        },
    )
    assert result["step_id"] == "libraries"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(jellyfin_sim.model)}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    user_id = jellyfin_sim.user_ids["alice"]
    assert entry.unique_id == f"{jellyfin_sim.server_id}_{user_id}"
    assert entry.title == jellyfin_sim.name
    assert entry.data[CONF_USER_ID] == user_id
    assert entry.data[CONF_TOKEN] in jellyfin_sim.tokens
    assert len(entry.data[CONF_DEVICE_ID]) == 32
    assert CONF_PASSWORD not in entry.data
    assert "secret" not in str(entry.data) + str(entry.options)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("not a url", "invalid_url"),
        ("192.168.1.10:32400", "invalid_url"),
        ("ftp://host", "invalid_url"),
        ("http://[::1", "invalid_url"),  # not even parsable
    ],
)
async def test_plex_invalid_url_then_success(
    hass: HomeAssistant, plex_sim: PlexSimulator, url: str, error: str
) -> None:
    result = await _menu(hass, "plex")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: url, CONF_TOKEN: plex_sim.token}
    )
    assert result["errors"] == {"base": error}
    assert plex_sim.requests == []  # refused before any request
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: plex_sim.url, CONF_TOKEN: plex_sim.token}
    )
    assert result["step_id"] == "libraries"


async def test_an_address_copied_from_the_web_app_is_the_server(
    hass: HomeAssistant, plex_sim: PlexSimulator, jellyfin_sim: JellyfinSimulator
) -> None:
    """The browser's address of a page of the server's web app: the server is before /web."""
    result = await _menu(hass, "plex")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_URL: f"{plex_sim.url}/web/index.html#!/", CONF_TOKEN: plex_sim.token},
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(plex_sim.model)}
    )
    assert result["result"].data[CONF_URL] == plex_sim.url
    result = await _menu(hass, "jellyfin")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_URL: f"{jellyfin_sim.url}/web/#/home.html",
            CONF_USERNAME: "alice",
            CONF_PASSWORD: "secret",
        },
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_LIBRARIES: tv_library_ids(jellyfin_sim.model)}
    )
    assert result["result"].data[CONF_URL] == jellyfin_sim.url


async def test_plex_errors_recover(
    hass: HomeAssistant, plex_sim: PlexSimulator, jellyfin_sim: JellyfinSimulator, web_page: str
) -> None:
    """Each error is shown on the form, and the same flow then succeeds."""
    result = await _menu(hass, "plex")
    flow_id = result["flow_id"]
    for user_input, error in (
        ({CONF_URL: closed_port_url(), CONF_TOKEN: "x"}, "cannot_connect"),
        ({CONF_URL: plex_sim.url, CONF_TOKEN: "wrong"}, "invalid_auth"),
        ({CONF_URL: jellyfin_sim.url, CONF_TOKEN: plex_sim.token}, "not_a_plex_server"),
        ({CONF_URL: web_page, CONF_TOKEN: plex_sim.token}, "not_a_plex_server"),
    ):
        result = await hass.config_entries.flow.async_configure(flow_id, user_input)
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"base": error}, user_input
    with patch(
        "custom_components.episode_sync.api.plex.PlexClient.libraries",
        side_effect=RuntimeError("boom"),
    ):
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_URL: plex_sim.url, CONF_TOKEN: plex_sim.token}
        )
    assert result["errors"] == {"base": "unknown"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: plex_sim.url, CONF_TOKEN: plex_sim.token}
    )
    assert result["step_id"] == "libraries"


async def test_plex_server_that_wants_the_token_on_identity(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """``/identity`` refused without a token (docs: plex §2.1): asked again with it."""
    plex_sim.identity_requires_auth = True
    result = await _menu(hass, "plex")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: plex_sim.url, CONF_TOKEN: "wrong"}
    )
    assert result["errors"] == {"base": "invalid_auth"}  # the token's fault, not the URL's
    plex_sim.clear_log()
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: plex_sim.url, CONF_TOKEN: plex_sim.token}
    )
    assert result["step_id"] == "libraries"
    identity = [r for r in plex_sim.requests if r.path == "/identity"]
    assert ["X-Plex-Token" in r.headers for r in identity] == [False, True]


async def test_plex_no_tv_libraries_then_one(hass: HomeAssistant, socket_enabled: Any) -> None:
    sim = PlexSimulator()  # only its movie section
    await sim.start()
    try:
        result = await _menu(hass, "plex")
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: sim.url, CONF_TOKEN: sim.token}
        )
        assert result["errors"] == {"base": "no_tv_libraries"}
        sim.model.generate(shows=2, seasons=1, episodes=2)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: sim.url, CONF_TOKEN: sim.token}
        )
        assert result["step_id"] == "libraries"
        # One install across both tries: a single client identifier reached the server.
        assert len({r.headers["X-Plex-Client-Identifier"] for r in sim.requests}) == 1
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_LIBRARIES: []}
        )
        assert result["errors"] == {"base": "no_libraries_selected"}
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_LIBRARIES: tv_library_ids(sim.model)}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
    finally:
        await sim.close()


async def test_jellyfin_errors_recover(
    hass: HomeAssistant, plex_sim: PlexSimulator, jellyfin_sim: JellyfinSimulator
) -> None:
    result = await _menu(hass, "jellyfin")
    flow_id = result["flow_id"]
    good = {CONF_URL: jellyfin_sim.url, CONF_USERNAME: "alice", CONF_PASSWORD: "secret"}
    for user_input, error in (
        ({**good, CONF_URL: "jellyfin.local"}, "invalid_url"),
        ({**good, CONF_URL: closed_port_url()}, "cannot_connect"),
        ({**good, CONF_PASSWORD: "wrong"}, "invalid_auth"),
        ({**good, CONF_URL: plex_sim.url}, "not_a_jellyfin_server"),
    ):
        result = await hass.config_entries.flow.async_configure(flow_id, user_input)
        assert result["errors"] == {"base": error}, user_input
    # The user may sign in from listed devices only, and Home Assistant is not one.
    jellyfin_sim.allowed_devices["alice"] = {"a-phone"}
    result = await hass.config_entries.flow.async_configure(flow_id, good)
    assert result["errors"] == {"base": "forbidden"}
    jellyfin_sim.allowed_devices.clear()
    with patch(
        "custom_components.episode_sync.api.jellyfin.JellyfinClient.login",
        side_effect=RuntimeError("boom"),
    ):
        result = await hass.config_entries.flow.async_configure(flow_id, good)
    assert result["errors"] == {"base": "unknown"}
    result = await hass.config_entries.flow.async_configure(flow_id, good)
    assert result["step_id"] == "libraries"


async def test_jellyfin_no_tv_libraries(hass: HomeAssistant, socket_enabled: Any) -> None:
    sim = JellyfinSimulator(users={"bob": ""})
    await sim.start()
    try:
        result = await _menu(hass, "jellyfin")
        user_input = {CONF_URL: sim.url, CONF_USERNAME: "bob", CONF_PASSWORD: ""}
        result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input)
        assert result["errors"] == {"base": "no_tv_libraries"}
        sim.model.generate(shows=1, seasons=1, episodes=1)
        result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input)
        assert result["step_id"] == "libraries"
        # Both sign-ins were one device: the server retired the first one's token.
        assert len(sim.tokens) == 1
    finally:
        await sim.close()


async def test_duplicate_aborts(hass: HomeAssistant, plex_sim: PlexSimulator) -> None:
    plex_entry(plex_sim).add_to_hass(hass)
    result = await _menu(hass, "plex")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: plex_sim.url, CONF_TOKEN: plex_sim.token}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_plex_reauth(hass: HomeAssistant, plex_sim: PlexSimulator) -> None:
    entry = plex_entry(plex_sim)
    entry.add_to_hass(hass)
    client_id = entry.data[CONF_CLIENT_ID]
    new_token = plex_sim.rotate_token()
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: "still-wrong"}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: new_token}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_TOKEN] == new_token
    # The same install: plex.tv and the server keep seeing one client.
    assert entry.data[CONF_CLIENT_ID] == client_id


async def test_jellyfin_reauth_keeps_device_id(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator
) -> None:
    entry = await jellyfin_entry(jellyfin_sim)
    entry.add_to_hass(hass)
    old_token = entry.data[CONF_TOKEN]
    jellyfin_sim.set_password("alice", "new-secret")
    jellyfin_sim.revoke_tokens()
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PASSWORD: "secret"}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PASSWORD: "new-secret"}
    )
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_TOKEN] != old_token
    assert entry.data[CONF_TOKEN] in jellyfin_sim.tokens
    assert jellyfin_sim.tokens[entry.data[CONF_TOKEN]][1] == entry.data[CONF_DEVICE_ID]
    assert "new-secret" not in str(entry.data)


async def test_reconfigure(
    hass: HomeAssistant, plex_sim: PlexSimulator, socket_enabled: Any
) -> None:
    entry = plex_entry(plex_sim)
    entry.add_to_hass(hass)
    other = PlexSimulator(name="Other Plex", token=plex_sim.token)
    other.model.generate(shows=1, seasons=1, episodes=1)
    await other.start()
    try:
        result = await entry.start_reconfigure_flow(hass)
        assert result["step_id"] == "reconfigure"
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: "nope"}
        )
        assert result["errors"] == {"base": "invalid_url"}
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: other.url}
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "unique_id_mismatch"
        await _reconfigure_to_the_same_server_elsewhere(hass, entry, plex_sim)
        assert entry.data[CONF_TOKEN] == plex_sim.token
    finally:
        await other.close()


async def _reconfigure_to_the_same_server_elsewhere(
    hass: HomeAssistant, entry: MockConfigEntry, sim: PlexSimulator, **switches: Any
) -> None:
    """Reconfigure ``entry`` to the server (same machineIdentifier) at another address."""
    moved = PlexSimulator(machine_id=sim.machine_id, token=sim.token)
    for name, value in switches.items():
        setattr(moved, name, value)
    moved.model.generate(shows=1, seasons=1, episodes=1)
    await moved.start()
    try:
        result = await entry.start_reconfigure_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: moved.url}
        )
    finally:
        await moved.close()
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_URL] == moved.url


async def test_reconfigure_asks_which_server_answers_before_sending_the_token(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    jellyfin_sim: JellyfinSimulator,
    socket_enabled: Any,
) -> None:
    """Another server at the new address hears no credential of the entry's: it says who
    it is on a public route, and the flow ends there."""
    plex = plex_entry(plex_sim)
    plex.add_to_hass(hass)
    jellyfin = await jellyfin_entry(jellyfin_sim)
    jellyfin.add_to_hass(hass)
    other_plex = PlexSimulator(name="Neighbour", token="neighbour-token")
    other_jellyfin = JellyfinSimulator(name="Neighbour")
    for sim in (other_plex, other_jellyfin):
        sim.model.generate(shows=1, seasons=1, episodes=1)
        await sim.start()
    try:
        for entry, other in ((plex, other_plex), (jellyfin, other_jellyfin)):
            result = await entry.start_reconfigure_flow(hass)
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_URL: other.url}
            )
            assert result["reason"] == "unique_id_mismatch"
            token = entry.data[CONF_TOKEN]
            assert other.requests
            assert not any(token in str(dict(r.headers)) for r in other.requests)
        # A Plex server that names itself only to the token (plex.direct) still moves.
        await _reconfigure_to_the_same_server_elsewhere(
            hass, plex, plex_sim, identity_requires_auth=True
        )
    finally:
        await other_plex.close()
        await other_jellyfin.close()


async def test_options(hass: HomeAssistant, plex_sim: PlexSimulator) -> None:
    entry = plex_entry(plex_sim)
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "init"
    options = {
        CONF_SCAN_INTERVAL: 30,
        "new_episode_days": 3,
        "full_sync_days": 14,
        CONF_LIBRARIES: tv_library_ids(plex_sim.model),
        CONF_MAX_CONCURRENCY: 2,
        "push_updates": False,
        "push_scan_interval": 120,
        "exclude_keywords": "news, talk",
        "hide_specials": True,
    }
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**options, CONF_LIBRARIES: []}
    )
    assert result["errors"] == {"base": "no_libraries_selected"}
    result = await hass.config_entries.options.async_configure(result["flow_id"], options)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert dict(entry.options) == options


async def test_options_offline_keeps_libraries(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """The server offline, the entry not loaded (no mirror in memory): the libraries stay, by id."""
    entry = plex_entry(plex_sim)
    entry.add_to_hass(hass)
    await plex_sim.close()
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["errors"] == {"base": "cannot_connect"}
    assert library_choices(result) == {i: i for i in entry.options[CONF_LIBRARIES]}


async def test_options_drop_a_library_gone_from_the_server(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """Still selected but no longer on the server: not offered, not filled in, so the form saves."""
    entry = plex_entry(plex_sim)
    ids = tv_library_ids(plex_sim.model)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        entry, options={**entry.options, CONF_LIBRARIES: [*ids, "999"]}
    )
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert "999" not in library_choices(result)
    assert suggested_values(result)[CONF_LIBRARIES] == ids
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**entry.options, CONF_LIBRARIES: ids}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options[CONF_LIBRARIES] == ids


async def test_options_say_why_the_libraries_cannot_be_listed(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """A token refused since: the form says so (not "cannot connect") and keeps the choice."""
    entry = plex_entry(plex_sim)
    entry.add_to_hass(hass)
    plex_sim.rotate_token()
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["errors"] == {"base": "invalid_auth"}
    assert suggested_values(result)[CONF_LIBRARIES] == entry.options[CONF_LIBRARIES]


async def test_jellyfin_reconfigure(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, plex_sim: PlexSimulator
) -> None:
    """A new URL for the same Jellyfin server keeps the token; a Plex URL is refused."""
    entry = await jellyfin_entry(jellyfin_sim)
    entry.add_to_hass(hass)
    token = entry.data[CONF_TOKEN]
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: plex_sim.url}
    )
    assert result["errors"] == {"base": "not_a_jellyfin_server"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: jellyfin_sim.url + "/"}
    )
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_URL] == jellyfin_sim.url
    assert entry.data[CONF_TOKEN] == token
