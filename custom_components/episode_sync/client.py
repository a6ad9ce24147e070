"""Builds the media-server client for a config entry's data.

The one place that knows which client serves which ``server_type`` and how
the entry's data maps onto its constructor; the config flow and the set-up
both use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.const import CONF_TOKEN, CONF_URL, CONF_VERIFY_SSL
from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .api.jellyfin import JellyfinClient
from .api.models import ServerKind
from .api.plex import PlexClient
from .const import (
    CONF_CLIENT_ID,
    CONF_DEVICE_ID,
    CONF_SERVER_TYPE,
    CONF_USER_ID,
    DEFAULT_MAX_CONCURRENCY,
)

type MediaClient = PlexClient | JellyfinClient


def create_client(
    hass: HomeAssistant,
    data: Mapping[str, Any],
    *,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    timeout: float | None = None,
) -> MediaClient:
    """Return a client for the server described by config entry data.

    ``timeout`` bounds each request (default: the transport's own).
    """
    verify_ssl = bool(data.get(CONF_VERIFY_SSL, True))
    session = async_get_clientsession(hass, verify_ssl=verify_ssl)
    if data[CONF_SERVER_TYPE] == ServerKind.PLEX:
        return PlexClient(
            session,
            data[CONF_URL],
            data[CONF_TOKEN],
            client_id=data[CONF_CLIENT_ID],
            verify_ssl=verify_ssl,
            max_concurrency=max_concurrency,
            timeout=timeout,
        )
    return JellyfinClient(
        session,
        data[CONF_URL],
        device_id=data[CONF_DEVICE_ID],
        token=data.get(CONF_TOKEN),
        user_id=data.get(CONF_USER_ID),
        verify_ssl=verify_ssl,
        max_concurrency=max_concurrency,
        timeout=timeout,
    )
