"""The base entity: one device per server."""

from __future__ import annotations

from homeassistant.const import CONF_URL
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .api.models import ServerKind
from .const import DOMAIN
from .coordinator import EpisodeSyncCoordinator


class EpisodeSyncEntity(CoordinatorEntity[EpisodeSyncCoordinator]):
    """An entity of an Episode Sync server."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: EpisodeSyncCoordinator, description: EntityDescription) -> None:
        """Name the entity after its key and attach it to the server's device."""
        super().__init__(coordinator)
        entry = coordinator.config_entry
        server = coordinator.server
        self.entity_description = description
        unique = entry.unique_id or entry.entry_id
        self._attr_unique_id = f"{unique}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, unique)},
            name=entry.title,
            manufacturer="Plex" if server.kind is ServerKind.PLEX else "Jellyfin",
            model="Plex Media Server" if server.kind is ServerKind.PLEX else "Jellyfin Server",
            sw_version=server.version or None,
            entry_type=DeviceEntryType.SERVICE,
            configuration_url=entry.data.get(CONF_URL),
        )
