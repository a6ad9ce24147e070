"""The button: runs a full sync now."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from . import EpisodeSyncConfigEntry
from .entity import EpisodeSyncEntity

PARALLEL_UPDATES = 0

FORCE_FULL_SYNC = ButtonEntityDescription(
    key="force_full_sync",
    translation_key="force_full_sync",
    entity_category=EntityCategory.CONFIG,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EpisodeSyncConfigEntry,
    async_add_entities: AddEntitiesCallback,
) -> None:
    """Add the button of an entry."""
    async_add_entities([ForceFullSyncButton(entry.runtime_data.coordinator, FORCE_FULL_SYNC)])


class ForceFullSyncButton(EpisodeSyncEntity, ButtonEntity):
    """Re-lists the whole library now."""

    async def async_press(self) -> None:
        """Run a full sync."""
        await self.coordinator.async_force_full_sync()
