"""Servers on the local network become discovered flows, once per start of Home Assistant.

They show under *Settings → Devices & services → Discovered* with their
address filled in (Plex GDM, Jellyfin UDP discovery, ``api/discovery.py``);
servers already set up, or ignored, are not offered again, and an entry
whose server moved follows it (the config flow's ``integration_discovery``
step decides). One probe of each kind goes out once Home Assistant has
started, so a start is not slowed down by listening for answers. Home
Assistant sets a custom integration up only once it has an entry: this finds
further servers, and servers that moved; the first Plex server comes from
Home Assistant's zeroconf (``async_step_zeroconf`` of the config flow).
"""

from __future__ import annotations

from homeassistant.config_entries import SOURCE_INTEGRATION_DISCOVERY
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import discovery_flow
from homeassistant.helpers.start import async_at_started

from .api.discovery import JELLYFIN_DISCOVERY, PLEX_GDM, Probe, discover
from .const import DOMAIN

#: What is sent where (tests point the probes at the simulators on 127.0.0.1).
PROBES: list[Probe] = [PLEX_GDM, JELLYFIN_DISCOVERY]


@callback
def async_start_discovery(hass: HomeAssistant) -> None:
    """Look for servers in the background once Home Assistant has started."""

    @callback
    def start(hass: HomeAssistant) -> None:
        hass.async_create_background_task(async_discover(hass), name=f"{DOMAIN} discovery")

    async_at_started(hass, start)


async def async_discover(hass: HomeAssistant) -> None:
    """Offer a discovered flow for every server that answered."""
    for server in await discover(PROBES):
        discovery_flow.async_create_flow(
            hass,
            DOMAIN,
            context={"source": SOURCE_INTEGRATION_DISCOVERY},
            data={
                "kind": server.kind.value,
                "server_id": server.server_id,
                "name": server.name,
                "url": server.url,
            },
        )
