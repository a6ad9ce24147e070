"""A full sync keeps the mirror's own episode rows; the stored mirror's layouts load.

A full sync swaps each listed row for the mirror's equal one as its page
arrives, so at 100,000 episodes the listed duplicates (and their strings) die
at once instead of doubling the mirror's memory until the sync ends. These
tests pin the behaviour itself: identity of the kept rows, through the real
clients over HTTP against the simulators.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

import aiohttp
from homeassistant.core import HomeAssistant
import orjson

from custom_components.episode_sync.api.jellyfin import JellyfinClient
from custom_components.episode_sync.api.models import At, EpisodeRow, Show, episode_row
from custom_components.episode_sync.api.paging import Page, fetch_all, reuse_items
from custom_components.episode_sync.api.plex import PlexClient
from custom_components.episode_sync.const import DOMAIN
from custom_components.episode_sync.store import (
    LIBRARY_MINOR_VERSION,
    _rows_to_strings,
    async_decode_mirror,
    decode_mirror,
    encode_mirror,
)
from custom_components.episode_sync.sync import (
    YIELD_EVERY,
    LibraryMirror,
    Mirror,
    ShowMirror,
    SyncEngine,
    SyncMode,
    SyncState,
)
from tests.helpers import plex_entry, setup_entry, state_of, tv_library_ids
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator


async def _full_sync_keeps_equal_episodes(
    sim: PlexSimulator | JellyfinSimulator, client: PlexClient | JellyfinClient
) -> None:
    info = await client.server_info()
    engine = SyncEngine(client, server_id=info.server_id, library_ids=tv_library_ids(sim.model))
    first = await engine.sync(Mirror(), SyncState())
    shows = [s for lib in first.mirror.libraries.values() for s in lib.shows.values()]
    # An arrival seen by an incremental sync: on Jellyfin its added_at is the
    # time the mirror first saw it, not the file's DateCreated.
    sim.clock.advance(10)
    arrival = sim.model.add_episode(shows[0].show.id, 9, 1, file_created_at=1)
    sim.clock.advance(10)
    second = await engine.sync(first.mirror, first.state)
    assert (second.mode, len(second.added)) == (SyncMode.INCREMENTAL, 1)
    renamed = next(iter(shows[1].episodes.values()))
    sim.model.rename_episode(renamed.id, "Renamed before the full sync")
    sim.clock.advance(10)

    sim.clear_log()
    full = await engine.sync(second.mirror, second.state, force_full=True)

    assert full.mode is SyncMode.FULL
    assert full.api_calls == len(sim.requests)
    assert (len(full.added), len(full.removed), full.updated) == (0, 0, 1)
    before, after = _rows(second.mirror), _rows(full.mirror)
    assert before.keys() == after.keys()
    kept = sorted(eid for eid in after if after[eid] is before[eid])
    # Every unchanged episode is the very row the mirror held.
    assert kept == sorted(eid for eid in after if eid != renamed.id)
    assert after[renamed.id][At.TITLE] == "Renamed before the full sync"
    assert after[arrival.id][At.ADDED_AT] == before[arrival.id][At.ADDED_AT]


def _rows(mirror: Mirror) -> dict[str, EpisodeRow]:
    return {
        episode_id: row
        for library in mirror.libraries.values()
        for show in library.shows.values()
        for episode_id, row in show.rows.items()
    }


async def test_plex_full_sync_keeps_the_mirrors_equal_episodes(plex_sim: PlexSimulator) -> None:
    async with aiohttp.ClientSession() as session:
        client = PlexClient(session, plex_sim.url, plex_sim.token, client_id="reuse-test")
        await _full_sync_keeps_equal_episodes(plex_sim, client)


async def test_jellyfin_full_sync_keeps_the_mirrors_equal_episodes(
    jellyfin_sim: JellyfinSimulator,
) -> None:
    async with aiohttp.ClientSession() as session:
        client = JellyfinClient(session, jellyfin_sim.url, device_id="r" * 32)
        await client.login("alice", "secret")
        await _full_sync_keeps_equal_episodes(jellyfin_sim, client)


async def test_layout_1_1_is_migrated_on_load(
    hass: HomeAssistant, plex_sim: PlexSimulator, hass_storage: dict[str, Any]
) -> None:
    """A mirror stored with row lists (layout 1.1) loads, then is stored as 1.2."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    key = f"{DOMAIN}.{entry.entry_id}.library"
    stored = hass_storage[key]
    assert stored["minor_version"] == LIBRARY_MINOR_VERSION
    for library in stored["data"]["libraries"]:
        for show in library["shows"]:
            del show[6:]  # written before a show's lastViewedAt was kept
    synced = decode_mirror(stored["data"])
    for library in stored["data"]["libraries"]:
        for show in library["shows"]:
            assert isinstance(show[5], str)
            show[5] = orjson.loads(show[5])  # back to the layout of 1.1
    stored["minor_version"] = 1

    plex_sim.clear_log()
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()

    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    assert [r.path for r in plex_sim.requests] == ["/", "/library/sections"]
    assert hass_storage[key]["minor_version"] == LIBRARY_MINOR_VERSION
    assert decode_mirror(hass_storage[key]["data"]) == synced


def test_removals_stored_before_their_show_title_load_without_one() -> None:
    """Layout 1.2 remembered a removal without its show's title: it matches by show id only."""
    data = {"server_id": "srv", "libraries": [], "removed": {"e1": [5, 6.0, "s1", 1, 2]}}
    assert decode_mirror(data).removed == {"e1": (5, 6.0, "s1", 1, 2, "")}


def _large_mirror(shows: int, episodes: int) -> Mirror:
    entries = {}
    for s in range(shows):
        show = Show(
            id=f"s{s}", library_id="1", title=f"Show {s}", episode_count=episodes, watched_count=0
        )
        entries[show.id] = ShowMirror.build(
            show,
            {
                f"{s}-{n}": episode_row(
                    id=f"{s}-{n}",
                    show_id=show.id,
                    library_id="1",
                    season=1,
                    number=n,
                    title=f"Episode {n}",
                    air_date="2024-05-01",
                    added_at=1_700_000_000 + n,
                    watched=n % 2 == 0,
                    duration=1500,
                )
                for n in range(episodes)
            },
        )
    return Mirror(
        server_id="srv", libraries={"1": LibraryMirror(id="1", title="TV", shows=entries)}
    )


async def _loop_turns_during[T](job: Awaitable[T]) -> tuple[T, int]:
    """Run a job; count how often another task got the loop meanwhile."""
    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    task = asyncio.create_task(other())
    await asyncio.sleep(0)
    before = turns
    try:
        return await job, turns - before
    finally:
        task.cancel()


async def test_a_large_mirror_is_decoded_and_migrated_in_steps() -> None:
    mirror = _large_mirror(shows=30, episodes=100)  # 3,000 episodes: two steps at least
    assert mirror.episode_count > YIELD_EVERY
    data = orjson.loads(orjson.dumps(await encode_mirror(mirror)))

    decoded, turns = await _loop_turns_during(async_decode_mirror(data))
    assert decoded == mirror == decode_mirror(data)
    assert turns >= 1

    for show in data["libraries"][0]["shows"]:
        show[5] = orjson.loads(show[5])  # layout 1.1
        del show[6:]
    _, turns = await _loop_turns_during(_rows_to_strings(data))
    assert turns >= 1
    assert decode_mirror(data) == mirror


async def test_reuse_swaps_each_page_inside_the_block_only() -> None:
    async def fetch(start: int, size: int) -> Page[int]:
        rows = list(range(start, min(start + size, 12)))
        return Page(rows, len(rows), 12)

    pages: list[list[int]] = []

    def reuse(page: list[int]) -> list[int]:
        pages.append(page)
        return [-row for row in page]

    with reuse_items(reuse):
        inside = await fetch_all(fetch, 5, 2)
    outside = await fetch_all(fetch, 5, 2)
    assert inside == [-row for row in range(12)]
    assert pages == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]  # one call per page
    assert outside == list(range(12))


async def test_a_shows_latest_view_is_stored_after_its_rows() -> None:
    """Appended after the rows: a file written before reads it as unknown (None)."""
    mirror = _large_mirror(shows=2, episodes=3)
    library = mirror.libraries["1"]
    first = library.shows["s0"]
    viewed = replace(first, show=replace(first.show, last_viewed_at=1_700_000_123))
    mirror = replace(
        mirror, libraries={"1": replace(library, shows={**library.shows, "s0": viewed})}
    )
    data = orjson.loads(orjson.dumps(await encode_mirror(mirror)))
    assert [show[6] for show in data["libraries"][0]["shows"]] == [1_700_000_123, None]
    assert decode_mirror(data) == mirror

    for show in data["libraries"][0]["shows"]:
        del show[6:]
    assert decode_mirror(data).libraries["1"].shows["s0"].show.last_viewed_at is None
