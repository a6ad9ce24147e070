"""Random walks of library changes: incremental syncs keep the mirror equal to the server.

The scenario tests pin one change at a time. Here a seeded random walk mixes
every change the simulators know (episodes and shows added, removed, renamed,
re-keyed, watched and unwatched, files replaced, removed episodes put back,
Plex's trash) a few at a time between syncs, with a fault on one request now
and then, through the real clients over HTTP on 127.0.0.1. After every sync
the mirror must hold exactly what the server holds, announce exactly the
episodes that are new, and agree with what a fresh full sync of the same
server builds; nothing is ever held back as a mass removal, because no step
removes that much. The last test walks through Home Assistant itself: its
polls, the stored mirror, the events and restarts.

Watch state is compared where the design promises it: on Jellyfin at every
sync (its shows' played counts are listed each time), on Plex after the
hourly show check (a watch moves no Plex change marker, docs: plex §9.4).
On Jellyfin without push a show gets one watch toggle per step at most: one
episode watched and another unwatched between two polls leave its counts as
they were, a limit the README states (push, or the next full sync, brings it
in). Plex's ``lastViewedAt`` tells, and so do the played items Jellyfin's
push names, so those walks toggle freely and swap too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
import copy
from dataclasses import dataclass
import math
import random
from typing import Any

import aiohttp
from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.episode_sync.api.errors import MediaServerError
from custom_components.episode_sync.api.jellyfin import SERIES_PAGE_SIZE, JellyfinClient
from custom_components.episode_sync.api.models import At, EpisodeRow
from custom_components.episode_sync.api.plex import PlexClient
from custom_components.episode_sync.const import EVENT_NEW_EPISODE
from custom_components.episode_sync.sync import (
    Mirror,
    SyncEngine,
    SyncMode,
    SyncResult,
    SyncState,
)
from tests.helpers import (
    entry_for,
    next_poll,
    setup_entry,
    state_of,
    stored_mirror,
    tv_library_ids,
)
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator
from tests.walk import Sim, Walk, library_rows, server_rows, watch_some, without_watched

#: Each walk: this many steps (a sync after each), from each seed, on each server.
STEPS = 14
SEEDS = (1, 2, 3)
#: Time between two syncs, like the default poll interval.
POLL = 600.0
#: Where each server says who it is.
IDENTITY_PATHS = ("/", "/System/Info/Public")


def _plex(page_cap: int | None = None, **switches: Any) -> Callable[[], PlexSimulator]:
    def make() -> PlexSimulator:
        sim = PlexSimulator(page_cap=page_cap)
        for name, value in switches.items():
            assert hasattr(sim, name), name
            setattr(sim, name, value)
        return sim

    return make


def _jellyfin(**kw: Any) -> Callable[[], JellyfinSimulator]:
    return lambda: JellyfinSimulator(**kw)


SERVERS: dict[str, Callable[[], Sim]] = {
    "plex": _plex(),
    "plex-small-pages": _plex(page_cap=7),
    "plex-trash": _plex(auto_empty_trash=False),
    # Five more of the simulator's documented behaviours at once (trash counted
    # in ``leafCount`` leaves the mirror only at a full sync: test_sync_plex.py).
    "plex-more-switches": _plex(
        watch_bumps_content_changed=True,
        unwatch_bumps_updated_at=True,
        gte_on_date_is_400=True,
        ignore_trimming=True,
        metadata_list_404_on_unknown=True,
    ),
    "jellyfin-10.11": _jellyfin(),
    # New items have no save date until a refresh that comes after the next sync.
    "jellyfin-10.11-late-refresh": _jellyfin(first_refresh_delay=POLL * 1.5),
    "jellyfin-10.11-push": _jellyfin(),
    "jellyfin-10.8-small-pages": _jellyfin(version="10.8.13", page_cap=7),
}


@dataclass
class Setup:
    """A simulator, and whether its push channel's played hints reach the syncs."""

    sim: Sim
    #: The sync is told the items played or unplayed since the last one, as
    #: the coordinator is by Jellyfin's UserDataChanged messages.
    push: bool


@pytest.fixture(params=list(SERVERS))
async def setup(request: pytest.FixtureRequest, socket_enabled: Any) -> AsyncIterator[Setup]:
    """A simulator with two TV libraries, small enough to check whole after every sync."""
    sim = SERVERS[request.param]()
    sim.model.generate(title="TV", shows=5, seasons=2, episodes=4, seed=11)
    sim.model.generate(title="Anime", shows=3, seasons=1, episodes=5, seed=12)
    await sim.start()
    yield Setup(sim, push=request.param.endswith("-push"))
    await sim.close()


async def _client(sim: Sim, session: aiohttp.ClientSession) -> PlexClient | JellyfinClient:
    if isinstance(sim, PlexSimulator):
        return PlexClient(session, sim.url, sim.token, client_id="random-walk")
    client = JellyfinClient(session, sim.url, device_id="w" * 32)
    await client.login("alice", "secret")
    return client


def _watch_state_checked(sim: Sim, result: SyncResult) -> set[str]:
    """The libraries whose watch state this sync brought up to date.

    Jellyfin's: all, at every sync. Plex's: those whose shows it listed (a
    changed marker, or the hourly check), as a watch moves no marker.
    """
    state = result.state
    if isinstance(sim, JellyfinSimulator):
        return set(result.mirror.libraries)
    return {lid for lid, at in state.shows_checked.items() if at == result.started_at}


def _comparable(mirror: Mirror) -> dict[str, Any]:
    """Everything a mirror holds but the first-seen times, which only it can know.

    Jellyfin has no added time the mirror can trust for an episode found by
    an incremental sync (it keeps the time it first saw it), so ``added_at``
    is left out; every other field of every row and every show must match.
    """

    def row(values: EpisodeRow) -> tuple[Any, ...]:
        return values[: At.ADDED_AT] + values[At.ADDED_AT + 1 :]

    return {
        library_id: (
            library.title,
            {
                show_id: (entry.show, {eid: row(values) for eid, values in entry.rows.items()})
                for show_id, entry in library.shows.items()
            },
        )
        for library_id, library in mirror.libraries.items()
    }


@pytest.mark.parametrize("seed", SEEDS)
async def test_incremental_syncs_follow_a_random_walk(setup: Setup, seed: int) -> None:
    sim = setup.sim
    library_ids = tv_library_ids(sim.model)
    async with aiohttp.ClientSession() as session:
        client = await _client(sim, session)
        info = await client.server_info()

        def engine() -> SyncEngine:
            return SyncEngine(
                client, server_id=info.server_id, library_ids=library_ids, clock=sim.clock.now
            )

        watch_some(sim)
        walk = Walk(sim, random.Random(seed), push=setup.push)
        ours = engine()
        result = await ours.sync(Mirror(), SyncState())
        assert result.mode is SyncMode.FULL
        mirror, state = result.mirror, result.state
        for number in range(STEPS):
            new = walk.step({e.id for _, _, e in mirror.episodes()})
            sim.clock.advance(POLL)
            fault = walk.fault()
            where = f"step {number}: {walk.log}"
            before = copy.deepcopy((mirror, state))
            sim.clear_log()
            played = walk.played if setup.push else set()
            raised = False
            try:
                result = await ours.sync(mirror, state, played=played)
            except MediaServerError:
                # Nothing committed: the sync after the fault catches up.
                raised = True
                assert (mirror, state) == before, where
                sim.clear_faults()
                result = await ours.sync(mirror, state, played=played)
            sim.clear_faults()
            walk.played.clear()
            mirror, state = result.mirror, result.state

            # A failed request fails the sync, but for a reset keep-alive
            # connection, on which aiohttp sends a GET once more (RFC 9112
            # §9.3.1, aiohttp's ClientSession._request). A listing that is
            # not JSON is answered by a full sync at once; an identity the
            # sync asked for (it met re-keyed episodes) fails it.
            expected_mode = SyncMode.INCREMENTAL
            if fault is not None and fault.fired > fault.skip:
                if fault.kind != "malformed":
                    assert raised or fault.kind == "reset", where
                elif sim.requests[fault.skip].path in IDENTITY_PATHS:
                    assert raised, where
                else:
                    assert not raised, where
                    expected_mode = SyncMode.FULL
            else:
                assert not raised, where
            assert result.mode is expected_mode, where
            assert not result.held_back, where
            assert {row[At.ID] for row in result.new_episodes} == new, where
            checked = _watch_state_checked(sim, result)
            for library_id in library_ids:
                ours_rows = library_rows(mirror, library_id)
                theirs = server_rows(sim, library_id)
                if library_id not in checked:
                    ours_rows, theirs = without_watched(ours_rows), without_watched(theirs)
                assert ours_rows == theirs, f"{where}, library {library_id}"
            if checked == set(library_ids):
                assert _comparable(mirror) == _comparable(await _fresh(engine())), where
        await _unchanged_costs_the_target(ours, mirror, state, sim)


async def _fresh(engine: SyncEngine) -> Mirror:
    result = await engine.sync(Mirror(), SyncState())
    return result.mirror


async def _unchanged_costs_the_target(
    engine: SyncEngine, mirror: Mirror, state: SyncState, sim: Sim
) -> None:
    """After the walk, a sync with nothing changed is as cheap as ever (SPEC §6).

    The periodic checks (Plex's hourly show listing, Jellyfin's library list
    every six hours) cost more when they fall due: the sync measured is the
    first with none due.
    """
    for _ in range(3):
        sim.clock.advance(60)
        result = await engine.sync(mirror, state)
        assert not result.mirror_changed
        mirror, state = result.mirror, result.state
        if not _periodic_check_ran(sim, result):
            break
    else:
        pytest.fail("a periodic check ran at every sync")
    assert result.api_calls <= _unchanged_budget(sim)


def _unchanged_budget(sim: Sim) -> int:
    """SPEC §6: one request on Plex; on Jellyfin one per TV library (a page of its
    shows, more pages where the server serves fewer than asked) and the delta."""
    if isinstance(sim, PlexSimulator):
        return 1
    page = min(sim.page_cap or SERIES_PAGE_SIZE, SERIES_PAGE_SIZE)
    return 1 + sum(
        max(1, math.ceil(len(sim.model.libraries[lid].shows) / page))
        for lid in tv_library_ids(sim.model)
    )


def _periodic_check_ran(sim: Sim, result: SyncResult) -> bool:
    if isinstance(sim, JellyfinSimulator):
        return result.state.libraries_listed == result.started_at
    return result.started_at in result.state.shows_checked.values()


async def test_home_assistant_follows_a_random_walk(
    hass: HomeAssistant,
    media_sim: Sim,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """The same walk through Home Assistant: polls, the stored mirror, events, restarts.

    Each poll's events name exactly the new episodes, the stored mirror holds
    what the server holds, and a restart (the entry reloaded) after a poll
    finds nothing to announce.
    """
    sim = media_sim
    watch_some(sim)
    entry = await entry_for(sim)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    walk = Walk(sim, random.Random(7))
    library_ids = tv_library_ids(sim.model)
    for number in range(10):
        stored = stored_mirror(hass_storage, entry)
        new = walk.step({e.id for _, _, e in stored.episodes()})
        where = f"step {number}: {walk.log}"
        await next_poll(hass, freezer)

        assert {event.data["episode_id"] for event in events} == new, where
        assert len(events) == len(new), where
        events.clear()
        stored = stored_mirror(hass_storage, entry)
        for library_id in library_ids:
            assert without_watched(library_rows(stored, library_id)) == without_watched(
                server_rows(sim, library_id)
            ), where
        episodes = sum(len(server_rows(sim, lid)) for lid in library_ids)
        assert state_of(hass, entry, "sensor", "episodes") == str(episodes), where
        if number % 4 == 3:
            assert await hass.config_entries.async_reload(entry.entry_id)
            await hass.async_block_till_done()
            assert state_of(hass, entry, "sensor", "episodes") == str(episodes), where
            assert events == [], where
            assert stored_mirror(hass_storage, entry) == stored, where
