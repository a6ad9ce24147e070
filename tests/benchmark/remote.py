"""A simulator in its own process, driven through a pipe.

At 100,000 episodes the simulator's own JSON encoding would otherwise run in
the benchmark's event loop and be counted as the integration's loop block.
``LocalSim`` offers the same interface in-process for the quick mode.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.library import SimLibrary
from tests.simulator.plex import PlexSimulator

type Simulator = PlexSimulator | JellyfinSimulator


@dataclass(frozen=True, slots=True, kw_only=True)
class SimSpec:
    """What to simulate."""

    server: str  # "plex" | "jellyfin"
    shows: int
    seasons: int
    episodes: int
    latency: float
    seed: int = 1


@dataclass(frozen=True, slots=True)
class SimInfo:
    """How to reach a started simulator."""

    url: str
    token: str
    username: str
    password: str
    library_ids: list[str]


def build(spec: SimSpec) -> tuple[Simulator, SimLibrary]:
    """Create the simulator and its generated library."""
    sim: Simulator = (
        PlexSimulator(latency=spec.latency)
        if spec.server == "plex"
        else JellyfinSimulator(latency=spec.latency)
    )
    library = sim.model.generate(
        shows=spec.shows, seasons=spec.seasons, episodes=spec.episodes, seed=spec.seed
    )
    return sim, library


def info(sim: Simulator, library: SimLibrary) -> SimInfo:
    """Connection details of a started simulator."""
    if isinstance(sim, PlexSimulator):
        return SimInfo(sim.url, sim.token, "", "", [library.id])
    user, password = next(iter(sim.users.items()))
    return SimInfo(sim.url, "", user, password, [library.id])


def apply(sim: Simulator, library: SimLibrary, command: str) -> Any:
    """Run one scenario's mutation (or a bookkeeping command) on the simulator."""
    model = sim.model
    shows = list(library.shows.values())
    episodes = list(shows[len(shows) // 2].episodes.values())
    match command:
        case "added":
            return model.add_episode(shows[0].id, 99, 1, title="Benchmark arrival").id
        case "removed":
            return model.remove_episode(episodes[1].id).id
        case "renamed":
            return model.rename_episode(episodes[2].id, "Renamed by the benchmark").id
        case "watched":
            return model.set_watched(episodes[3].id).id
        case "new_show":
            show = model.add_show(library.id, "Benchmark Show")
            for number in range(1, 11):
                model.add_episode(show.id, 1, number)
            return show.id
        case "stats":
            return len(sim.requests), sim.bytes_sent
        case "clear":
            sim.clear_log()
            return None
        case "advance":
            sim.clock.advance(1)  # distinct server timestamps between scenarios
            return None
    raise ValueError(command)


class LocalSim:
    """The simulator in this process (quick mode: no latency, small library)."""

    def __init__(self, spec: SimSpec) -> None:
        """Build the simulator; ``start`` serves it."""
        self._sim, self._library = build(spec)

    async def start(self) -> SimInfo:
        """Serve on 127.0.0.1 and return how to reach it."""
        await self._sim.start()
        return info(self._sim, self._library)

    async def call(self, command: str) -> Any:
        """Run a command (see ``apply``)."""
        return apply(self._sim, self._library, command)

    async def close(self) -> None:
        """Stop serving."""
        await self._sim.close()


def _child(spec: SimSpec, conn: Connection) -> None:
    async def main() -> None:
        sim, library = build(spec)
        conn.send(info(sim, library) if await sim.start() else None)
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "close":
                break
            conn.send(apply(sim, library, command))
        await sim.close()
        conn.send("closed")

    asyncio.run(main())


class RemoteSim:
    """The simulator in a child process."""

    def __init__(self, spec: SimSpec) -> None:
        """Prepare the child; ``start`` launches it."""
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_child, args=(spec, child_conn), daemon=True)

    async def _ask(self, message: str) -> Any:
        self._conn.send(message)
        return await asyncio.get_running_loop().run_in_executor(None, self._conn.recv)

    async def start(self) -> SimInfo:
        """Launch the child and wait until it serves (generation takes a while)."""
        self._process.start()
        result: SimInfo = await asyncio.get_running_loop().run_in_executor(None, self._conn.recv)
        return result

    async def call(self, command: str) -> Any:
        """Run a command in the child (see ``apply``)."""
        return await self._ask(command)

    async def close(self) -> None:
        """Stop the child."""
        await self._ask("close")
        self._process.join(timeout=10)
