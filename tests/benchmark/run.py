"""Runs the benchmark scenarios and reports them (table, JSON, PNG)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import contextlib
from dataclasses import asdict, dataclass, field
import gc
import math
import platform
import statistics
import time
import tracemalloc
from typing import Any
import uuid

import aiohttp
import orjson

from custom_components.episode_sync.api.jellyfin import JellyfinClient
from custom_components.episode_sync.api.plex import PlexClient
from custom_components.episode_sync.compat import STORE_OFF_LOOP
from custom_components.episode_sync.store import (
    LIBRARY_MINOR_VERSION,
    LIBRARY_VERSION,
    async_decode_mirror,
    decode_mirror,
    encode_mirror,
)
from custom_components.episode_sync.sync import Mirror, SyncEngine, SyncState

from .naive import NaiveWalker
from .remote import LocalSim, RemoteSim, SimInfo, SimSpec

#: Scenarios in the order they run; each mutates the server, then syncs once.
SCENARIOS = (
    "initial",
    "unchanged",
    "added",
    "removed",
    "renamed",
    "watched",
    "new_show",
    "forced_full",
)
#: Plex does not move a library's markers for watch state: the change is seen
#: at the hourly show check, so the benchmark's clock jumps an hour for it.
HOUR = 3600.0
#: Start-up loads measured per run: the time is their median, the blocks their worst.
LOADS = 5
#: Home Assistant's storage encoder (helpers/json.py ``_orjson_bytes_default_encoder``).
STORE_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
#: CPython's oldest garbage-collector generation: collecting it is a full pass.
OLDEST_GENERATION = 2
#: Full passes timed for the "one full garbage-collector pass" figures.
GC_PASSES = 9


@dataclass(slots=True)
class Measure:
    """One scenario's figures."""

    scenario: str
    mode: str
    requests: int
    seconds: float
    bytes_received: int
    store_writes: int
    store_bytes: int
    max_loop_block_ms: float
    #: CPU time of the longest single loop step (callback or task step): what
    #: the block would be on an idle machine, without other processes' share.
    max_step_cpu_ms: float
    #: Full passes of the cyclic garbage collector during the sync (each one
    #: walks the whole heap: see ``_settle_garbage_collector``).
    gc_full_passes: int
    added: int
    removed: int
    updated: int


@dataclass(slots=True)
class Run:
    """One server and library size, ours beside the naive walk."""

    server: str
    shows: int
    episodes: int
    latency_ms: float
    naive_requests: int = 0
    naive_seconds: float = 0.0
    naive_bytes: int = 0
    mirror_bytes: int = 0
    mirror_peak_bytes: int = 0
    store_file_bytes: int = 0
    #: Loading the stored mirror as at start-up (``LOADS`` loads).
    load_seconds: float = 0.0
    load_max_loop_block_ms: float = 0.0
    load_max_step_cpu_ms: float = 0.0
    #: One full garbage-collector pass with the synced mirror alive, and without it.
    gc_pass_ms_with_mirror: float = 0.0
    gc_pass_ms_without: float = 0.0
    scenarios: list[Measure] = field(default_factory=list)


class LoopMonitor:
    """Measures the longest time the event loop could not run a 5 ms ticker.

    Beside it, the CPU time (``time.thread_time``) of the longest single loop
    step: on a busy machine the wall-clock block also counts the time the
    process waited for a core, the CPU time does not (a garbage-collector
    pass is counted in the step it interrupts).
    """

    def __init__(self) -> None:
        """Create an idle monitor."""
        self.max_block = 0.0
        self.max_step_cpu = 0.0
        self.gc_full_passes = 0
        self._task: asyncio.Task[None] | None = None

    def _count_full_pass(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == OLDEST_GENERATION:
            self.gc_full_passes += 1

    @contextlib.contextmanager
    def _timed_steps(self) -> Iterator[None]:
        """Time every loop callback (``Handle._run`` runs each one) while watching."""
        original = asyncio.events.Handle._run

        def timed(handle: asyncio.Handle) -> None:
            started = time.thread_time()
            original(handle)
            self.max_step_cpu = max(self.max_step_cpu, time.thread_time() - started)

        setattr(asyncio.events.Handle, "_run", timed)  # noqa: B010  # mypy: no method assignment
        try:
            yield
        finally:
            setattr(asyncio.events.Handle, "_run", original)  # noqa: B010

    async def _tick(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            self.max_block = max(self.max_block, time.perf_counter() - start - 0.005)

    @contextlib.asynccontextmanager
    async def watch(self) -> AsyncIterator[LoopMonitor]:
        """Monitor the loop while the block runs."""
        self.max_block = self.max_step_cpu = 0.0
        self.gc_full_passes = 0
        gc.callbacks.append(self._count_full_pass)
        with self._timed_steps():
            self._task = asyncio.create_task(self._tick())
            await asyncio.sleep(0)
            try:
                yield self
            finally:
                # Let the ticker run once more, so a block at the very end is counted.
                await asyncio.sleep(0.006)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                gc.callbacks.remove(self._count_full_pass)


async def _client(
    session: aiohttp.ClientSession, server: str, sim: SimInfo
) -> PlexClient | JellyfinClient:
    if server == "plex":
        return PlexClient(session, sim.url, sim.token, client_id=uuid.uuid4().hex)
    client = JellyfinClient(session, sim.url, device_id=uuid.uuid4().hex)
    await client.login(sim.username, sim.password)
    await client.public_info()
    return client


async def run_server(
    spec: SimSpec, *, concurrency: int = 5, remote: bool = True, naive: bool = True
) -> Run:
    """Run every scenario on one server and size, then the naive walk."""
    handle: LocalSim | RemoteSim = RemoteSim(spec) if remote else LocalSim(spec)
    sim = await handle.start()
    total = spec.shows * spec.seasons * spec.episodes
    run = Run(server=spec.server, shows=spec.shows, episodes=total, latency_ms=spec.latency * 1000)
    now = time.time()
    monitor = LoopMonitor()
    try:
        async with aiohttp.ClientSession() as session:
            client = await _client(session, spec.server, sim)
            info = await client.server_info()
            engine = SyncEngine(
                client,
                server_id=info.server_id,
                library_ids=sim.library_ids,
                max_concurrency=concurrency,
                clock=lambda: now,
            )
            mirror, state = Mirror(), SyncState()
            for scenario in SCENARIOS:
                if scenario not in ("initial", "unchanged", "forced_full"):
                    await handle.call(scenario)
                if scenario == "watched":
                    now += HOUR
                now += 600
                await handle.call("advance")
                await handle.call("clear")
                await _settle_garbage_collector()
                async with monitor.watch():
                    started = time.perf_counter()
                    result = await engine.sync(mirror, state, force_full=scenario == "forced_full")
                    store_bytes = 0
                    if result.mirror_changed:
                        store_bytes = await _store_write(result.mirror)
                    seconds = time.perf_counter() - started
                requests, received = await handle.call("stats")
                assert requests == result.api_calls, (requests, result.api_calls)
                mirror, state = result.mirror, result.state
                run.scenarios.append(
                    Measure(
                        scenario=scenario,
                        mode=result.mode.value,
                        requests=result.api_calls,
                        seconds=seconds,
                        bytes_received=received,
                        store_writes=int(result.mirror_changed),
                        store_bytes=store_bytes,
                        max_loop_block_ms=monitor.max_block * 1000,
                        max_step_cpu_ms=monitor.max_step_cpu * 1000,
                        gc_full_passes=monitor.gc_full_passes,
                        added=len(result.added),
                        removed=len(result.removed),
                        updated=result.updated,
                    )
                )
            run.mirror_bytes, run.mirror_peak_bytes, run.store_file_bytes = await _mirror_memory(
                mirror
            )
            episode_count = mirror.episode_count
            if naive:
                walker = NaiveWalker(session, sim.url, _naive_headers(spec.server, client))
                started = time.perf_counter()
                if spec.server == "plex":
                    seen = await walker.plex(sim.library_ids, concurrency)
                else:
                    assert isinstance(client, JellyfinClient)
                    seen = await walker.jellyfin(client.user_id or "", sim.library_ids, concurrency)
                run.naive_seconds = time.perf_counter() - started
                run.naive_requests, run.naive_bytes = walker.requests, walker.bytes
                assert seen == episode_count, (seen, episode_count)
            # As at start-up, where no synced mirror is alive beside the loaded one.
            encoded = _file(await encode_mirror(mirror))
            run.gc_pass_ms_with_mirror = _full_pass_ms()
            del mirror, result
            run.gc_pass_ms_without = _full_pass_ms()
            (
                run.load_seconds,
                run.load_max_loop_block_ms,
                run.load_max_step_cpu_ms,
            ) = await _loads(encoded, episode_count, monitor)
    finally:
        await handle.close()
    return run


async def _store_write(mirror: Mirror) -> int:
    """Encode the mirror as the library store's write does; return the bytes written.

    Home Assistant 2025.12+ serializes off the event loop (the store asks for
    it); older releases serialize in the loop. The benchmark does what the
    installed release does.
    """
    data = await encode_mirror(mirror)
    if STORE_OFF_LOOP:
        encoded = await asyncio.get_running_loop().run_in_executor(None, _file, data)
    else:
        encoded = _file(data)
    return len(encoded)


def _file(data: dict[str, Any]) -> bytes:
    """The library store's file, as Home Assistant's ``Store`` writes it."""
    return orjson.dumps(
        {
            "version": LIBRARY_VERSION,
            "minor_version": LIBRARY_MINOR_VERSION,
            "key": "episode_sync.bench.library",
            "data": data,
        },
        option=STORE_OPTIONS,
    )


async def _loads(encoded: bytes, episodes: int, monitor: LoopMonitor) -> tuple[float, float, float]:
    """Load the stored mirror as the store does at start-up: median time, worst blocks.

    Home Assistant's ``Store`` reads and parses the file in an executor
    thread (``json_util.load_json``), which holds the interpreter while it
    parses; the integration then decodes it on the loop.
    """
    seconds, blocks, steps = [], [], []
    for _ in range(LOADS):
        await _settle_garbage_collector()
        async with monitor.watch():
            started = time.perf_counter()
            stored = await asyncio.get_running_loop().run_in_executor(None, orjson.loads, encoded)
            loaded = await async_decode_mirror(stored["data"])
            seconds.append(time.perf_counter() - started)
        blocks.append(monitor.max_block * 1000)
        steps.append(monitor.max_step_cpu * 1000)
        assert loaded.episode_count == episodes, (loaded.episode_count, episodes)
        del stored, loaded
    return statistics.median(seconds), max(blocks), max(steps)


def _full_pass_ms() -> float:
    """How long one full garbage-collector pass over this process's heap takes.

    The fastest of ``GC_PASSES``: the pass does the same work each time, so
    the fastest is the one least disturbed by the rest of the machine.
    """
    gc.collect()
    times = []
    for _ in range(GC_PASSES):
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


async def _settle_garbage_collector() -> None:
    """Start a measurement with the cyclic garbage collector's books closed.

    CPython runs a full pass over the whole heap once enough objects have
    been promoted to its oldest generation since the last one, whoever
    allocated them; that pass holds the loop for as long as the heap is big
    (about 90 ms for this process's heap, Home Assistant's modules mostly).
    Without a pass here, the objects left over by the previous scenario (or
    by the simulator's set-up) tip that balance in whichever scenario comes
    next, and it is charged a block it did not cause. With it, a full pass
    inside a measurement is one that the measured sync's own objects caused,
    which is what "the sync blocks the loop" means. The integration itself
    never touches the collector. The pass ends its own loop step, so it is
    not counted in the measurement that follows.
    """
    gc.collect()
    await asyncio.sleep(0)


def _naive_headers(server: str, client: PlexClient | JellyfinClient) -> dict[str, str]:
    if isinstance(client, PlexClient):
        return {"X-Plex-Token": client.token, "X-Plex-Client-Identifier": "naive"}
    return {"Authorization": client.authorization_header()}


async def _mirror_memory(mirror: Mirror) -> tuple[int, int, int]:
    """Memory held by a mirror (rebuilt from its stored form) and its file size."""
    encoded = _file(await encode_mirror(mirror))
    data = orjson.loads(encoded)["data"]
    tracemalloc.start()
    rebuilt = decode_mirror(data)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert rebuilt.episode_count == mirror.episode_count
    return current, peak, len(encoded)


# -- reporting ------------------------------------------------------------------------


def targets(run: Run, libraries: int = 1) -> dict[str, bool]:
    """The SPEC §6 targets, checked against one run."""
    by = {m.scenario: m for m in run.scenarios}
    unchanged_budget = 1 if run.server == "plex" else libraries + 1
    initial_budget = (2 + math.ceil(run.episodes / 500)) * libraries + 1
    checks = {
        "unchanged requests": by["unchanged"].requests <= unchanged_budget,
        "unchanged store writes = 0": by["unchanged"].store_writes == 0,
        "added <= 4 requests": by["added"].requests <= 4,
        "removed <= 4 requests": by["removed"].requests <= 4,
        "initial <= 2 + ceil(episodes/500) per library": by["initial"].requests <= initial_budget,
    }
    if run.naive_seconds:
        checks["initial >= 10x faster than naive"] = run.naive_seconds >= 10 * by["initial"].seconds
    if run.episodes >= 100_000:
        checks["loop block <= 50 ms"] = all(m.max_loop_block_ms <= 50 for m in run.scenarios)
        checks["loop block <= 50 ms while loading"] = run.load_max_loop_block_ms <= 50
    return checks


def table(runs: list[Run]) -> str:
    """A readable table of every run (also pasted into the README)."""
    lines = []
    for run in runs:
        lines.append(
            f"\n{run.server} — {run.shows} shows / {run.episodes:,} episodes, "
            f"{run.latency_ms:.0f} ms per request"
        )
        lines.append(
            "| scenario | mode | requests (ours / naive) | time s (ours / naive) | "
            "KiB received | store writes | store KiB | max loop block ms | longest step CPU ms | "
            "full GC passes |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for m in run.scenarios:
            naive_req = f"{run.naive_requests:,}" if run.naive_requests else "-"
            naive_s = f"{run.naive_seconds:.2f}" if run.naive_seconds else "-"
            lines.append(
                f"| {m.scenario} | {m.mode} | {m.requests} / {naive_req} | "
                f"{m.seconds:.3f} / {naive_s} | {m.bytes_received / 1024:,.1f} | "
                f"{m.store_writes} | {m.store_bytes / 1024:,.0f} | {m.max_loop_block_ms:.1f} | "
                f"{m.max_step_cpu_ms:.1f} | {m.gc_full_passes} |"
            )
        lines.append(
            f"mirror in memory {run.mirror_bytes / 2**20:.1f} MiB "
            f"(peak while loading {run.mirror_peak_bytes / 2**20:.1f} MiB), "
            f"library store file {run.store_file_bytes / 2**20:.2f} MiB"
        )
        lines.append(
            f"load at start-up ({LOADS} loads): median {run.load_seconds:.3f} s, "
            f"worst loop block {run.load_max_loop_block_ms:.1f} ms "
            f"(longest step CPU {run.load_max_step_cpu_ms:.1f} ms)"
        )
        lines.append(
            f"one full garbage-collector pass: {run.gc_pass_ms_with_mirror:.1f} ms with the "
            f"mirror alive, {run.gc_pass_ms_without:.1f} ms without"
        )
        failed = [name for name, ok in targets(run).items() if not ok]
        lines.append("targets: " + ("all met" if not failed else "MISSED: " + ", ".join(failed)))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "system": platform.system(),
        "processor": platform.processor() or "unknown",
    }


def to_json(runs: list[Run], settings: dict[str, Any]) -> bytes:
    """Everything measured, for later comparison."""
    return orjson.dumps(
        {
            "machine": machine(),
            "settings": settings,
            "runs": [{**asdict(run), "targets": targets(run)} for run in runs],
        },
        option=orjson.OPT_INDENT_2,
    )


def chart(runs: list[Run], path: str) -> None:
    """Requests and time per scenario, ours vs naive, on log scales."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 2, figsize=(14, 3.2 * len(runs)), squeeze=False)
    for row, run in enumerate(runs):
        names = [m.scenario for m in run.scenarios]
        x = range(len(names))
        panels: list[tuple[str, list[float], float]] = [
            ("requests", [float(m.requests) for m in run.scenarios], float(run.naive_requests)),
            ("seconds", [m.seconds for m in run.scenarios], run.naive_seconds),
        ]
        for col, (label, ours, naive) in enumerate(panels):
            ax = axes[row][col]
            ax.bar([i - 0.2 for i in x], [max(v, 1e-3) for v in ours], 0.4, label="Episode Sync")
            ax.bar([i + 0.2 for i in x], [max(naive, 1e-3)] * len(names), 0.4, label="naive walk")
            ax.set_yscale("log")
            ax.set_xticks(list(x), names, rotation=30, fontsize=8)
            ax.set_title(f"{run.server}, {run.episodes:,} episodes: {label}", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
