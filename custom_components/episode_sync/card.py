"""The ``data`` attribute in the format of custom-cards/upcoming-media-card.

The card's README ("Developers"): an attribute named ``data``; its first item
sets the defaults (``title_default``, ``line1_default`` … ``line4_default``,
``icon``), using the card's keywords; then one item per media item with a UTC
ISO 8601 ``airdate`` (any date tied to the item: here when it was added, as
sensor.plex_recently_added does), items in descending ``airdate`` order, a
poster, ``runtime`` in whole minutes, and ``''`` instead of null.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from homeassistant.helpers.json import json_bytes

from .coordinator import EpisodeView, episode_code

#: The card shows 5 items by default (``max``); a few more leave room to set it higher.
MAX_CARD_ITEMS = 10
#: The serialized ``data`` stays under this many bytes: each signed image path
#: is ~350 bytes, and though the attribute is not recorded, the state goes to
#: every open dashboard at each sync (with ``episodes``, about 26 KB).
MAX_CARD_BYTES = 8192

#: The first item: what each line shows unless the card's config says otherwise.
#: ``flag`` marks unwatched episodes, hence the icon.
CARD_DEFAULTS: dict[str, str] = {
    "title_default": "$title",
    "line1_default": "$episode",
    "line2_default": "$release",
    "line3_default": "$number - $runtime",
    "line4_default": "$aired",
    "icon": "mdi:eye-off",
}


def card_data(views: Iterable[EpisodeView]) -> list[dict[str, Any]]:
    """The defaults, then the newest episodes, within ``MAX_CARD_ITEMS`` and ``MAX_CARD_BYTES``."""
    data: list[dict[str, Any]] = [CARD_DEFAULTS]
    size = len(json_bytes(data))
    for view in islice(views, MAX_CARD_ITEMS):
        item = _item(view)
        size += len(json_bytes(item)) + 1  # and the comma before it
        if size > MAX_CARD_BYTES:
            break
        data.append(item)
    return data


def _item(view: EpisodeView) -> dict[str, Any]:
    episode = view.episode
    shown = view.as_dict()
    minutes = round(episode.duration / 60) if episode.duration else None
    return {
        "airdate": datetime.fromtimestamp(episode.added_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aired": episode.air_date or "",
        "release": "$day, $date $time",
        "title": view.show,
        "episode": episode.title,
        "number": episode_code(episode.season, episode.number),
        "runtime": minutes if minutes is not None else "",
        "genres": "",
        "rating": "",
        "studio": "",
        # The show's poster; the episode's still where the show has none.
        "poster": shown["poster"] or shown["thumb"] or "",
        # An episode still is 16:9 like fan art; '' lets the card fall back to the poster.
        "fanart": shown["thumb"] or "",
        "flag": not episode.watched,
    }
