"""The event entity: fires ``new_episode`` for every announced episode."""

from __future__ import annotations

from typing import Any

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from . import EpisodeSyncConfigEntry
from .const import EVENT_TYPE_NEW_EPISODE
from .entity import EpisodeSyncEntity

PARALLEL_UPDATES = 0

NEW_EPISODE = EventEntityDescription(
    key="new_episode",
    translation_key="new_episode",
    event_types=[EVENT_TYPE_NEW_EPISODE],
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EpisodeSyncConfigEntry,
    async_add_entities: AddEntitiesCallback,
) -> None:
    """Add the event entity of an entry."""
    async_add_entities([EpisodeSyncEventEntity(entry.runtime_data.coordinator, NEW_EPISODE)])


class EpisodeSyncEventEntity(EpisodeSyncEntity, EventEntity):
    """Fires with the same data as the ``episode_sync_new_episode`` bus event."""

    # Signed image paths open the image to anyone for days: like a camera's
    # entity_picture, they stay out of the history database.
    _unrecorded_attributes = frozenset({"poster", "thumb"})

    async def async_added_to_hass(self) -> None:
        """Listen to the coordinator's announcements."""
        await super().async_added_to_hass()
        listeners = self.coordinator.new_episode_listeners
        listeners.append(self._on_new_episode)
        self.async_on_remove(lambda: listeners.remove(self._on_new_episode))

    @callback
    def _on_new_episode(self, data: dict[str, Any]) -> None:
        # SPEC §5: "attributes as the bus event", every key of it.
        self._trigger_event(EVENT_TYPE_NEW_EPISODE, data)
        self.async_write_ha_state()
