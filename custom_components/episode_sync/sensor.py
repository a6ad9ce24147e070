"""Sensors: new episodes, totals and how the last sync went."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory, UnitOfTime
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from . import EpisodeSyncConfigEntry
from .card import card_data
from .const import MAX_ATTRIBUTE_EPISODES
from .coordinator import SyncSnapshot
from .entity import EpisodeSyncEntity
from .sync import SyncMode

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class EpisodeSyncSensorDescription(SensorEntityDescription):
    """A sensor and how it reads the snapshot."""

    value_fn: Callable[[SyncSnapshot], str | int | float | datetime | None]
    attributes_fn: Callable[[SyncSnapshot], Mapping[str, Any]] | None = None


#: The keys of the ``episodes`` attribute's items (SPEC §5), then the image paths.
_EPISODE_KEYS = ("show", "season", "episode", "title", "air_date", "added_at", "poster", "thumb")


def _newest(snapshot: SyncSnapshot) -> Mapping[str, Any]:
    shown = [view.as_dict() for view in snapshot.new_episodes[:MAX_ATTRIBUTE_EPISODES]]
    return {
        "episodes": [{key: item[key] for key in _EPISODE_KEYS} for item in shown],
        # For custom-cards/upcoming-media-card.
        "data": card_data(snapshot.new_episodes),
    }


SENSORS: tuple[EpisodeSyncSensorDescription, ...] = (
    EpisodeSyncSensorDescription(
        key="new_episodes",
        translation_key="new_episodes",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: len(s.new_episodes),
        attributes_fn=_newest,
    ),
    EpisodeSyncSensorDescription(
        key="last_sync",
        translation_key="last_sync",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda s: s.last_sync,
    ),
    EpisodeSyncSensorDescription(
        key="last_full_sync",
        translation_key="last_full_sync",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda s: s.last_full_sync,
    ),
    EpisodeSyncSensorDescription(
        key="shows",
        translation_key="shows",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.mirror.show_count,
    ),
    EpisodeSyncSensorDescription(
        key="episodes",
        translation_key="episodes",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.mirror.episode_count,
    ),
    EpisodeSyncSensorDescription(
        key="sync_duration",
        translation_key="sync_duration",
        # A new value at every sync: noise in the history unless someone wants it.
        entity_registry_enabled_default=False,
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        suggested_display_precision=2,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda s: round(s.duration, 3),
    ),
    EpisodeSyncSensorDescription(
        key="sync_api_calls",
        translation_key="sync_api_calls",
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda s: s.api_calls,
    ),
    EpisodeSyncSensorDescription(
        key="sync_mode",
        translation_key="sync_mode",
        device_class=SensorDeviceClass.ENUM,
        options=[mode.value for mode in SyncMode],
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda s: s.mode.value,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EpisodeSyncConfigEntry,
    async_add_entities: AddEntitiesCallback,
) -> None:
    """Add the sensors of an entry."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(EpisodeSyncSensor(coordinator, description) for description in SENSORS)


class EpisodeSyncSensor(EpisodeSyncEntity, SensorEntity):
    """A sensor reading the coordinator's snapshot."""

    entity_description: EpisodeSyncSensorDescription
    # The newest-episodes list is for dashboards, not for the recorder (it
    # would bloat the database and trip the 16 KB attribute warning).
    _unrecorded_attributes = frozenset({"episodes", "data"})

    @property
    def native_value(self) -> str | int | float | datetime | None:
        """The sensor's value."""
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def extra_state_attributes(self) -> Mapping[str, Any] | None:
        """Extra attributes, for the sensors that have them."""
        if self.entity_description.attributes_fn is None:
            return None
        return self.entity_description.attributes_fn(self.coordinator.data)
