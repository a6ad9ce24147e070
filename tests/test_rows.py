"""The mirror's episodes are rows the garbage collector does not track; jobs are drawn lazily.

CPython's cyclic collector walks every tracked object on each full pass, and
Home Assistant's process runs such passes from time to time: a mirror of
100,000 ``Episode`` objects made every one of them slower (``script/bench``
reports a pass with and without the mirror). These tests pin the property
itself, through Home Assistant against the simulators.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import asdict, fields
import gc
from typing import Any

from homeassistant.core import HomeAssistant
import pytest

from custom_components.episode_sync.api.models import At, Episode, episode_row
from custom_components.episode_sync.api.paging import bounded_gather
from custom_components.episode_sync.sync import Mirror
from tests.helpers import entry_for, setup_entry
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator


def test_a_row_holds_the_episodes_fields_in_order() -> None:
    positions = {name.lower(): value for name, value in vars(At).items() if name.isupper()}
    assert sorted(positions, key=positions.__getitem__) == [f.name for f in fields(Episode)]
    episode = Episode(
        id="e", show_id="s", library_id="l", season=0, number=None, title="T",
        air_date="2026-01-02", added_at=5, watched=True, updated_at=6, thumb="/t",
        duration=1500, air_time="20:00",
    )  # fmt: skip
    row = episode_row(**asdict(episode))
    assert row == tuple(asdict(episode).values())
    assert Episode.from_row(row) == episode
    gc.collect()  # Python 3.13 untracks such a tuple at the first collection, 3.14 at once
    assert not gc.is_tracked(row)


def _untracked(mirror: Mirror) -> bool:
    shows = [show for library in mirror.libraries.values() for show in library.shows.values()]
    rows = [row for show in shows for row in show.rows.values()]
    gc.collect()  # see above: Python 3.13 untracks at the first collection
    return bool(rows) and not any(gc.is_tracked(row) for row in rows)


async def test_synced_and_loaded_mirrors_hold_untracked_rows(
    hass: HomeAssistant, media_sim: PlexSimulator | JellyfinSimulator
) -> None:
    entry = await entry_for(media_sim)
    await setup_entry(hass, entry)
    synced = entry.runtime_data.coordinator.mirror
    assert _untracked(synced)
    show = next(s for lib in synced.libraries.values() for s in lib.shows.values() if s.rows)
    episode_id, row = next(iter(show.rows.items()))
    # Read as episodes, built on access: the mapping never holds them.
    assert show.episodes[episode_id] == Episode.from_row(row)
    assert episode_id in show.episodes
    assert "no such episode" not in show.episodes
    assert len(show.episodes) == len(show.rows)

    assert await hass.config_entries.async_reload(entry.entry_id)  # loads the stored mirror
    await hass.async_block_till_done()
    loaded = entry.runtime_data.coordinator.mirror
    assert loaded is not synced
    assert loaded == synced
    assert _untracked(loaded)


async def test_jobs_are_drawn_as_workers_free_up_and_answered_in_order() -> None:
    started: list[int] = []
    drawn = running = most = 0

    async def job(index: int) -> int:
        nonlocal running, most
        # Drawn as a worker frees up: job n starts before job n + 2 exists.
        assert drawn <= index + 2
        started.append(index)
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001 * (5 - index))  # later jobs finish first
        running -= 1
        return index * 10

    def jobs() -> Any:
        nonlocal drawn
        for index in range(5):
            drawn += 1
            yield job(index)

    assert await bounded_gather(jobs(), 2) == [0, 10, 20, 30, 40]
    assert started == [0, 1, 2, 3, 4]
    assert most == 2


async def test_a_failed_job_closes_the_jobs_never_started() -> None:
    started: list[str] = []

    async def fail() -> int:
        raise ValueError("boom")

    async def wait() -> int:
        started.append("wait")
        await asyncio.Event().wait()
        return 0

    waiting: list[Coroutine[Any, Any, int]] = [fail(), wait(), wait()]
    with pytest.raises(ValueError, match="boom"):
        await bounded_gather(waiting, 1)
    assert started == []
    # Closed, so none of them warns "coroutine ... was never awaited".
    assert all(job.cr_frame is None for job in waiting)
