"""Episode Sync: mirrors the TV libraries of a Plex or Jellyfin server."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryError, ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv, issue_registry as ir
from homeassistant.helpers.typing import ConfigType

from .api.errors import MediaServerAuthError, MediaServerError
from .client import MediaClient, create_client
from .compat import OPTIONS_FLOW_RELOADS
from .const import CONF_MAX_CONCURRENCY, DOMAIN, option
from .coordinator import EpisodeSyncCoordinator, failure_key, raised_issues
from .discovery import async_start_discovery
from .image_proxy import EpisodeImageView
from .push import PushListener, async_start_push
from .services import async_setup_services
from .store import EpisodeSyncStore

PLATFORMS = [Platform.BUTTON, Platform.CALENDAR, Platform.EVENT, Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


@dataclass(kw_only=True)
class EpisodeSyncData:
    """What a loaded entry holds."""

    client: MediaClient
    store: EpisodeSyncStore
    coordinator: EpisodeSyncCoordinator
    #: The notification socket's listener; None when push is off.
    push: PushListener | None = None


type EpisodeSyncConfigEntry = ConfigEntry[EpisodeSyncData]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions and the artwork view, and look for servers (once, for every entry)."""
    async_setup_services(hass)
    hass.http.register_view(EpisodeImageView(hass))
    async_start_discovery(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: EpisodeSyncConfigEntry) -> bool:
    """Verify the server, load the mirror, run the first sync, add the entities."""
    client = create_client(
        hass,
        entry.data,
        max_concurrency=option(entry.options, CONF_MAX_CONCURRENCY),
    )
    try:
        server = await client.server_info()
    except MediaServerAuthError as err:
        raise ConfigEntryAuthFailed(
            translation_domain=DOMAIN, translation_key="auth_failed"
        ) from err
    except MediaServerError as err:
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key=failure_key(err),
            translation_placeholders={"error": str(err)},
        ) from err
    # The URL must still lead to the server this entry was made for.
    if entry.unique_id and not entry.unique_id.startswith(server.server_id):
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="wrong_server",
            translation_placeholders={"name": server.name},
        )
    store = EpisodeSyncStore(hass, entry.entry_id)
    coordinator = EpisodeSyncCoordinator(hass, entry, client, store, server)
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = EpisodeSyncData(client=client, store=store, coordinator=coordinator)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    coordinator.async_start_announcing()
    # Polls are scheduled only while something listens: with every entity
    # disabled, the bus events (what automations use) must still come.
    entry.async_on_unload(coordinator.async_add_listener(lambda: None))
    entry.runtime_data.push = async_start_push(hass, entry, coordinator)
    if not OPTIONS_FLOW_RELOADS:  # pragma: no cover - HA 2025.4
        listener = partial(_async_options_updated, dict(entry.options))
        entry.async_on_unload(entry.add_update_listener(listener))
    return True


async def async_unload_entry(hass: HomeAssistant, entry: EpisodeSyncConfigEntry) -> bool:
    """Unload the entities; the stores stay for the next start."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: EpisodeSyncConfigEntry) -> None:
    """Delete the entry's stored files (what the next sync owed with them) and repair issues."""
    for issue_id in raised_issues(hass, entry.entry_id):
        ir.async_delete_issue(hass, DOMAIN, issue_id)
    await EpisodeSyncStore(hass, entry.entry_id).async_remove()


async def _async_options_updated(  # pragma: no cover - HA 2025.4
    options: dict[str, Any], hass: HomeAssistant, entry: EpisodeSyncConfigEntry
) -> None:
    """Options changed (interval, libraries…): start over with them.

    Only options: a flow that changed the entry's data (reauth, reconfigure,
    an address that moved) reloads it itself.
    """
    if entry.options != options:
        await hass.config_entries.async_reload(entry.entry_id)
