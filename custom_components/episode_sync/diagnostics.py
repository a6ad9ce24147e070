"""Diagnostics: redacted, and capped to counts and a small sample."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_PASSWORD, CONF_TOKEN, CONF_URL, CONF_USERNAME
from homeassistant.core import HomeAssistant

from . import EpisodeSyncConfigEntry
from .const import CONF_CLIENT_ID, CONF_DEVICE_ID, CONF_USER_ID

TO_REDACT = {
    CONF_TOKEN,
    CONF_PASSWORD,
    CONF_USERNAME,
    CONF_URL,
    CONF_CLIENT_ID,
    CONF_DEVICE_ID,
    CONF_USER_ID,
}
#: Never the whole library: a few episodes show the shape of the data.
SAMPLE_SIZE = 5


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: EpisodeSyncConfigEntry
) -> dict[str, Any]:
    """Return what helps debugging, without credentials or the library itself."""
    coordinator = entry.runtime_data.coordinator
    mirror = coordinator.mirror
    state = coordinator.state
    sample = [
        {k: v for k, v in asdict(episode).items() if k != "thumb"}
        for _, _, episode in list(_first(mirror.episodes(), SAMPLE_SIZE))
    ]
    return {
        "entry": {
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": dict(entry.options),
        },
        "server": {
            "kind": coordinator.server.kind.value,
            "version": coordinator.server.version,
        },
        "mirror": {
            "libraries": {
                library_id: {
                    "shows": len(library.shows),
                    "episodes": library.episode_count,
                }
                for library_id, library in mirror.libraries.items()
            },
            "shows": mirror.show_count,
            "episodes": mirror.episode_count,
            # Ids of episodes removed lately, kept so a returning one is no new one.
            "removed_lately": len(mirror.removed),
            "sample": sample,
        },
        # Whether the notification socket is up, and how often it came back.
        "push": None
        if (push := entry.runtime_data.push) is None
        else {"connected": push.connected, "connects": push.connects, "retries": push.retries},
        "sync": {
            "last_result": coordinator.store.last_result,
            "last_full_sync": state.last_full_sync,
            "last_incremental_sync": state.last_incremental_sync,
            "held_back": dict(state.held_back),
            "library_store_writes": coordinator.store.library_writes,
            # What the next sync owes (a forced full sync, libraries and
            # played items a push message reported), and how long the server
            # asked us to wait.
            "owed": {
                "full_sync": (owed := coordinator.owed).force_full,
                "dirty_libraries": sorted(owed.dirty_libraries),
                "played_items": len(owed.played_items),
                "delta_failures": owed.delta_failures,
                "unannounced": len(owed.unannounced),
            },
            "paused_for_s": round(coordinator.paused_for),
        },
    }


def _first(items: Any, count: int) -> Any:
    for index, item in enumerate(items):
        if index >= count:
            return
        yield item
