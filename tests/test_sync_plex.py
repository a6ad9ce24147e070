"""The sync scenarios of SPEC §3/§6 on Plex, through Home Assistant, with exact call counts.

Each test runs the integration against the Plex simulator over HTTP on
127.0.0.1 and lets the coordinator's own scan interval drive the syncs.
Request counts come from the simulator's log; library-store writes from a spy
on Home Assistant's ``Store``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
import math
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.episode_sync.api.models import At
from custom_components.episode_sync.const import DOMAIN, EVENT_NEW_EPISODE
from tests.helpers import (
    entity_id,
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
from tests.simulator.plex import PlexSimulator

#: Paths that only a show -> season -> episode walk would request.
WALK_PATHS = ("/children",)


@pytest.fixture
async def big_plex(socket_enabled: Any) -> AsyncIterator[PlexSimulator]:
    """A Plex simulator with 100 shows and 5,000 episodes."""
    sim = PlexSimulator()
    sim.model.generate(shows=100, seasons=5, episodes=10, seed=7)
    await sim.start()
    yield sim
    await sim.close()


def _sync_requests(sim: PlexSimulator) -> list[str]:
    """Requests of the syncs only (set-up's identity check is not a sync)."""
    return [r.path for r in sim.requests if r.path not in ("/", "/identity")]


async def test_initial_and_unchanged_sync(
    hass: HomeAssistant,
    big_plex: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    library_writes: list[str],
) -> None:
    """The first sync is paged library-wide; an unchanged library then costs 1 request."""
    entry = plex_entry(big_plex)
    await setup_entry(hass, entry)

    assert state_of(hass, entry, "sensor", "episodes") == "5000"
    assert state_of(hass, entry, "sensor", "shows") == "100"
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"
    initial = _sync_requests(big_plex)
    assert len(initial) <= 2 + math.ceil(5000 / 500)
    assert state_of(hass, entry, "sensor", "sync_api_calls") == str(len(initial))
    assert not any(walk in path for path in initial for walk in WALK_PATHS)
    assert not any(path.endswith("/allLeaves") for path in initial)
    assert library_writes == [f"{DOMAIN}.{entry.entry_id}.library"]
    library_ids = tv_library_ids(big_plex.model)
    assert mirror_rows(stored_mirror(hass_storage, entry)) == model_rows(
        big_plex.model, library_ids
    )

    big_plex.clear_log()
    library_writes.clear()
    await next_poll(hass, freezer)

    assert len(big_plex.requests) == 1
    assert big_plex.requests[0].path == "/library/sections"
    assert library_writes == []
    assert state_of(hass, entry, "sensor", "sync_api_calls") == "1"
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"


async def test_initial_sync_counts_pages_served(hass: HomeAssistant, socket_enabled: Any) -> None:
    """A server that serves smaller pages than asked costs its pages, nothing else."""
    sim = PlexSimulator(page_cap=300)
    sim.model.generate(shows=20, seasons=5, episodes=10, seed=3)
    await sim.start()
    try:
        entry = plex_entry(sim)
        await setup_entry(hass, entry)
        assert state_of(hass, entry, "sensor", "episodes") == "1000"
        # sections + shows (20, one page) + ceil(1000 / 300) episode pages
        assert len(_sync_requests(sim)) == 1 + 1 + math.ceil(1000 / 300)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.close()


async def test_one_episode_added(
    hass: HomeAssistant,
    big_plex: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    library_writes: list[str],
) -> None:
    """A new episode costs at most 4 requests and is announced once."""
    entry = plex_entry(big_plex)
    await setup_entry(hass, entry)
    assert state_of(hass, entry, "sensor", "new_episodes") == "0"
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    event_entity = entity_id(hass, entry, "event", "new_episode")
    before_event = hass.states.get(event_entity)

    show = next(iter(big_plex.model.libraries[tv_library_ids(big_plex.model)[0]].shows.values()))
    episode = big_plex.model.add_episode(show.id, 6, 1, title="Brand New", air_date="2026-11-20")
    big_plex.clear_log()
    library_writes.clear()
    await next_poll(hass, freezer)

    assert len(big_plex.requests) <= 4
    assert len(library_writes) == 1
    assert state_of(hass, entry, "sensor", "new_episodes") == "1"
    assert state_of(hass, entry, "sensor", "episodes") == "5001"
    assert len(events) == 1
    data = events[0].data
    assert data["config_entry_id"] == entry.entry_id
    assert data["server"] == big_plex.name
    assert data["library"] == "TV Shows"
    assert data["show"] == show.title
    assert (data["season"], data["episode"]) == (6, 1)
    assert data["title"] == "Brand New"
    assert data["air_date"] == "2026-11-20"
    assert data["episode_id"] == episode.id
    assert isinstance(data["episode_id"], str)
    assert data["show_id"] == show.id
    assert datetime.fromisoformat(data["added_at"]) == datetime.fromtimestamp(episode.added_at, UTC)
    assert data["device_id"]
    after_event = hass.states.get(event_entity)
    assert after_event is not None
    assert before_event is None or after_event.state != before_event.state
    assert after_event.attributes["event_type"] == "new_episode"
    assert after_event.attributes["episode_id"] == episode.id
    assert episode.id in {e.id for _, _, e in stored_mirror(hass_storage, entry).episodes()}


@pytest.mark.parametrize(
    ("mutate", "budget"),
    [
        pytest.param(lambda sim, ep: sim.model.remove_episode(ep.id), 4, id="removed"),
        pytest.param(lambda sim, ep: sim.model.rename_episode(ep.id, "Renamed"), 4, id="renamed"),
    ],
)
async def test_one_episode_changed(
    hass: HomeAssistant,
    big_plex: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    library_writes: list[str],
    mutate: Callable[[PlexSimulator, Any], object],
    budget: int,
) -> None:
    """A removed or renamed episode costs at most 4 requests; the mirror follows."""
    entry = plex_entry(big_plex)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    library_ids = tv_library_ids(big_plex.model)
    episode = list(big_plex.model.libraries[library_ids[0]].episodes())[42]

    mutate(big_plex, episode)
    big_plex.clear_log()
    library_writes.clear()
    await next_poll(hass, freezer)

    assert len(big_plex.requests) <= budget
    assert len(library_writes) == 1
    assert mirror_rows(stored_mirror(hass_storage, entry)) == model_rows(
        big_plex.model, library_ids
    )
    assert events == []


async def test_marked_watched_caught_by_hourly_show_check(
    hass: HomeAssistant,
    big_plex: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """Plex does not move a section's markers for watch state: the hourly check sees it."""
    entry = plex_entry(big_plex)
    await setup_entry(hass, entry)
    library_ids = tv_library_ids(big_plex.model)
    episode = list(big_plex.model.libraries[library_ids[0]].episodes())[7]

    big_plex.model.set_watched(episode.id)
    big_plex.clear_log()
    await next_poll(hass, freezer)
    assert len(big_plex.requests) == 1  # markers unchanged: nothing more to ask

    big_plex.clear_log()
    await next_poll(hass, freezer, timedelta(hours=1))
    assert len(big_plex.requests) <= 4
    assert mirror_rows(stored_mirror(hass_storage, entry)) == model_rows(
        big_plex.model, library_ids
    )


async def test_watch_swap_within_a_show_is_seen_by_its_latest_view(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """One episode watched and another of the same show unwatched leave the counts as they were.

    The show's ``lastViewedAt`` moved, so the hourly show check re-lists that
    show (and only that one), and the mirror has both flags right.
    """
    show = next(iter(plex_sim.model.libraries[tv_library_ids(plex_sim.model)[0]].shows.values()))
    first, second = list(show.episodes)[:2]
    plex_sim.model.set_watched(first)
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)

    plex_sim.model.clock.advance(60)
    plex_sim.model.set_watched(second)
    plex_sim.model.set_watched(first, watched=False)
    plex_sim.clear_log()
    await next_poll(hass, freezer, timedelta(hours=1))

    assert [r.path for r in plex_sim.requests if r.path.endswith("/allLeaves")] == [
        f"/library/metadata/{show.id}/allLeaves"
    ]
    watched = {e.id for _, _, e in stored_mirror(hass_storage, entry).episodes() if e.watched}
    assert watched == {second}

    # Nothing watched since: the next hourly check re-lists no show.
    plex_sim.clear_log()
    await next_poll(hass, freezer, timedelta(hours=1))
    assert not any(r.path.endswith("/allLeaves") for r in plex_sim.requests)


async def test_marked_watched_with_marker_bump(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """When the server does bump the markers for watch state, the next poll sees it."""
    plex_sim.watch_bumps_content_changed = True
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    library_ids = tv_library_ids(plex_sim.model)
    episode = list(plex_sim.model.libraries[library_ids[0]].episodes())[3]

    plex_sim.model.set_watched(episode.id)
    plex_sim.clear_log()
    await next_poll(hass, freezer)

    assert len(plex_sim.requests) <= 4
    watched = {e.id for _, _, e in stored_mirror(hass_storage, entry).episodes() if e.watched}
    assert watched == {episode.id}

    plex_sim.model.set_watched(episode.id, watched=False)
    await next_poll(hass, freezer)
    watched = {e.id for _, _, e in stored_mirror(hass_storage, entry).episodes() if e.watched}
    assert watched == set()


async def test_rekeyed_episode_is_not_new(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """Same show, season and number under a new ratingKey: an update, no event."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    library_ids = tv_library_ids(plex_sim.model)
    old = list(plex_sim.model.libraries[library_ids[0]].episodes())[5]

    new = plex_sim.model.rekey_episode(old.id)
    await next_poll(hass, freezer)

    assert events == []
    assert state_of(hass, entry, "sensor", "new_episodes") == "0"
    stored = {e.id: e for _, _, e in stored_mirror(hass_storage, entry).episodes()}
    assert old.id not in stored
    assert stored[new.id].added_at == old.added_at
    assert mirror_rows(stored_mirror(hass_storage, entry)) == model_rows(
        plex_sim.model, library_ids
    )


async def test_show_removed_and_back_under_new_ids_a_restart_later_is_not_new(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """A show removed at one scan and added back at a later one gets new ratingKeys.

    The stored removals remember its title: its episodes are updates that keep
    their ``added_at``, across a restart, and no event fires.
    """
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    library_ids = tv_library_ids(plex_sim.model)
    show = next(iter(plex_sim.model.libraries[library_ids[0]].shows.values()))
    episodes = list(show.episodes.values())
    plex_sim.model.remove_show(show.id)
    await next_poll(hass, freezer)
    assert not any(
        e.show_id == show.id for _, _, e in stored_mirror(hass_storage, entry).episodes()
    )
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()

    back = plex_sim.model.add_show(show.library_id, show.title)
    for episode in episodes:
        plex_sim.model.add_episode(back.id, episode.season, episode.number, title=episode.title)
    await next_poll(hass, freezer)

    assert events == []
    assert state_of(hass, entry, "sensor", "new_episodes") == "0"
    stored = {
        (e.season, e.number): e
        for _, _, e in stored_mirror(hass_storage, entry).episodes()
        if e.show_id == back.id
    }
    assert {k: e.added_at for k, e in stored.items()} == {
        (e.season, e.number): e.added_at for e in episodes
    }
    assert mirror_rows(stored_mirror(hass_storage, entry)) == model_rows(
        plex_sim.model, library_ids
    )


async def test_force_full_sync_action_and_button(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """The action and the button each run a full sync at once."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"

    plex_sim.clear_log()
    await hass.services.async_call(
        DOMAIN, "force_full_sync", {"config_entry_id": entry.entry_id}, blocking=True
    )
    await hass.async_block_till_done()
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"
    assert any("type=4" in f"{r.path}?type={r.query.get('type')}" for r in plex_sim.requests)

    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    await hass.services.async_call(
        "button",
        "press",
        {"entity_id": entity_id(hass, entry, "button", "force_full_sync")},
        blocking=True,
    )
    await hass.async_block_till_done()
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"


async def test_full_sync_after_a_week(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """A last full sync older than full_sync_days (7) makes the next sync a full one."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    await next_poll(hass, freezer, timedelta(days=6, hours=23))
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    await next_poll(hass, freezer, timedelta(hours=1))
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"


async def test_protocol_error_falls_back_to_full_in_the_same_run(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """A malformed delta answer turns the incremental sync into a full one, same run."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    library_ids = tv_library_ids(plex_sim.model)
    show = next(iter(plex_sim.model.libraries[library_ids[0]].shows.values()))
    plex_sim.model.add_episode(show.id, 3, 1, title="During a fault")
    # Incremental order: sections, the shows listing (/all), then the delta (/all).
    plex_sim.add_fault(Fault(kind="malformed", path="/all", skip=1))

    await next_poll(hass, freezer)

    assert state_of(hass, entry, "sensor", "sync_mode") == "full"
    assert hass.states.get(entity_id(hass, entry, "sensor", "last_sync")) is not None
    assert len(events) == 1
    assert mirror_rows(stored_mirror(hass_storage, entry)) == model_rows(
        plex_sim.model, library_ids
    )


async def test_trash_counted_in_leaf_count_is_no_news_when_its_show_changes(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """A show whose ``leafCount`` counts a trashed episode keeps that mismatch (docs: plex §9.3(b)).

    Once a full sync has seen it, an edit in that very show is taken from the
    delta alone, and a re-key there (one id gone, one new: counts that agree
    only without the trash) is repaired incrementally: the same mismatch
    after the repair is the server's, not an inconsistency worth a full sync.
    """
    plex_sim.auto_empty_trash = False
    plex_sim.trash_counts_in_leaf_count = True
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    section = tv_library_ids(plex_sim.model)[0]
    show = next(iter(plex_sim.model.libraries[section].shows.values()))
    first, second, third = list(show.episodes)[:3]
    plex_sim.delete_file(first)
    plex_sim.clear_log()
    await hass.services.async_call(DOMAIN, "force_full_sync", blocking=True)
    assert state_of(hass, entry, "sensor", "episodes") == "99"
    assert plex_sim.count("/allLeaves") == 1  # the full sync asked the show itself

    plex_sim.model.rename_episode(second, "Edited")
    plex_sim.clear_log()
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    assert plex_sim.count("/allLeaves") == 0  # the delta says it all
    assert plex_sim.count(f"/library/sections/{section}/all") == 2  # shows and delta
    library = entry.runtime_data.coordinator.mirror.libraries[section]
    assert library.shows[show.id].rows[second][At.TITLE] == "Edited"

    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    rekeyed = plex_sim.model.rekey_episode(third)
    plex_sim.clear_log()
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    assert plex_sim.count("/allLeaves") == 1  # the show's repair, and no full listing after it
    assert plex_sim.count(f"/library/sections/{section}/all") == 2  # shows and delta
    rows = entry.runtime_data.coordinator.mirror.libraries[section].shows[show.id].rows
    assert third not in rows
    assert rekeyed.id in rows
    assert events == []
    assert state_of(hass, entry, "sensor", "episodes") == "99"


async def test_requests_ask_for_light_answers_and_no_file_checks(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Listings drop heavy elements; a show's repair asks for no file I/O (docs: plex §2.8, §6)."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    show = next(iter(plex_sim.model.libraries[tv_library_ids(plex_sim.model)[0]].shows.values()))
    plex_sim.model.remove_episode(next(iter(show.episodes)))
    plex_sim.clear_log()
    await next_poll(hass, freezer)
    listings = [r for r in plex_sim.requests if r.path.endswith(("/all", "/allLeaves"))]
    assert listings
    for request in listings:
        assert request.query["skipRefresh"] == "1"
        assert "Media" in request.query["excludeElements"].split(",")
    (repair,) = [r for r in listings if r.path.endswith("/allLeaves")]
    assert repair.query["checkFiles"] == "0"


async def test_an_edit_that_moves_no_marker_is_found_by_the_hourly_check(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Whether an edit moves ``contentChangedAt`` is UNCONFIRMED (docs: plex §5).

    A section its markers let the polls skip keeps its own delta cursor, so
    the hourly check's delta still reaches back to the edit.
    """
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    section = tv_library_ids(plex_sim.model)[0]
    show = next(iter(plex_sim.model.libraries[section].shows.values()))
    episode = next(iter(show.episodes.values()))
    freezer.tick(timedelta(minutes=5))
    plex_sim.edit_bumps_content_changed = False  # a server whose markers stay put for it
    plex_sim.model.rename_episode(episode.id, "Quietly edited")
    for _ in range(5):  # the polls of the hour: unchanged markers, one request each
        plex_sim.clear_log()
        await next_poll(hass, freezer)
        assert len(plex_sim.requests) == 1
    await next_poll(hass, freezer)  # an hour after the first sync: the show check
    library = entry.runtime_data.coordinator.mirror.libraries[section]
    assert library.shows[show.id].rows[episode.id][At.TITLE] == "Quietly edited"

    await next_poll(hass, freezer)  # skipped again: the section's cursor stays behind
    state = entry.runtime_data.coordinator.state
    assert state.cursors[section] < state.cursor  # type: ignore[operator]
    assert await hass.config_entries.async_reload(entry.entry_id)  # stored, read back
    await hass.async_block_till_done()
    assert entry.runtime_data.coordinator.state.cursors == state.cursors
