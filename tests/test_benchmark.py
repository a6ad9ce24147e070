"""Smoke test of script/bench's own code path (quick mode: small library, no latency).

Asserts request and write counts only: timings are the benchmark's business,
never a test's.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.benchmark.remote import SimSpec
from tests.benchmark.run import SCENARIOS, run_server, table, targets, to_json


@pytest.mark.parametrize("server", ["plex", "jellyfin"])
async def test_quick_benchmark(socket_enabled: Any, server: str) -> None:
    spec = SimSpec(server=server, shows=10, seasons=3, episodes=4, latency=0.0)
    run = await run_server(spec, remote=False)

    by = {m.scenario: m for m in run.scenarios}
    assert list(by) == list(SCENARIOS)
    assert by["initial"].mode == "full"
    assert by["initial"].requests <= 1 + 1 + math.ceil(120 / 500) + 1
    assert by["unchanged"].requests == (1 if server == "plex" else 2)
    assert by["unchanged"].store_writes == 0
    for scenario in ("added", "removed", "renamed", "watched"):
        assert by[scenario].mode == "incremental", scenario
        assert by[scenario].requests <= 4, scenario
        assert by[scenario].store_writes == 1, scenario
    assert (by["added"].added, by["removed"].removed, by["renamed"].updated) == (1, 1, 1)
    assert by["new_show"].added == 10
    assert by["forced_full"].mode == "full"
    # The naive walk: sections/views + shows + one request per show + one per season.
    assert run.naive_requests == 1 + 1 + 11 + (10 * 3 + 2)
    counted = {k: v for k, v in targets(run).items() if "faster" not in k and "block" not in k}
    assert counted
    assert all(counted.values()), counted
    assert server in table([run])
    assert b'"runs"' in to_json([run], {"quick": True})
