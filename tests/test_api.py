"""The clients against the simulators over HTTP: errors, paging, quirks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from custom_components.episode_sync.api.errors import (
    MediaServerAuthError,
    MediaServerConnectionError,
    MediaServerNotFoundError,
    MediaServerProtocolError,
    MediaServerUnavailableError,
    WrongServerError,
)
from custom_components.episode_sync.api.jellyfin import JellyfinClient
from custom_components.episode_sync.api.models import At
from custom_components.episode_sync.api.paging import Page, fetch_all
from custom_components.episode_sync.api.plex import PlexClient
from tests.helpers import episodes_of
from tests.simulator.common import Fault
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.plex import PlexSimulator


@pytest.fixture
async def session(socket_enabled: Any) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def _plex(sim: PlexSimulator, session: aiohttp.ClientSession, **kw: Any) -> PlexClient:
    return PlexClient(session, sim.url, sim.token, client_id="test-client", **kw)


async def _jellyfin(
    sim: JellyfinSimulator, session: aiohttp.ClientSession, **kw: Any
) -> JellyfinClient:
    client = JellyfinClient(session, sim.url, device_id="d" * 32, **kw)
    await client.login("alice", "secret")
    return client


def _drop_first_key(payload: Any) -> Any:
    """A page whose first item lost its id (a payload missing an expected field)."""
    items = payload.get("Items") or payload["MediaContainer"]["Metadata"]
    items[0].pop("Id", None)
    items[0].pop("ratingKey", None)
    return payload


#: Factories: a fault counts its firings, so every test needs a fresh one.
#: A reset fires twice because aiohttp retries once on a reused connection.
FAULTS = [
    pytest.param(lambda: Fault(kind="status", status=500), MediaServerUnavailableError, id="500"),
    pytest.param(lambda: Fault(kind="status", status=502), MediaServerUnavailableError, id="502"),
    pytest.param(
        lambda: Fault(kind="status", status=503, headers={"Retry-After": "30"}),
        MediaServerUnavailableError,
        id="503",
    ),
    pytest.param(lambda: Fault(kind="status", status=429), MediaServerUnavailableError, id="429"),
    pytest.param(lambda: Fault(kind="status", status=400), MediaServerProtocolError, id="400"),
    pytest.param(lambda: Fault(kind="status", status=404), MediaServerNotFoundError, id="404"),
    pytest.param(lambda: Fault(kind="reset", times=2), MediaServerConnectionError, id="reset"),
    pytest.param(lambda: Fault(kind="timeout", delay=2), MediaServerConnectionError, id="timeout"),
    pytest.param(lambda: Fault(kind="malformed"), MediaServerProtocolError, id="malformed"),
    pytest.param(lambda: Fault(kind="truncated"), MediaServerConnectionError, id="truncated"),
    pytest.param(
        lambda: Fault(kind="mutate", mutate=_drop_first_key),
        MediaServerProtocolError,
        id="missing-field",
    ),
]


@pytest.mark.parametrize(("make_fault", "error"), FAULTS)
async def test_plex_faults(
    plex_sim: PlexSimulator,
    session: aiohttp.ClientSession,
    make_fault: Callable[[], Fault],
    error: type[Exception],
) -> None:
    client = _plex(plex_sim, session, timeout=0.5)
    library_id = (await client.libraries())[0].id
    fault = plex_sim.add_fault(make_fault())
    with pytest.raises(error) as caught:
        await client.episodes(library_id)
    if fault.status == 503:
        assert caught.value.retry_after == 30  # type: ignore[attr-defined]
    assert plex_sim.token not in str(caught.value)


@pytest.mark.parametrize(("make_fault", "error"), FAULTS)
async def test_jellyfin_faults(
    jellyfin_sim: JellyfinSimulator,
    session: aiohttp.ClientSession,
    make_fault: Callable[[], Fault],
    error: type[Exception],
) -> None:
    client = await _jellyfin(jellyfin_sim, session, timeout=0.5)
    library_id = (await client.libraries())[0].id
    jellyfin_sim.add_fault(make_fault())
    with pytest.raises(error):
        await client.episodes(library_id)


async def test_plex_auth_and_content_negotiation(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """401 is HTML whatever Accept says; without Accept JSON the server speaks XML."""
    bad = PlexClient(session, plex_sim.url, "wrong", client_id="c")
    with pytest.raises(MediaServerAuthError):
        await bad.server_info()
    async with session.get(plex_sim.url + "/", headers={"X-Plex-Token": plex_sim.token}) as reply:
        assert reply.content_type == "application/xml"
        assert (await reply.text()).lstrip().startswith("<?xml")
    async with session.get(plex_sim.url + "/", headers={"Accept": "application/json"}) as reply:
        assert reply.status == 401
        assert reply.content_type == "text/html"
    client = _plex(plex_sim, session)
    await client.libraries()
    assert all(r.headers.get("Accept") == "application/json" for r in plex_sim.requests[-1:])
    assert all(
        r.headers.get("X-Plex-Client-Identifier") == "test-client" for r in plex_sim.requests[-1:]
    )
    assert all("X-Plex-Token" not in r.query for r in plex_sim.requests)


async def test_plex_wrong_servers(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    client = PlexClient(session, jellyfin_sim.url, "t", client_id="c")
    with pytest.raises(WrongServerError):
        await client.identity()
    other = JellyfinClient(session, jellyfin_sim.url.replace("http", "http"), device_id="d")
    assert (await other.public_info()).name == jellyfin_sim.name


async def test_jellyfin_wrong_server(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    client = JellyfinClient(session, plex_sim.url, device_id="d")
    with pytest.raises(WrongServerError):
        await client.public_info()


async def test_plex_paging_with_a_server_cap(
    session: aiohttp.ClientSession, socket_enabled: Any
) -> None:
    """Fewer items than asked: every item still arrives, in pages actually served."""
    sim = PlexSimulator(page_cap=70)
    library = sim.model.generate(shows=9, seasons=3, episodes=10)
    await sim.start()
    try:
        client = _plex(sim, session)
        episodes = episodes_of(await client.episodes(library.id))
        assert sorted(e.id for e in episodes) == sorted(e.id for e in library.episodes())
        pages = [r for r in sim.requests if r.query.get("type") == "4"]
        assert len(pages) == -(-270 // 70)
        assert all(
            "X-Plex-Container-Start" in r.query and "X-Plex-Container-Size" in r.query
            for r in pages
        )
    finally:
        await sim.close()


async def test_jellyfin_listing_without_a_total_pages_while_pages_are_full(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """No ``TotalRecordCount`` (a proxy dropped it): pages are asked for while they are full."""
    client = JellyfinClient(session, jellyfin_sim.url, device_id="p" * 32, page_size=30)
    await client.login("alice", "secret")
    library_id = (await client.libraries())[0].id

    def without_total(reply: Any) -> Any:
        return {key: value for key, value in reply.items() if key != "TotalRecordCount"}

    jellyfin_sim.add_fault(Fault(kind="mutate", path="/Items", mutate=without_total, times=-1))
    jellyfin_sim.clear_log()
    episodes = await client.episodes(library_id)

    expected = {e.id for e in jellyfin_sim.model.libraries[library_id].episodes()}
    assert {row[0] for row in episodes} == expected
    assert [r.query["StartIndex"] for r in jellyfin_sim.requests] == ["0", "30", "60", "90"]


async def test_plex_delta_never_sends_plain_gte_and_falls_back(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    client = _plex(plex_sim, session)
    library_id = (await client.libraries())[0].id
    show = next(iter(plex_sim.model.libraries[library_id].shows.values()))
    plex_sim.clock.advance(3600)
    new = plex_sim.model.add_episode(show.id, 4, 1)
    changed = episodes_of(
        await client.changed_episodes([library_id], int(plex_sim.clock.now()) - 60)
    )
    assert [e.id for e in changed] == [new.id]
    keys = [k for r in plex_sim.requests for k in r.query]
    assert "updatedAt>>" in keys
    assert not any(k.endswith(">") and not k.endswith(">>") for k in keys)
    plex_sim.updated_at_filter_supported = False
    changed = episodes_of(
        await client.changed_episodes([library_id], int(plex_sim.clock.now()) - 60)
    )
    assert [e.id for e in changed] == [new.id]
    assert "addedAt>>" in plex_sim.requests[-1].query


async def test_plex_episode_fields(plex_sim: PlexSimulator, session: aiohttp.ClientSession) -> None:
    """Absent viewCount means unwatched; ids are strings; a missing index is None."""
    client = _plex(plex_sim, session)
    library_id = (await client.libraries())[0].id
    show = next(iter(plex_sim.model.libraries[library_id].shows.values()))
    odd = plex_sim.model.add_episode(show.id, None, None, title="Unnumbered", air_date="")
    recorded = plex_sim.model.add_episode(show.id, 1, 7, air_date="2025-01-01")  # has a time
    watched = next(iter(show.episodes.values()))
    plex_sim.model.set_watched(watched.id)
    episodes = {e.id: e for e in episodes_of(await client.show_episodes(library_id, show.id))}
    assert episodes[odd.id].season is None
    assert episodes[odd.id].number is None
    assert episodes[odd.id].air_date is None
    assert episodes[recorded.id].air_date == "2025-01-01"
    assert episodes[watched.id].watched
    assert sum(e.watched for e in episodes.values()) == 1
    assert all(isinstance(key, str) for key in episodes)


async def test_plex_episode_without_added_at(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """One odd row without ``addedAt`` takes its ``updatedAt`` and fails nothing."""

    def undated(payload: Any) -> Any:
        first, second = payload["MediaContainer"]["Metadata"][:2]
        del first["addedAt"]
        del second["addedAt"], second["updatedAt"]
        return payload

    client = _plex(plex_sim, session)
    library_id = (await client.libraries())[0].id
    plex_sim.add_fault(Fault(kind="mutate", path="/all", mutate=undated))
    first, second, third = episodes_of(await client.episodes(library_id))[:3]
    model = {e.id: e for e in plex_sim.model.libraries[library_id].episodes()}
    assert first.added_at == model[first.id].updated_at > 0
    assert second.added_at == 0
    assert third.added_at == model[third.id].added_at


async def test_jellyfin_login_rules(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """A wrong password is refused; a second login with the same DeviceId revokes the first."""
    client = JellyfinClient(session, jellyfin_sim.url, device_id="e" * 32)
    with pytest.raises(MediaServerAuthError):
        await client.login("alice", "wrong")
    first = await client.login("alice", "secret")
    other = JellyfinClient(
        session,
        jellyfin_sim.url,
        device_id="e" * 32,
        token=first.access_token,
        user_id=first.user_id,
    )
    assert await other.libraries()
    await client.login("alice", "secret")
    with pytest.raises(MediaServerAuthError):
        await other.libraries()


@pytest.mark.parametrize("version", ["10.10.7", "12.0.0"])
async def test_jellyfin_versions(
    session: aiohttp.ClientSession, socket_enabled: Any, version: str
) -> None:
    sim = JellyfinSimulator(version=version)
    sim.model.generate(shows=2, seasons=1, episodes=3)
    await sim.start()
    try:
        client = await _jellyfin(sim, session)
        token = client.token or ""
        async with session.get(
            sim.url + "/Items",
            params={"MinDateLastSaved": "2020-01-01T00:00:00Z"},
            headers={"X-Emby-Token": token},
        ) as reply:
            # Legacy header: refused on 12.0; 10.10 accepts it but the lone filter breaks.
            assert reply.status == (401 if version.startswith("12") else 500)
        assert len(await client.changed_episodes([], 0)) == 6
        async with session.get(sim.url + "/emby/System/Info/Public") as reply:
            assert reply.status == (404 if version.startswith("12") else 200)
    finally:
        await sim.close()


async def test_jellyfin_rolled_back_server_gets_the_delta_it_understands(
    session: aiohttp.ClientSession, socket_enabled: Any
) -> None:
    """10.11 read, then 10.10 running: one 500, the version read again, the older filter."""
    sim = JellyfinSimulator(version="10.11.7")
    sim.model.generate(shows=2, seasons=1, episodes=3)
    await sim.start()
    try:
        client = await _jellyfin(sim, session)
        await client.public_info()
        assert len(await client.changed_episodes([], 0)) == 6
        sim.version = "10.10.7"
        sim.clear_log()
        assert len(await client.changed_episodes([], 0)) == 6
        asked = [
            (r.path, sorted(k for k in r.query if k.startswith("MinDate"))) for r in sim.requests
        ]
        assert asked == [
            ("/Items", ["MinDateLastSaved"]),
            ("/System/Info/Public", []),
            ("/Items", ["MinDateLastSavedForUser"]),
        ]
        assert client.version == (10, 10, 7)
        # A 500 that is not the version's is the server's: reported, asked once more only.
        sim.clear_log()
        sim.add_fault(Fault(kind="status", status=500, path="/Items"))
        with pytest.raises(MediaServerUnavailableError):
            await client.changed_episodes([], 0)
        assert [r.path for r in sim.requests] == ["/Items", "/System/Info/Public"]
    finally:
        await sim.close()


async def test_jellyfin_virtual_episodes_and_starting_up(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    client = await _jellyfin(jellyfin_sim, session)
    library_id = (await client.libraries())[0].id
    show = next(iter(jellyfin_sim.model.libraries[library_id].shows.values()))
    jellyfin_sim.model.add_episode(show.id, 3, 1, virtual=True)
    shows = {s.id: s for s in await client.shows(library_id)}
    assert shows[show.id].episode_count == 10
    assert len(await client.show_episodes(library_id, show.id)) == 10
    assert len(await client.episodes(library_id)) == 100
    jellyfin_sim.starting_up = True
    with pytest.raises(MediaServerUnavailableError):
        await client.libraries()


async def test_server_clock_follows_the_server(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    plex_sim.clock.advance(-86_400)  # the server runs a day behind us
    client = _plex(plex_sim, session)
    client.reset_stats()
    await client.libraries()
    assert client.request_count == 1
    assert client.server_clock is not None
    assert abs(client.server_clock - plex_sim.clock.now()) < 5


async def test_fetch_all_fills_gaps_of_short_pages() -> None:
    """A page that comes back shorter than the stride leaves no hole."""
    data = list(range(23))
    calls: list[tuple[int, int]] = []

    async def fetch(start: int, size: int) -> Page[int]:
        calls.append((start, size))
        size = min(size, 5)
        if start == 10:
            size = 2  # this page is short
        rows = data[start : start + size]
        return Page(rows, len(rows), len(data))

    assert await fetch_all(fetch, 5, 3) == data
    assert (12, 3) in calls  # the gap after the short page was asked for again


async def test_fetch_all_fills_a_short_last_page_and_runs_pages_side_by_side() -> None:
    """The tail after a short last page is asked for; ``concurrency`` pages are in flight."""
    data = list(range(23))
    calls: list[tuple[int, int]] = []
    in_flight, peak = 0, 0

    async def fetch(start: int, size: int) -> Page[int]:
        nonlocal in_flight, peak
        calls.append((start, size))
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        size = 1 if start == 20 else min(size, 5)
        rows = data[start : start + size]
        return Page(rows, len(rows), len(data))

    assert await fetch_all(fetch, 5, 3) == data
    assert (21, 2) in calls
    assert peak == 3
    peak = 0
    calls.clear()
    assert await fetch_all(fetch, 5, 0) == data  # no concurrency asked: one at a time
    assert peak == 1


async def test_fetch_all_accepts_a_hole_it_cannot_fill() -> None:
    """Rows deleted while paging: the listing ends short, without repeating rows."""
    data = list(range(12))

    async def fetch(start: int, size: int) -> Page[int]:
        if 5 <= start < 10 and size < 5:
            return Page([], 0, 12)  # the gap cannot be filled any more
        size = 3 if start == 5 else min(size, 5)
        rows = data[start : start + size]
        return Page(rows, len(rows), len(data))

    rows = await fetch_all(fetch, 5, 2)
    assert rows == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11]


@pytest.mark.parametrize(
    ("path", "mutate", "call", "error"),
    [
        ("/library/sections", lambda p: {"Other": 1}, "libraries", MediaServerProtocolError),
        (
            "/library/sections",
            lambda p: {"MediaContainer": {"Directory": [{"type": "show", "title": "No key"}]}},
            "libraries",
            MediaServerProtocolError,
        ),
        (
            "/all",
            lambda p: {
                "MediaContainer": {"size": 1, "totalSize": 1, "Metadata": {"not": "a list"}}
            },
            "shows",
            MediaServerProtocolError,
        ),
        (
            "/library/sections",
            lambda p: {"MediaContainer": {"Directory": ["TV Shows"]}},
            "libraries",
            MediaServerProtocolError,
        ),
        (
            "/all",
            lambda p: {"MediaContainer": {"size": 2, "totalSize": 2, "Metadata": [{}, 7]}},
            "shows",
            MediaServerProtocolError,
        ),
        ("/identity", lambda p: {"MediaContainer": {"size": 0}}, "identity", WrongServerError),
        (
            "/",
            lambda p: {"MediaContainer": {"friendlyName": "x"}},
            "server_info",
            MediaServerProtocolError,
        ),
    ],
)
async def test_plex_bad_payloads(
    plex_sim: PlexSimulator,
    session: aiohttp.ClientSession,
    path: str,
    mutate: Callable[[Any], Any],
    call: str,
    error: type[Exception],
) -> None:
    client = _plex(plex_sim, session)
    library_id = (await client.libraries())[0].id
    plex_sim.add_fault(Fault(kind="mutate", path=path, mutate=mutate))
    method = getattr(client, call)
    with pytest.raises(error):
        await (method(library_id) if call == "shows" else method())


async def test_plex_lenient_flags(plex_sim: PlexSimulator, session: aiohttp.ClientSession) -> None:
    """Booleans come as true/false, 0/1 or "0"/"1"; numbers may come as strings."""

    client = _plex(plex_sim, session)
    for value, refreshing in (("1", True), ("true", True), (" True ", True), ("0", False),
                              ("false", False), (1, True), (False, False)):  # fmt: skip

        def flagged(payload: Any, value: object = value) -> Any:
            for section in payload["MediaContainer"]["Directory"]:
                section["refreshing"] = value
            return payload

        plex_sim.add_fault(Fault(kind="mutate", path="/library/sections", mutate=flagged))
        assert {lib.refreshing for lib in await client.libraries()} == {refreshing}, value


async def test_plex_rows_without_a_type_and_air_times(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """A row without ``type`` is what the listing asked for; a date's time part is the air time."""

    def untyped(payload: Any) -> Any:
        for row in payload["MediaContainer"].get("Metadata", []):
            row.pop("type", None)
        return payload

    client = _plex(plex_sim, session)
    library = next(lib for lib in await client.libraries())
    sim_show = next(iter(plex_sim.model.libraries[library.id].shows.values()))
    plex_sim.model.add_episode(sim_show.id, 1, 7, air_date="2024-05-01")
    plex_sim.clear_log()
    shows = await client.shows(library.id)
    # Show rows are small: pages of 1,000 keep the show listing to one request.
    assert [r.query.get("X-Plex-Container-Size") for r in plex_sim.requests] == ["1000"]
    episodes = await client.episodes(library.id)
    plex_sim.add_fault(Fault(kind="mutate", mutate=untyped, times=-1))
    assert await client.shows(library.id) == shows
    assert await client.episodes(library.id) == episodes
    show_id = shows[0].id
    assert await client.show_episodes(library.id, show_id) == [
        row for row in episodes if row[At.SHOW_ID] == show_id
    ]
    assert len(await client.changed_episodes([library.id], 0)) == len(episodes)
    # The simulator gives every seventh episode a "YYYY-MM-DD 20:00:00" date.
    timed = [(row[At.AIR_DATE], row[At.AIR_TIME]) for row in episodes if row[At.NUMBER] == 7]
    assert timed == [("2024-05-01", "20:00")]
    untimed = [row[At.AIR_TIME] for row in episodes if row[At.NUMBER] == 1]
    assert untimed
    assert set(untimed) == {None}


@pytest.mark.parametrize(
    ("path", "mutate", "call", "error"),
    [
        (
            "/System/Info/Public",
            lambda p: {"ProductName": "Jellyfin Server"},
            "public_info",
            WrongServerError,
        ),
        (
            "/System/Info/Public",
            lambda p: {"ProductName": "Emby Server", "Id": "1"},
            "public_info",
            WrongServerError,
        ),
        ("/Views", lambda p: {"Items": "nope"}, "libraries", MediaServerProtocolError),
        (
            "/Items",
            lambda p: {"Items": [{"Id": "x", "RecursiveItemCount": "many"}]},
            "shows",
            MediaServerProtocolError,
        ),
        ("/Items", lambda p: {"NoItems": []}, "shows", MediaServerProtocolError),
        ("/Views", lambda p: {"Items": [None]}, "libraries", MediaServerProtocolError),
        ("/Items", lambda p: {"Items": ["x"]}, "shows", MediaServerProtocolError),
        # No count (an API key without a user): not "every series is empty".
        (
            "/Items",
            lambda p: {"Items": [{"Id": "x", "Name": "S"}]},
            "shows",
            MediaServerProtocolError,
        ),
    ],
)
async def test_jellyfin_bad_payloads(
    jellyfin_sim: JellyfinSimulator,
    session: aiohttp.ClientSession,
    path: str,
    mutate: Callable[[Any], Any],
    call: str,
    error: type[Exception],
) -> None:
    client = await _jellyfin(jellyfin_sim, session)
    library_id = (await client.libraries())[0].id
    jellyfin_sim.add_fault(Fault(kind="mutate", path=path, mutate=mutate))
    method = getattr(client, call)
    with pytest.raises(error):
        await (method(library_id) if call == "shows" else method())


async def test_jellyfin_incomplete_login_and_no_user(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    client = JellyfinClient(session, jellyfin_sim.url, device_id="f" * 32)
    with pytest.raises(MediaServerAuthError):
        await client.libraries()  # never signed in
    jellyfin_sim.add_fault(
        Fault(kind="mutate", path="/AuthenticateByName", mutate=lambda p: {"User": {}})
    )
    with pytest.raises(MediaServerProtocolError):
        await client.login("alice", "secret")


async def test_jellyfin_dates(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """7-digit fractions, unset dates and offset-less values all parse."""

    def odd_dates(payload: Any) -> Any:
        items = payload["Items"]
        items[0]["DateCreated"] = "0001-01-01T00:00:00.0000000Z"
        items[1]["DateCreated"] = "2024-05-01T10:00:00"
        items[2]["DateCreated"] = "garbage"
        items[3]["PremiereDate"] = "0001-01-01T00:00:00.0000000Z"
        return payload

    client = await _jellyfin(jellyfin_sim, session)
    library_id = (await client.libraries())[0].id
    jellyfin_sim.add_fault(Fault(kind="mutate", path="/Items", mutate=odd_dates))
    episodes = episodes_of(await client.episodes(library_id))
    assert episodes[0].added_at == 0
    assert episodes[1].added_at == 1714557600
    assert episodes[2].added_at == 0
    assert episodes[3].air_date is None
