"""Set-up, unload, removal, actions, events and diagnostics through Home Assistant."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    CONF_TOKEN,
    CONF_URL,
    CONF_VERIFY_SSL,
    EVENT_HOMEASSISTANT_STARTED,
    EVENT_HOMEASSISTANT_STOP,
)
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.episode_sync.const import (
    CONF_LIBRARIES,
    DOMAIN,
    EVENT_MANY_NEW_EPISODES,
    EVENT_NEW_EPISODE,
)
from custom_components.episode_sync.diagnostics import async_get_config_entry_diagnostics
from tests.helpers import (
    entity_id,
    entry_for,
    jellyfin_entry,
    library_choices,
    mirror_rows,
    model_rows,
    next_poll,
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


def _first_show(sim: PlexSimulator | JellyfinSimulator) -> Any:
    return next(iter(sim.model.libraries[tv_library_ids(sim.model)[0]].shows.values()))


async def test_setup_unload_and_remove(
    hass: HomeAssistant, plex_sim: PlexSimulator, hass_storage: dict[str, Any]
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    assert entry.state is ConfigEntryState.LOADED
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    assert len(devices) == 1
    device = devices[0]
    assert device.identifiers == {(DOMAIN, entry.unique_id)}
    assert device.name == plex_sim.name
    assert device.manufacturer == "Plex"
    # Sync duration changes at every sync: registered, but off until wanted.
    duration = er.async_get(hass).async_get(entity_id(hass, entry, "sensor", "sync_duration"))
    assert duration is not None
    assert duration.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    assert hass.states.get(duration.entity_id) is None
    keys = {f"{DOMAIN}.{entry.entry_id}.status", f"{DOMAIN}.{entry.entry_id}.library"}
    assert keys <= hass_storage.keys()

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED
    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert not keys & hass_storage.keys()


async def test_restart_loads_the_stored_mirror(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """A reload reads the mirror back and syncs incrementally: 1 request, not a full sync."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    plex_sim.clear_log()
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    assert state_of(hass, entry, "sensor", "episodes") == "100"
    assert [r.path for r in plex_sim.requests] == ["/", "/library/sections"]


async def test_corrupt_store_means_full_sync(
    hass: HomeAssistant, plex_sim: PlexSimulator, hass_storage: dict[str, Any]
) -> None:
    entry = plex_entry(plex_sim)
    hass_storage[f"{DOMAIN}.{entry.entry_id}.status"] = {"version": 1, "data": {"cursor": 5}}
    hass_storage[f"{DOMAIN}.{entry.entry_id}.library"] = {
        "version": 1,
        "data": {"server_id": "x", "libraries": [{"id": "1"}]},
    }
    await setup_entry(hass, entry)
    assert entry.state is ConfigEntryState.LOADED
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"
    assert state_of(hass, entry, "sensor", "episodes") == "100"


async def test_server_down_at_setup_is_not_ready(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    entry = plex_entry(plex_sim)
    plex_sim.add_fault(Fault(kind="reset", times=-1))
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_wrong_token_at_setup_starts_reauth(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    entry = plex_entry(plex_sim)
    plex_sim.rotate_token()
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress()
    assert [f["context"]["source"] for f in flows] == ["reauth"]


async def test_another_server_at_the_url_is_an_error(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    entry = plex_entry(plex_sim)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, unique_id="0123456789abcdef")
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR


async def test_token_revoked_during_a_sync_starts_reauth(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    plex_sim.rotate_token()
    await next_poll(hass, freezer)
    flows = hass.config_entries.flow.async_progress()
    assert [f["context"]["source"] for f in flows] == ["reauth"]


async def test_reauth_and_reconfigure_of_a_loaded_entry_set_it_up_once(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """A flow that changed the entry reloads it once (no update listener reloads it again)."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    new_token = plex_sim.rotate_token()
    plex_sim.clear_log()
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: new_token}
    )
    await hass.async_block_till_done()
    assert result["reason"] == "reauth_successful"
    assert entry.state is ConfigEntryState.LOADED
    # The flow's check of the token, then one set-up and its sync.
    assert [r.path for r in plex_sim.requests] == ["/identity", *["/", "/library/sections"] * 2]

    plex_sim.clear_log()
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: plex_sim.url, CONF_VERIFY_SSL: False}
    )
    await hass.async_block_till_done()
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_VERIFY_SSL] is False
    # Who answers there (no token), the token's check, then one set-up and its sync.
    assert [r.path for r in plex_sim.requests] == [
        "/identity",
        "/identity",
        *["/", "/library/sections"] * 2,
    ]


async def test_entities_unavailable_while_down_then_back(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    fault = plex_sim.add_fault(
        Fault(kind="status", status=503, headers={"Retry-After": "30"}, times=-1)
    )
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "unavailable"
    plex_sim.faults.remove(fault)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "100"


async def test_polls_go_on_with_every_entity_disabled(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    entity_registry: er.EntityRegistry,
) -> None:
    """Automations on the bus events need no entity: the scan interval still drives syncs."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    entities = er.async_entries_for_config_entry(entity_registry, entry.entry_id)
    for entity in entities:
        entity_registry.async_update_entity(
            entity.entity_id, disabled_by=er.RegistryEntryDisabler.USER
        )
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entities
    assert all(hass.states.get(entity.entity_id) is None for entity in entities)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    arrival = plex_sim.model.add_episode(_first_show(plex_sim).id, 9, 1)
    await next_poll(hass, freezer)
    assert [e.data["episode_id"] for e in events] == [arrival.id]


async def test_many_new_episodes_are_summarised(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """More than 25 new episodes in one sync: 25 events, then one summary."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    summaries = async_capture_events(hass, EVENT_MANY_NEW_EPISODES)
    show = _first_show(plex_sim)
    for number in range(1, 31):
        plex_sim.model.add_episode(show.id, 9, number)
    await next_poll(hass, freezer)
    assert len(events) == 25
    assert len(summaries) == 1
    assert summaries[0].data["count"] == 5
    assert summaries[0].data["shows"] == [show.title]
    assert state_of(hass, entry, "sensor", "new_episodes") == "30"
    attributes = hass.states.get(entity_id(hass, entry, "sensor", "new_episodes")).attributes  # type: ignore[union-attr]
    assert len(attributes["episodes"]) == 20
    assert set(attributes["episodes"][0]) == {
        "show",
        "season",
        "episode",
        "title",
        "air_date",
        "added_at",
        "poster",
        "thumb",
    }


async def test_force_full_sync_that_cannot_run_says_so_and_stays_owed(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"

    plex_sim.add_fault(Fault(kind="status", status=500, times=-1))
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN, "force_full_sync", {"config_entry_id": entry.entry_id}, blocking=True
        )
    assert err.value.translation_key == "full_sync_failed"

    plex_sim.clear_faults()
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"
    await next_poll(hass, freezer)  # and only once
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"


async def test_what_is_owed_is_kept_in_the_status_file_for_a_restart(
    hass: HomeAssistant, plex_sim: PlexSimulator, hass_storage: dict[str, Any]
) -> None:
    """Stopping Home Assistant unloads no entry: the stop itself writes what is owed."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    key = f"{DOMAIN}.{entry.entry_id}.status"
    status = copy.deepcopy(hass_storage[key])
    coordinator = entry.runtime_data.coordinator
    plex_sim.add_fault(Fault(kind="status", status=500, times=-1))
    with pytest.raises(HomeAssistantError):
        await coordinator.async_force_full_sync()
    coordinator.played_items.add("123")
    assert hass_storage[key] == status  # a failed sync writes nothing

    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    assert hass_storage[key]["data"]["owed"] == {
        "full_sync": True,
        "dirty_libraries": [],
        "played_items": ["123"],
        "delta_failures": 0,
        "unannounced": [],
    }

    # The next start runs the full sync it owed, and then owes nothing.
    plex_sim.clear_faults()
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"
    assert hass_storage[key]["data"]["owed"]["full_sync"] is False
    assert hass_storage[key]["data"]["owed"]["played_items"] == []


async def _both_servers(
    hass: HomeAssistant, plex_sim: PlexSimulator, jellyfin_sim: JellyfinSimulator
) -> tuple[MockConfigEntry, MockConfigEntry]:
    """One set-up entry per simulator."""
    plex = plex_entry(plex_sim)
    jellyfin = await jellyfin_entry(jellyfin_sim)
    await setup_entry(hass, plex)
    await setup_entry(hass, jellyfin)
    return plex, jellyfin


async def test_force_full_sync_of_every_server_goes_on_past_one_that_fails(
    hass: HomeAssistant, plex_sim: PlexSimulator, jellyfin_sim: JellyfinSimulator
) -> None:
    _, jellyfin = await _both_servers(hass, plex_sim, jellyfin_sim)
    plex_sim.add_fault(Fault(kind="status", status=500, times=-1))
    jellyfin_sim.clear_log()
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(DOMAIN, "force_full_sync", {}, blocking=True)
    assert err.value.translation_key == "full_sync_failed"
    assert state_of(hass, jellyfin, "sensor", "sync_mode") == "full"
    assert jellyfin_sim.count("/Items") >= 2  # synced although Plex failed


async def test_force_full_sync_of_every_server_skips_one_unloaded_meanwhile(
    hass: HomeAssistant, plex_sim: PlexSimulator, jellyfin_sim: JellyfinSimulator
) -> None:
    """Jellyfin's entry unloads (a reload) while Plex's full sync runs: the action ends well."""
    plex, jellyfin = await _both_servers(hass, plex_sim, jellyfin_sim)
    plex_sim.latency = 0.2  # each answer, once logged
    plex_sim.clear_log()
    call = hass.async_create_task(
        hass.services.async_call(DOMAIN, "force_full_sync", {}, blocking=True)
    )
    await wait_until(lambda: plex_sim.count("/library/sections") == 1)
    assert await hass.config_entries.async_unload(jellyfin.entry_id)
    jellyfin_sim.clear_log()
    await call
    assert state_of(hass, plex, "sensor", "sync_mode") == "full"
    assert jellyfin_sim.requests == []


async def test_a_reload_keeps_the_look_a_push_message_asked_for(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """A library reported changed, or an episode played, but not yet synced: seen after a reload."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    library = tv_library_ids(plex_sim.model)[0]
    show = next(iter(plex_sim.model.libraries[library].shows.values()))
    coordinator = entry.runtime_data.coordinator
    coordinator.dirty_libraries.add(library)  # as push messages do
    coordinator.played_items.add(next(iter(show.episodes)))

    def deltas() -> int:
        return sum(1 for r in plex_sim.requests if "updatedAt>>" in r.query)

    def repairs() -> list[str]:
        return [r.path for r in plex_sim.requests if r.path.endswith("/allLeaves")]

    plex_sim.clear_log()
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    # Its marker did not move, yet the new coordinator's first sync asks its
    # delta, and re-lists the played episode's show.
    assert deltas() == 1
    assert repairs() == [f"/library/metadata/{show.id}/allLeaves"]
    assert not entry.runtime_data.coordinator.dirty_libraries
    assert not entry.runtime_data.coordinator.played_items
    plex_sim.clear_log()
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert (deltas(), repairs()) == (0, [])  # owed once, looked at once


async def test_force_full_sync_for_all_or_unknown_entries(
    hass: HomeAssistant, plex_sim: PlexSimulator, jellyfin_sim: JellyfinSimulator
) -> None:
    plex, _ = await _both_servers(hass, plex_sim, jellyfin_sim)
    plex_sim.clear_log()
    jellyfin_sim.clear_log()
    await hass.services.async_call(DOMAIN, "force_full_sync", {}, blocking=True)
    assert plex_sim.count("/all") >= 2
    assert jellyfin_sim.count("/Items") >= 2

    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, "force_full_sync", {"config_entry_id": "nope"}, blocking=True
        )
    assert err.value.translation_key == "entry_not_found"
    assert await hass.config_entries.async_unload(plex.entry_id)
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN,
            "get_new_episodes",
            {"config_entry_id": plex.entry_id},
            blocking=True,
            return_response=True,
        )
    assert err.value.translation_key == "entry_not_loaded"


async def test_get_new_episodes_makes_no_request(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    show = _first_show(plex_sim)
    for number in range(1, 4):
        plex_sim.model.add_episode(show.id, 8, number, title=f"New {number}")
        freezer.tick(60)
    await next_poll(hass, freezer)
    plex_sim.clear_log()

    response = await hass.services.async_call(
        DOMAIN, "get_new_episodes", {"limit": 2}, blocking=True, return_response=True
    )
    assert plex_sim.requests == []
    episodes = response["episodes"]  # type: ignore[index]
    assert [e["title"] for e in episodes] == ["New 3", "New 2"]  # type: ignore[index]
    assert episodes[0]["config_entry_id"] == entry.entry_id  # type: ignore[index]
    assert episodes[0]["season"] == 8  # type: ignore[index]
    response = await hass.services.async_call(
        DOMAIN,
        "get_new_episodes",
        {"config_entry_id": entry.entry_id, "days": 0.0001},
        blocking=True,
        return_response=True,
    )
    assert response == {"episodes": []}


async def test_diagnostics_are_redacted_and_capped(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    text = str(diagnostics)
    assert plex_sim.token not in text
    assert plex_sim.url not in text
    assert diagnostics["mirror"]["episodes"] == 100
    assert diagnostics["mirror"]["removed_lately"] == 0
    assert diagnostics["push"] is None  # push off in this entry
    assert len(diagnostics["mirror"]["sample"]) == 5
    assert diagnostics["sync"]["last_result"]["mode"] == "full"
    assert diagnostics["sync"]["owed"] == {
        "full_sync": False,
        "dirty_libraries": [],
        "played_items": 0,
        "delta_failures": 0,
        "unannounced": 0,
    }
    assert diagnostics["sync"]["paused_for_s"] == 0


async def test_options_change_reloads_with_new_interval(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    await hass.config_entries.options.async_configure(
        result["flow_id"], {**entry.options, "scan_interval": 60}
    )
    await hass.async_block_till_done()
    plex_sim.clear_log()
    await next_poll(hass, freezer)  # 10 minutes: not yet
    assert plex_sim.requests == []
    await next_poll(hass, freezer, timedelta(minutes=50))
    assert plex_sim.requests[0].path == "/library/sections"


async def test_options_offline_name_the_libraries_as_the_mirror_does(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """The server offline: the form keeps the selected libraries, with their titles."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    await plex_sim.close()
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["errors"] == {"base": "cannot_connect"}
    assert library_choices(result) == {
        i: plex_sim.model.libraries[i].title for i in entry.options[CONF_LIBRARIES]
    }


async def test_many_shows_changed_at_once_are_listed_with_their_library(
    hass: HomeAssistant,
    media_sim: PlexSimulator | JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """One episode watched in each of six shows: one library listing, not six show listings."""
    entry = await entry_for(media_sim)
    await setup_entry(hass, entry)
    (library_id,) = tv_library_ids(media_sim.model)
    shows = list(media_sim.model.libraries[library_id].shows.values())[:6]
    for show in shows:
        media_sim.model.set_watched(next(iter(show.episodes)))
    media_sim.clear_log()
    # An hour on: Plex's markers ignore watch state, its hourly show check sees it.
    await next_poll(hass, freezer, timedelta(hours=1))

    assert mirror_rows(stored_mirror(hass_storage, entry)) == model_rows(
        media_sim.model, [library_id]
    )
    paths = [r.path for r in media_sim.requests]
    assert not any(p.endswith(("/allLeaves", "/Episodes")) for p in paths)  # no show listing
    # 100 episodes: one page of the library's listing, beside the usual requests
    # (Plex: sections, shows, delta; Jellyfin: series, delta).
    assert sum(1 for r in media_sim.requests if _lists_episodes(r)) == 2  # the delta, the list
    assert len(paths) == (4 if isinstance(media_sim, PlexSimulator) else 3)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"


def _lists_episodes(request: Any) -> bool:
    """A library-wide episode listing (the delta or the whole library)."""
    query = {k.lower(): v for k, v in request.query.items()}
    return query.get("type") == "4" or query.get("includeitemtypes") == "Episode"


async def test_selecting_another_library_announces_nothing(
    hass: HomeAssistant,
    media_sim: PlexSimulator | JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A library selected later is mirrored like a first sync; what arrives after is new."""
    sim = media_sim
    anime = sim.model.generate(title="Anime", shows=3, seasons=1, episodes=4, seed=2)
    tv = [lid for lid in tv_library_ids(sim.model) if lid != anime.id]
    entry = await entry_for(sim, libraries=tv)
    await setup_entry(hass, entry)
    assert state_of(hass, entry, "sensor", "episodes") == "100"
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    many = async_capture_events(hass, EVENT_MANY_NEW_EPISODES)

    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**entry.options, "libraries": [*tv, anime.id]}
    )
    await hass.async_block_till_done()
    assert state_of(hass, entry, "sensor", "episodes") == "112"
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"
    assert (events, many) == ([], [])

    sim.clock.advance(60)
    arrival = sim.model.add_episode(next(iter(anime.shows)), 2, 1)
    await next_poll(hass, freezer)
    assert [e.data["episode_id"] for e in events] == [arrival.id]
    assert many == []


async def test_an_episode_back_after_a_removal_is_not_announced_again(
    hass: HomeAssistant,
    media_sim: PlexSimulator | JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A file gone then back under its id (a share offline, Plex's trash) is no new episode."""
    sim = media_sim
    entry = await entry_for(sim)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    sim.clock.advance(60)
    arrival = sim.model.add_episode(_first_show(sim).id, 3, 1)
    await next_poll(hass, freezer)
    assert [e.data["episode_id"] for e in events] == [arrival.id]
    first_seen = events[0].data["added_at"]

    sim.clock.advance(60)
    sim.model.remove_episode(arrival.id)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "100"
    # The memory of the removal is stored with the mirror: it survives a restart.
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()

    sim.clock.advance(60)
    sim.model.restore_episode(arrival)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "101"
    assert len(events) == 1
    answer = await hass.services.async_call(
        DOMAIN,
        "get_new_episodes",
        {"config_entry_id": entry.entry_id},
        blocking=True,
        return_response=True,
    )
    assert answer is not None
    restored = next(e for e in answer["episodes"] if e["episode_id"] == arrival.id)  # type: ignore[union-attr]
    assert restored["added_at"] == first_seen  # type: ignore[index]


async def test_mass_removal_is_held_back_with_a_repair_issue(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    issue_registry: ir.IssueRegistry,
) -> None:
    """A library that looks wiped keeps its mirror until the next sync confirms it."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    library_id = tv_library_ids(plex_sim.model)[0]
    shows = dict(plex_sim.model.libraries[library_id].shows)
    plex_sim.model.libraries[library_id].shows.clear()  # the share went offline
    plex_sim.model.on_change("library_wiped", library_id, None)

    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "100"
    issue_id = f"mass_removal_{entry.entry_id}_{library_id}"
    issue = issue_registry.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders == {
        "library": "TV Shows",
        "server": plex_sim.name,
        "count": "100",
    }

    plex_sim.model.libraries[library_id].shows.update(shows)  # back again
    plex_sim.model.on_change("library_wiped", library_id, None)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "100"
    assert issue_registry.async_get_issue(DOMAIN, issue_id) is None


async def test_edits_beside_a_held_back_removal_reach_the_mirror(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
) -> None:
    """A rename in the scan that also hid most shows is synced once the shows are back."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    library = plex_sim.model.libraries[tv_library_ids(plex_sim.model)[0]]
    kept, *hidden = library.shows
    renamed = next(iter(library.shows[kept].episodes))
    plex_sim.model.rename_episode(renamed, "Renamed")
    plex_sim.clock.advance(600)  # the scan goes on: the rename is minutes old at the poll
    offline = {show_id: library.shows.pop(show_id) for show_id in hidden}
    plex_sim.model.on_change("library_wiped", library.id, None)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "100"  # held back

    library.shows.update(offline)  # the share is back
    plex_sim.model.on_change("library_wiped", library.id, None)
    for _ in range(3):
        await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    titles = {e.id: e.title for _, _, e in stored_mirror(hass_storage, entry).episodes()}
    assert titles[renamed] == "Renamed"


async def test_confirmed_mass_removal_is_applied(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    library_id = tv_library_ids(plex_sim.model)[0]
    plex_sim.model.wipe_library(library_id)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "100"
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "0"


async def test_a_selected_library_gone_from_the_server_says_so_until_it_is_back(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    issue_registry: ir.IssueRegistry,
) -> None:
    """Held back first (it looks like a mass removal), then gone, with its own repair issue."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    library_id = tv_library_ids(plex_sim.model)[0]
    library = plex_sim.model.libraries[library_id]
    held = f"mass_removal_{entry.entry_id}_{library_id}"
    missing = f"library_missing_{entry.entry_id}_{library_id}"

    plex_sim.model.remove_library(library_id)
    await next_poll(hass, freezer)
    assert issue_registry.async_get_issue(DOMAIN, held) is not None
    assert issue_registry.async_get_issue(DOMAIN, missing) is None

    await next_poll(hass, freezer)  # confirmed: the removal is applied
    assert state_of(hass, entry, "sensor", "episodes") == "0"
    assert issue_registry.async_get_issue(DOMAIN, held) is None
    issue = issue_registry.async_get_issue(DOMAIN, missing)
    assert issue is not None
    assert issue.translation_key == "library_missing"
    assert issue.translation_placeholders == {"library": "TV Shows", "server": plex_sim.name}

    plex_sim.model.restore_library(library)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "100"
    assert issue_registry.async_get_issue(DOMAIN, missing) is None


async def test_removing_the_entry_removes_its_repair_issues(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    issue_registry: ir.IssueRegistry,
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    plex_sim.model.wipe_library(tv_library_ids(plex_sim.model)[0])
    await next_poll(hass, freezer)
    assert [i.domain for i in issue_registry.issues.values()] == [DOMAIN]
    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert not [i for i in issue_registry.issues.values() if i.domain == DOMAIN]


async def test_episodes_added_while_home_assistant_was_down_are_announced_once_started(
    hass: HomeAssistant, media_sim: PlexSimulator | JellyfinSimulator
) -> None:
    """The set-up's first sync finds them before automations listen: they wait for the start."""
    sim = media_sim
    entry = await entry_for(sim)
    await setup_entry(hass, entry)
    assert await hass.config_entries.async_unload(entry.entry_id)
    added = sim.model.add_episode(_first_show(sim).id, 30, 1, title="While away")

    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    hass.set_state(CoreState.starting)  # a boot: automations attach once started
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert events == []
    assert state_of(hass, entry, "sensor", "new_episodes") == "1"  # mirrored already

    hass.set_state(CoreState.running)
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STARTED)
    await hass.async_block_till_done()
    assert [e.data["episode_id"] for e in events] == [added.id]
    device = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)[0]
    assert events[0].data["device_id"] == device.id
    fired = hass.states.get(entity_id(hass, entry, "event", "new_episode"))
    assert fired is not None
    assert fired.attributes["episode_id"] == added.id  # the event entity heard it too
    assert events[0].data.items() <= fired.attributes.items()  # with the bus event's data

    sim.model.add_episode(_first_show(sim).id, 30, 2)
    await entry.runtime_data.coordinator.async_refresh()
    assert len(events) == 2  # and later ones as they are found


async def test_episodes_found_at_boot_are_announced_as_mirrored_at_the_start(
    hass: HomeAssistant, plex_sim: PlexSimulator
) -> None:
    """Renamed or removed by a sync before Home Assistant has started: announced as they
    are then, or not at all."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    assert await hass.config_entries.async_unload(entry.entry_id)
    show = _first_show(plex_sim).id
    renamed = plex_sim.model.add_episode(show, 30, 1, title="While away")
    removed = plex_sim.model.add_episode(show, 30, 2)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    hass.set_state(CoreState.starting)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    plex_sim.model.rename_episode(renamed.id, "Renamed")
    plex_sim.model.remove_episode(removed.id)
    await entry.runtime_data.coordinator.async_refresh()
    assert state_of(hass, entry, "sensor", "episodes") == "101"

    hass.set_state(CoreState.running)
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STARTED)
    await hass.async_block_till_done()
    assert [(e.data["episode_id"], e.data["title"]) for e in events] == [(renamed.id, "Renamed")]


async def test_episodes_found_at_boot_are_announced_even_after_a_reload_before_the_start(
    hass: HomeAssistant, plex_sim: PlexSimulator, hass_storage: dict[str, Any]
) -> None:
    """The entry reloads before Home Assistant has started: its successor announces them, once."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    assert await hass.config_entries.async_unload(entry.entry_id)
    added = plex_sim.model.add_episode(_first_show(plex_sim).id, 30, 1, title="While away")

    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    hass.set_state(CoreState.starting)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    key = f"{DOMAIN}.{entry.entry_id}.status"
    assert hass_storage[key]["data"]["owed"]["unannounced"] == [added.id]
    assert await hass.config_entries.async_reload(entry.entry_id)  # before the start
    await hass.async_block_till_done()
    assert events == []

    hass.set_state(CoreState.running)
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STARTED)
    await hass.async_block_till_done()
    assert [e.data["episode_id"] for e in events] == [added.id]
    assert hass_storage[key]["data"]["owed"]["unannounced"] == []  # a restart announces nothing
