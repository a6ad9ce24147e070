"""Shared fixtures: simulators on 127.0.0.1 and Home Assistant set-up helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/episode_sync."""


@pytest.fixture
async def plex_sim(socket_enabled: Any) -> AsyncIterator[PlexSimulator]:
    """A Plex simulator with one TV library of 10 shows x 2 seasons x 5 episodes."""
    sim = PlexSimulator()
    sim.model.generate(shows=10, seasons=2, episodes=5, seed=1)
    await sim.start()
    yield sim
    await sim.close()


@pytest.fixture
async def jellyfin_sim(socket_enabled: Any) -> AsyncIterator[JellyfinSimulator]:
    """A Jellyfin simulator (10.11) with one TV library of 10 shows x 2 x 5."""
    sim = JellyfinSimulator()
    sim.model.generate(shows=10, seasons=2, episodes=5, seed=1)
    await sim.start()
    yield sim
    await sim.close()
