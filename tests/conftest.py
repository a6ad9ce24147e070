"""Shared fixtures: simulators on 127.0.0.1 and Home Assistant set-up helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
import time
from types import SimpleNamespace
from typing import Any

from homeassistant.helpers.storage import Store
import pytest

from custom_components.episode_sync import (
    coordinator as coordinator_module,
    discovery as discovery_module,
)
from custom_components.episode_sync.api import plextv
from custom_components.episode_sync.const import CONF_PUSH_UPDATES, DEFAULT_OPTIONS, DOMAIN
from custom_components.episode_sync.coordinator import MAX_RETRY_AFTER
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator
from tests.simulator.plextv import PlexTvSimulator


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/episode_sync."""


@pytest.fixture(autouse=True)
def push_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries made by tests (helpers, config flows) start with push off.

    Push is on by default for users, but a connected socket runs a sync of
    its own after connecting and keeps a background task alive: the polling
    tests count exact requests and wait for background tasks. Push tests pass
    ``push_updates=True`` (tests/test_push.py).
    """
    monkeypatch.setitem(DEFAULT_OPTIONS, CONF_PUSH_UPDATES, False)


@pytest.fixture(autouse=True)
def no_discovery_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test broadcasts on the machine's network: discovery tests aim at the simulators."""
    monkeypatch.setattr(discovery_module, "PROBES", [])


@pytest.fixture
def let_time_pass(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Move the coordinator's clock past any ``Retry-After`` the server asked for.

    For tests that need real time to pass (a held request's timeout), where a
    frozen clock would not do.
    """
    offset = 0.0

    def monotonic() -> float:
        return time.monotonic() + offset

    def later() -> None:
        nonlocal offset
        offset += MAX_RETRY_AFTER

    monkeypatch.setattr(coordinator_module, "time", SimpleNamespace(monotonic=monotonic))
    return later


@pytest.fixture
def library_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every write of a library store (the mirror)."""
    writes: list[str] = []
    original = Store.async_save

    async def spy(self: Store[Any], data: Any) -> None:
        if self.key.startswith(DOMAIN) and self.key.endswith(".library"):
            writes.append(self.key)
        await original(self, data)

    monkeypatch.setattr(Store, "async_save", spy)
    return writes


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


@pytest.fixture(params=["plex", "jellyfin"])
async def media_sim(
    request: pytest.FixtureRequest, socket_enabled: Any
) -> AsyncIterator[PlexSimulator | JellyfinSimulator]:
    """Each server in turn (the test runs once per server), set up as ``plex_sim``."""
    sim = PlexSimulator() if request.param == "plex" else JellyfinSimulator()
    sim.model.generate(shows=10, seasons=2, episodes=5, seed=1)
    await sim.start()
    yield sim
    await sim.close()


@pytest.fixture
async def plextv_sim(
    socket_enabled: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PlexTvSimulator]:
    """plex.tv on 127.0.0.1, standing in for https://plex.tv (no servers listed yet)."""
    sim = PlexTvSimulator()
    await sim.start()
    monkeypatch.setattr(plextv, "PLEX_TV_URL", sim.url)
    yield sim
    await sim.close()
