"""Constants of the Episode Sync integration."""

from __future__ import annotations

from collections.abc import Mapping
import logging
from typing import Any, Final

DOMAIN: Final = "episode_sync"
LOGGER = logging.getLogger(__package__)

# Config entry data (connection): url, token and verify_ssl use HA's own keys.
CONF_SERVER_TYPE: Final = "server_type"
CONF_CLIENT_ID: Final = "client_id"  # Plex X-Plex-Client-Identifier, one per entry
CONF_DEVICE_ID: Final = "device_id"  # Jellyfin DeviceId, one per entry
CONF_USER_ID: Final = "user_id"
#: The plex.tv sign-in's server choice (a machineIdentifier); never stored.
CONF_SERVER: Final = "server"

# Config entry options (tunables).
CONF_LIBRARIES: Final = "libraries"
CONF_SCAN_INTERVAL: Final = "scan_interval"
CONF_NEW_EPISODE_DAYS: Final = "new_episode_days"
CONF_FULL_SYNC_DAYS: Final = "full_sync_days"
CONF_MAX_CONCURRENCY: Final = "max_concurrency"
#: Listen to the server's push channel (websocket) and sync when it reports a change.
CONF_PUSH_UPDATES: Final = "push_updates"
#: Minutes between safety-net polls while the push channel is connected.
CONF_PUSH_SCAN_INTERVAL: Final = "push_scan_interval"
#: What users see (sensor, card data, calendar, events): shows whose title
#: contains one of these comma-separated keywords are left out…
CONF_EXCLUDE_KEYWORDS: Final = "exclude_keywords"
#: …and so are specials (season 0) when this is on.
CONF_HIDE_SPECIALS: Final = "hide_specials"

DEFAULT_SCAN_INTERVAL: Final = 10  # minutes
DEFAULT_NEW_EPISODE_DAYS: Final = 7
DEFAULT_FULL_SYNC_DAYS: Final = 7
DEFAULT_MAX_CONCURRENCY: Final = 5
DEFAULT_PUSH_UPDATES: Final = True
DEFAULT_PUSH_SCAN_INTERVAL: Final = 60  # minutes
DEFAULT_EXCLUDE_KEYWORDS: Final = ""
DEFAULT_HIDE_SPECIALS: Final = False

# Bus events and the event entity's type (SPEC §5).
EVENT_NEW_EPISODE: Final = "episode_sync_new_episode"
EVENT_MANY_NEW_EPISODES: Final = "episode_sync_many_new_episodes"
EVENT_TYPE_NEW_EPISODE: Final = "new_episode"
#: At most this many ``episode_sync_new_episode`` events per sync; beyond it,
#: one ``episode_sync_many_new_episodes`` summarises the rest.
MAX_EVENTS_PER_SYNC: Final = 25
#: Newest episodes listed in the ``new_episodes`` sensor's attribute.
MAX_ATTRIBUTE_EPISODES: Final = 20

# Actions.
SERVICE_FORCE_FULL_SYNC: Final = "force_full_sync"
SERVICE_GET_NEW_EPISODES: Final = "get_new_episodes"
ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_DAYS: Final = "days"
ATTR_LIMIT: Final = "limit"

#: Every tunable with its default: the one table the config flow (new entries),
#: the options form and the readers of ``entry.options`` share.
DEFAULT_OPTIONS: Final = {
    CONF_SCAN_INTERVAL: DEFAULT_SCAN_INTERVAL,
    CONF_NEW_EPISODE_DAYS: DEFAULT_NEW_EPISODE_DAYS,
    CONF_FULL_SYNC_DAYS: DEFAULT_FULL_SYNC_DAYS,
    CONF_MAX_CONCURRENCY: DEFAULT_MAX_CONCURRENCY,
    CONF_PUSH_UPDATES: DEFAULT_PUSH_UPDATES,
    CONF_PUSH_SCAN_INTERVAL: DEFAULT_PUSH_SCAN_INTERVAL,
    CONF_EXCLUDE_KEYWORDS: DEFAULT_EXCLUDE_KEYWORDS,
    CONF_HIDE_SPECIALS: DEFAULT_HIDE_SPECIALS,
}


def option(options: Mapping[str, Any], key: str) -> Any:
    """An entry's option, or its default (entries made before an option existed lack it)."""
    return options.get(key, DEFAULT_OPTIONS[key])
