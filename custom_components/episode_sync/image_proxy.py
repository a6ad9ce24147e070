"""Posters and stills without leaking the server's token.

Plex artwork needs the token to fetch (docs: plex §5, "never put a tokenised
URL in an HA state"), so dashboards get a Home Assistant path instead:
``/api/episode_sync/image/<entry id>/<show id>`` for a show's poster and
``…/<show id>/<episode id>`` for an episode's still. The view behind it looks the
ids up in the mirror and fetches the item's artwork through the client, which
adds the credentials itself; a caller can never name a server path.

The view requires authentication. An ``<img>`` in a card sends no
``Authorization`` header, so the paths published in attributes and events are
signed (``async_sign_path``, HA's ``authSig`` query parameter).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
import time

from aiohttp import web
from homeassistant.components.http.auth import async_sign_path
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers.http import HomeAssistantView

from .api.errors import MediaServerError, MediaServerNotFoundError
from .api.models import Episode, Show
from .client import MediaClient
from .const import DOMAIN, LOGGER
from .sync import Mirror

POSTER_URL = "/api/episode_sync/image/{entry_id}/{show_id}"
STILL_URL = POSTER_URL + "/{episode_id}"

#: How long a signed path is valid. ``async_sign_path`` puts ``iat`` and
#: ``exp`` into the signature, so every call yields a new string: signing at
#: each state write would change the attributes (and reload every ``<img>``)
#: at every sync. Instead a path is signed once and reused until half its
#: lifetime has passed. The sensor writes its state at every sync (10 min by
#: default, at most the push safety-net interval), so a path in a state is
#: always valid for days, and a path in an event (a notification's picture)
#: stays loadable for at least ``SIGN_LIFETIME - RESIGN_AFTER``, or until
#: Home Assistant restarts: it signs with a key it keeps only in memory
#: (http/auth.py ``async_sign_path``), and the states are signed anew then.
SIGN_LIFETIME = timedelta(days=7)
RESIGN_AFTER = SIGN_LIFETIME / 2
#: Signed paths kept at most; stale ones are dropped first when it is reached.
MAX_SIGNED = 2048

#: Browsers may keep an image this long. Private: the view needs auth. A Plex
#: path carries a version of the artwork (``v``), so changed art gets a new URL.
CACHE_CONTROL = "private, max-age=86400"


class ImagePaths:
    """Signed Home Assistant paths of one entry's artwork, and the items behind them."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry_id: str,
        client: MediaClient,
        mirror: Callable[[], Mirror],
    ) -> None:
        """Bind to an entry; ``mirror`` returns the current (immutable) mirror."""
        self._hass = hass
        self._entry_id = entry_id
        self._client = client
        self._mirror = mirror
        #: unsigned path -> (signed at, signed path)
        self._signed: dict[str, tuple[float, str]] = {}

    def path(self, item: Show | Episode) -> str | None:
        """The signed path of an item's artwork; None when the server has none."""
        version = self._client.image_version(item)
        if version is None:
            return None
        if isinstance(item, Show):
            path = POSTER_URL.format(entry_id=self._entry_id, show_id=item.id)
        else:
            path = STILL_URL.format(
                entry_id=self._entry_id, show_id=item.show_id, episode_id=item.id
            )
        return self._sign(f"{path}?v={version}" if version else path)

    def item(self, show_id: str, episode_id: str | None = None) -> Show | Episode | None:
        """The mirrored show (or its episode) with these ids.

        Addressed by the show's id first, so a lookup is a few dict reads,
        with no index of a 100,000-episode mirror to build in the event loop.
        """
        for library in self._mirror().libraries.values():
            if (entry := library.shows.get(show_id)) is not None:
                return entry.show if episode_id is None else entry.episodes.get(episode_id)
        return None

    def _sign(self, path: str) -> str:
        now = time.time()
        cached = self._signed.get(path)
        if cached is not None and now - cached[0] < RESIGN_AFTER.total_seconds():
            return cached[1]
        if len(self._signed) >= MAX_SIGNED:
            fresh = now - RESIGN_AFTER.total_seconds()
            self._signed = {k: v for k, v in self._signed.items() if v[0] > fresh}
        # The content user (HA's read-only system user for signed media): the
        # paths are made during a sync, outside any user's request.
        signed = async_sign_path(self._hass, path, SIGN_LIFETIME, use_content_user=True)
        self._signed[path] = (now, signed)
        return signed


class EpisodeImageView(HomeAssistantView):
    """Serves a mirrored item's artwork, fetched from the server with the credentials."""

    url = POSTER_URL
    extra_urls = [STILL_URL]
    name = "api:episode_sync:image"
    requires_auth = True

    def __init__(self, hass: HomeAssistant) -> None:
        """Keep Home Assistant to look the entries up."""
        self._hass = hass

    async def get(
        self, request: web.Request, entry_id: str, show_id: str, episode_id: str | None = None
    ) -> web.Response:
        """Answer the image, 404 for ids the mirror does not know, 502/504 for the server."""
        entry = self._hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN or entry.state is not ConfigEntryState.LOADED:
            return web.Response(status=404)
        coordinator = entry.runtime_data.coordinator
        item = coordinator.images.item(show_id, episode_id)
        if item is None:
            return web.Response(status=404)
        try:
            image = await coordinator.client.image(item)
        except MediaServerNotFoundError:
            return web.Response(status=404)
        except MediaServerError as err:
            # The client's messages name paths, never credentials.
            LOGGER.debug("Artwork of %s from %s failed: %s", item.id, entry.title, err)
            timed_out = isinstance(err.__cause__, TimeoutError)
            return web.Response(status=504 if timed_out else 502)
        return web.Response(
            body=image.content,
            content_type=image.content_type,
            headers={"Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"},
        )
