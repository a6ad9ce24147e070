"""Recovery through Home Assistant: a sync cancelled by a stop, damaged stores, a re-created
server, and a delta filter that keeps failing.

Each test drives the integration against the simulators over HTTP and reads
what Home Assistant shows (states, events, the issue registry, ``hass_storage``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
import contextlib
from datetime import timedelta
import logging
from pathlib import Path
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import EVENT_HOMEASSISTANT_STARTED
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir, storage
from homeassistant.util.file import WriteError
import orjson
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.episode_sync.api import http
from custom_components.episode_sync.const import DOMAIN, EVENT_MANY_NEW_EPISODES, EVENT_NEW_EPISODE
from custom_components.episode_sync.coordinator import DELTA_FAILURES_FOR_ISSUE
from custom_components.episode_sync.diagnostics import async_get_config_entry_diagnostics
from tests.helpers import (
    entry_for,
    mirror_rows,
    model_rows,
    next_poll,
    plex_entry,
    setup_entry,
    state_of,
    stored_mirror,
    tv_library_ids,
)
from tests.simulator.common import Fault
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator

type Sim = PlexSimulator | JellyfinSimulator

#: Home Assistant's own file loader, taken before the test harness mocks it.
REAL_LOAD = storage.Store._async_load


def _keys(entry: MockConfigEntry) -> dict[str, str]:
    return {name: f"{DOMAIN}.{entry.entry_id}.{name}" for name in ("status", "library")}


def _assert_in_sync(
    hass: HomeAssistant, sim: Sim, entry: MockConfigEntry, storage_: dict[str, Any]
) -> None:
    expected = model_rows(sim.model, tv_library_ids(sim.model))
    assert mirror_rows(entry.runtime_data.coordinator.mirror) == expected
    assert mirror_rows(stored_mirror(storage_, entry)) == expected
    assert state_of(hass, entry, "sensor", "episodes") == str(len(expected))


# -- Home Assistant stopped in the middle of a sync --------------------------------------


async def test_stop_during_a_sync_keeps_the_stores_and_the_next_start_recovers(
    hass: HomeAssistant,
    media_sim: Sim,
    hass_storage: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The refresh is cancelled while a request is held; stores intact; a new start syncs."""
    monkeypatch.setattr(http, "DEFAULT_TIMEOUT", 5.0)  # the hold must outlast nothing but this
    sim = media_sim
    entry = await entry_for(sim)
    await setup_entry(hass, entry)
    coordinator = entry.runtime_data.coordinator
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    shows = list(sim.model.libraries[tv_library_ids(sim.model)[0]].shows.values())
    added = sim.model.add_episode(shows[0].id, 9, 1, title="Mid-stop")
    sim.model.remove_episode(next(iter(shows[1].episodes)))
    before = orjson.dumps({key: hass_storage[key] for key in _keys(entry).values()})
    mirror_before = coordinator.mirror

    # The second request of the sync is held by the server, as a sleeping NAS would.
    sim.clear_log()
    held = sim.add_fault(Fault(kind="timeout", delay=2.0, skip=1))
    task = hass.async_create_task(coordinator.async_refresh())
    # The simulator signals nothing when a request arrives: look until it has.
    while held.fired < 2:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert coordinator.mirror is mirror_before
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert orjson.dumps({key: hass_storage[key] for key in _keys(entry).values()}) == before
    assert events == []

    # The next start, from the same stores: an incremental sync reaches the server's state.
    sim.clear_faults()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    _assert_in_sync(hass, sim, entry, hass_storage)
    assert [e.data["episode_id"] for e in events] == [added.id]


@contextlib.contextmanager
def _slow_disk(entry: MockConfigEntry) -> Iterator[tuple[asyncio.Event, asyncio.Event]]:
    """The library file's writes wait until the second event is set (the first says one is)."""
    writing, disk_done = asyncio.Event(), asyncio.Event()
    written = storage.Store._async_write_data

    async def slow_disk(store: storage.Store[Any], *args: Any) -> None:
        if store.key == _keys(entry)["library"]:
            writing.set()
            await disk_done.wait()
        await written(store, *args)

    with patch.object(storage.Store, "_async_write_data", new=slow_disk):
        yield writing, disk_done


async def test_a_forced_full_sync_whose_script_is_stopped_runs_to_its_end(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """A script stopped while its ``force_full_sync`` is written (``mode: restart``): the
    sync commits, and the entities show it rather than a failure."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    show = next(iter(plex_sim.model.libraries[tv_library_ids(plex_sim.model)[0]].shows.values()))
    added = plex_sim.model.add_episode(show.id, 9, 1)

    with _slow_disk(entry) as (writing, disk_done):
        call = hass.async_create_task(
            hass.services.async_call(DOMAIN, "force_full_sync", {}, blocking=True)
        )
        await writing.wait()
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        disk_done.set()
        await hass.async_block_till_done()

    assert [e.data["episode_id"] for e in events] == [added.id]
    assert state_of(hass, entry, "sensor", "episodes") == "101"
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"
    assert state_of(hass, entry, "event", "new_episode") != "unavailable"


async def test_home_assistant_started_while_a_boot_sync_is_written(
    hass: HomeAssistant, plex_sim: PlexSimulator, hass_storage: dict[str, Any]
) -> None:
    """Found at boot and still being written when Home Assistant has started: announced
    once the commit is done, from the mirror it is in (its show's title, the keyword
    filter), and owed no more, so that a restart announces nothing again."""
    entry = plex_entry(plex_sim, exclude_keywords="secret")
    await setup_entry(hass, entry)
    assert await hass.config_entries.async_unload(entry.entry_id)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    hass.set_state(CoreState.starting)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    library = tv_library_ids(plex_sim.model)[0]
    show = next(iter(plex_sim.model.libraries[library].shows.values()))
    added = plex_sim.model.add_episode(show.id, 30, 1, title="Found at boot")
    plex_sim.model.add_episode(plex_sim.model.add_show(library, "Secret Show").id, 1, 1)

    with _slow_disk(entry) as (writing, disk_done):
        task = hass.async_create_task(entry.runtime_data.coordinator.async_refresh())
        await writing.wait()
        hass.set_state(CoreState.running)
        hass.bus.async_fire(EVENT_HOMEASSISTANT_STARTED)
        for _ in range(20):
            await asyncio.sleep(0)
        assert events == []
        disk_done.set()
        await task
        await hass.async_block_till_done()

    assert [(e.data["episode_id"], e.data["show"]) for e in events] == [(added.id, show.title)]
    assert hass_storage[_keys(entry)["status"]]["data"]["owed"]["unannounced"] == []


async def test_a_poll_cancelled_while_the_mirror_is_written_finishes_the_commit(
    hass: HomeAssistant, plex_sim: PlexSimulator, hass_storage: dict[str, Any]
) -> None:
    """Cancelled between its two writes (a slow disk; an unload, Home Assistant's stop), a
    commit still writes both files: the next start trusts them, and the episode the sync
    found is announced once."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    coordinator = entry.runtime_data.coordinator
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    show = next(iter(plex_sim.model.libraries[tv_library_ids(plex_sim.model)[0]].shows.values()))
    added = plex_sim.model.add_episode(show.id, 9, 1)

    with _slow_disk(entry) as (writing, disk_done):
        task = hass.async_create_task(coordinator.async_refresh())
        await writing.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # A sync asked for now starts from what that commit writes, once it has.
        again = hass.async_create_task(coordinator.async_refresh())
        await asyncio.sleep(0)
        disk_done.set()
        await again
        assert [e.data["episode_id"] for e in events] == [added.id]
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
    status, library = (hass_storage[key]["data"] for key in _keys(entry).values())
    assert status["library_generation"] == library["generation"]
    assert [e.data["episode_id"] for e in events] == [added.id]

    await _restart_expecting_an_incremental_sync(hass, plex_sim, entry, hass_storage)
    assert len(events) == 1


# -- damaged stores ----------------------------------------------------------------------


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any], str], None]:
    """Damage: set one value deep inside a stored file's data."""

    def damage(storage_: dict[str, Any], key: str) -> None:
        node = storage_[key]["data"]
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    return damage


def _text_added_at(stored: dict[str, Any]) -> None:
    """One episode's added_at becomes text (rows are a list, or a JSON string of one)."""
    show = stored["data"]["libraries"][0]["shows"][0]
    rows = orjson.loads(show[5]) if isinstance(show[5], str) else show[5]
    rows[0][5] = "last week"
    show[5] = orjson.dumps(rows).decode() if isinstance(show[5], str) else rows


def _drop(storage_: dict[str, Any], key: str) -> None:
    del storage_[key]


def _listed(storage_: dict[str, Any], key: str) -> None:
    storage_[key]["data"] = [1, 2]


#: (file, what is wrong with it, how to make it so in ``hass_storage``).
WRONG_SHAPES: list[tuple[str, str, Callable[[dict[str, Any], str], None]]] = [
    ("status", "a list instead of an object", _listed),
    ("status", "a cursor that is no number", _set(("cursor",), "yesterday")),
    ("status", "markers that are a list", _set(("markers",), ["m"])),
    ("library", "a list instead of an object", _listed),
    ("library", "no libraries key", lambda storage_, key: storage_[key]["data"].clear()),
    ("library", "a show row of the wrong length", _set(("libraries", 0, "shows", 0), [1, 2, 3])),
    ("library", "an added_at that is text", lambda storage_, key: _text_added_at(storage_[key])),
    ("library", "episode rows that are no JSON", _set(("libraries", 0, "shows", 0, 5), "[[")),
    ("library", "removed episodes that are a list", _set(("removed",), ["e1"])),
    ("library", "a removed episode without its times", _set(("removed",), {"e1": [1]})),
    ("status", "missing (half a pair)", _drop),
    ("library", "missing (half a pair)", _drop),
]


async def _synced_then_unloaded(
    hass: HomeAssistant, sim: PlexSimulator, hass_storage: dict[str, Any]
) -> MockConfigEntry:
    entry = plex_entry(sim)
    await setup_entry(hass, entry)
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert set(_keys(entry).values()) <= hass_storage.keys()
    return entry


async def _restart_expecting_an_incremental_sync(
    hass: HomeAssistant, sim: PlexSimulator, entry: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    """The stores are trusted: the set-up's sync is an incremental one (one request)."""
    sim.clear_log()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    assert [r.path for r in sim.requests] == ["/", "/library/sections"]
    _assert_in_sync(hass, sim, entry, hass_storage)


async def _restart_expecting_a_full_sync(
    hass: HomeAssistant, sim: PlexSimulator, entry: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    sim.clear_log()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"
    assert sim.count("/all") == 2  # the shows and the episodes listings: a full sync
    _assert_in_sync(hass, sim, entry, hass_storage)


@pytest.mark.parametrize(
    ("file", "damage"),
    [pytest.param(file, damage, id=f"{file}: {what}") for file, what, damage in WRONG_SHAPES],
)
async def test_store_of_the_wrong_shape_is_logged_and_rebuilt(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    file: str,
    damage: Callable[[dict[str, Any], str], None],
) -> None:
    entry = await _synced_then_unloaded(hass, plex_sim, hass_storage)
    damage(hass_storage, _keys(entry)[file])
    caplog.clear()
    await _restart_expecting_a_full_sync(hass, plex_sim, entry, hass_storage)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("a full sync will rebuild it" in r.getMessage() for r in warnings)


@pytest.mark.parametrize("owed", ["garbage", {"delta_failures": "many"}, None])
async def test_unreadable_owed_part_owes_nothing_and_keeps_the_mirror(
    hass: HomeAssistant, plex_sim: PlexSimulator, hass_storage: dict[str, Any], owed: Any
) -> None:
    """What was owed is a hint; the mirror and its bookkeeping are good without it."""
    entry = await _synced_then_unloaded(hass, plex_sim, hass_storage)
    hass_storage[_keys(entry)["status"]]["data"]["owed"] = owed
    await _restart_expecting_an_incremental_sync(hass, plex_sim, entry, hass_storage)


async def test_library_write_that_failed_is_found_at_the_next_start(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Home Assistant logs a failed write and carries on: the status file must not outlive it,
    however many writes fail in a row."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    library_key = _keys(entry)["library"]
    show = next(iter(plex_sim.model.libraries[tv_library_ids(plex_sim.model)[0]].shows.values()))
    plex_sim.model.add_episode(show.id, 30, 1)
    written = storage.Store._async_write_data

    async def disk_full(store: storage.Store[Any], *args: Any) -> None:
        if store.key == library_key:
            raise WriteError("No space left on device")
        await written(store, *args)  # (the arguments differ between HA releases)

    with patch.object(storage.Store, "_async_write_data", new=disk_full):
        await next_poll(hass, freezer)
        assert "No space left on device" in caplog.text  # Home Assistant's own log line
        assert state_of(hass, entry, "sensor", "episodes") == "101"  # the running mirror is right
        assert await hass.config_entries.async_unload(entry.entry_id)

        # A start with the disk still full: the full sync's write fails too,
        # and the generation it claims is none that a stale file could carry.
        caplog.clear()
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert state_of(hass, entry, "sensor", "sync_mode") == "full"
        assert "older than its bookkeeping" in caplog.text
        assert await hass.config_entries.async_unload(entry.entry_id)

    caplog.clear()
    await _restart_expecting_a_full_sync(hass, plex_sim, entry, hass_storage)
    assert "older than its bookkeeping" in caplog.text


@pytest.fixture
def real_files(hass: HomeAssistant, tmp_path: Path) -> Iterator[set[str]]:
    """Store keys added to the yielded set are read by Home Assistant from real files.

    The test harness keeps every store in memory (``hass_storage``); an
    unreadable or corrupt *file* only exists on disk, so those keys go through
    Home Assistant's own loader, in a configuration directory of their own.
    (``patch``, not ``monkeypatch``: it must be undone before the harness's
    own patch of the loader is.)
    """
    hass.config.config_dir = str(tmp_path)
    (tmp_path / storage.STORAGE_DIR).mkdir()
    real: set[str] = set()
    mocked = storage.Store._async_load

    async def load(store: storage.Store[Any]) -> Any:
        if store.key in real:
            return await REAL_LOAD(store)
        return await mocked(store)

    with patch.object(storage.Store, "_async_load", new=load):
        yield real


@pytest.mark.parametrize("file", ["status", "library"])
@pytest.mark.parametrize("problem", ["unreadable", "corrupt_json"])
async def test_unreadable_or_corrupt_file_is_logged_and_rebuilt(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    real_files: set[str],
    file: str,
    problem: str,
) -> None:
    """A file that cannot be read (here a directory) or parsed: no crash, a full sync."""
    entry = await _synced_then_unloaded(hass, plex_sim, hass_storage)
    key = _keys(entry)[file]
    del hass_storage[key]
    real_files.add(key)
    path = Path(hass.config.path(storage.STORAGE_DIR, key))
    if problem == "unreadable":
        await hass.async_add_executor_job(path.mkdir)  # open() fails, for root too
    else:
        # Cut off mid-write.
        await hass.async_add_executor_job(path.write_bytes, b'{"version": 1, "data": {"cursor"')
    caplog.clear()
    await _restart_expecting_a_full_sync(hass, plex_sim, entry, hass_storage)
    assert "a full sync will rebuild it" in caplog.text


# -- a re-created server: the same library under new ids --------------------------------


def _recreate_library(sim: Sim) -> None:
    """Every show and episode removed and added again: same titles and numbers, new ids."""
    library_id = tv_library_ids(sim.model)[0]
    for show in list(sim.model.libraries[library_id].shows.values()):
        episodes = [(e.season, e.number, e.title, e.air_date) for e in show.episodes.values()]
        sim.model.remove_show(show.id)
        new = sim.model.add_show(library_id, show.title)
        for season, number, title, air_date in episodes:
            sim.model.add_episode(new.id, season, number, title=title, air_date=air_date)


@pytest.mark.parametrize("kind", ["incremental", "forced_full"])
async def test_recreated_server_is_no_flood_of_new_episodes(
    hass: HomeAssistant,
    media_sim: Sim,
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    issue_registry: ir.IssueRegistry,
    kind: str,
) -> None:
    sim = media_sim
    entry = await entry_for(sim)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    many = async_capture_events(hass, EVENT_MANY_NEW_EPISODES)
    before = {
        (show.show.title, e.season, e.number): e.added_at
        for _, show, e in entry.runtime_data.coordinator.mirror.episodes()
    }
    old_ids = {e.id for _, _, e in entry.runtime_data.coordinator.mirror.episodes()}
    freezer.tick(3600)
    _recreate_library(sim)
    sim.clear_log()
    if kind == "forced_full":
        await entry.runtime_data.coordinator.async_force_full_sync()
    else:
        await next_poll(hass, freezer)

    assert state_of(hass, entry, "sensor", "sync_mode") == kind.removeprefix("forced_")
    assert events == []
    assert many == []
    _assert_in_sync(hass, sim, entry, hass_storage)
    mirror = entry.runtime_data.coordinator.mirror
    assert not old_ids & {e.id for _, _, e in mirror.episodes()}  # every id is new
    after = {(show.show.title, e.season, e.number): e.added_at for _, show, e in mirror.episodes()}
    assert after == before  # each episode kept the time it first arrived
    assert state_of(hass, entry, "sensor", "new_episodes") == "0"
    assert state_of(hass, entry, "sensor", "shows") == "10"
    assert not [i for i in issue_registry.issues.values() if i.domain == DOMAIN]
    summary = entry.runtime_data.store.last_result
    assert (summary["added"], summary["removed"], summary["rekeyed"]) == (0, 0, 100)
    # Ids it could not explain: the sync asked the server who it is, once (SPEC §7).
    assert len([r for r in sim.requests if r.path in _IDENTITY_PATHS]) == 1
    assert summary["api_calls"] == len(sim.requests)


#: Where each client asks a server who it is.
_IDENTITY_PATHS = ("/", "/System/Info/Public")


async def test_another_server_at_the_address_is_refused_not_mirrored(
    hass: HomeAssistant,
    media_sim: Sim,
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    """The same shows under new ids, from a server with another identity: nothing committed."""
    sim = media_sim
    entry = await entry_for(sim)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    stored = {key: hass_storage.get(key) for key in _keys(entry).values()}
    _recreate_library(sim)
    if isinstance(sim, PlexSimulator):
        sim.machine_id = "0" * 40
    else:
        sim.server_id = "0" * 32
    await next_poll(hass, freezer)
    await hass.async_block_till_done()

    assert entry.state is ConfigEntryState.SETUP_ERROR  # the set-up's own identity check
    assert entry.reason is not None
    assert "another server" in entry.reason
    assert events == []
    assert {key: hass_storage.get(key) for key in _keys(entry).values()} == stored


# -- the delta keeps failing -------------------------------------------------------------


async def test_delta_that_keeps_failing_raises_a_repair_issue_until_it_works(
    hass: HomeAssistant,
    media_sim: Sim,
    freezer: FrozenDateTimeFactory,
    issue_registry: ir.IssueRegistry,
) -> None:
    sim = media_sim
    entry = await entry_for(sim)
    await setup_entry(hass, entry)
    issue_id = f"delta_failing_{entry.entry_id}"
    show = next(iter(sim.model.libraries[tv_library_ids(sim.model)[0]].shows.values()))
    # Only the delta query breaks (a proxy mangling it, a server bug): the full
    # listings carry no such filter.
    param = "updatedAt>>" if isinstance(sim, PlexSimulator) else "MinDateLastSaved"
    fault = sim.add_fault(Fault(kind="malformed", param=param, times=-1))
    for attempt in range(1, DELTA_FAILURES_FOR_ISSUE + 1):
        assert issue_registry.async_get_issue(DOMAIN, issue_id) is None, attempt
        sim.model.add_episode(show.id, 20, attempt)  # something to sync, every time
        if attempt == 2:  # a reload (new options, a reauth) keeps the count
            assert await hass.config_entries.async_reload(entry.entry_id)
            await hass.async_block_till_done()
        else:
            await next_poll(hass, freezer)
        assert fault.fired == attempt
        assert state_of(hass, entry, "sensor", "sync_mode") == "full"
    issue = issue_registry.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_key == "delta_failing"
    assert issue.translation_placeholders == {"server": sim.name, "count": "3"}

    # A forced full sync says nothing about the delta: the issue stays.
    await entry.runtime_data.coordinator.async_force_full_sync()
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is not None

    sim.faults.remove(fault)
    sim.model.add_episode(show.id, 21, 1)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None


# -- a 404 in the middle of a sync --------------------------------------------------------


def _repair_path(sim: Sim, show_id: str) -> str:
    """The one show's episode listing a targeted repair asks for."""
    if isinstance(sim, PlexSimulator):
        return f"/library/metadata/{show_id}/allLeaves"
    return f"/Shows/{show_id}/Episodes"


async def test_show_gone_during_its_repair_is_dropped_without_a_full_sync(
    hass: HomeAssistant,
    media_sim: Sim,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """A 404 on one show's episodes: that show is gone (docs: jellyfin §1, plex §1)."""
    sim = media_sim
    entry = await entry_for(sim)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    shows = list(sim.model.libraries[tv_library_ids(sim.model)[0]].shows.values())
    show = shows[0]
    sim.model.remove_episode(next(iter(show.episodes)))  # its counts now disagree: a repair
    # Deleted on the server after the show listing, before its repair.
    sim.add_fault(Fault(kind="status", status=404, path=_repair_path(sim, show.id)))
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    assert state_of(hass, entry, "sensor", "shows") == str(len(shows) - 1)
    library = entry.runtime_data.coordinator.mirror.libraries[tv_library_ids(sim.model)[0]]
    assert show.id not in library.shows

    # It was there after all (a proxy's 404): the next sync brings it back,
    # its episodes keep the time they first arrived and are not announced.
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "shows") == str(len(shows))
    _assert_in_sync(hass, sim, entry, hass_storage)
    assert events == []


async def test_show_gone_during_a_full_syncs_own_look_at_it_is_looked_at_again(
    hass: HomeAssistant,
    media_sim: Sim,
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    """A forced full sync whose library listing missed a row of a show asks that show,
    which answers 404: dropped, and the next sync (not skipping the library) brings it back."""
    sim = media_sim
    entry = await entry_for(sim)
    await setup_entry(hass, entry)
    show = next(iter(sim.model.libraries[tv_library_ids(sim.model)[0]].shows.values()))
    dropped = next(iter(show.episodes))

    def without_one_row(payload: Any) -> Any:
        container = payload.get("MediaContainer", payload)
        key = "Metadata" if "MediaContainer" in payload else "Items"
        rows = container.get(key, [])
        container[key] = [r for r in rows if str(r.get("ratingKey", r.get("Id"))) != dropped]
        return payload

    listing = (
        f"/library/sections/{show.library_id}/all" if isinstance(sim, PlexSimulator) else "/Items"
    )
    sim.add_fault(Fault(kind="mutate", path=listing, mutate=without_one_row, times=-1))
    sim.add_fault(Fault(kind="status", status=404, path=_repair_path(sim, show.id)))
    await hass.services.async_call(DOMAIN, "force_full_sync", blocking=True)
    assert show.id not in entry.runtime_data.coordinator.mirror.libraries[show.library_id].shows
    sim.clear_faults()
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    _assert_in_sync(hass, sim, entry, hass_storage)


async def test_plex_section_listing_that_answers_404_is_retried_later_not_escalated(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """A 404 on a listed section means "retry later" (docs: plex §1): nothing committed.

    (Jellyfin lists no libraries in an incremental sync: there, a library that
    answers 404 is gone, as ``test_sync_jellyfin`` shows.)
    """
    sim = plex_sim
    entry = plex_entry(sim)
    await setup_entry(hass, entry)
    section = tv_library_ids(sim.model)[0]
    shows = list(sim.model.libraries[section].shows.values())
    sim.model.add_episode(shows[0].id, 30, 1)
    before = {key: hass_storage.get(key) for key in _keys(entry).values()}
    sim.add_fault(Fault(kind="status", status=404, path=f"/library/sections/{section}/all"))
    sim.clear_log()
    await next_poll(hass, freezer)
    assert not entry.runtime_data.coordinator.last_update_success
    assert state_of(hass, entry, "sensor", "episodes") == "unavailable"
    assert len(sim.requests) == 2  # sections, shows: no full sync behind it
    assert {key: hass_storage.get(key) for key in _keys(entry).values()} == before

    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    _assert_in_sync(hass, sim, entry, hass_storage)


# -- the server asks for a pause ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "pause"),
    [
        (503, "1800", timedelta(minutes=30)),
        (429, "86400", timedelta(hours=1)),  # a day asked: an hour obeyed
    ],
)
async def test_retry_after_keeps_every_sync_away_until_then(
    hass: HomeAssistant,
    media_sim: Sim,
    freezer: FrozenDateTimeFactory,
    status: int,
    retry_after: str,
    pause: timedelta,
) -> None:
    """``Retry-After`` (docs: jellyfin §1, "back off ≥ Retry-After"): no request before it."""
    sim = media_sim
    entry = await entry_for(sim)
    await setup_entry(hass, entry)
    coordinator = entry.runtime_data.coordinator
    sim.add_fault(Fault(kind="status", status=status, headers={"Retry-After": retry_after}))
    await next_poll(hass, freezer)  # the pause starts now
    assert state_of(hass, entry, "sensor", "episodes") == "unavailable"

    sim.clear_log()
    for _ in range(2):  # the polls of the next 20 minutes…
        await next_poll(hass, freezer)
    await coordinator.async_request_refresh()  # …a push message…
    await hass.async_block_till_done(wait_background_tasks=True)
    with pytest.raises(HomeAssistantError) as err:  # …and the button all wait
        await coordinator.async_force_full_sync()
    assert "asked to wait" in str(err.value)
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["sync"]["owed"]["full_sync"] is True
    assert diagnostics["sync"]["paused_for_s"] == (pause - timedelta(minutes=20)).total_seconds()
    freezer.tick(pause - timedelta(minutes=21))
    await coordinator.async_refresh()  # a minute before the end: still waiting
    assert sim.requests == []

    freezer.tick(timedelta(minutes=1))
    await coordinator.async_refresh()  # asked again, and what was owed runs
    assert coordinator.last_update_success
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"
