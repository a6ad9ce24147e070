"""The actions: ``force_full_sync`` and ``get_new_episodes``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.util.json import JsonObjectType, JsonValueType

from .compat import vol
from .const import (
    ATTR_CONFIG_ENTRY_ID,
    ATTR_DAYS,
    ATTR_LIMIT,
    DOMAIN,
    MAX_ATTRIBUTE_EPISODES,
    SERVICE_FORCE_FULL_SYNC,
    SERVICE_GET_NEW_EPISODES,
)

if TYPE_CHECKING:
    from . import EpisodeSyncConfigEntry

FORCE_SCHEMA = vol.Schema({vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string})
GET_SCHEMA = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Optional(ATTR_DAYS): vol.All(vol.Coerce(float), vol.Range(min=0, max=3650)),
        vol.Optional(ATTR_LIMIT): vol.All(vol.Coerce(int), vol.Range(min=1, max=1000)),
    }
)


def _entries(hass: HomeAssistant, call: ServiceCall) -> list[EpisodeSyncConfigEntry]:
    """The loaded entries an action applies to; a clear error for a bad id."""
    entry_id = call.data.get(ATTR_CONFIG_ENTRY_ID)
    if entry_id is None:
        return [
            entry
            for entry in hass.config_entries.async_entries(DOMAIN)
            if entry.state is ConfigEntryState.LOADED
        ]
    entry = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_found",
            translation_placeholders={"entry_id": entry_id},
        )
    if entry.state is not ConfigEntryState.LOADED:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_loaded",
            translation_placeholders={"entry_id": entry_id},
        )
    return [entry]


async def _force_full_sync(call: ServiceCall) -> None:
    """Run a full sync of each entry; a server that cannot be synced does not stop the others."""
    failed: list[HomeAssistantError] = []
    for entry in _entries(call.hass, call):
        if entry.state is not ConfigEntryState.LOADED:
            continue  # unloaded (a reload) while another entry synced
        try:
            await entry.runtime_data.coordinator.async_force_full_sync()
        except HomeAssistantError as err:
            failed.append(err)
    if failed:
        raise failed[0]


async def _get_new_episodes(call: ServiceCall) -> ServiceResponse:
    """Answer from the mirror only: no request reaches the server."""
    limit = call.data.get(ATTR_LIMIT, MAX_ATTRIBUTE_EPISODES)
    found: list[JsonObjectType] = []
    for entry in _entries(call.hass, call):
        coordinator = entry.runtime_data.coordinator
        days = call.data.get(ATTR_DAYS, coordinator.new_episode_days)
        found.extend(
            {"config_entry_id": entry.entry_id, **view.as_dict()}
            for view in coordinator.new_episodes(days, limit)
        )
    found.sort(key=lambda item: (item["added_at"], item["episode_id"]), reverse=True)
    return {"episodes": list[JsonValueType](found[:limit])}


def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions."""
    hass.services.async_register(
        DOMAIN, SERVICE_FORCE_FULL_SYNC, _force_full_sync, schema=FORCE_SCHEMA
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_GET_NEW_EPISODES,
        _get_new_episodes,
        schema=GET_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
