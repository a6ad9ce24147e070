"""The sync scenarios on Jellyfin, through Home Assistant, for each simulated version.

Jellyfin differs by version where it matters most to a mirror: the delta
filter (``MinDateLastSaved`` alone fails before 10.11) and legacy auth (off in
12.0). Every scenario runs against 10.10, 10.11 and 12.0.
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

from custom_components.episode_sync.const import DOMAIN, EVENT_NEW_EPISODE
from tests.helpers import (
    jellyfin_entry,
    mirror_rows,
    model_rows,
    next_poll,
    setup_entry,
    state_of,
    stored_mirror,
    tv_library_ids,
)
from tests.simulator.common import Fault
from tests.simulator.jellyfin import JellyfinSimulator

VERSIONS = ["10.10.7", "10.11.7", "12.0.0"]


@pytest.fixture(params=VERSIONS)
async def jellyfin(
    request: pytest.FixtureRequest, socket_enabled: Any
) -> AsyncIterator[JellyfinSimulator]:
    """A Jellyfin simulator of each version, 40 shows x 5 seasons x 10 episodes."""
    sim = JellyfinSimulator(version=request.param)
    sim.model.generate(shows=40, seasons=5, episodes=10, seed=11)
    await sim.start()
    yield sim
    await sim.close()


def _sync_requests(sim: JellyfinSimulator) -> list[str]:
    return [r.path for r in sim.requests if r.path != "/System/Info/Public"]


async def test_initial_and_unchanged(
    hass: HomeAssistant,
    jellyfin: JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    library_writes: list[str],
) -> None:
    """Initial: paged library-wide; unchanged: one listing per library plus one delta."""
    entry = await jellyfin_entry(jellyfin)
    jellyfin.clear_log()
    await setup_entry(hass, entry)

    assert state_of(hass, entry, "sensor", "episodes") == "2000"
    initial = _sync_requests(jellyfin)
    libraries = len(tv_library_ids(jellyfin.model))
    assert len(initial) <= (2 + math.ceil(2000 / 500)) * libraries
    assert not any("/Seasons" in path for path in initial)
    assert not any(r.query.get("seasonId") for r in jellyfin.requests)
    library_ids = tv_library_ids(jellyfin.model)
    assert mirror_rows(stored_mirror(hass_storage, entry)) == model_rows(
        jellyfin.model, library_ids
    )

    jellyfin.clear_log()
    library_writes.clear()
    await next_poll(hass, freezer)
    assert len(jellyfin.requests) <= libraries + 1
    assert library_writes == []
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"


async def test_a_selected_library_back_on_the_server_is_mirrored_at_the_next_sync(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Jellyfin has no library markers: libraries are listed only while one is missing."""
    anime = jellyfin_sim.model.generate(title="Anime", shows=2, seasons=1, episodes=3, seed=3)
    entry = await jellyfin_entry(jellyfin_sim)
    await setup_entry(hass, entry)
    assert state_of(hass, entry, "sensor", "episodes") == "106"

    jellyfin_sim.model.remove_library(anime.id)  # the folder is removed from the server
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "100"
    # Its listing answered 400 (an unknown ParentId) and the library list has
    # it no more: gone, without a full sync.
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    jellyfin_sim.clear_log()
    await next_poll(hass, freezer)
    assert any(p.endswith("Views") for p in _sync_requests(jellyfin_sim))  # the library list

    jellyfin_sim.model.restore_library(anime)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "106"
    jellyfin_sim.clear_log()
    await next_poll(hass, freezer)
    assert not any(p.endswith("Views") for p in _sync_requests(jellyfin_sim))
    assert len(_sync_requests(jellyfin_sim)) == 3  # one listing per library, one delta


async def test_a_bad_request_for_a_library_still_listed_drops_nothing(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """A 400 is a gone library only when the library list confirms it."""
    entry = await jellyfin_entry(jellyfin_sim)
    await setup_entry(hass, entry)
    jellyfin_sim.add_fault(Fault(kind="status", path="/Items", param="ParentId", status=400))
    jellyfin_sim.clear_log()
    await next_poll(hass, freezer)
    # The library list asked after the 400 (and again by the full sync that followed).
    assert sum(p.endswith("Views") for p in _sync_requests(jellyfin_sim)) == 2
    assert state_of(hass, entry, "sensor", "episodes") == "100"
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"  # the fallback, complete


async def test_a_series_saved_again_before_its_new_episode_is_re_listed(
    hass: HomeAssistant,
    jellyfin_sim: JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """A re-matched episode (new id, same counts), not saved yet: the series' new Etag tells."""
    jellyfin_sim.first_refresh_delay = 3600.0  # its first refresh comes long after the poll
    entry = await jellyfin_entry(jellyfin_sim)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    library_id = tv_library_ids(jellyfin_sim.model)[0]
    show = next(iter(jellyfin_sim.model.libraries[library_id].shows.values()))
    jellyfin_sim.model.rekey_episode(next(iter(show.episodes)))
    jellyfin_sim.clear_log()
    await next_poll(hass, freezer)

    assert mirror_rows(stored_mirror(hass_storage, entry)) == model_rows(
        jellyfin_sim.model, [library_id]
    )
    # The series listing, the delta (which cannot see the new row), that one series.
    assert len(_sync_requests(jellyfin_sim)) == 3
    assert any(p == f"/Shows/{show.id}/Episodes" for p in _sync_requests(jellyfin_sim))
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    assert events == []  # the same episode, under a new id

    # The same while Home Assistant is stopped: the stored mirror keeps the Etags.
    assert await hass.config_entries.async_unload(entry.entry_id)
    jellyfin_sim.model.rekey_episode(list(show.episodes)[1])
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert mirror_rows(entry.runtime_data.coordinator.mirror) == model_rows(
        jellyfin_sim.model, [library_id]
    )


async def test_etags_of_a_mirror_stored_without_them_are_adopted(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, hass_storage: dict[str, Any]
) -> None:
    """A store from before series Etags were kept: the next sync takes them, re-listing nothing."""
    entry = await jellyfin_entry(jellyfin_sim)
    await setup_entry(hass, entry)
    stored = hass_storage[f"{DOMAIN}.{entry.entry_id}.library"]["data"]
    for library in stored["libraries"]:
        for show in library["shows"]:
            assert show[7]  # the series' Etag
            del show[7:]
    jellyfin_sim.clear_log()
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    # The set-up's sync: the series listing and the delta, no series re-listed.
    assert len(_sync_requests(jellyfin_sim)) == 2
    stored = hass_storage[f"{DOMAIN}.{entry.entry_id}.library"]["data"]
    assert all(show[7] for library in stored["libraries"] for show in library["shows"])


async def test_added_episode_with_an_old_file_date_is_new(
    hass: HomeAssistant,
    jellyfin: JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """DateCreated years old (a copied file), but new to the library: announced."""
    entry = await jellyfin_entry(jellyfin)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    library_id = tv_library_ids(jellyfin.model)[0]
    show = next(iter(jellyfin.model.libraries[library_id].shows.values()))
    old_file = int(datetime(2018, 5, 1, tzinfo=UTC).timestamp())

    episode = jellyfin.model.add_episode(
        show.id, 7, 1, title="Found on an old drive", file_created_at=old_file
    )
    jellyfin.clear_log()
    await next_poll(hass, freezer)

    assert len(jellyfin.requests) <= 4
    assert len(events) == 1
    assert events[0].data["episode_id"] == episode.id
    assert events[0].data["title"] == "Found on an old drive"
    assert datetime.fromisoformat(events[0].data["added_at"]).year == datetime.now(UTC).year
    assert state_of(hass, entry, "sensor", "new_episodes") == "1"


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda sim, ep: sim.model.remove_episode(ep.id), id="removed"),
        pytest.param(lambda sim, ep: sim.model.rename_episode(ep.id, "Renamed"), id="renamed"),
        pytest.param(lambda sim, ep: sim.model.set_watched(ep.id), id="watched"),
    ],
)
async def test_one_episode_changed(
    hass: HomeAssistant,
    jellyfin: JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    mutate: Callable[[JellyfinSimulator, Any], object],
) -> None:
    """Removed, renamed or watched: at most 4 requests, mirror exact, no event."""
    entry = await jellyfin_entry(jellyfin)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    library_ids = tv_library_ids(jellyfin.model)
    episode = list(jellyfin.model.libraries[library_ids[0]].episodes())[17]

    mutate(jellyfin, episode)
    jellyfin.clear_log()
    await next_poll(hass, freezer)

    assert len(jellyfin.requests) <= 4
    assert mirror_rows(stored_mirror(hass_storage, entry)) == model_rows(
        jellyfin.model, library_ids
    )
    assert events == []


async def test_delta_filter_is_version_gated(
    hass: HomeAssistant, jellyfin: JellyfinSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Below 10.11 only ``MinDateLastSavedForUser`` works; the client picks by version."""
    entry = await jellyfin_entry(jellyfin)
    await setup_entry(hass, entry)
    jellyfin.clear_log()
    await next_poll(hass, freezer)
    sent = [key for r in jellyfin.requests for key in r.query if key.startswith("MinDateLastSaved")]
    expected = (
        "MinDateLastSavedForUser" if jellyfin.version_tuple < (10, 11) else "MinDateLastSaved"
    )
    assert sent == [expected]


@pytest.mark.parametrize("mode", ["incremental", "full"])
async def test_first_seen_time_is_on_the_server_clock_in_every_sync(
    hass: HomeAssistant,
    jellyfin_sim: JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
    mode: str,
) -> None:
    """Jellyfin's DateCreated is not trusted: "added" is when a sync first saw it, server time.

    Incremental and full syncs agree on that clock (a skewed server moves both alike).
    """
    entry = await jellyfin_entry(jellyfin_sim)
    await setup_entry(hass, entry)
    jellyfin_sim.clock.advance(3 * 3600)  # the server runs three hours ahead
    show = next(
        iter(jellyfin_sim.model.libraries[tv_library_ids(jellyfin_sim.model)[0]].shows.values())
    )
    episode = jellyfin_sim.model.add_episode(show.id, 40, 1)
    if mode == "full":
        await hass.services.async_call("episode_sync", "force_full_sync", blocking=True)
    else:
        await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == mode
    mirrored = {e.id: e for _, _, e in entry.runtime_data.coordinator.mirror.episodes()}
    assert abs(mirrored[episode.id].added_at - jellyfin_sim.clock.now()) < 60


async def test_a_renamed_library_is_seen_within_six_hours(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """No markers: the library list is read every 6 hours (docs: jellyfin §9, step 0)."""
    entry = await jellyfin_entry(jellyfin_sim)
    await setup_entry(hass, entry)
    library_id = tv_library_ids(jellyfin_sim.model)[0]
    old_title = jellyfin_sim.model.libraries[library_id].title
    jellyfin_sim.model.libraries[library_id].title = "Series"
    jellyfin_sim.clear_log()
    await next_poll(hass, freezer)
    assert not any(p.endswith("Views") for p in _sync_requests(jellyfin_sim))
    mirror = entry.runtime_data.coordinator.mirror
    assert mirror.libraries[library_id].title == old_title

    await next_poll(hass, freezer, timedelta(hours=6))
    assert any(p.endswith("Views") for p in _sync_requests(jellyfin_sim))
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    assert entry.runtime_data.coordinator.mirror.libraries[library_id].title == "Series"
    jellyfin_sim.clear_log()
    await next_poll(hass, freezer)
    assert not any(p.endswith("Views") for p in _sync_requests(jellyfin_sim))  # 6 h again
