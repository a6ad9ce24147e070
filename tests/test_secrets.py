"""No token, password or token-bearing URL reaches states, events, logs, diagnostics or files."""

from __future__ import annotations

from collections.abc import Callable
import json
import logging
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import CONF_TOKEN
from homeassistant.core import Event, HomeAssistant
import pytest

from custom_components.episode_sync.api import http
from custom_components.episode_sync.diagnostics import async_get_config_entry_diagnostics
from tests.helpers import entry_for, next_poll, setup_entry, tv_library_ids
from tests.simulator.common import Fault
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator


def _everything(hass: HomeAssistant, events: list[Event], caplog: pytest.LogCaptureFixture) -> str:
    states = [(s.entity_id, s.state, dict(s.attributes)) for s in hass.states.async_all()]
    return "\n".join(
        [
            repr(states),
            repr([(e.event_type, e.data) for e in events]),
            caplog.text,
        ]
    )


@pytest.mark.parametrize("server", ["plex", "jellyfin"])
async def test_no_secret_anywhere(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    jellyfin_sim: JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    server: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[Event] = []
    hass.bus.async_listen("*", events.append)  # type: ignore[arg-type]
    # Distinctive credentials, so a match can only be a leak.
    plex_sim.token = "tok-Zr81q-unique"
    jellyfin_sim.set_password("alice", "pw-Xq93v-unique")
    sim: PlexSimulator | JellyfinSimulator = plex_sim if server == "plex" else jellyfin_sim
    entry = await entry_for(sim)
    await setup_entry(hass, entry)
    secrets = [entry.data[CONF_TOKEN], "pw-Xq93v-unique"]

    # A sync with news, one with a fault, then a refused token (reauth).
    show = next(iter(sim.model.libraries[tv_library_ids(sim.model)[0]].shows.values()))
    sim.model.add_episode(show.id, 5, 1, title="Fresh")
    await next_poll(hass, freezer)
    sim.add_fault(Fault(kind="status", status=500))
    await next_poll(hass, freezer)
    if isinstance(sim, PlexSimulator):
        sim.rotate_token()
    else:
        sim.revoke_tokens()
    await next_poll(hass, freezer)
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)

    haystack = _everything(hass, events, caplog) + json.dumps(diagnostics, default=str)
    stored = json.dumps(
        {key: value for key, value in hass_storage.items() if key.startswith("episode_sync")}
    )
    assert any(e.event_type == "episode_sync_new_episode" for e in events)
    assert "500" in caplog.text  # the fault was logged...
    for secret in secrets:
        assert secret not in haystack  # ...without any credential
        assert secret not in stored
    assert "pw-Xq93v-unique" not in json.dumps(dict(entry.data))
    assert "X-Plex-Token=" not in haystack
    assert "ApiKey=" not in haystack


@pytest.mark.parametrize("server", ["plex", "jellyfin"])
async def test_no_secret_in_any_fault_path(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    jellyfin_sim: JellyfinSimulator,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    let_time_pass: Callable[[], None],
    server: str,
) -> None:
    """Every fault of the matrix, plus a redirect whose target carries the token, at DEBUG."""
    monkeypatch.setattr(http, "DEFAULT_TIMEOUT", 0.25)
    caplog.set_level(logging.DEBUG)
    events: list[Event] = []
    hass.bus.async_listen("*", events.append)  # type: ignore[arg-type]
    plex_sim.token = "tok-Zr81q-unique"
    jellyfin_sim.set_password("alice", "pw-Xq93v-unique")
    sim: PlexSimulator | JellyfinSimulator = plex_sim if server == "plex" else jellyfin_sim
    entry = await entry_for(sim)
    await setup_entry(hass, entry)
    token = entry.data[CONF_TOKEN]
    coordinator = entry.runtime_data.coordinator
    show = next(iter(sim.model.libraries[tv_library_ids(sim.model)[0]].shows.values()))
    faults = [
        Fault(kind="timeout", delay=1.0),
        Fault(kind="status", status=503, headers={"Retry-After": "30"}),
        Fault(kind="reset", times=-1),
        Fault(kind="malformed", skip=1, times=-1),  # the incremental sync and its full retry
        Fault(kind="truncated"),
        Fault(kind="mutate", mutate=lambda payload: {}, skip=1, times=-1),
        # A proxy sending us to its login page with the token in the target.
        Fault(
            kind="status",
            status=302,
            headers={"Location": f"/login?X-Plex-Token={token}&api_key={token}"},
        ),
    ]
    for number, fault in enumerate(faults, start=1):
        sim.model.add_episode(show.id, 30, number, title=f"Fault {number}")
        sim.add_fault(fault)
        await coordinator.async_refresh()
        assert not coordinator.last_update_success, fault
        sim.clear_faults()
        # Back again: Home Assistant logs a failure when the coordinator turns unavailable.
        let_time_pass()
        await coordinator.async_refresh()
        assert coordinator.last_update_success
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)

    haystack = _everything(hass, events, caplog) + json.dumps(diagnostics, default=str)
    for text in ("did not answer", "answered 503", "answered 302", "malformed"):
        assert text in caplog.text, text  # each fault was logged...
    for secret in (token, "pw-Xq93v-unique"):
        assert secret not in haystack  # ...without any credential
    assert "X-Plex-Token=" not in haystack
    assert "api_key=" not in haystack
