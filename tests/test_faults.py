"""The fault matrix: every fault at every request of a sync, on Plex and on Jellyfin.

For each server and each kind of sync (the first one at set-up, a forced full
one, an incremental one with an episode added and one removed), the number of
requests ``N`` is measured by a clean run, then every fault below is injected
at each request index ``k`` in ``range(N)`` in turn (``Fault(skip=k)`` fires
on the (k+1)-th request). After each faulty sync:

- the mirror in the coordinator and both stores are byte-for-byte unchanged,
- no new-episode event fired,
- the entities are unavailable (Home Assistant's coordinator convention);

then, with the fault gone, the next sync reaches the server's state (mirror
rows equal the simulator's rows), announces the new episode exactly once and
the entities are back with the new values.

A protocol fault (malformed JSON, a page missing fields) met by an
incremental sync is retried at once as a full sync in the same run (SPEC §3):
a fault that fires once is then absorbed, and the sync succeeds in full mode;
the same fault left in place fails the retry too. Both are asserted.

Syncs are started through the coordinator (``async_refresh``, the button's
``async_force_full_sync``) rather than by moving a frozen clock: the timeout
fault needs real time to pass, and the client's timeout is shortened to keep
the matrix fast. One Home Assistant and one entry serve all cases of a
(server, sync kind) pair: every case starts from a committed, correct state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Event, HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.update_coordinator import UpdateFailed
import orjson
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.episode_sync.api import http
from custom_components.episode_sync.const import DOMAIN, EVENT_MANY_NEW_EPISODES, EVENT_NEW_EPISODE
from custom_components.episode_sync.coordinator import EpisodeSyncCoordinator
from custom_components.episode_sync.store import encode_mirror, encode_state
from tests.helpers import (
    entry_for,
    mirror_rows,
    model_rows,
    setup_entry,
    state_of,
    stored_mirror,
    tv_library_ids,
)
from tests.simulator.common import Fault
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator

type Sim = PlexSimulator | JellyfinSimulator

#: The client timeout during these tests (production: 30 s), well above the
#: longest pause a loaded machine gave a healthy request (0.5 s, once, on
#: Python 3.13 under coverage); and how long a ``timeout`` fault holds its
#: request: well beyond the former.
CLIENT_TIMEOUT = 1.0
HOLD = 2.5

#: Keys whose absence makes a page unusable: item ids, section keys, server ids.
_ID_KEYS = frozenset({"ratingKey", "key", "machineIdentifier", "Id"})


def _strip_ids(payload: Any) -> Any:
    """A page missing expected fields: every id-like key removed, at every depth."""
    if isinstance(payload, dict):
        return {k: _strip_ids(v) for k, v in payload.items() if k not in _ID_KEYS}
    if isinstance(payload, list):
        return [_strip_ids(v) for v in payload]
    return payload


#: Each fault, firing once on the (k+1)-th request of a sync.
FAULTS: dict[str, Callable[[int], Fault]] = {
    "http_500": lambda k: Fault(kind="status", status=500, skip=k),
    "http_502": lambda k: Fault(kind="status", status=502, skip=k),
    # Jellyfin's answer to a device not allowed or a session limit (docs: jellyfin §1).
    "http_403": lambda k: Fault(
        kind="status", status=403, body="Error processing request.", skip=k
    ),
    "http_503_retry_after": lambda k: Fault(
        kind="status", status=503, headers={"Retry-After": "120"}, skip=k
    ),
    "http_429": lambda k: Fault(kind="status", status=429, headers={"Retry-After": "5"}, skip=k),
    # From the (k+1)-th request on (the server went away): aiohttp re-sends an
    # idempotent request once when a reused keep-alive connection is closed
    # under it (client.py, ``retry_persistent_connection``), so a single reset
    # is absorbed before the client sees it.
    "reset": lambda k: Fault(kind="reset", skip=k, times=-1),
    "timeout": lambda k: Fault(kind="timeout", delay=HOLD, skip=k),
    "malformed_json": lambda k: Fault(kind="malformed", skip=k),
    "truncated_page": lambda k: Fault(kind="truncated", skip=k),
    "missing_fields": lambda k: Fault(kind="mutate", mutate=_strip_ids, skip=k),
}
#: Faults the clients report as protocol errors (the others are connection errors).
PROTOCOL_FAULTS = frozenset({"malformed_json", "missing_fields"})


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test waits 30 s for a held request."""
    monkeypatch.setattr(http, "DEFAULT_TIMEOUT", CLIENT_TIMEOUT)


@dataclass
class World:
    """One Home Assistant, one simulator, one entry, and what was announced."""

    hass: HomeAssistant
    sim: Sim
    storage: dict[str, Any]
    new_episodes: list[Event]
    many: list[Event]
    entry: MockConfigEntry | None = None

    @property
    def coordinator(self) -> EpisodeSyncCoordinator:
        assert self.entry is not None
        return self.entry.runtime_data.coordinator  # type: ignore[no-any-return]

    @property
    def library_ids(self) -> list[str]:
        return tv_library_ids(self.sim.model)

    def keys(self) -> list[str]:
        assert self.entry is not None
        return [f"{DOMAIN}.{self.entry.entry_id}.{name}" for name in ("status", "library")]

    async def snapshot(self) -> bytes:
        """The coordinator's mirror and state and both stores, as bytes."""
        parts: dict[str, Any] = {key: self.storage.get(key) for key in self.keys()}
        if self.entry is not None and self.entry.state is ConfigEntryState.LOADED:
            parts["mirror"] = await encode_mirror(self.coordinator.mirror)
            parts["state"] = encode_state(self.coordinator.state)
        return orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)

    def change(self, case: int) -> str:
        """Add one episode to one show and remove one of another; return the new id."""
        shows = list(self.sim.model.libraries[self.library_ids[0]].shows.values())
        added = self.sim.model.add_episode(
            shows[case % len(shows)].id, 100 + case, 1, title=f"Case {case}"
        )
        victim = shows[(case + 1) % len(shows)]
        self.sim.model.remove_episode(next(iter(victim.episodes)))
        return added.id

    def assert_correct(self, announced: list[str], *, mode: str) -> None:
        """The mirror, the store and the entities show the server's state."""
        assert self.entry is not None
        expected = model_rows(self.sim.model, self.library_ids)
        assert mirror_rows(self.coordinator.mirror) == expected
        assert mirror_rows(stored_mirror(self.storage, self.entry)) == expected
        assert [e.data["episode_id"] for e in self.new_episodes] == announced
        assert self.many == []
        assert state_of(self.hass, self.entry, "sensor", "episodes") == str(len(expected))
        assert state_of(self.hass, self.entry, "sensor", "sync_mode") == mode

    async def assert_untouched(self, before: bytes) -> None:
        """Nothing committed (mirror, state, both stores), nothing announced."""
        assert await self.snapshot() == before
        assert self.new_episodes == []
        assert self.many == []


async def _world(hass: HomeAssistant, sim: Sim, storage: dict[str, Any]) -> World:
    return World(
        hass=hass,
        sim=sim,
        storage=storage,
        new_episodes=async_capture_events(hass, EVENT_NEW_EPISODE),
        many=async_capture_events(hass, EVENT_MANY_NEW_EPISODES),
    )


def _cases(n: int) -> list[tuple[str, int]]:
    return [(name, k) for k in range(n) for name in FAULTS]


async def test_faults_during_the_first_sync(
    hass: HomeAssistant,
    media_sim: Sim,
    hass_storage: dict[str, Any],
) -> None:
    """A fault at any request of set-up's first sync: not ready, nothing stored; a retry syncs."""
    world = await _world(hass, media_sim, hass_storage)
    sim = world.sim

    async def fresh_entry() -> MockConfigEntry:
        entry = await entry_for(sim)
        world.entry = entry
        sim.clear_log()
        return entry

    entry = await fresh_entry()
    await setup_entry(hass, entry)
    # The identity check, then the library list, the shows and the episodes (one page each).
    n = len(sim.requests)
    assert n == 4
    world.assert_correct([], mode="full")
    await hass.config_entries.async_remove(entry.entry_id)

    for name, k in _cases(n):
        entry = await fresh_entry()
        before = await world.snapshot()
        fault = sim.add_fault(FAULTS[name](k))
        entry.add_to_hass(hass)
        assert not await hass.config_entries.async_setup(entry.entry_id), (name, k)
        assert fault.fired >= k + 1, (name, k)
        assert entry.state is ConfigEntryState.SETUP_RETRY, (name, k)
        await world.assert_untouched(before)
        sim.clear_faults()
        assert await hass.config_entries.async_reload(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED, (name, k)
        world.assert_correct([], mode="full")  # the first sync announces nothing
        await hass.config_entries.async_remove(entry.entry_id)
        await hass.async_block_till_done()


@pytest.mark.parametrize("kind", ["forced_full", "incremental"])
async def test_faults_during_a_sync_with_a_change(
    hass: HomeAssistant,
    media_sim: Sim,
    hass_storage: dict[str, Any],
    kind: str,
    let_time_pass: Callable[[], None],
) -> None:
    """A fault at any request of a sync that has an episode to add and one to remove."""
    world = await _world(hass, media_sim, hass_storage)
    sim = world.sim
    world.entry = entry = await entry_for(sim)
    await setup_entry(hass, entry)
    coordinator = world.coordinator
    forced = kind == "forced_full"
    mode = "full" if forced else "incremental"

    async def sync(*, faulty: bool = False) -> None:
        if not forced:
            await coordinator.async_refresh()
        elif not faulty:
            await coordinator.async_force_full_sync()
        else:  # every fault fails a forced sync, and the action and the button say so
            with pytest.raises(HomeAssistantError) as err:
                await coordinator.async_force_full_sync()
            assert err.value.translation_key == "full_sync_failed"

    # The clean run that measures N (and proves the change is applied).
    added = world.change(0)
    sim.clear_log()
    await sync()
    n = len(sim.requests)
    # Full: libraries, shows, episodes. Incremental: Plex's sections, then (both)
    # the shows, the delta and the re-listing of the show that lost an episode.
    assert n == (3 if forced or isinstance(sim, JellyfinSimulator) else 4)
    world.assert_correct([added], mode=mode)

    cases = _cases(n)
    if not forced:  # the same protocol faults, left in place: the full retry fails too
        cases += [(f"{name}_persistent", k) for k in range(n) for name in sorted(PROTOCOL_FAULTS)]
    for case, (name, k) in enumerate(cases, start=1):
        added = world.change(case)
        world.new_episodes.clear()
        before = await world.snapshot()
        sim.clear_log()
        persistent = name.endswith("_persistent")
        fault = sim.add_fault(FAULTS[name.removesuffix("_persistent")](k))
        if persistent:
            fault.times = -1
        await sync(faulty=True)
        assert fault.fired >= k + 1, (name, k)
        if not forced and not persistent and name in PROTOCOL_FAULTS:
            # Absorbed: the incremental sync failed, its full retry in the same run did not.
            assert coordinator.last_update_success, (name, k)
            world.assert_correct([added], mode="full")
            sim.clear_faults()
            continue
        assert not coordinator.last_update_success, (name, k)
        await world.assert_untouched(before)
        assert state_of(hass, entry, "sensor", "episodes") == "unavailable", (name, k)
        assert state_of(hass, entry, "sensor", "last_sync") == "unavailable", (name, k)

        sim.clear_faults()
        sim.clear_log()
        # The next scheduled sync: a forced sync that could not run is still owed.
        let_time_pass()
        await coordinator.async_refresh()
        assert coordinator.last_update_success, (name, k)
        world.assert_correct([added], mode=mode)
        assert len(sim.requests) == n, (name, k)


@pytest.mark.parametrize("kind", ["forced_full", "incremental"])
async def test_token_refused_in_the_middle_of_a_sync(
    hass: HomeAssistant,
    media_sim: Sim,
    hass_storage: dict[str, Any],
    kind: str,
) -> None:
    """A 401 at any request of a sync: reauth starts, nothing is committed or announced."""
    world = await _world(hass, media_sim, hass_storage)
    sim = world.sim
    world.entry = entry = await entry_for(sim)
    await setup_entry(hass, entry)
    forced = kind == "forced_full"
    n = 3 if forced or isinstance(sim, JellyfinSimulator) else 4  # as measured by the matrix above

    for k in range(n):
        added = world.change(k)
        world.new_episodes.clear()
        before = await world.snapshot()
        sim.clear_log()
        fault = sim.add_fault(Fault(kind="status", status=401, skip=k))
        if forced:
            with pytest.raises(HomeAssistantError) as raised:
                await world.coordinator.async_force_full_sync()
            assert raised.value.translation_key == "full_sync_failed"
        else:
            await world.coordinator.async_refresh()
        await hass.async_block_till_done()
        assert fault.fired == k + 1, k
        flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        assert [f["context"]["source"] for f in flows] == ["reauth"], k
        await world.assert_untouched(before)
        assert state_of(hass, entry, "sensor", "episodes") == "unavailable", k

        # A finished reauth reloads the entry (the fault fired once, so the
        # token works again): the new coordinator's first sync runs the forced
        # full sync the refused token interrupted.
        hass.config_entries.flow.async_abort(flows[0]["flow_id"])
        assert await hass.config_entries.async_reload(entry.entry_id)
        await hass.async_block_till_done()
        world.assert_correct([added], mode="full" if forced else "incremental")


async def test_access_refused_is_said_and_not_retried_as_a_full_sync(
    hass: HomeAssistant, jellyfin_sim: JellyfinSimulator, hass_storage: dict[str, Any]
) -> None:
    """A 403 (a device not allowed, a session limit) fails the sync with its own message.

    A full sync would be refused as well, and a reauth would not help: the
    sync fails at the first refused request, and no reauth starts.
    """
    world = await _world(hass, jellyfin_sim, hass_storage)
    world.entry = entry = await entry_for(jellyfin_sim)
    await setup_entry(hass, entry)
    world.change(0)
    before = await world.snapshot()
    jellyfin_sim.clear_log()
    jellyfin_sim.add_fault(
        Fault(kind="status", status=403, body="Error processing request.", times=-1)
    )
    await world.coordinator.async_refresh()
    await hass.async_block_till_done()
    error = world.coordinator.last_exception
    assert isinstance(error, UpdateFailed)
    assert error.translation_key == "forbidden"
    assert len(jellyfin_sim.requests) == 1
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []
    await world.assert_untouched(before)
