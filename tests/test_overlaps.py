"""Syncs that meet: a poll, a push-started sync and the button at once; a reload mid-sync.

One sync runs at a time whatever starts it, a sync that fails or is cut short
leaves what it took on owed, and a sync still running when its entry unloads
commits nothing: the entry's next coordinator does the work, and announces
each new episode once.
"""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.episode_sync.const import DOMAIN, EVENT_NEW_EPISODE
from custom_components.episode_sync.coordinator import EpisodeSyncCoordinator
from custom_components.episode_sync.sync import FullSyncReason, SyncMode
from tests.helpers import plex_entry, setup_entry, tv_library_ids, wait_until
from tests.simulator.common import Fault
from tests.simulator.plex import PlexSimulator


def _coordinator(entry: Any) -> EpisodeSyncCoordinator:
    coordinator: EpisodeSyncCoordinator = entry.runtime_data.coordinator
    return coordinator


def _add_episode(sim: PlexSimulator) -> str:
    library = sim.model.libraries[tv_library_ids(sim.model)[0]]
    return sim.model.add_episode(next(iter(library.shows)), 9, 1).id


async def test_a_full_sync_asked_for_during_a_failing_sync_still_runs(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """The button is pressed while a poll waits on a server about to fail: the forced sync runs."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    coordinator = _coordinator(entry)
    plex_sim.clear_log()
    plex_sim.latency = 0.3
    plex_sim.add_fault(Fault(kind="status", status=500))
    poll = hass.async_create_task(coordinator.async_refresh())
    await wait_until(lambda: bool(plex_sim.requests))
    forced = hass.async_create_task(coordinator.async_force_full_sync())
    await poll
    plex_sim.latency = 0.0
    await forced

    assert coordinator.last_result is not None
    assert coordinator.last_result.mode is SyncMode.FULL
    assert coordinator.last_result.reason is FullSyncReason.FORCED
    assert not coordinator.owed.force_full


async def test_refreshes_at_once_run_one_after_the_other(
    hass: HomeAssistant, plex_sim: PlexSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push-started sync and the button at once, as Home Assistant 2025.4 lets them run.

    Before 2025.11 ``async_refresh`` took no lock (home-assistant/core#153685
    added it): the coordinator's own lock keeps the two syncs apart, so the
    new episode is announced once and each sync counts its own requests.
    """

    async def refresh_2025_4(self: DataUpdateCoordinator[Any]) -> None:
        await self._async_refresh(log_failures=True)  # 2025.4.4's async_refresh

    monkeypatch.setattr(DataUpdateCoordinator, "async_refresh", refresh_2025_4)
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    coordinator = _coordinator(entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    new = _add_episode(plex_sim)
    plex_sim.latency = 0.05
    modes: list[SyncMode] = []
    pushed = hass.async_create_task(coordinator.async_refresh())
    await wait_until(lambda: bool(plex_sim.requests))
    forced = hass.async_create_task(coordinator.async_force_full_sync())
    await pushed
    assert coordinator.last_result is not None
    modes.append(coordinator.last_result.mode)
    await forced
    modes.append(coordinator.last_result.mode)

    assert [event.data["episode_id"] for event in events] == [new]
    assert modes == [SyncMode.INCREMENTAL, SyncMode.FULL]


async def test_an_unload_during_a_sync_keeps_what_it_took_on(
    hass: HomeAssistant, plex_sim: PlexSimulator, hass_storage: dict[str, Any]
) -> None:
    """The forced sync is cancelled by the unload: it, and the push hints, are still owed."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    coordinator = _coordinator(entry)
    coordinator.played_items.add("played-1")
    coordinator.dirty_libraries.add(tv_library_ids(plex_sim.model)[0])
    plex_sim.clear_log()
    plex_sim.add_fault(Fault(kind="timeout", delay=2.0))
    entry.async_create_background_task(hass, coordinator.async_force_full_sync(), "forced")
    await wait_until(lambda: bool(plex_sim.requests))
    assert coordinator.owed.force_full  # while it runs, too (a stop now saves it)

    assert await hass.config_entries.async_unload(entry.entry_id)
    owed = hass_storage[f"{DOMAIN}.{entry.entry_id}.status"]["data"]["owed"]
    assert owed["full_sync"] is True
    assert owed["played_items"] == ["played-1"]
    assert owed["dirty_libraries"] == tv_library_ids(plex_sim.model)[:1]

    plex_sim.clear_faults()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    successor = _coordinator(entry)
    assert successor.last_result is not None
    assert successor.last_result.reason is FullSyncReason.FORCED
    assert successor.owed.played_items == set()


async def test_a_sync_running_across_a_reload_commits_nothing(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """A push-started sync outlives its coordinator: the next one announces the episode, once."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    old = _coordinator(entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    new = _add_episode(plex_sim)
    plex_sim.clear_log()
    plex_sim.latency = 0.3
    # What the push listener's debouncer runs: a task of Home Assistant's, not the entry's.
    pushed = hass.async_create_task(old.async_refresh())
    await wait_until(lambda: bool(plex_sim.requests))
    reload = hass.async_create_task(hass.config_entries.async_reload(entry.entry_id))
    await pushed
    assert await reload
    await hass.async_block_till_done()

    assert [event.data["episode_id"] for event in events] == [new]
    assert old.last_result is not None
    assert new not in {e.id for _, _, e in old.mirror.episodes()}  # the old one committed nothing


async def test_an_unload_does_not_wait_for_a_slow_sync(
    hass: HomeAssistant, plex_sim: PlexSimulator, hass_storage: dict[str, Any]
) -> None:
    """A push-started sync meets a slow server: the unload ends first; nothing is committed."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    coordinator = _coordinator(entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    _add_episode(plex_sim)
    stored = hass_storage[f"{DOMAIN}.{entry.entry_id}.library"]
    plex_sim.clear_log()
    plex_sim.latency = 1.0
    pushed = hass.async_create_background_task(coordinator.async_refresh(), "pushed")
    await wait_until(lambda: bool(plex_sim.requests))

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert not pushed.done()  # the unload did not wait for the sync
    await pushed
    assert events == []
    assert hass_storage[f"{DOMAIN}.{entry.entry_id}.library"] is stored
