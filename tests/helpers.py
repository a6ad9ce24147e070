"""Helpers shared by the tests that drive Home Assistant against the simulators."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import aiohttp
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import CONF_TOKEN, CONF_URL, CONF_USERNAME, CONF_VERIFY_SSL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.episode_sync.api.jellyfin import JellyfinClient
from custom_components.episode_sync.api.models import Episode, EpisodeRow
from custom_components.episode_sync.const import (
    CONF_CLIENT_ID,
    CONF_DEVICE_ID,
    CONF_LIBRARIES,
    CONF_SERVER_TYPE,
    CONF_USER_ID,
    DEFAULT_OPTIONS,
    DEFAULT_SCAN_INTERVAL,
    DOMAIN,
)
from custom_components.episode_sync.store import decode_mirror
from custom_components.episode_sync.sync import Mirror
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.library import SimLibraryModel
from tests.simulator.plex import PlexSimulator

SCAN_INTERVAL = timedelta(minutes=DEFAULT_SCAN_INTERVAL)
JELLYFIN_DEVICE_ID = "9b2d6c0e4f1a4e8f8c5b7a3d2e1f0a9b"


def episodes_of(rows: Iterable[EpisodeRow]) -> list[Episode]:
    """Episode rows (a client's listing, a sync's added or removed), as ``Episode`` objects."""
    return [Episode.from_row(row) for row in rows]


def tv_library_ids(model: SimLibraryModel) -> list[str]:
    """Ids of the simulated server's TV libraries."""
    return [lib.id for lib in model.libraries.values() if lib.kind == "show"]


def default_options(library_ids: list[str], **overrides: Any) -> dict[str, Any]:
    """Entry options as the config flow creates them."""
    return {CONF_LIBRARIES: library_ids, **DEFAULT_OPTIONS, **overrides}


def plex_entry(sim: PlexSimulator, **options: Any) -> MockConfigEntry:
    """A config entry for the Plex simulator, as the config flow would create it."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=sim.name,
        unique_id=sim.machine_id,
        data={
            CONF_SERVER_TYPE: "plex",
            CONF_URL: sim.url,
            CONF_TOKEN: sim.token,
            CONF_VERIFY_SSL: True,
            CONF_CLIENT_ID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        },
        options=default_options(tv_library_ids(sim.model), **options),
    )


async def jellyfin_entry(sim: JellyfinSimulator, **options: Any) -> MockConfigEntry:
    """A config entry for the Jellyfin simulator, logged in as the flow would be."""
    user, password = next(iter(sim.users.items()))
    async with aiohttp.ClientSession() as session:
        client = JellyfinClient(session, sim.url, device_id=JELLYFIN_DEVICE_ID)
        login = await client.login(user, password)
    return MockConfigEntry(
        domain=DOMAIN,
        title=sim.name,
        unique_id=f"{sim.server_id}_{login.user_id}",
        data={
            CONF_SERVER_TYPE: "jellyfin",
            CONF_URL: sim.url,
            CONF_TOKEN: login.access_token,
            CONF_USER_ID: login.user_id,
            CONF_USERNAME: user,
            CONF_DEVICE_ID: JELLYFIN_DEVICE_ID,
            CONF_VERIFY_SSL: True,
        },
        options=default_options(tv_library_ids(sim.model), **options),
    )


async def entry_for(sim: PlexSimulator | JellyfinSimulator, **options: Any) -> MockConfigEntry:
    """The config entry of either simulator, as the config flow would create it."""
    if isinstance(sim, PlexSimulator):
        return plex_entry(sim, **options)
    return await jellyfin_entry(sim, **options)


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Add and set up an entry (its first sync runs during set-up)."""
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def next_poll(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, interval: timedelta = SCAN_INTERVAL
) -> None:
    """Let the scan interval pass, so the coordinator syncs by itself."""
    freezer.tick(interval)
    async_fire_time_changed(hass)
    # Scheduled refreshes run as background tasks: wait for them too.
    await hass.async_block_till_done(wait_background_tasks=True)


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Wait in real time, at most 10 s, until ``predicate()`` holds (a simulator's counter)."""
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110  # a simulator's log has no event to wait on
            await asyncio.sleep(0.01)


def stored_mirror(hass_storage: dict[str, Any], entry: MockConfigEntry) -> Mirror:
    """The mirror as the library store holds it."""
    return decode_mirror(hass_storage[f"{DOMAIN}.{entry.entry_id}.library"]["data"])


def mirror_rows(mirror: Mirror) -> set[tuple[Any, ...]]:
    """Comparable rows of a mirror: (id, show, season, number, title, watched)."""
    return {
        (e.id, e.show_id, e.season, e.number, e.title, e.watched) for _, _, e in mirror.episodes()
    }


def model_rows(model: SimLibraryModel, library_ids: list[str]) -> set[tuple[Any, ...]]:
    """The same rows for what the simulated server really holds."""
    return {
        (e.id, e.show_id, e.season, e.number, e.title, e.watched)
        for lid in library_ids
        for e in model.libraries[lid].episodes()
        if not e.virtual
    }


def entity_id(hass: HomeAssistant, entry: MockConfigEntry, platform: str, key: str) -> str:
    """The entity id of one of an entry's entities, found by its unique id."""
    found = er.async_get(hass).async_get_entity_id(platform, DOMAIN, f"{entry.unique_id}_{key}")
    assert found is not None, f"no {platform} entity with key {key}"
    return found


def state_of(hass: HomeAssistant, entry: MockConfigEntry, platform: str, key: str) -> str:
    """The current state of one of an entry's entities."""
    state = hass.states.get(entity_id(hass, entry, platform, key))
    assert state is not None
    return state.state


def suggested_values(result: Any) -> dict[str, Any]:
    """The values a form is filled in with, by field."""
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


def library_choices(result: Any) -> dict[str, str]:
    """The libraries an options form offers: id -> label."""
    key = next(k for k in result["data_schema"].schema if str(k) == CONF_LIBRARIES)
    return {o["value"]: o["label"] for o in result["data_schema"].schema[key].config["options"]}
