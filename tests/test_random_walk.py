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

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
import copy
from dataclasses import dataclass, field
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
from tests.simulator.common import Fault, FaultKind
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.library import SimEpisode, SimShow
from tests.simulator.plex import PlexSimulator

type Sim = PlexSimulator | JellyfinSimulator

#: Each walk: this many steps (a sync after each), from each seed, on each server.
STEPS = 14
SEEDS = (1, 2, 3)
#: Time between two syncs, like the default poll interval.
POLL = 600.0
#: Faults a sync meets now and then (the fault matrix of test_faults has them all).
FAULTS: tuple[FaultKind, ...] = ("status", "reset", "malformed", "truncated")
#: Where each server says who it is.
IDENTITY_PATHS = ("/", "/System/Info/Public")


def _plex(page_cap: int | None = None, **switches: Any) -> Callable[[], PlexSimulator]:
    def make() -> PlexSimulator:
        sim = PlexSimulator(page_cap=page_cap)
        for name, value in switches.items():
            setattr(sim, name, value)
        return sim

    return make


def _jellyfin(**kw: Any) -> Callable[[], JellyfinSimulator]:
    return lambda: JellyfinSimulator(**kw)


SERVERS: dict[str, Callable[[], Sim]] = {
    "plex": _plex(),
    "plex-small-pages": _plex(page_cap=7),
    "plex-trash": _plex(auto_empty_trash=False),
    "jellyfin-10.11": _jellyfin(),
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


@dataclass
class Walk:
    """A seeded random walk over a simulator's TV libraries, one step between two syncs."""

    sim: Sim
    rng: random.Random
    #: Whether the syncs hear of watch changes (Jellyfin push), so that one
    #: episode watched and another unwatched in one show is seen.
    push: bool = False
    #: Episodes removed (or trashed) that may be put back under their id.
    removed: list[SimEpisode] = field(default_factory=list)
    #: Episodes watched or unwatched since the last sync that took them in.
    played: set[str] = field(default_factory=set)
    #: The changes of the last step, for the failure message.
    log: list[str] = field(default_factory=list)
    #: Per show, the highest episode number it was ever given: a new episode
    #: under the number of one removed in the same step is a re-key (a file
    #: replaced by a re-match), not news, so the walk never reuses one.
    numbers: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.numbers = {
            show.id: max((e.number or 0 for e in show.episodes.values()), default=0)
            for show in self._shows()
        }

    def step(self, synced: set[str]) -> set[str]:
        """Make one to four changes; return the ids of the new episodes still there.

        Changes pick their targets among the episodes the mirror holds and
        each target once: an episode both added and re-keyed between two
        syncs is new under its last id, which this walk does not model. A
        step removes at most ten episodes of a library, so that no sync has
        a mass removal to hold back (SPEC §5 "Safety").
        """
        new: set[str] = set()
        self.log.clear()
        targets = [e for e in self._episodes() if e.id in synced]
        self.rng.shuffle(targets)
        toggled: set[str] = set()
        removals: Counter[str] = Counter()
        for _ in range(self.rng.randint(1, 4)):
            self.sim.clock.advance(self.rng.randint(1, 90))
            change = self.rng.choice(self._changes())
            if change in ("add", "show"):
                added = self._add(new_show=change == "show")
                self.log.append(f"{change} {sorted(added)}")
                new |= added
                continue
            if change == "restore":
                back = self.rng.choice(self._restorable())
                self.removed.remove(back)
                self.sim.model.restore_episode(back)
                self.log.append(f"restore {back.id}")
                continue
            # Each target once; none whose show this step removed.
            targets = [e for e in targets if self.sim.model.find_episode(e.id) is e]
            episode = next(
                (e for e in targets if change != "watch" or e.show_id not in toggled), None
            )
            if episode is None:
                continue
            library_id = self.sim.model.library_of(episode.show_id).id
            cost = self._removes(change, episode)
            if removals[library_id] + cost > 10:
                continue
            removals[library_id] += cost
            targets.remove(episode)
            self._change(change, episode)
            self.log.append(f"{change} {episode.id} of show {episode.show_id}")
            if change == "watch" and not self._swaps_seen:
                toggled.add(episode.show_id)
        return {eid for eid in new if self.sim.model.find_episode(eid) is not None}

    def fault(self) -> Fault | None:
        """Now and then, a fault on one request of the coming sync."""
        if self.rng.random() < 0.7:
            return None
        kind = self.rng.choice(FAULTS)
        fault = Fault(kind=kind, status=self.rng.choice((500, 502)), skip=self.rng.randrange(5))
        self.log.append(f"fault {kind} after {fault.skip} requests")
        return self.sim.add_fault(fault)

    def _changes(self) -> list[str]:
        changes = ["add", "add", "show", "remove", "rename", "rekey", "watch", "watch", "replace"]
        changes.append("edit_show")
        if len(list(self._shows())) > 4:
            changes.append("remove_show")
        if self._restorable():
            changes.append("restore")
        if self._swaps_seen:
            changes.append("swap")
        if isinstance(self.sim, PlexSimulator) and not self.sim.auto_empty_trash:
            changes.append("trash")
        return changes

    def _change(self, change: str, episode: SimEpisode) -> None:
        model = self.sim.model
        match change:
            case "remove":
                self.removed.append(model.remove_episode(episode.id))
            case "rename":
                model.rename_episode(episode.id, f"{episode.title} (cut {self.rng.randint(1, 99)})")
            case "rekey":
                model.rekey_episode(episode.id)
            case "watch":
                self._toggle(episode)
            case "swap":  # watch one, unwatch another: the show's counts stay
                show = model.show(episode.show_id).episodes.values()
                other = next((e for e in show if e.watched != episode.watched), None)
                self._toggle(episode)
                if other is not None:
                    self._toggle(other)
            case "replace":
                model.replace_file(episode.id)
            case "edit_show":
                model.edit_show(episode.show_id, title=f"Show {self.rng.randint(1, 10**6)}")
            case "remove_show":
                model.remove_show(episode.show_id)
            case "trash":
                assert isinstance(self.sim, PlexSimulator)
                self.removed.append(self.sim.delete_file(episode.id))

    @property
    def _swaps_seen(self) -> bool:
        """Plex's ``lastViewedAt`` moves with any watch; Jellyfin's push names the items."""
        return isinstance(self.sim, PlexSimulator) or self.push

    def _toggle(self, episode: SimEpisode) -> None:
        self.sim.model.set_watched(episode.id, not episode.watched)
        self.played.add(episode.id)

    def _removes(self, change: str, episode: SimEpisode) -> int:
        """How many listed episodes a change takes away."""
        if change == "remove_show":
            show = self.sim.model.show(episode.show_id)
            return sum(_listed(e) for e in show.episodes.values())
        return int(change in ("remove", "trash"))

    def _restorable(self) -> list[SimEpisode]:
        """Removed or trashed episodes whose show is still there to take them back."""
        return [e for e in self.removed if self.sim.model.find_show(e.show_id) is not None]

    def _add(self, *, new_show: bool) -> set[str]:
        model = self.sim.model
        if new_show:
            library_id = self.rng.choice(tv_library_ids(model))
            show = model.add_show(library_id, f"New {self.rng.randint(1, 10**6)}")
            self.numbers[show.id] = self.rng.randint(1, 3)
            return {
                model.add_episode(show.id, 1, number).id
                for number in range(1, self.numbers[show.id] + 1)
            }
        show = self.rng.choice(list(self._shows()))
        self.numbers[show.id] += 1
        return {model.add_episode(show.id, 1, self.numbers[show.id]).id}

    def _shows(self) -> Iterator[SimShow]:
        for library_id in tv_library_ids(self.sim.model):
            yield from self.sim.model.libraries[library_id].shows.values()

    def _episodes(self) -> list[SimEpisode]:
        return [e for show in self._shows() for e in show.episodes.values() if _listed(e)]


def _listed(episode: SimEpisode) -> bool:
    """Whether the mirror should hold the episode: a real file, not in Plex's trash."""
    return not episode.virtual and episode.deleted_at is None


def _server_rows(sim: Sim, library_id: str) -> set[tuple[Any, ...]]:
    return {
        (e.id, e.show_id, e.season, e.number, e.title, e.watched)
        for e in sim.model.libraries[library_id].episodes()
        if _listed(e)
    }


def _rows(mirror: Mirror, library_id: str) -> set[tuple[Any, ...]]:
    return {
        (e.id, e.show_id, e.season, e.number, e.title, e.watched)
        for show in mirror.libraries[library_id].shows.values()
        for e in show.episodes.values()
    }


def _watch_state_checked(sim: Sim, result: SyncResult) -> set[str]:
    """The libraries whose watch state this sync brought up to date.

    Jellyfin's: all, at every sync. Plex's: those whose shows it listed (a
    changed marker, or the hourly check), as a watch moves no marker.
    """
    state = result.state
    if isinstance(sim, JellyfinSimulator):
        return set(result.mirror.libraries)
    return {lid for lid, at in state.shows_checked.items() if at == result.started_at}


def _without_watched(rows: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    return {row[:-1] for row in rows}


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
                ours_rows = _rows(mirror, library_id)
                theirs = _server_rows(sim, library_id)
                if library_id not in checked:
                    ours_rows, theirs = _without_watched(ours_rows), _without_watched(theirs)
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
            assert _without_watched(_rows(stored, library_id)) == _without_watched(
                _server_rows(sim, library_id)
            ), where
        episodes = sum(len(_server_rows(sim, lid)) for lid in library_ids)
        assert state_of(hass, entry, "sensor", "episodes") == str(episodes), where
        if number % 4 == 3:
            assert await hass.config_entries.async_reload(entry.entry_id)
            await hass.async_block_till_done()
            assert state_of(hass, entry, "sensor", "episodes") == str(episodes), where
            assert events == [], where
            assert stored_mirror(hass_storage, entry) == stored, where
