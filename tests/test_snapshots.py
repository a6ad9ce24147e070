"""Snapshots of what Home Assistant shows for a synced server: entities, device, diagnostics.

They complement the functional asserts elsewhere, which say why each value
is what it is: a snapshot puts every change of the surface in front of the
reviewer (``script/test tests/test_snapshots.py --snapshot-update`` rewrites
them after a deliberate change). Each is projected to the fields Episode
Sync decides, so that one snapshot holds on every supported Home Assistant
version (the registries' own records gain fields from release to release).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
import re
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from syrupy.assertion import SnapshotAssertion

from custom_components.episode_sync.diagnostics import async_get_config_entry_diagnostics
from tests.helpers import jellyfin_entry, next_poll, plex_entry, setup_entry
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator

#: Frozen before the simulator is filled: its dates are relative to its clock.
NOW = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)
#: What changes from run to run (image signatures, the simulator's port), or
#: from one Home Assistant version to another (newer ones add a millisecond to
#: an event entity's state when two events fire at the same time).
VARYING = [
    (re.compile(r"authSig=[^&\"']+"), "authSig=<signed>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"(T\d\d:\d\d:\d\d)\.\d{3}\+"), r"\1+"),
]


def _stable(value: Any, ids: dict[str, str]) -> Any:
    """``value`` as plain data, with what varies (``VARYING``) replaced.

    Enums become their values (Home Assistant turned some constants into
    enums between the supported versions); ``ids`` (the entry's, the
    device's: random) become their names.
    """
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, dict):
        return {_stable(key, ids): _stable(item, ids) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_stable(item, ids) for item in value]
    if isinstance(value, str):
        for pattern, replacement in VARYING:
            value = pattern.sub(replacement, value)
        for random_id, name in ids.items():
            value = value.replace(random_id, name)
    return value


def _entities(hass: HomeAssistant, entry_id: str) -> dict[str, Any]:
    """Each entity of the entry: the registry fields Episode Sync sets, and its state."""
    found: dict[str, Any] = {}
    for entity in er.async_entries_for_config_entry(er.async_get(hass), entry_id):
        state = hass.states.get(entity.entity_id)
        found[entity.entity_id] = {
            "unique_id": entity.unique_id,
            "translation_key": entity.translation_key,
            "device_class": entity.original_device_class,
            "entity_category": entity.entity_category,
            "disabled_by": entity.disabled_by,
            "unit": entity.unit_of_measurement,
            "state": None if state is None else state.state,
            "attributes": None if state is None else dict(state.attributes),
        }
    return found


def _device(device: dr.DeviceEntry) -> dict[str, Any]:
    """The server's device: the fields Episode Sync sets."""
    return {
        "identifiers": sorted(device.identifiers),
        "name": device.name,
        "manufacturer": device.manufacturer,
        "model": device.model,
        "sw_version": device.sw_version,
        "entry_type": device.entry_type,
        "configuration_url": device.configuration_url,
    }


@pytest.mark.parametrize("kind", ["plex", "jellyfin"])
async def test_a_synced_server_as_home_assistant_shows_it(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    socket_enabled: Any,
    snapshot: SnapshotAssertion,
    kind: str,
) -> None:
    """After a first sync and an incremental one that found two episodes."""
    freezer.move_to(NOW)
    sim = PlexSimulator() if kind == "plex" else JellyfinSimulator()
    sim.model.generate(shows=4, seasons=2, episodes=3, seed=1)
    await sim.start()
    try:
        entry = plex_entry(sim) if isinstance(sim, PlexSimulator) else await jellyfin_entry(sim)
        await setup_entry(hass, entry)
        library = next(lib for lib in sim.model.libraries.values() if lib.kind == "show")
        show = next(iter(library.shows.values()))
        sim.model.add_episode(show.id, 3, 1, title="Back Again")
        sim.model.add_episode(show.id, 3, 2, title="Gone Again")
        await next_poll(hass, freezer)

        (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
        ids = {entry.entry_id: "<entry_id>", device.id: "<device_id>"}
        assert _stable(_entities(hass, entry.entry_id), ids) == snapshot(name="entities")
        assert _stable(_device(device), ids) == snapshot(name="device")
        diagnostics = await async_get_config_entry_diagnostics(hass, entry)
        assert _stable(diagnostics, ids) == snapshot(name="diagnostics")
    finally:
        await sim.close()
