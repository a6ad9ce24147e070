"""Artwork through Home Assistant: signed paths, the auth rule, errors, and no token anywhere."""

from __future__ import annotations

import logging
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import CONF_TOKEN
from homeassistant.core import Event, HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.episode_sync import image_proxy
from custom_components.episode_sync.api import http as http_api
from custom_components.episode_sync.api.errors import MediaServerProtocolError
from custom_components.episode_sync.api.images import media_image
from custom_components.episode_sync.const import EVENT_NEW_EPISODE
from custom_components.episode_sync.diagnostics import async_get_config_entry_diagnostics
from custom_components.episode_sync.image_proxy import RESIGN_AFTER
from tests.helpers import (
    entity_id,
    entry_for,
    next_poll,
    plex_entry,
    setup_entry,
    tv_library_ids,
)
from tests.simulator.common import Fault
from tests.simulator.jellyfin import PNG_1X1, JellyfinSimulator
from tests.simulator.plex import PlexSimulator


def _first_show(sim: PlexSimulator | JellyfinSimulator) -> Any:
    return next(iter(sim.model.libraries[tv_library_ids(sim.model)[0]].shows.values()))


def _newest(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, Any]:
    state = hass.states.get(entity_id(hass, entry, "sensor", "new_episodes"))
    assert state is not None
    return state.attributes["episodes"][0]  # type: ignore[no-any-return]


async def _with_news(
    hass: HomeAssistant,
    sim: PlexSimulator | JellyfinSimulator,
    entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> list[Event]:
    """Set up, add one episode, sync: the events and the sensor carry its image paths."""
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    sim.model.add_episode(_first_show(sim).id, 4, 1, title="Fresh")
    await next_poll(hass, freezer)
    assert len(events) == 1
    return events


@pytest.mark.parametrize("server", ["plex", "jellyfin"])
async def test_signed_paths_load_without_auth_and_never_leak_the_token(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    jellyfin_sim: JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
    hass_client_no_auth: ClientSessionGenerator,
    caplog: pytest.LogCaptureFixture,
    server: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    plex_sim.token = "tok-Img42-unique"
    sim: PlexSimulator | JellyfinSimulator = plex_sim if server == "plex" else jellyfin_sim
    entry = await entry_for(sim)
    events = await _with_news(hass, sim, entry, freezer)
    token = entry.data[CONF_TOKEN]
    show = _first_show(sim)
    episode = next(e for e in show.episodes.values() if e.title == "Fresh")

    newest = _newest(hass, entry)
    assert newest["title"] == "Fresh"
    prefix = f"/api/episode_sync/image/{entry.entry_id}/"
    assert newest["poster"].startswith(prefix + show.id)
    assert newest["thumb"].startswith(f"{prefix}{show.id}/{episode.id}")
    assert "authSig=" in newest["poster"]
    assert events[0].data["poster"] == newest["poster"]
    assert events[0].data["thumb"] == newest["thumb"]
    fired = hass.states.get(entity_id(hass, entry, "event", "new_episode"))
    assert fired is not None
    assert fired.attributes["poster"] == newest["poster"]
    assert fired.state_info is not None
    assert {"poster", "thumb"} <= fired.state_info["unrecorded_attributes"]

    client = await hass_client_no_auth()
    sim.clear_log()
    sync_requests = entry.runtime_data.client.request_count
    for path in (newest["poster"], newest["thumb"]):
        response = await client.get(path)
        assert response.status == 200
        assert await response.read() == PNG_1X1
        assert response.headers["Content-Type"] == "image/png"
        assert response.headers["Cache-Control"] == "private, max-age=86400"
        assert token not in repr(response.headers)
    # One server request per image, with the credentials, and none counted as a sync request.
    image_path = "/thumb/" if server == "plex" else "/Images/Primary"
    assert sim.count(image_path) == 2
    assert len(sim.requests) == 2
    assert entry.runtime_data.client.request_count == sync_requests
    if server == "plex":
        assert all(r.headers["X-Plex-Token"] == token for r in sim.requests)
    else:
        assert all(token in r.headers["Authorization"] for r in sim.requests)
    # The signature is required: the bare path is refused.
    unsigned = newest["poster"].split("?authSig=")[0].split("&authSig=")[0]
    assert (await client.get(unsigned)).status == 401

    states = repr([(s.entity_id, s.state, dict(s.attributes)) for s in hass.states.async_all()])
    assert token not in states
    assert token not in repr([e.data for e in events])
    assert token not in caplog.text
    # Diagnostics carry neither the server's artwork paths nor signed image paths.
    diagnostics = repr(await async_get_config_entry_diagnostics(hass, entry))
    assert "authSig" not in diagnostics
    assert "/api/episode_sync/image" not in diagnostics
    assert token not in diagnostics


async def test_authenticated_client_unknown_ids_and_server_failures(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    hass_client: ClientSessionGenerator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(http_api, "IMAGE_TIMEOUT", 0.2)
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    show = _first_show(plex_sim)
    client = await hass_client()
    base = f"/api/episode_sync/image/{entry.entry_id}"
    plex_sim.clear_log()

    response = await client.get(f"{base}/{show.id}")
    assert response.status == 200
    assert await response.read() == PNG_1X1

    # Ids the mirror does not know never reach the server.
    assert (await client.get(f"{base}/999999")).status == 404
    assert (await client.get(f"{base}/{show.id}/999999")).status == 404
    assert (await client.get(f"/api/episode_sync/image/not-an-entry/{show.id}")).status == 404
    assert plex_sim.count("/thumb/") == 1

    plex_sim.add_fault(Fault(kind="status", status=500, path="/thumb/"))
    assert (await client.get(f"{base}/{show.id}")).status == 502
    plex_sim.add_fault(Fault(kind="status", status=404, path="/thumb/"))
    assert (await client.get(f"{base}/{show.id}")).status == 404
    plex_sim.add_fault(Fault(kind="status", status=200, body="<html>login</html>", path="/thumb/"))
    assert (await client.get(f"{base}/{show.id}")).status == 502
    plex_sim.add_fault(Fault(kind="timeout", delay=1, path="/thumb/"))
    assert (await client.get(f"{base}/{show.id}")).status == 504
    assert plex_sim.token not in caplog.text

    # An unloaded entry has no images.
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert (await client.get(f"{base}/{show.id}")).status == 404


async def test_plex_episode_without_a_still_gets_no_path(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    hass_client: ClientSessionGenerator,
) -> None:
    """No thumb, or an agent's absolute URL: no still path anywhere, 404 by id, after restarts."""

    def agent_thumb(payload: Any) -> Any:
        for row in payload["MediaContainer"].get("Metadata", []):
            if row.get("title") == "Agent":
                row["thumb"] = "https://metadata.example/poster.jpg"
        return payload

    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    events = async_capture_events(hass, EVENT_NEW_EPISODE)
    plex_sim.add_fault(Fault(kind="mutate", mutate=agent_thumb, times=-1))
    show = _first_show(plex_sim)
    bare = plex_sim.model.add_episode(show.id, 4, 1, title="Bare", has_image=False)
    agent = plex_sim.model.add_episode(show.id, 4, 2, title="Agent")
    await next_poll(hass, freezer)
    assert [(e.data["title"], e.data["thumb"]) for e in events] == [("Bare", None), ("Agent", None)]
    assert all(e.data["poster"] is not None for e in events)
    state = hass.states.get(entity_id(hass, entry, "sensor", "new_episodes"))
    assert state is not None
    assert [(e["title"], e["thumb"]) for e in state.attributes["episodes"][:2]] == [
        ("Agent", None),
        ("Bare", None),
    ]
    card = state.attributes["data"][1]
    assert (card["episode"], card["fanart"]) == ("Agent", "")
    assert card["poster"] == state.attributes["episodes"][0]["poster"]

    client = await hass_client()
    plex_sim.clear_log()
    base = f"/api/episode_sync/image/{entry.entry_id}/{show.id}"
    for episode in (bare, agent):
        assert (await client.get(f"{base}/{episode.id}")).status == 404
    assert plex_sim.requests == []  # known to be missing: the server is not asked
    # What the mirror knows survives a restart (the stored mirror).
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert _newest(hass, entry)["thumb"] is None


async def test_jellyfin_episode_without_a_still_shows_its_series_poster(
    hass: HomeAssistant,
    jellyfin_sim: JellyfinSimulator,
    freezer: FrozenDateTimeFactory,
    hass_client_no_auth: ClientSessionGenerator,
) -> None:
    """Jellyfin's listings do not say: the still's 404 is answered with the series' poster."""
    entry = await entry_for(jellyfin_sim)
    await setup_entry(hass, entry)
    show = _first_show(jellyfin_sim)
    episode = jellyfin_sim.model.add_episode(show.id, 4, 1, title="Bare", has_image=False)
    await next_poll(hass, freezer)
    newest = _newest(hass, entry)
    assert newest["title"] == "Bare"
    client = await hass_client_no_auth()
    jellyfin_sim.clear_log()
    response = await client.get(newest["thumb"])
    assert response.status == 200
    assert await response.read() == PNG_1X1
    assert [r.path for r in jellyfin_sim.requests] == [
        f"/Items/{episode.id}/Images/Primary",  # 404
        f"/Items/{show.id}/Images/Primary",
    ]
    # A series without a poster has nothing to stand in: 404, one request.
    show.has_image = False
    jellyfin_sim.clear_log()
    assert (await client.get(newest["poster"])).status == 404
    assert len(jellyfin_sim.requests) == 1


async def test_signed_paths_stay_stable_between_syncs(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """A path is re-signed only after half its lifetime, not at every state write."""
    entry = plex_entry(plex_sim)
    await _with_news(hass, plex_sim, entry, freezer)
    first = _newest(hass, entry)
    await next_poll(hass, freezer)
    freezer.tick(60)
    plex_sim.model.add_episode(_first_show(plex_sim).id, 4, 3, title="Another")
    await next_poll(hass, freezer)
    state = hass.states.get(entity_id(hass, entry, "sensor", "new_episodes"))
    assert state is not None
    same_show = state.attributes["episodes"][1]
    assert same_show["title"] == "Fresh"
    assert same_show == first
    newest = state.attributes["episodes"][0]
    assert newest["poster"] == first["poster"]  # the show's poster: one signature

    freezer.tick(RESIGN_AFTER)
    await next_poll(hass, freezer)
    state = hass.states.get(entity_id(hass, entry, "sensor", "new_episodes"))
    assert state is not None
    assert state.attributes["episodes"][1]["poster"] != first["poster"]


async def test_old_signatures_are_forgotten(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    freezer: FrozenDateTimeFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the size cap, paths signed more than RESIGN_AFTER ago are dropped."""
    monkeypatch.setattr(image_proxy, "MAX_SIGNED", 3)
    entry = plex_entry(plex_sim)
    await _with_news(hass, plex_sim, entry, freezer)
    images = entry.runtime_data.coordinator.images
    assert len(images._signed) == 2  # the new episode's still and its show's poster
    freezer.tick(RESIGN_AFTER)
    other = list(plex_sim.model.libraries[tv_library_ids(plex_sim.model)[0]].shows.values())[1]
    plex_sim.model.add_episode(other.id, 4, 1, title="Elsewhere")
    await next_poll(hass, freezer)
    # Four paths now shown; the two stale ones were dropped before signing anew.
    assert len(images._signed) == 4
    assert all(signed_at == max(v[0] for v in images._signed.values())
               for signed_at, _ in images._signed.values())  # fmt: skip


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (PNG_1X1, "image/png"),
        (b"\xff\xd8\xff\xe0rest", "image/jpeg"),
        (b"GIF89a...", "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"<html>", None),
    ],
)
def test_image_type_is_read_from_the_bytes(body: bytes, content_type: str | None) -> None:
    if content_type is None:
        with pytest.raises(MediaServerProtocolError):
            media_image(body, "/x")
    else:
        assert media_image(body, "/x").content_type == content_type
