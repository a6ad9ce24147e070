"""The upcoming-media-card data, and the display filters across everything users see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.json import json_bytes
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.episode_sync.card import CARD_DEFAULTS, MAX_CARD_BYTES, MAX_CARD_ITEMS
from custom_components.episode_sync.const import (
    CONF_EXCLUDE_KEYWORDS,
    CONF_HIDE_SPECIALS,
    DOMAIN,
    EVENT_MANY_NEW_EPISODES,
    EVENT_NEW_EPISODE,
)
from tests.helpers import (
    entity_id,
    jellyfin_entry,
    next_poll,
    plex_entry,
    setup_entry,
    state_of,
    tv_library_ids,
)
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator


def _first_show(sim: PlexSimulator | JellyfinSimulator) -> Any:
    return next(iter(sim.model.libraries[tv_library_ids(sim.model)[0]].shows.values()))


def _attributes(hass: HomeAssistant, entry: Any) -> dict[str, Any]:
    state = hass.states.get(entity_id(hass, entry, "sensor", "new_episodes"))
    assert state is not None
    return dict(state.attributes)


async def test_card_data_format(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    assert _attributes(hass, entry)["data"] == [CARD_DEFAULTS]  # nothing new yet
    show = _first_show(plex_sim)
    episode = plex_sim.model.add_episode(show.id, 3, 2, title="Card", air_date="2026-01-31")
    plex_sim.model.set_watched(episode.id)
    await next_poll(hass, freezer)

    data = _attributes(hass, entry)["data"]
    assert data[0] == {
        "title_default": "$title",
        "line1_default": "$episode",
        "line2_default": "$release",
        "line3_default": "$number - $runtime",
        "line4_default": "$aired",
        "icon": "mdi:eye-off",
    }
    item = data[1]
    poster, thumb = item.pop("poster"), item.pop("fanart")
    assert item == {
        "airdate": datetime.fromtimestamp(episode.added_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aired": "2026-01-31",
        "release": "$day, $date $time",
        "title": show.title,
        "episode": "Card",
        "number": "S03E02",
        "runtime": 30,  # the simulator's 1,800,000 ms
        "genres": "",
        "rating": "",
        "studio": "",
        "flag": False,  # watched
    }
    newest = _attributes(hass, entry)["episodes"][0]
    assert poster == newest["poster"]  # the show's poster
    assert thumb == newest["thumb"]  # the episode's still as fan art
    assert poster.startswith(f"/api/episode_sync/image/{entry.entry_id}/{show.id}")
    # Neither list goes to the recorder.
    state = hass.states.get(entity_id(hass, entry, "sensor", "new_episodes"))
    assert state is not None
    assert state.state_info is not None
    assert {"episodes", "data"} <= state.state_info["unrecorded_attributes"]


async def test_card_data_is_capped(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Newest first, at most MAX_CARD_ITEMS and MAX_CARD_BYTES (Jellyfin's long ids)."""
    entry = await jellyfin_entry(jellyfin_sim)
    await setup_entry(hass, entry)
    show = _first_show(jellyfin_sim)
    for number in range(1, 31):
        jellyfin_sim.model.add_episode(show.id, 7, number, title=f"Cap {number}")
        freezer.tick(1)
    await next_poll(hass, freezer)
    attributes = _attributes(hass, entry)
    data = attributes["data"]
    assert 1 < len(data) <= 1 + MAX_CARD_ITEMS
    assert len(json_bytes(data)) <= MAX_CARD_BYTES
    # The same newest-first order as the sensor's list (Jellyfin: the time the mirror saw them).
    newest = attributes["episodes"][: len(data) - 1]
    assert [item["episode"] for item in data[1:]] == [e["title"] for e in newest]
    assert [item["airdate"] for item in data[1:]] == sorted(
        (item["airdate"] for item in data[1:]), reverse=True
    )
    assert data[1]["number"] == f"S07E{newest[0]['episode']:02d}"
    assert data[1]["flag"] is True
    assert data[1]["poster"] == newest[0]["poster"]


async def test_filters_apply_to_everything_users_see(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Keywords (case-insensitive, on the show title) and specials; still mirrored."""
    library_id = tv_library_ids(plex_sim.model)[0]
    kids = plex_sim.model.add_show(library_id, "Kids Cartoon Hour")
    plex_sim.model.add_episode(kids.id, 1, 1, title="Old cartoon")
    entry = plex_entry(
        plex_sim, **{CONF_EXCLUDE_KEYWORDS: " news , CARTOON", CONF_HIDE_SPECIALS: True}
    )
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    summaries = async_capture_events(hass, EVENT_MANY_NEW_EPISODES)
    show = _first_show(plex_sim)
    air_day = (dt_util.now() + timedelta(days=2)).date().isoformat()
    plex_sim.model.add_episode(kids.id, 1, 2, title="Hidden cartoon", air_date=air_day)
    plex_sim.model.add_episode(show.id, 0, 1, title="Hidden special", air_date=air_day)
    plex_sim.model.add_episode(show.id, 5, 1, title="Shown", air_date=air_day)
    await next_poll(hass, freezer)

    assert [e.data["title"] for e in events] == ["Shown"]
    assert summaries == []
    event_state = hass.states.get(entity_id(hass, entry, "event", "new_episode"))
    assert event_state is not None
    assert event_state.attributes["title"] == "Shown"
    assert state_of(hass, entry, "sensor", "new_episodes") == "1"
    attributes = _attributes(hass, entry)
    assert [e["title"] for e in attributes["episodes"]] == ["Shown"]
    assert [item["episode"] for item in attributes["data"][1:]] == ["Shown"]
    response = await hass.services.async_call(
        DOMAIN, "get_new_episodes", {"days": 3650}, blocking=True, return_response=True
    )
    titles = {e["title"] for e in response["episodes"]}  # type: ignore[union-attr,index]
    assert "Shown" in titles
    assert not titles & {"Hidden cartoon", "Hidden special", "Old cartoon"}
    calendar = entity_id(hass, entry, "calendar", "episodes")
    start = dt_util.now()
    found = await hass.services.async_call(
        "calendar",
        "get_events",
        {
            "entity_id": calendar,
            "start_date_time": start.isoformat(),
            "end_date_time": (start + timedelta(days=7)).isoformat(),
        },
        blocking=True,
        return_response=True,
    )
    assert [e["summary"] for e in found[calendar]["events"]] == [  # type: ignore[index]
        f"{show.title} \N{EN DASH} S05E01 \N{EN DASH} Shown"
    ]
    # Hidden is not gone: the mirror keeps them (100 + the 4 added).
    assert state_of(hass, entry, "sensor", "episodes") == "104"

    # The summary of a flood counts only what is shown.
    for number in range(1, 31):
        plex_sim.model.add_episode(kids.id, 2, number, title=f"Flood {number}")
    for number in range(1, 27):
        plex_sim.model.add_episode(show.id, 6, number, title=f"Real {number}")
    await next_poll(hass, freezer)
    assert len(events) == 1 + 25
    assert all(e.data["title"].startswith("Real") for e in events[1:])
    assert [(s.data["count"], s.data["shows"]) for s in summaries] == [(1, [show.title])]
