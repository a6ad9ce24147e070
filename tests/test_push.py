"""Push: the servers' notification sockets trigger syncs, through Home Assistant.

The integration runs against the simulators' websockets over 127.0.0.1. The
loop's clock is frozen (``freezer``), so nothing happens by itself: the
debounce, reconnect backoff, keepalives and polls only move when a test ticks
the clock, never by more than a few seconds unless the test is about polling.
Socket I/O needs no timer; ``_until`` lets the loop run until the client has
read what the server sent (counted on both sides), so waits are exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
import logging
import random
from typing import Any

import aiohttp
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
)

from custom_components.episode_sync.api import push as push_api
from custom_components.episode_sync.api.errors import (
    MediaServerConnectionError,
    MediaServerRedirectError,
)
from custom_components.episode_sync.api.jellyfin import JellyfinClient
from custom_components.episode_sync.api.plex import PlexClient
from custom_components.episode_sync.api.push import (
    HintKind,
    JellyfinNotifications,
    PlexNotifications,
    PushHint,
    jellyfin_hints,
    plex_hints,
    websocket_url,
)
from custom_components.episode_sync.const import EVENT_NEW_EPISODE
from custom_components.episode_sync.diagnostics import async_get_config_entry_diagnostics
from custom_components.episode_sync.push import (
    HELD_FOR,
    JELLYFIN_COOLDOWN,
    PLEX_COOLDOWN,
    RECONNECT_DELAYS,
    PushListener,
    reconnect_delay,
)
from custom_components.episode_sync.sync import SyncMode
from tests.helpers import (
    JELLYFIN_DEVICE_ID,
    jellyfin_entry,
    mirror_rows,
    model_rows,
    plex_entry,
    setup_entry,
    state_of,
    stored_mirror,
    tv_library_ids,
    wait_until,
)
from tests.simulator.common import Fault
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator
from tests.walk import Walk, library_rows, server_rows, watch_some, without_watched

PLEX_SOCKET = "/:/websockets/notifications"
JELLYFIN_SOCKET = "/socket"
type Sim = PlexSimulator | JellyfinSimulator


# -- helpers ----------------------------------------------------------------------------


async def _until(predicate: Callable[[], bool], what: str) -> None:
    """Run the loop (socket I/O needs no timer) until ``predicate`` holds."""
    for _ in range(50_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def _listener(entry: MockConfigEntry) -> PushListener:
    listener = entry.runtime_data.push
    assert listener is not None
    return listener


def _sent(sim: Sim) -> int:
    return sim.push.frames_sent if isinstance(sim, PlexSimulator) else sim.push.messages_sent


def _cooldown(sim: Sim) -> float:
    return PLEX_COOLDOWN if isinstance(sim, PlexSimulator) else JELLYFIN_COOLDOWN


async def _read_all(entry: MockConfigEntry, sim: Sim) -> None:
    """Wait until the client has read every message the server sent."""
    await _until(lambda: _listener(entry).socket.received == _sent(sim), "client caught up")


def _busy(hass: HomeAssistant) -> list[asyncio.Task[Any]]:
    """Background tasks still running, but for the (endless) push listener."""
    return [
        task
        for task in hass._background_tasks
        if not task.done()
        and not (isinstance(task, asyncio.Task) and task.get_name().startswith("episode_sync push"))
    ]


async def _tick(hass: HomeAssistant, freezer: FrozenDateTimeFactory, seconds: float) -> None:
    """Move the clock, then wait for what it started (a poll is a background task).

    ``next_poll``'s ``wait_background_tasks=True`` would wait for the listener forever.
    """
    freezer.tick(timedelta(seconds=seconds))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    await _until(lambda: not _busy(hass), "background work done")
    await hass.async_block_till_done()
    # A tick may have fired the socket's heartbeat: let the pong come back
    # before the next tick, or that one would fire the pong timeout as well.
    for _ in range(200):
        await asyncio.sleep(0)


async def _settle(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, entry: MockConfigEntry, sim: Sim
) -> None:
    """Let the client read what was sent, then let the debounce end (its sync runs)."""
    await _read_all(entry, sim)
    await _tick(hass, freezer, _cooldown(sim))


async def _connected(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, entry: MockConfigEntry, sim: Sim
) -> None:
    """Set up with push on; wait for the socket and its resync; forget the requests."""
    await setup_entry(hass, entry)
    await _until(lambda: _listener(entry).connected, "socket connected")
    await _settle(hass, freezer, entry, sim)
    sim.clear_log()


def _handshakes(sim: PlexSimulator) -> int:
    """Socket handshakes (each after a check, without the token, that the address redirects not)."""
    return sum(1 for r in sim.requests if r.path == PLEX_SOCKET and "Upgrade" in r.headers)


def _first_show(sim: Sim) -> Any:
    return next(iter(sim.model.libraries[tv_library_ids(sim.model)[0]].shows.values()))


def _syncs(sim: Sim) -> int:
    """Syncs the server saw: each starts with one sections / series listing."""
    if isinstance(sim, PlexSimulator):
        return sim.count("/library/sections", method="GET") - sum(
            1 for r in sim.requests if r.path.startswith("/library/sections/")
        )
    return sum(1 for r in sim.requests if r.query.get("IncludeItemTypes") == "Series")


# -- Plex through Home Assistant ----------------------------------------------------------


async def test_plex_new_episode_arrives_without_a_poll(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """An added episode is mirrored and announced a debounce after the frames, no poll."""
    entry = plex_entry(plex_sim, push_updates=True)
    await _connected(hass, freezer, entry, plex_sim)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)

    plex_sim.model.add_episode(_first_show(plex_sim).id, 3, 1, title="Pushed")
    await _read_all(entry, plex_sim)
    assert _syncs(plex_sim) == 0  # a trailing debounce: nothing yet
    await _tick(hass, freezer, PLEX_COOLDOWN)

    assert _syncs(plex_sim) == 1
    assert state_of(hass, entry, "sensor", "episodes") == "101"
    assert [e.data["title"] for e in events] == ["Pushed"]
    assert state_of(hass, entry, "sensor", "sync_api_calls") == str(
        sum(1 for r in plex_sim.requests if r.path != PLEX_SOCKET)
    )


async def _heard_while_held(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    entry: MockConfigEntry,
    sim: PlexSimulator,
    held: Fault,
) -> None:
    """The client reads what was sent and the debounce ends; the pushed sync's first
    request is held by ``held`` (``_settle`` would wait for the sync to finish)."""
    await _read_all(entry, sim)
    freezer.tick(timedelta(seconds=PLEX_COOLDOWN))
    async_fire_time_changed(hass)
    await _until(lambda: held.fired == 1, "the pushed sync's first request")


async def test_a_pushed_sync_still_running_ends_with_the_entry(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Unloading cancels a sync that a push message started (it would commit nothing)."""
    entry = plex_entry(plex_sim, push_updates=True)
    await _connected(hass, freezer, entry, plex_sim)
    held = plex_sim.add_fault(Fault(kind="timeout", path="/library/sections", delay=0.3))
    plex_sim.model.add_episode(_first_show(plex_sim).id, 3, 1)
    await _heard_while_held(hass, freezer, entry, plex_sim, held)
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert _busy(hass) == []  # the sync waiting for its answer is gone with the entry
    await _tick(hass, freezer, 1)  # the server ends its hold (to nobody)


async def test_what_is_heard_during_a_pushed_sync_is_one_more_sync(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """A scan that outlasts the sync it started: three more changes, one more sync after it."""
    entry = plex_entry(plex_sim, push_updates=True)
    await _connected(hass, freezer, entry, plex_sim)
    held = plex_sim.add_fault(Fault(kind="timeout", path="/library/sections", delay=60))

    for _ in range(4):  # the first starts the sync the server holds; three are heard during it
        plex_sim.model.add_episode(_first_show(plex_sim).id, 7, plex_sim.push.frames_sent)
        await _heard_while_held(hass, freezer, entry, plex_sim, held)
    assert _syncs(plex_sim) == 1
    await _tick(hass, freezer, 60)  # the hold ends (the sync fails): one more, debounced
    await _tick(hass, freezer, PLEX_COOLDOWN)
    assert _syncs(plex_sim) == 2
    assert state_of(hass, entry, "sensor", "episodes") == "104"


async def test_plex_flood_is_one_sync(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """~150 frames for one item, several entries per frame: exactly one sync."""
    plex_sim.push.flood = True
    plex_sim.push.batch_entries = True
    entry = plex_entry(plex_sim, push_updates=True)
    await _connected(hass, freezer, entry, plex_sim)
    sent = plex_sim.push.frames_sent

    plex_sim.model.add_episode(_first_show(plex_sim).id, 3, 1)
    assert plex_sim.push.frames_sent - sent >= 140  # "about 150" (docs: plex §7)
    await _settle(hass, freezer, entry, plex_sim)

    assert _syncs(plex_sim) == 1
    assert plex_sim.count("/library/sections/") == 2  # one show listing, one delta
    assert state_of(hass, entry, "sensor", "episodes") == "101"
    await _tick(hass, freezer, PLEX_COOLDOWN * 3)
    assert _syncs(plex_sim) == 1


@pytest.mark.parametrize("mode", ["legacy", "1.43"])
async def test_plex_delete_rename_and_rekey(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory, mode: str
) -> None:
    """Deletes (both forms), renames and re-keys are confirmed by the sync they trigger."""
    plex_sim.push.delete_mode = mode  # type: ignore[assignment]
    entry = plex_entry(plex_sim, push_updates=True)
    await _connected(hass, freezer, entry, plex_sim)
    episodes = list(_first_show(plex_sim).episodes.values())

    plex_sim.model.remove_episode(episodes[0].id)
    await _settle(hass, freezer, entry, plex_sim)
    assert _syncs(plex_sim) == 1
    assert state_of(hass, entry, "sensor", "episodes") == "99"

    plex_sim.model.rename_episode(episodes[1].id, "Renamed")
    await _settle(hass, freezer, entry, plex_sim)
    plex_sim.model.rekey_episode(episodes[2].id)
    await _settle(hass, freezer, entry, plex_sim)
    assert _syncs(plex_sim) == 3
    ids = tv_library_ids(plex_sim.model)
    assert mirror_rows(entry.runtime_data.coordinator.mirror) == model_rows(plex_sim.model, ids)


async def test_plex_noise_and_watch_state_trigger_nothing(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """EPG look-alikes (fake deletes included), playing/progress and watch state: no sync."""
    entry = plex_entry(plex_sim, push_updates=True)
    await _connected(hass, freezer, entry, plex_sim)
    received = _listener(entry).socket.received

    plex_sim.push.noise()
    plex_sim.model.set_watched(next(iter(_first_show(plex_sim).episodes)))
    await _settle(hass, freezer, entry, plex_sim)

    assert _listener(entry).socket.received > received  # the frames did arrive
    assert plex_sim.requests == []


async def test_plex_epg_entries_beside_a_real_one(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Every entry of a frame counts: a real entry after EPG ones still syncs."""
    plex_sim.push.epg_noise = True
    plex_sim.push.batch_entries = True
    entry = plex_entry(plex_sim, push_updates=True)
    await _connected(hass, freezer, entry, plex_sim)
    plex_sim.model.add_episode(_first_show(plex_sim).id, 3, 1)
    await _settle(hass, freezer, entry, plex_sim)
    assert _syncs(plex_sim) == 1
    assert state_of(hass, entry, "sensor", "episodes") == "101"


async def test_plex_dropped_socket_reconnects_and_resyncs_once(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Frames lost while disconnected: the reconnect's one sync catches up."""
    entry = plex_entry(plex_sim, push_updates=True)
    await _connected(hass, freezer, entry, plex_sim)
    listener = _listener(entry)
    plex_sim.push.drop_frames = 1_000  # the change's frames never arrive…
    plex_sim.model.add_episode(_first_show(plex_sim).id, 3, 1)
    await plex_sim.push.disconnect()  # …and the socket goes away
    await _until(lambda: not listener.connected, "socket closed")
    plex_sim.push.drop_frames = 0
    await _tick(hass, freezer, RECONNECT_DELAYS[0])
    await _until(lambda: listener.connected, "reconnected")
    await _settle(hass, freezer, entry, plex_sim)

    assert _handshakes(plex_sim) == 1
    assert listener.connects == 2
    assert _syncs(plex_sim) == 1
    assert state_of(hass, entry, "sensor", "episodes") == "101"
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    # One wait since the socket last held (the backoff starts over once this one has).
    assert diagnostics["push"] == {"connected": True, "connects": 2, "retries": 1}
    await _tick(hass, freezer, PLEX_COOLDOWN * 3)
    assert _syncs(plex_sim) == 1


async def test_a_socket_closed_soon_after_it_opens_backs_off(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Accepted, then closed (a proxy dropping it): the waits, and the catch-up syncs
    after them, grow as if the connects had failed, until a connection holds."""
    entry = plex_entry(plex_sim, push_updates=True)
    await _connected(hass, freezer, entry, plex_sim)
    listener = _listener(entry)
    await _tick(hass, freezer, HELD_FOR)  # this first connection held

    async def dropped_then_back(wait: float) -> None:
        await plex_sim.push.disconnect()
        await _until(lambda: not listener.connected, "socket closed")
        await _tick(hass, freezer, wait - 1)
        assert not listener.connected
        await _tick(hass, freezer, 1)
        await _until(lambda: listener.connected, "reconnected")
        await _settle(hass, freezer, entry, plex_sim)

    plex_sim.clear_log()
    for wait in RECONNECT_DELAYS[:3]:
        await dropped_then_back(wait)
    assert _syncs(plex_sim) == 3
    await _tick(hass, freezer, HELD_FOR)
    await dropped_then_back(RECONNECT_DELAYS[0])


async def test_a_frame_no_parser_expected_reconnects_and_resyncs(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A parser that fails on a frame (a bug) costs a reconnect, not push for good."""
    entry = plex_entry(plex_sim, push_updates=True)
    await _connected(hass, freezer, entry, plex_sim)
    listener = _listener(entry)
    real = push_api.plex_hints

    def fails_once(frame: Any) -> list[PushHint]:
        monkeypatch.setattr(push_api, "plex_hints", real)
        raise KeyError("Metadata")

    monkeypatch.setattr(push_api, "plex_hints", fails_once)
    plex_sim.push.send_raw('{"NotificationContainer": {"type": "timeline"}}')
    await _until(lambda: not listener.connected, "socket closed")
    assert "notification socket failed" in caplog.text
    await _tick(hass, freezer, RECONNECT_DELAYS[0])
    await _until(lambda: listener.connected, "reconnected")
    await _settle(hass, freezer, entry, plex_sim)
    assert listener.connects == 2
    assert _syncs(plex_sim) == 1


async def test_plex_backoff_and_polling_interval(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Connected: polls every push_scan_interval; down: every scan_interval, with backoff."""
    entry = plex_entry(plex_sim, push_updates=True, scan_interval=10, push_scan_interval=60)
    await _connected(hass, freezer, entry, plex_sim)
    coordinator = entry.runtime_data.coordinator
    assert coordinator.update_interval == timedelta(minutes=60)
    for _ in range(5):  # 50 minutes: no poll while the socket is up
        await _tick(hass, freezer, 600)
    assert _syncs(plex_sim) == 0
    await _tick(hass, freezer, 600)
    assert _syncs(plex_sim) == 1

    plex_sim.clear_log()
    plex_sim.add_fault(Fault(kind="status", path=PLEX_SOCKET, status=503, times=-1))
    await plex_sim.push.disconnect()
    listener = _listener(entry)
    await _until(lambda: not listener.connected, "socket closed")
    assert coordinator.update_interval == timedelta(minutes=10)
    # Reconnect attempts after 30, 60, 120 s (python-plexwebsocket's schedule).
    for delay, attempts in ((30, 1), (60, 2), (120, 3)):
        await _tick(hass, freezer, delay - 1)
        assert _handshakes(plex_sim) == attempts - 1
        await _tick(hass, freezer, 1)
        # retries counts the waits since the last connect: the first one was the drop's.
        await _until(lambda n=attempts: listener.retries == n + 1, f"attempt {attempts} failed")
        assert _handshakes(plex_sim) == attempts
    assert _syncs(plex_sim) == 0
    await _tick(hass, freezer, 600 - 210)  # 10 minutes after the disconnect: a poll
    assert _syncs(plex_sim) == 1

    plex_sim.clear_faults()
    await _tick(hass, freezer, RECONNECT_DELAYS[-1])  # the longest wait, repeated
    await _until(lambda: listener.connected, "reconnected")
    assert coordinator.update_interval == timedelta(minutes=60)


async def test_a_failed_pushed_sync_is_retried_at_the_usual_interval(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """The socket stays up while a sync fails: the retry is a scan_interval away, not the
    slow one push allows, and the slow one is back once a sync succeeds."""
    entry = plex_entry(plex_sim, push_updates=True, scan_interval=10, push_scan_interval=60)
    await _connected(hass, freezer, entry, plex_sim)
    coordinator = entry.runtime_data.coordinator
    plex_sim.add_fault(Fault(kind="status", path="/library/sections", status=500))
    plex_sim.model.add_episode(_first_show(plex_sim).id, 3, 1, title="Pushed")
    await _settle(hass, freezer, entry, plex_sim)
    assert _syncs(plex_sim) == 1
    assert state_of(hass, entry, "sensor", "episodes") == "unavailable"
    assert coordinator.update_interval == timedelta(minutes=10)
    # Home Assistant polls within a second of the interval, either side.
    await _tick(hass, freezer, 590)
    assert _syncs(plex_sim) == 1
    await _tick(hass, freezer, 20)
    assert _syncs(plex_sim) == 2
    assert state_of(hass, entry, "sensor", "episodes") == "101"
    assert coordinator.update_interval == timedelta(minutes=60)

    # A socket that drops and comes back after a failed sync leaves the retry near too.
    plex_sim.add_fault(Fault(kind="status", path="/library/sections", status=500))
    plex_sim.model.add_episode(_first_show(plex_sim).id, 3, 2, title="Pushed again")
    await _settle(hass, freezer, entry, plex_sim)
    assert _syncs(plex_sim) == 3
    assert coordinator.update_interval == timedelta(minutes=10)
    await plex_sim.push.disconnect()
    await _until(lambda: not _listener(entry).connected, "socket closed")
    await _tick(hass, freezer, RECONNECT_DELAYS[0])
    await _until(lambda: _listener(entry).connected, "reconnected")
    assert coordinator.update_interval == timedelta(minutes=10)


async def test_plex_refused_token_starts_reauth(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 401 on the handshake stops the listener and starts a reauth; no retry loop."""
    caplog.set_level(logging.DEBUG)
    entry = plex_entry(plex_sim, push_updates=True)
    await _connected(hass, freezer, entry, plex_sim)
    old_token = plex_sim.token
    plex_sim.rotate_token()
    await plex_sim.push.disconnect()
    await _until(lambda: not _listener(entry).connected, "socket closed")
    await _tick(hass, freezer, RECONNECT_DELAYS[0])
    await _until(lambda: bool(hass.config_entries.flow.async_progress()), "reauth started")
    await hass.async_block_till_done()

    flows = hass.config_entries.flow.async_progress()
    assert [f["context"]["source"] for f in flows] == ["reauth"]
    assert _handshakes(plex_sim) == 1
    for _ in range(5):
        await _tick(hass, freezer, 300)
    assert _handshakes(plex_sim) == 1
    assert not _listener(entry).connected
    assert old_token not in caplog.text
    assert plex_sim.token not in caplog.text


async def test_no_polls_while_a_reauth_is_pending_and_the_socket_is_down(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """A poll refused the token (reauth started, polling stopped); the socket then drops
    and cannot come back: polling stays stopped rather than sending the token again."""
    entry = plex_entry(plex_sim, push_updates=True, scan_interval=10, push_scan_interval=60)
    await _connected(hass, freezer, entry, plex_sim)
    plex_sim.rotate_token()
    await _tick(hass, freezer, 3600)
    await hass.async_block_till_done()
    assert [f["context"]["source"] for f in hass.config_entries.flow.async_progress()] == ["reauth"]
    assert _syncs(plex_sim) == 1
    plex_sim.add_fault(Fault(kind="status", path=PLEX_SOCKET, status=503, times=-1))
    await plex_sim.push.disconnect()
    await _until(lambda: not _listener(entry).connected, "socket closed")
    for _ in range(3):
        await _tick(hass, freezer, 600)
    assert _syncs(plex_sim) == 1


async def test_push_off_opens_no_socket(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """``push_updates: False``: no socket, the scan interval alone drives syncs."""
    entry = plex_entry(plex_sim, push_updates=False)
    await setup_entry(hass, entry)
    assert entry.runtime_data.push is None
    plex_sim.model.add_episode(_first_show(plex_sim).id, 3, 1)
    await _tick(hass, freezer, PLEX_COOLDOWN * 3)
    assert _handshakes(plex_sim) == 0
    assert state_of(hass, entry, "sensor", "episodes") == "100"
    assert entry.runtime_data.coordinator.update_interval == timedelta(minutes=10)


async def test_unload_stops_the_listener(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Unloading closes the socket and cancels the listener and its debounce."""
    entry = plex_entry(plex_sim, push_updates=True)
    await _connected(hass, freezer, entry, plex_sim)
    plex_sim.model.add_episode(_first_show(plex_sim).id, 3, 1)
    await _read_all(entry, plex_sim)  # a debounced sync is pending…
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED
    await _until(lambda: plex_sim.push.connected == 0, "server saw the close")
    await _tick(hass, freezer, RECONNECT_DELAYS[-1])  # …and never runs
    assert plex_sim.requests == []


# -- Jellyfin through Home Assistant --------------------------------------------------------


async def _jellyfin_connected(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, sim: JellyfinSimulator, **options: Any
) -> MockConfigEntry:
    sim.push.library_update_duration = 2.0  # the server default is 30 s
    entry = await jellyfin_entry(sim, push_updates=True, **options)
    await _connected(hass, freezer, entry, sim)
    return entry


async def _flush_library_changed(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, entry: MockConfigEntry, sim: Sim
) -> None:
    """Let the server's LibraryUpdateDuration pass, then the client's debounce."""
    assert isinstance(sim, JellyfinSimulator)
    await _tick(hass, freezer, sim.push.library_update_duration)
    await _settle(hass, freezer, entry, sim)


async def test_jellyfin_new_episode_arrives_without_a_poll(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """A batch of changes is one LibraryChanged, one sync; the new episode is announced."""
    entry = await _jellyfin_connected(hass, freezer, jellyfin_sim)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    show = _first_show(jellyfin_sim)
    sent = jellyfin_sim.push.messages_sent
    jellyfin_sim.model.add_episode(show.id, 3, 1, title="Pushed")
    jellyfin_sim.model.add_episode(show.id, 3, 2, title="Pushed too")
    jellyfin_sim.model.rename_episode(next(iter(show.episodes)), "Renamed")
    assert jellyfin_sim.push.messages_sent == sent  # batched server-side
    await _flush_library_changed(hass, freezer, entry, jellyfin_sim)

    assert jellyfin_sim.push.messages_sent == sent + 1
    assert _syncs(jellyfin_sim) == 1
    assert state_of(hass, entry, "sensor", "episodes") == "102"
    assert sorted(e.data["title"] for e in events) == ["Pushed", "Pushed too"]
    ids = tv_library_ids(jellyfin_sim.model)
    assert mirror_rows(entry.runtime_data.coordinator.mirror) == model_rows(jellyfin_sim.model, ids)


async def test_jellyfin_played_toggle_and_removal(
    hass: HomeAssistant,
    jellyfin_sim: JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """UserDataChanged syncs the watched flag; ItemsRemoved is confirmed by the sync."""
    entry = await _jellyfin_connected(hass, freezer, jellyfin_sim)
    episodes = list(_first_show(jellyfin_sim).episodes)
    jellyfin_sim.model.set_watched(episodes[0])
    await _settle(hass, freezer, entry, jellyfin_sim)  # UserDataChanged is not batched
    assert _syncs(jellyfin_sim) == 1
    watched = {e.id for _, _, e in stored_mirror(hass_storage, entry).episodes() if e.watched}
    assert watched == {episodes[0]}

    jellyfin_sim.model.remove_episode(episodes[1])
    await _flush_library_changed(hass, freezer, entry, jellyfin_sim)
    assert _syncs(jellyfin_sim) == 2
    assert state_of(hass, entry, "sensor", "episodes") == "99"


async def test_jellyfin_watch_swap_in_one_show_is_seen(
    hass: HomeAssistant,
    jellyfin_sim: JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """One episode played and another of the same show unplayed before the debounce ends.

    The show's counts are as they were and no delta lists user data: the
    episodes UserDataChanged named get their show re-listed, in the one sync.
    """
    show = _first_show(jellyfin_sim)
    first, second = list(show.episodes)[:2]
    jellyfin_sim.model.set_watched(first)
    entry = await _jellyfin_connected(hass, freezer, jellyfin_sim)

    jellyfin_sim.model.set_watched(second)
    jellyfin_sim.model.set_watched(first, watched=False)
    await _settle(hass, freezer, entry, jellyfin_sim)

    assert _syncs(jellyfin_sim) == 1
    assert jellyfin_sim.count(f"/Shows/{show.id}/Episodes") == 1
    assert sum(r.path.endswith("/Episodes") for r in jellyfin_sim.requests) == 1
    watched = {e.id for _, _, e in stored_mirror(hass_storage, entry).episodes() if e.watched}
    assert watched == {second}
    assert not entry.runtime_data.coordinator.played_items


async def test_jellyfin_keepalive_every_half_of_force_keepalive(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """ForceKeepAlive Data 60: a KeepAlive every 30 *seconds*, so the socket never idles out."""
    entry = await _jellyfin_connected(hass, freezer, jellyfin_sim)
    assert jellyfin_sim.push.keepalives_received == 1  # answered at once
    assert _listener(entry).socket.keepalive_interval == 30  # type: ignore[attr-defined]
    for n in range(2, 8):  # three minutes, well past the 60 s idle timeout
        await _tick(hass, freezer, 10)
        await _tick(hass, freezer, 20)
        await _until(lambda n=n: jellyfin_sim.push.keepalives_received == n, "KeepAlive sent")
    assert jellyfin_sim.count(JELLYFIN_SOCKET) == 0  # never reconnected
    assert _listener(entry).connects == 1
    assert _syncs(jellyfin_sim) == 0


async def test_jellyfin_dropped_socket_reconnects_and_resyncs_once(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Nothing is replayed after a reconnect: the reconnect's sync catches up."""
    entry = await _jellyfin_connected(hass, freezer, jellyfin_sim)
    listener = _listener(entry)
    await jellyfin_sim.push.drop()
    await _until(lambda: not listener.connected, "socket closed")
    jellyfin_sim.model.add_episode(_first_show(jellyfin_sim).id, 3, 1)
    await _tick(hass, freezer, jellyfin_sim.push.library_update_duration)  # sent to nobody
    await _tick(hass, freezer, RECONNECT_DELAYS[0])
    await _until(lambda: listener.connected, "reconnected")
    await _settle(hass, freezer, entry, jellyfin_sim)

    assert jellyfin_sim.count(JELLYFIN_SOCKET) == 1
    assert _syncs(jellyfin_sim) == 1
    assert state_of(hass, entry, "sensor", "episodes") == "101"


async def test_jellyfin_refused_token_starts_reauth(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """A 403 before the upgrade stops the listener and starts a reauth."""
    entry = await _jellyfin_connected(hass, freezer, jellyfin_sim)
    jellyfin_sim.revoke_tokens()
    await jellyfin_sim.push.drop()
    await _until(lambda: not _listener(entry).connected, "socket closed")
    await _tick(hass, freezer, RECONNECT_DELAYS[0])
    await _until(lambda: bool(hass.config_entries.flow.async_progress()), "reauth started")
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress()
    assert [f["context"]["source"] for f in flows] == ["reauth"]
    await _tick(hass, freezer, RECONNECT_DELAYS[-1])
    assert jellyfin_sim.count(JELLYFIN_SOCKET) == 1


async def test_a_socket_refused_by_a_proxy_starts_no_reauth(
    hass: HomeAssistant,
    media_sim: Sim,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The handshake refused (a proxy that blocks WebSockets), the HTTP API not: polling goes on."""
    if isinstance(media_sim, PlexSimulator):
        entry, socket = plex_entry(media_sim, push_updates=True), PLEX_SOCKET
        await _connected(hass, freezer, entry, media_sim)
        media_sim.add_fault(Fault(kind="status", path=socket, status=401, times=-1))
        await media_sim.push.disconnect()
    else:
        entry, socket = await _jellyfin_connected(hass, freezer, media_sim), JELLYFIN_SOCKET
        media_sim.add_fault(Fault(kind="status", path=socket, status=403, times=-1))
        await media_sim.push.drop()
    coordinator = entry.runtime_data.coordinator
    listener = _listener(entry)
    await _until(lambda: not listener.connected, "socket closed")
    await _tick(hass, freezer, RECONNECT_DELAYS[0])
    await _until(lambda: "accepts the credentials" in caplog.text, "the refusal told apart")
    await hass.async_block_till_done()

    assert hass.config_entries.flow.async_progress() == []  # no reauth
    assert _syncs(media_sim) == 1  # the sync that asked the HTTP API
    assert coordinator.last_update_success
    assert coordinator.update_interval == timedelta(minutes=10)  # polling at the normal pace
    attempts = media_sim.count(socket)
    for _ in range(5):
        await _tick(hass, freezer, 300)
    assert media_sim.count(socket) == attempts  # push stays off until a reload


async def test_a_refused_socket_while_the_server_is_down_is_tried_again(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """The sync that would tell the refusal apart fails too: nothing decided, the socket retries."""
    entry = await _jellyfin_connected(hass, freezer, jellyfin_sim)
    refused = jellyfin_sim.add_fault(Fault(kind="status", path=JELLYFIN_SOCKET, status=403))
    down = jellyfin_sim.add_fault(Fault(kind="status", path="/Items", status=503))
    await jellyfin_sim.push.drop()
    listener = _listener(entry)
    await _until(lambda: not listener.connected, "socket closed")
    await _tick(hass, freezer, RECONNECT_DELAYS[0])
    await _until(lambda: down.fired == 1, "the sync failed")
    assert refused.fired == 1
    await _tick(hass, freezer, RECONNECT_DELAYS[1])
    await _until(lambda: listener.connected, "reconnected")
    assert hass.config_entries.flow.async_progress() == []


# -- the Jellyfin simulator's socket on its own (real time, no Home Assistant) ---------------


async def test_jellyfin_socket_rules(jellyfin_sim: JellyfinSimulator) -> None:
    """403 on a bad token; API-key sockets get no LibraryChanged; silent sockets are closed."""
    push = jellyfin_sim.push
    push.library_update_duration = 0.01
    # Short, yet long enough that a busy machine does not idle the user's socket out.
    push.idle_timeout, push.check_every = 1.0, 0.05

    async def next_message(ws: aiohttp.ClientWebSocketResponse) -> Any:
        """The next message but the ForceKeepAlive repeated to a quiet socket."""
        while (message := await ws.receive_json(timeout=5))["MessageType"] == "ForceKeepAlive":
            pass
        return message

    user_token = (await jellyfin_entry(jellyfin_sim)).data["token"]
    push.api_keys.add("an-api-key")
    url = websocket_url(jellyfin_sim.url) + JELLYFIN_SOCKET
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, params={"ApiKey": "wrong"})
        assert refused.value.status == 403
        jellyfin_sim.starting_up = True  # 10.11's startup middleware: no route upgrades
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, params={"ApiKey": user_token})
        assert refused.value.status == 503
        jellyfin_sim.starting_up = False
        user = await session.ws_connect(url, params={"ApiKey": user_token})
        key = await session.ws_connect(
            url, headers={"Authorization": 'MediaBrowser Client="x", Token="an-api-key"'}
        )
        for ws in (user, key):
            hello = await ws.receive_json(timeout=5)
            assert (hello["MessageType"], hello["Data"]) == ("ForceKeepAlive", 60)
        await user.send_str('{"MessageType":"KeepAlive"}')
        assert (await next_message(user))["MessageType"] == "KeepAlive"

        show = _first_show(jellyfin_sim)
        episode = jellyfin_sim.model.add_episode(show.id, 3, 1)
        changed = await next_message(user)
        assert changed["MessageType"] == "LibraryChanged"
        assert changed["Data"] == {
            "FoldersAddedTo": [show.season_ids[3]],
            "FoldersRemovedFrom": [],
            "ItemsAdded": [episode.id],
            "ItemsRemoved": [],
            "ItemsUpdated": [show.id],
            # Every one of the user's libraries (a film one too), not just the show's.
            "CollectionFolders": list(jellyfin_sim.model.libraries),
            "IsEmpty": False,
        }
        # The API-key socket got nothing but keepalive traffic, then idled out.
        while (message := await key.receive(timeout=5)).type is aiohttp.WSMsgType.TEXT:
            assert message.json()["MessageType"] == "ForceKeepAlive"
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await user.close()
        await key.close()


async def test_plex_socket_refuses_a_wrong_token(plex_sim: PlexSimulator) -> None:
    url = websocket_url(plex_sim.url) + PLEX_SOCKET
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"X-Plex-Token": "wrong"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url, headers=headers)
            assert refused.value.status == 401
        ws = await session.ws_connect(url, params={"X-Plex-Token": plex_sim.token})
        plex_sim.model.set_watched(next(iter(_first_show(plex_sim).episodes)))
        plex_sim.model.add_episode(_first_show(plex_sim).id, 3, 1)
        first = await ws.receive_json(timeout=5)  # watch state sent nothing before it
        assert first["NotificationContainer"]["ActivityNotification"][0]["event"] == "started"
        await ws.close()


# -- the frame rules --------------------------------------------------------------------------


def _timeline(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"NotificationContainer": {"type": "timeline", "TimelineEntry": list(entries)}}


LIB = "com.plexapp.plugins.library"


def test_plex_timeline_rules() -> None:
    """Every entry counts; ids become strings; created/5 add, 9/deleted/-1 delete."""
    frame = _timeline(
        {"identifier": LIB, "sectionID": 2, "itemID": 2041, "type": 4, "state": 9},
        {"identifier": LIB, "sectionID": "1", "itemID": "10141", "state": 5, "type": 1},
        {"identifier": LIB, "sectionID": 3, "itemID": 7, "state": 0, "metadataState": "created"},
        {"identifier": LIB, "sectionID": "3", "itemID": "8", "state": 0, "type": -1},
        {
            "identifier": LIB,
            "sectionID": "3",
            "itemID": "9",
            "state": 4,
            "metadataState": "deleted",
        },
        {"identifier": LIB, "sectionID": "3", "itemID": "10", "state": 3},
        {"identifier": LIB, "sectionID": "3", "itemID": "11", "state": 0},
        {"identifier": "tv.plex.providers.epg.cloud:4", "sectionID": "3", "state": 9},
        # No section named: somewhere on the server.
        {"identifier": LIB, "sectionID": "-1", "itemID": "12", "type": -1},
        {"identifier": LIB, "itemID": "13", "type": -1},
        "not an entry",
    )
    assert plex_hints(frame) == [
        PushHint(HintKind.DELETED, "2", "2041"),
        PushHint(HintKind.CHANGED, "1", "10141"),
        PushHint(HintKind.CHANGED, "3", "7"),
        PushHint(HintKind.DELETED, "3", "8"),
        PushHint(HintKind.DELETED, "3", "9"),
        PushHint(HintKind.DELETED, None, "12"),
        PushHint(HintKind.DELETED, None, "13"),
    ]


def test_plex_scan_ended_and_other_frames() -> None:
    def activity(event: str, kind: str = "library.update.section") -> dict[str, Any]:
        return {"event": event, "Activity": {"type": kind, "Context": {"librarySectionID": 2}}}

    frame = {
        "NotificationContainer": {
            "type": "activity",
            "ActivityNotification": [
                activity("started"),
                activity("ended"),
                activity("ended", "library.refresh.items"),
                {"event": "ended"},
            ],
        }
    }
    assert plex_hints(frame) == [PushHint(HintKind.SCAN_ENDED, "2")]
    status = {
        "NotificationContainer": {
            "type": "status",
            "StatusNotification": [
                {"title": "Library scan complete"},
                {"title": "Library scan complete: Extra information may still be downloading"},
                {"title": "Backing up database"},
            ],
        }
    }
    assert plex_hints(status) == [PushHint(HintKind.SCAN_ENDED)] * 2
    for noise in (
        {"NotificationContainer": {"type": "playing", "PlaySessionStateNotification": [{}]}},
        {"NotificationContainer": {"type": "progress", "ProgressNotification": [{}]}},
        {"NotificationContainer": {"type": "timeline", "TimelineEntry": "bad"}},
        {"NotificationContainer": "bad"},
        [],
    ):
        assert plex_hints(noise) == []


def test_jellyfin_message_rules() -> None:
    empty = {
        "FoldersAddedTo": [],
        "FoldersRemovedFrom": [],
        "ItemsAdded": [],
        "ItemsRemoved": [],
        "ItemsUpdated": [],
        "CollectionFolders": [],
    }
    changed = {"MessageType": "LibraryChanged", "Data": {**empty, "ItemsRemoved": ["a"]}}
    assert jellyfin_hints(changed) == [PushHint(HintKind.LIBRARY_CHANGED)]
    quiet = {"MessageType": "LibraryChanged", "Data": {**empty, "IsEmpty": True}}
    assert jellyfin_hints(quiet) == []
    played = {
        "MessageType": "UserDataChanged",
        "Data": {"UserId": "u", "UserDataList": [{"ItemId": "e1"}, {"ItemId": "e2"}, 3]},
    }
    assert jellyfin_hints(played) == [
        PushHint(HintKind.USER_DATA, item_id="e1"),
        PushHint(HintKind.USER_DATA, item_id="e2"),
    ]
    for data in ({}, {"UserDataList": 5}, {"UserDataList": {"ItemId": "e1"}}):
        assert jellyfin_hints({"MessageType": "UserDataChanged", "Data": data}) == [
            PushHint(HintKind.USER_DATA)
        ]
    for other in ({"MessageType": "KeepAlive"}, {"MessageType": "Play", "Data": {}}, "x"):
        assert jellyfin_hints(other) == []


def test_reconnect_schedule() -> None:
    """python-plexwebsocket's min(2**(n-1) * 30, 300) s."""
    assert [reconnect_delay(n) for n in range(1, 8)] == [30, 60, 120, 240, 300, 300, 300]
    assert websocket_url("https://h:8920/jf") == "wss://h:8920/jf"
    assert websocket_url("http://h:32400") == "ws://h:32400"


async def test_plex_unselected_library_and_bad_frames_trigger_nothing(
    hass: HomeAssistant, socket_enabled: Any, freezer: FrozenDateTimeFactory
) -> None:
    """A frame that is not JSON: nothing; a change in a library the user left out: no look at it.

    The scan's ``status`` frame names no library, so it still asks for a sync,
    which costs the one sections listing (the markers show nothing changed).
    """
    sim = PlexSimulator()
    chosen = sim.model.generate(shows=2, seasons=1, episodes=2, seed=1)
    other = sim.model.generate(title="Anime", shows=2, seasons=1, episodes=2, seed=2)
    await sim.start()
    try:
        entry = plex_entry(sim, push_updates=True, libraries=[chosen.id])
        await _connected(hass, freezer, entry, sim)
        sim.push.send_raw("<html>not json</html>")
        await _settle(hass, freezer, entry, sim)
        assert sim.requests == []
        sim.model.add_episode(next(iter(other.shows)), 2, 1)
        await _settle(hass, freezer, entry, sim)
        assert [r.path for r in sim.requests] == ["/library/sections"]
        sim.clear_log()
        sim.model.add_episode(next(iter(chosen.shows)), 2, 1)  # the channel still works
        await _settle(hass, freezer, entry, sim)
        assert _syncs(sim) == 1
        assert state_of(hass, entry, "sensor", "episodes") == "5"
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.close()


async def test_jellyfin_repeated_and_changed_force_keepalive(
    jellyfin_sim: JellyfinSimulator,
) -> None:
    """A repeated ForceKeepAlive keeps the pace; a new Data changes it; a server close ends."""
    push = jellyfin_sim.push
    push.idle_timeout, push.check_every = 0.3, 0.05
    entry = await jellyfin_entry(jellyfin_sim)
    async with aiohttp.ClientSession() as session:
        client = JellyfinClient(
            session,
            jellyfin_sim.url,
            device_id=JELLYFIN_DEVICE_ID,
            token=entry.data["token"],
            user_id=entry.data["user_id"],
        )
        socket = JellyfinNotifications(session, client.push_target())
        opened: list[bool] = []
        # Data 60: our next KeepAlive is 30 s away, so the server repeats its
        # ForceKeepAlive and then closes the quiet socket; listen() returns.
        await asyncio.wait_for(socket.listen(lambda: opened.append(True), lambda h: None), 10)
        assert opened == [True]
        assert socket.received >= 2
        assert push.keepalives_received == 1
        assert socket.keepalive_interval == 30

        push.keepalive_timeout = 0.2  # the server now asks for one every 0.1 s
        listening = asyncio.get_running_loop().create_task(
            socket.listen(lambda: None, lambda h: None)
        )
        await wait_until(lambda: push.keepalives_received >= 4)
        assert socket.keepalive_interval == 0.1
        await push.drop()
        await asyncio.wait_for(listening, 10)


async def test_socket_connection_failures(plex_sim: PlexSimulator) -> None:
    """A refused status and a server that is gone are connection errors, never the URL."""
    # Both the redirect check and the handshake get it.
    plex_sim.add_fault(Fault(kind="status", path=PLEX_SOCKET, status=503, times=2))
    async with aiohttp.ClientSession() as session:
        client = PlexClient(session, plex_sim.url, plex_sim.token, client_id="c")
        socket = PlexNotifications(session, client.push_target())
        with pytest.raises(MediaServerConnectionError, match=r"refused .*\(503\)") as refused:
            await socket.listen(lambda: None, lambda h: None)
        await plex_sim.close()
        with pytest.raises(MediaServerConnectionError, match="could not connect") as gone:
            await socket.listen(lambda: None, lambda h: None)
    for failed in (refused, gone):
        assert plex_sim.url not in str(failed.value)
        assert plex_sim.token not in str(failed.value)


async def test_plex_socket_that_redirects_is_not_followed(plex_sim: PlexSimulator) -> None:
    """The token never follows a redirect of the socket's address to another host."""
    elsewhere = PlexSimulator(name="Elsewhere", token=plex_sim.token)
    await elsewhere.start()
    location = {"Location": websocket_url(elsewhere.url).replace("ws", "http", 1) + PLEX_SOCKET}
    plex_sim.add_fault(
        Fault(kind="status", path=PLEX_SOCKET, status=302, headers=location, times=-1)
    )
    try:
        async with aiohttp.ClientSession() as session:
            client = PlexClient(session, plex_sim.url, plex_sim.token, client_id="c")
            socket = PlexNotifications(session, client.push_target())
            with pytest.raises(MediaServerRedirectError, match=r"redirects .*\(302\)") as err:
                await socket.listen(lambda: None, lambda h: None)
        assert elsewhere.requests == []
        (checked,) = plex_sim.requests
        assert "X-Plex-Token" not in checked.headers
        assert "X-Plex-Token" not in checked.query
        assert plex_sim.protocol_violations() == []  # the client's other headers, as always
        assert plex_sim.token not in str(err.value)
    finally:
        await elsewhere.close()


async def test_jellyfin_intervals_and_unload(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """The poll interval follows the socket; unloading closes it for good."""
    entry = await _jellyfin_connected(hass, freezer, jellyfin_sim, push_scan_interval=45)
    coordinator = entry.runtime_data.coordinator
    assert coordinator.update_interval == timedelta(minutes=45)
    jellyfin_sim.add_fault(Fault(kind="status", path=JELLYFIN_SOCKET, status=503, times=-1))
    await jellyfin_sim.push.drop()
    await _until(lambda: not _listener(entry).connected, "socket closed")
    assert coordinator.update_interval == timedelta(minutes=10)
    await _tick(hass, freezer, RECONNECT_DELAYS[0])
    await _until(lambda: _listener(entry).retries == 2, "reconnect refused")
    jellyfin_sim.clear_faults()
    await _tick(hass, freezer, RECONNECT_DELAYS[1])
    await _until(lambda: _listener(entry).connected, "reconnected")
    assert coordinator.update_interval == timedelta(minutes=45)

    assert await hass.config_entries.async_unload(entry.entry_id)
    await _until(lambda: jellyfin_sim.push.connected == 0, "server saw the close")
    jellyfin_sim.clear_log()
    jellyfin_sim.model.add_episode(_first_show(jellyfin_sim).id, 3, 1)
    await _tick(hass, freezer, jellyfin_sim.push.library_update_duration)
    await _tick(hass, freezer, RECONNECT_DELAYS[-1])
    assert jellyfin_sim.requests == []


# -- a random walk, pushed ------------------------------------------------------------------


async def test_push_alone_follows_a_random_walk(
    hass: HomeAssistant, media_sim: Sim, freezer: FrozenDateTimeFactory
) -> None:
    """Random changes, only the push channel to hear of them: no poll runs in all this time.

    After each step's messages and their debounce, the mirror holds what the
    server holds (watch state too on Jellyfin, whose UserDataChanged names
    the items; Plex sends nothing for a watch) and the events name exactly
    the new episodes.
    """
    sim = media_sim
    watch_some(sim)
    if isinstance(sim, JellyfinSimulator):
        entry = await _jellyfin_connected(hass, freezer, sim)
    else:
        entry = plex_entry(sim, push_updates=True)
        await _connected(hass, freezer, entry, sim)
    coordinator = entry.runtime_data.coordinator
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    walk = Walk(sim, random.Random(5), push=isinstance(sim, JellyfinSimulator))
    library_ids = tv_library_ids(sim.model)
    for number in range(10):
        new = walk.step({e.id for _, _, e in coordinator.mirror.episodes()})
        where = f"step {number}: {walk.log}"
        if isinstance(sim, JellyfinSimulator):
            await _flush_library_changed(hass, freezer, entry, sim)
        else:
            await _settle(hass, freezer, entry, sim)

        assert sorted(e.data["episode_id"] for e in events) == sorted(new), where
        events.clear()
        for library_id in library_ids:
            ours, theirs = (
                library_rows(coordinator.mirror, library_id),
                server_rows(sim, library_id),
            )
            if isinstance(sim, PlexSimulator):
                ours, theirs = without_watched(ours), without_watched(theirs)
            assert ours == theirs, where
    assert coordinator.last_result is not None
    assert coordinator.last_result.mode is SyncMode.INCREMENTAL
    assert _listener(entry).connects == 1
