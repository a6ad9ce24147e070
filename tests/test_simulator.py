"""The simulators against the checklists of the server notes (plex-api.md/jellyfin-api.md §10).

Each test drives a simulator over real HTTP on 127.0.0.1 with aiohttp, the way
a client would, and checks one checklist item (quirks included): a client that
passes against the simulator must also work against a real server. Websockets
(checklist item 17 / the Plex notifications socket) are tested in
tests/test_push.py, but for the API keys' socket and the upgrade's Date here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
import itertools
import time
from typing import Any

import aiohttp
from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
import pytest
from yarl import URL

from custom_components.episode_sync.api.jellyfin import JellyfinClient
from custom_components.episode_sync.api.plex import PlexClient
from custom_components.episode_sync.api.push import websocket_url
from tests.helpers import (
    episodes_of,
    jellyfin_entry,
    next_poll,
    plex_entry,
    setup_entry,
    state_of,
    tv_library_ids,
)
from tests.simulator.common import Fault
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.library import SimClock, SimEpisode, SimLibraryModel, SimShow
from tests.simulator.plex import NOT_FOUND_HTML, UNAUTHORIZED_HTML, PlexSimulator

JSON = {"Accept": "application/json"}


@pytest.fixture
async def session(socket_enabled: Any) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session, as a client would use."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def _plex_headers(sim: PlexSimulator, **extra: str) -> dict[str, str]:
    return {**JSON, "X-Plex-Token": sim.token, "X-Plex-Client-Identifier": "sim-test", **extra}


async def _plex(
    session: aiohttp.ClientSession,
    sim: PlexSimulator,
    path_and_query: str,
    *,
    raw: bool = False,
    **headers: str,
) -> tuple[int, dict[str, Any]]:
    """GET a Plex path; return the status and the MediaContainer (or {})."""
    url: str | URL = sim.url + path_and_query
    if raw:  # send the query exactly as written (``addedAt>>=…`` unencoded)
        url = URL(sim.url + path_and_query, encoded=True)
    async with session.get(url, headers=_plex_headers(sim, **headers)) as reply:
        if reply.content_type != "application/json":
            return reply.status, {}
        return reply.status, (await reply.json())["MediaContainer"]


def _section(sim: PlexSimulator) -> str:
    return tv_library_ids(sim.model)[0]


def _first_show(sim: PlexSimulator | JellyfinSimulator) -> SimShow:
    return next(iter(sim.model.libraries[tv_library_ids(sim.model)[0]].shows.values()))


# -- Plex: auth, content negotiation, errors ----------------------------------------------


async def test_plex_auth_is_401_html_whatever_accept_says(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """No or a wrong token: 401 text/html with PMS's body, JSON asked or not; query token works."""
    for headers in (JSON, {"Accept": "*/*"}, {**JSON, "X-Plex-Token": "wrong"}):
        async with session.get(plex_sim.url + "/library/sections", headers=headers) as reply:
            assert reply.status == 401
            assert reply.content_type == "text/html"
            assert await reply.text() == UNAUTHORIZED_HTML
    url = f"{plex_sim.url}/library/sections?X-Plex-Token={plex_sim.token}"
    async with session.get(url, headers=JSON) as reply:
        assert reply.status == 200
    async with session.get(plex_sim.url + "/identity", headers=JSON) as reply:
        assert reply.status == 200
    plex_sim.identity_requires_auth = True
    async with session.get(plex_sim.url + "/identity", headers=JSON) as reply:
        assert reply.status == 401


async def test_plex_answers_xml_without_a_json_accept(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """``Accept: */*`` (or none) gets XML, so a client that forgets the header fails visibly."""
    for accept in ("*/*", "application/xml"):
        headers = {"X-Plex-Token": plex_sim.token, "Accept": accept}
        async with session.get(plex_sim.url + "/library/sections", headers=headers) as reply:
            assert reply.status == 200
            assert reply.content_type == "application/xml"
            assert (await reply.text()).split("\n")[1].startswith("<MediaContainer ")


async def test_plex_404_is_html_for_items_sections_and_paths(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """Unknown ratingKeys, sections and paths: PMS's HTML 404."""
    for path in ("/library/metadata/999999", "/library/sections/77/all", "/no/such/path"):
        async with session.get(plex_sim.url + path, headers=_plex_headers(plex_sim)) as reply:
            assert reply.status == 404
            assert reply.content_type == "text/html"
            assert await reply.text() == NOT_FOUND_HTML


async def test_plex_shapes(plex_sim: PlexSimulator, session: aiohttp.ClientSession) -> None:
    """String keys, int stamps, ``hidden`` 0/1 beside booleans, items in ``Metadata``."""
    status, container = await _plex(session, plex_sim, "/library/sections")
    assert status == 200
    section = next(d for d in container["Directory"] if d["type"] == "show")
    assert isinstance(section["key"], str)
    assert section["hidden"] == 0
    assert section["refreshing"] is False
    assert isinstance(section["contentChangedAt"], int)
    _, shows = await _plex(session, plex_sim, f"/library/sections/{_section(plex_sim)}/all?type=2")
    row = shows["Metadata"][0]
    assert isinstance(row["ratingKey"], str)
    assert isinstance(row["addedAt"], int)
    assert "lastViewedAt" not in row  # nothing watched yet


# -- Plex: paging ---------------------------------------------------------------------------


async def test_plex_paging_needs_start_and_size(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """Size alone is ignored; Size=0 counts; headers echo the body; headers work as query."""
    path = f"/library/sections/{_section(plex_sim)}/all?type=4"
    _, alone = await _plex(session, plex_sim, path + "&X-Plex-Container-Size=5")
    assert alone["size"] == 100
    assert "totalSize" not in alone
    _, probe = await _plex(
        session, plex_sim, path + "&X-Plex-Container-Start=0&X-Plex-Container-Size=0"
    )
    assert (probe["size"], probe["totalSize"], "Metadata" in probe) == (0, 100, False)
    async with session.get(
        plex_sim.url + path,
        headers=_plex_headers(
            plex_sim, **{"X-Plex-Container-Start": "10", "X-Plex-Container-Size": "7"}
        ),
    ) as reply:
        container = (await reply.json())["MediaContainer"]
        assert reply.headers["X-Plex-Container-Start"] == "10" == str(container["offset"])
        assert reply.headers["X-Plex-Container-Total-Size"] == "100"
    assert (container["size"], container["totalSize"]) == (7, 100)
    plex_sim.page_cap = 3
    _, capped = await _plex(
        session, plex_sim, path + "&X-Plex-Container-Start=0&X-Plex-Container-Size=50"
    )
    assert (capped["size"], capped["totalSize"]) == (3, 100)


async def test_plex_limit_caps_and_omits_the_true_total(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """``limit=N`` caps the rows and leaves the true total out (DESC §Pagination)."""
    path = f"/library/sections/{_section(plex_sim)}/all?type=4&limit=12"
    _, plain = await _plex(session, plex_sim, path)
    assert plain["size"] == 12
    assert "totalSize" not in plain
    async with session.get(
        plex_sim.url + path + "&X-Plex-Container-Start=10&X-Plex-Container-Size=5",
        headers=_plex_headers(plex_sim),
    ) as reply:
        paged = (await reply.json())["MediaContainer"]
        assert "X-Plex-Container-Total-Size" not in reply.headers
    assert (paged["size"], paged["offset"], "totalSize" in paged) == (2, 10, False)


async def test_plex_sort_is_stable(plex_sim: PlexSimulator, session: aiohttp.ClientSession) -> None:
    """Rows come in ``sort=`` order; ties keep id order."""
    path = f"/library/sections/{_section(plex_sim)}/all?type=4"
    _, by_id = await _plex(session, plex_sim, path + "&sort=id")
    keys = [int(r["ratingKey"]) for r in by_id["Metadata"]]
    assert keys == sorted(keys)
    _, by_added = await _plex(session, plex_sim, path + "&sort=addedAt:desc")
    stamps = [(r["addedAt"], -int(r["ratingKey"])) for r in by_added["Metadata"]]
    assert [s for s, _ in stamps] == sorted((s for s, _ in stamps), reverse=True)


# -- Plex: filters ---------------------------------------------------------------------------


async def test_plex_date_filters_are_strict_encoded_or_raw(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """``>>=`` and ``<<=`` exclude the bound itself, percent-encoded or raw."""
    episodes = sorted(plex_sim.model.all_episodes(), key=lambda e: e.added_at)
    pivot = episodes[50].added_at
    path = f"/library/sections/{_section(plex_sim)}/all?type=4"
    expected_after = sum(1 for e in episodes if e.added_at > pivot)
    expected_before = sum(1 for e in episodes if e.added_at < pivot)
    _, encoded = await _plex(session, plex_sim, f"{path}&addedAt%3E%3E={pivot}", raw=True)
    _, raw = await _plex(session, plex_sim, f"{path}&addedAt>>={pivot}", raw=True)
    _, before = await _plex(session, plex_sim, f"{path}&addedAt%3C%3C={pivot}", raw=True)
    assert encoded["size"] == raw["size"] == expected_after
    assert before["size"] == expected_before


async def test_plex_relative_filter_values_use_the_server_clock(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """``-300``, ``-3w``, ``-1mon`` count back from the simulator's clock."""
    show = _first_show(plex_sim)
    plex_sim.clock.advance(86_400 * 400)  # the server lives a long way in the future
    now = int(plex_sim.clock.now())
    recent = plex_sim.model.add_episode(show.id, 9, 1, added_at=now - 100)
    plex_sim.model.add_episode(show.id, 9, 2, added_at=now - 86_400 * 10)
    plex_sim.model.add_episode(show.id, 9, 3, added_at=now - 86_400 * 25)
    path = f"/library/sections/{_section(plex_sim)}/all?type=4"
    sizes = {}
    for value in ("-300", "-3w", "-1mon"):
        _, found = await _plex(session, plex_sim, f"{path}&addedAt>>={value}", raw=True)
        sizes[value] = found["size"]
        if value == "-300":
            assert [r["ratingKey"] for r in found["Metadata"]] == [recent.id]
    assert sizes == {"-300": 1, "-3w": 2, "-1mon": 3}


async def test_plex_or_by_commas_and_push_or_pop_groups(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """Commas OR values; ``push/or/pop`` groups terms like parentheses; unbalanced is 400."""
    path = f"/library/sections/{_section(plex_sim)}/all?type=4"
    _, commas = await _plex(session, plex_sim, path + "&index=1,3")
    assert {r["index"] for r in commas["Metadata"]} == {1, 3}
    assert commas["size"] == 40
    # (index=1 OR index=3) AND parentIndex=2
    query = "&push=1&index=1&or=1&index=3&pop=1&parentIndex=2"
    _, grouped = await _plex(session, plex_sim, path + query)
    assert {(r["parentIndex"], r["index"]) for r in grouped["Metadata"]} == {(2, 1), (2, 3)}
    assert grouped["size"] == 20
    # index=5 OR (parentIndex=1 AND index=2): nested groups and a top-level or
    query = "&index=5&or=1&push=1&parentIndex=1&index=2&pop=1"
    _, mixed = await _plex(session, plex_sim, path + query)
    pairs = {(r["parentIndex"], r["index"]) for r in mixed["Metadata"]}
    assert pairs == {(1, 5), (2, 5), (1, 2)}
    # The one-call delta form of docs §4: push addedAt or updatedAt or lastViewedAt pop
    mark = int(plex_sim.clock.now()) - 1
    renamed = next(iter(_first_show(plex_sim).episodes.values()))
    plex_sim.clock.advance(5)
    plex_sim.model.rename_episode(renamed.id, "Edited")
    query = f"&push=1&addedAt>>={mark}&or=1&updatedAt>>={mark}&or=1&lastViewedAt>>={mark}&pop=1"
    _, delta = await _plex(session, plex_sim, path + query, raw=True)
    assert [r["ratingKey"] for r in delta["Metadata"]] == [renamed.id]
    for broken in ("&push=1&index=1", "&index=1&pop=1"):
        status, _ = await _plex(session, plex_sim, path + broken)
        assert status == 400


async def test_plex_plain_gte_on_dates_and_unknown_fields(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """Plain ``>=`` on a date is ignored (400 behind a switch); unknown fields 400 (switchable)."""
    path = f"/library/sections/{_section(plex_sim)}/all?type=4"
    future = int(plex_sim.clock.now()) + 86_400
    _, ignored = await _plex(session, plex_sim, f"{path}&addedAt>={future}", raw=True)
    assert ignored["size"] == 100
    plex_sim.gte_on_date_is_400 = True
    assert (await _plex(session, plex_sim, f"{path}&addedAt>={future}", raw=True))[0] == 400
    assert (await _plex(session, plex_sim, f"{path}&color=red"))[0] == 400
    plex_sim.unknown_filter_400 = False
    assert (await _plex(session, plex_sim, f"{path}&color=red"))[1]["size"] == 100


async def test_plex_include_collections_and_guids(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """``includeCollections=0`` is accepted; ``Guid[]`` appears only with ``includeGuids=1``."""
    path = f"/library/sections/{_section(plex_sim)}/all?type=2&includeCollections=0"
    status, plain = await _plex(session, plex_sim, path)
    assert status == 200
    assert plain["size"] == 10
    assert all("Guid" not in row for row in plain["Metadata"])
    _, with_guids = await _plex(session, plex_sim, path + "&includeGuids=1")
    assert all(row["Guid"][0]["id"].startswith("tvdb://") for row in with_guids["Metadata"])


async def test_plex_trimming_params_and_the_ignore_switch(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """``excludeFields``/``excludeElements`` are honoured, unless the server ignores them."""
    path = f"/library/sections/{_section(plex_sim)}/all?type=4&excludeFields=summary"
    path += "&excludeElements=Media"
    _, trimmed = await _plex(session, plex_sim, path)
    assert all("summary" not in r and "Media" not in r for r in trimmed["Metadata"])
    plex_sim.ignore_trimming = True
    _, full = await _plex(session, plex_sim, path)
    assert all("summary" in r and "Media" in r for r in full["Metadata"])


async def test_plex_metadata_list_returns_the_items_that_exist(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """``/library/metadata/a,b,c`` with unknown ids returns the known ones; one unknown id 404s."""
    known = [e.id for e in list(plex_sim.model.all_episodes())[:2]]
    status, container = await _plex(
        session, plex_sim, f"/library/metadata/{known[0]},999999,{known[1]}"
    )
    assert status == 200
    assert [r["ratingKey"] for r in container["Metadata"]] == known
    assert (await _plex(session, plex_sim, "/library/metadata/999999"))[0] == 404
    assert (await _plex(session, plex_sim, "/library/metadata/999998,999999"))[1] == {"size": 0}
    plex_sim.metadata_list_404_on_unknown = True
    partial = f"/library/metadata/{known[0]},999999"
    assert (await _plex(session, plex_sim, partial))[0] == 404
    assert (await _plex(session, plex_sim, f"/library/metadata/{known[0]}"))[0] == 200


async def test_plex_leaves_are_paged_and_images_need_the_token(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """Both ``allLeaves`` routes page like ``/all``; thumbs serve bytes with the token only."""
    show = _first_show(plex_sim)
    paging = "?X-Plex-Container-Start=2&X-Plex-Container-Size=3"
    _, leaves = await _plex(session, plex_sim, f"/library/metadata/{show.id}/allLeaves{paging}")
    assert (leaves["size"], leaves["totalSize"], leaves["offset"]) == (3, 10, 2)
    _, section = await _plex(
        session, plex_sim, f"/library/sections/{_section(plex_sim)}/allLeaves{paging}"
    )
    assert (section["size"], section["totalSize"]) == (3, 100)
    # A show's leaves come in season and episode order unless sorted: an
    # episode inserted early in that order shifts the later pages.
    early = plex_sim.model.add_episode(show.id, 1, 0, title="Pilot")
    _, unsorted = await _plex(session, plex_sim, f"/library/metadata/{show.id}/allLeaves")
    assert unsorted["Metadata"][0]["ratingKey"] == early.id
    _, by_id = await _plex(session, plex_sim, f"/library/metadata/{show.id}/allLeaves?sort=id")
    keys = [int(row["ratingKey"]) for row in by_id["Metadata"]]
    assert keys == sorted(keys)
    assert keys[-1] == int(early.id)
    thumb = f"{plex_sim.url}/library/metadata/{show.id}/thumb/1"
    async with session.get(thumb) as reply:
        assert reply.status == 401
    async with session.get(thumb, headers={"X-Plex-Token": plex_sim.token}) as reply:
        assert reply.content_type == "image/png"
        assert (await reply.read()).startswith(b"\x89PNG")
    # Without artwork: no thumb field (nor the show's on its episodes), and 404.
    show.has_image = early.has_image = False
    _, bare = await _plex(session, plex_sim, f"/library/metadata/{show.id}/allLeaves")
    row = next(r for r in bare["Metadata"] if r["ratingKey"] == early.id)
    assert not {"thumb", "grandparentThumb"} & row.keys()
    assert all("grandparentThumb" not in r and "thumb" in r for r in bare["Metadata"][1:])
    async with session.get(thumb, headers={"X-Plex-Token": plex_sim.token}) as reply:
        assert reply.status == 404


# -- Plex: content model ---------------------------------------------------------------------


async def test_plex_content_changed_counter_and_watch_state(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """Content changes bump contentChangedAt; watch state does not (switch); unwatch drops keys."""

    async def marker() -> int:
        _, container = await _plex(session, plex_sim, "/library/sections")
        section = next(d for d in container["Directory"] if d["key"] == _section(plex_sim))
        return int(section["contentChangedAt"])

    start = await marker()
    assert start == 0  # a new section starts at 0
    episode = next(iter(_first_show(plex_sim).episodes.values()))
    plex_sim.model.set_watched(episode.id)
    assert await marker() == start
    _, watched = await _plex(session, plex_sim, f"/library/metadata/{episode.id}")
    assert watched["Metadata"][0]["viewCount"] == 1
    updated = watched["Metadata"][0]["updatedAt"]
    plex_sim.model.set_watched(episode.id, watched=False)
    _, unwatched = await _plex(session, plex_sim, f"/library/metadata/{episode.id}")
    row = unwatched["Metadata"][0]
    assert "viewCount" not in row
    assert "lastViewedAt" not in row
    assert row["updatedAt"] == updated
    plex_sim.model.rename_episode(episode.id, "New title")
    changed = await marker()
    assert changed > 1_000_000  # the server-wide counter, not a time and not from 0
    plex_sim.watch_bumps_content_changed = True
    plex_sim.model.set_watched(episode.id)
    assert await marker() == changed + 1


async def test_plex_trash_mode(plex_sim: PlexSimulator, session: aiohttp.ClientSession) -> None:
    """Auto-empty off: a deleted file keeps the episode with ``deletedAt``; ``trash=1`` lists it."""
    section = _section(plex_sim)
    show = _first_show(plex_sim)
    first, second = list(show.episodes.values())[:2]
    gone = plex_sim.delete_file(first.id)  # auto-empty on (the PMS default): really gone
    assert plex_sim.model.find_episode(gone.id) is None

    plex_sim.auto_empty_trash = False
    trashed = plex_sim.delete_file(second.id)
    assert trashed.deleted_at is not None
    path = f"/library/sections/{section}/all?type=4"
    _, everything = await _plex(session, plex_sim, path)
    row = next(r for r in everything["Metadata"] if r["ratingKey"] == second.id)
    assert row["deletedAt"] == trashed.deleted_at
    _, only_trash = await _plex(session, plex_sim, path + "&trash=1")
    assert [r["ratingKey"] for r in only_trash["Metadata"]] == [second.id]
    _, no_trash = await _plex(session, plex_sim, path + "&trash=0")
    assert no_trash["size"] == everything["size"] - 1

    async def leaf_count() -> int:
        _, shows = await _plex(session, plex_sim, f"/library/sections/{section}/all?type=2")
        return int(next(r for r in shows["Metadata"] if r["ratingKey"] == show.id)["leafCount"])

    assert await leaf_count() == 8  # 10 - deleted - trashed: trash left out by default
    plex_sim.trash_counts_in_leaf_count = True
    plex_sim.invalidate()
    assert await leaf_count() == 9
    plex_sim.model.empty_trash(section)
    assert plex_sim.model.find_episode(second.id) is None
    assert (await _plex(session, plex_sim, path + "&trash=1"))[1]["size"] == 0


async def test_plex_timeline_and_activities_follow_a_scan(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """A running scan: ``updateQueueSize``, a ``library.update.section`` activity with progress."""
    section = _section(plex_sim)
    _, idle = await _plex(session, plex_sim, f"/library/sections/{section}/timeline")
    assert idle["updateQueueSize"] == 0
    assert (await _plex(session, plex_sim, "/activities"))[1] == {"size": 0}

    plex_sim.start_scan(section, queue=12)
    plex_sim.scan_progress(section, 40, queue=5)
    _, busy = await _plex(session, plex_sim, f"/library/sections/{section}/timeline")
    assert busy["updateQueueSize"] == 5
    _, running = await _plex(session, plex_sim, "/activities")
    (activity,) = running["Activity"]
    assert activity["type"] == "library.update.section"
    assert activity["Context"] == {"librarySectionID": section}
    assert activity["progress"] == 40
    _, sections = await _plex(session, plex_sim, "/library/sections")
    assert next(d for d in sections["Directory"] if d["key"] == section)["refreshing"] is True

    plex_sim.end_scan(section)
    _, done = await _plex(session, plex_sim, f"/library/sections/{section}/timeline")
    assert done["updateQueueSize"] == 0
    assert (await _plex(session, plex_sim, "/activities"))[1] == {"size": 0}
    assert (await _plex(session, plex_sim, "/library/sections/77/timeline"))[0] == 404


async def test_plex_instrumentation_flags_bad_requests(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """Counts per endpoint and client id; requests without JSON, client id, paging or sort named."""
    section = _section(plex_sim)
    token = {"X-Plex-Token": plex_sim.token}
    async with session.get(f"{plex_sim.url}/library/sections/{section}/all", headers=token):
        pass
    await _plex(
        session,
        plex_sim,
        f"/library/sections/{section}/all?sort=id&X-Plex-Container-Start=0&X-Plex-Container-Size=5",
    )
    await _plex(
        session,
        plex_sim,
        f"/library/sections/{section}/all?type=4&addedAt>=1&updatedAt>>=1&sort=id"
        "&X-Plex-Container-Start=0&X-Plex-Container-Size=5",
        raw=True,
    )
    reasons = [reason for _, reason in plex_sim.protocol_violations()]
    assert reasons == [
        "no-json-accept",
        "no-client-id",
        "unpaged-listing",
        "unsorted-listing",
        "plain-gte-on-date",
    ]
    assert plex_sim.count_by_client() == {"": 1, "sim-test": 2}
    assert plex_sim.count_by_route() == {"/library/sections/{section}/all": 3}


async def test_plex_full_and_incremental_sync_send_clean_requests(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """The integration: JSON asked, one client id, every listing paged, on full and delta syncs."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    assert state_of(hass, entry, "sensor", "sync_mode") == "full"
    plex_sim.model.add_episode(_first_show(plex_sim).id, 3, 1)
    plex_sim.model.remove_episode(list(plex_sim.model.all_episodes())[40].id)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    assert state_of(hass, entry, "sensor", "episodes") == "100"

    assert plex_sim.protocol_violations() == []
    assert list(plex_sim.count_by_client()) == ["0f1e2d3c4b5a69788796a5b4c3d2e1f0"]
    routes = plex_sim.count_by_route()
    assert routes["/library/metadata/{key}/allLeaves"] == 1  # the one show that lost an episode
    assert routes["/library/sections/{section}/all"] >= 4  # shows + episodes, then shows + delta
    assert "" not in routes  # no request to a path PMS does not have


async def test_plex_trashed_episodes_settle_without_a_sync_loop(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """A trashed episode (listed, not in ``leafCount``) leaves the mirror once; syncs stay small."""
    plex_sim.auto_empty_trash = False
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    show = _first_show(plex_sim)
    plex_sim.delete_file(next(iter(show.episodes.values())).id)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "99"
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"

    # Another change makes the engine compare every show's counts again: the
    # trashed row must not look like a disagreement (no repair, no full sync).
    other = list(plex_sim.model.libraries[_section(plex_sim)].shows.values())[3]
    plex_sim.model.rename_episode(next(iter(other.episodes.values())).id, "Edited")
    plex_sim.clear_log()
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
    assert plex_sim.count("/allLeaves") == 0
    assert len(plex_sim.requests) == 3  # sections, shows, delta
    assert state_of(hass, entry, "sensor", "episodes") == "99"


async def test_plex_trash_counted_in_leaf_count_is_repaired_once(
    hass: HomeAssistant, plex_sim: PlexSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """Trash counted in ``leafCount``: one full sync settles it, later syncs stay small."""
    plex_sim.auto_empty_trash = False
    plex_sim.trash_counts_in_leaf_count = True
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    show = _first_show(plex_sim)
    plex_sim.delete_file(next(iter(show.episodes.values())).id)
    # The show still lists 20 episodes: the full sync (weekly, or forced) drops
    # the trashed one and keeps the server's listing of 20 beside 19 episodes.
    await hass.services.async_call("episode_sync", "force_full_sync", blocking=True)
    assert state_of(hass, entry, "sensor", "episodes") == "99"

    other = list(plex_sim.model.libraries[_section(plex_sim)].shows.values())[3]
    plex_sim.model.rename_episode(next(iter(other.episodes.values())).id, "Edited")
    for _ in range(2):  # a change, then the hourly show check: never the trashed show again
        plex_sim.clear_log()
        await next_poll(hass, freezer, timedelta(hours=1))
        assert state_of(hass, entry, "sensor", "sync_mode") == "incremental"
        assert plex_sim.count("/allLeaves") == 0
    assert state_of(hass, entry, "sensor", "episodes") == "99"


# -- Jellyfin ---------------------------------------------------------------------------------


async def _jf(
    session: aiohttp.ClientSession,
    sim: JellyfinSimulator,
    path: str,
    token: str,
    **params: str,
) -> tuple[int, Any]:
    """GET a Jellyfin path with a MediaBrowser header; status and JSON (or text)."""
    header = f'MediaBrowser Client="t", Device="t", DeviceId="t", Version="1", Token="{token}"'
    async with session.get(
        sim.url + path, headers={"Authorization": header}, params=params
    ) as reply:
        if reply.content_type == "application/json":
            return reply.status, await reply.json()
        return reply.status, await reply.text()


async def _login(session: aiohttp.ClientSession, sim: JellyfinSimulator) -> tuple[str, str]:
    """Sign in as the first user; return (token, user id)."""
    user, password = next(iter(sim.users.items()))
    header = 'MediaBrowser Client="t", Device="t", DeviceId="dev", Version="1"'
    async with session.post(
        sim.url + "/Users/AuthenticateByName",
        headers={"Authorization": header},
        json={"Username": user, "Pw": password},
    ) as reply:
        body = await reply.json()
    return body["AccessToken"], body["User"]["Id"]


@pytest.fixture
async def jellyfin_10_8(socket_enabled: Any) -> AsyncIterator[JellyfinSimulator]:
    """A Jellyfin 10.8 simulator with 3 shows x 2 seasons x 3 episodes."""
    sim = JellyfinSimulator(version="10.8.13")
    sim.model.generate(shows=3, seasons=2, episodes=3, seed=2)
    await sim.start()
    yield sim
    await sim.close()


async def test_jellyfin_10_8_mode(
    jellyfin_10_8: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """10.8: no /UserViews, userId required on /Items, MinDateLastSaved alone finds nothing."""
    sim = jellyfin_10_8
    token, user_id = await _login(session, sim)
    _, info = await _jf(session, sim, "/System/Info/Public", token)
    assert (info["Version"], info["ProductName"], info["Id"]) == (
        "10.8.13",
        "Jellyfin Server",
        sim.server_id,
    )
    assert (await _jf(session, sim, "/UserViews", token, userId=user_id))[0] == 404
    assert (await _jf(session, sim, f"/Users/{user_id}/Views", token))[0] == 200
    status, text = await _jf(session, sim, "/Items", token, IncludeItemTypes="Episode")
    assert (status, text) == (400, "userId is required")
    since = "2000-01-01T00:00:00Z"
    base = {"userId": user_id, "IncludeItemTypes": "Episode", "Recursive": "true"}
    _, alone = await _jf(session, sim, "/Items", token, **base, MinDateLastSaved=since)
    assert (alone["Items"], alone["TotalRecordCount"]) == ([], 0)
    _, for_user = await _jf(session, sim, "/Items", token, **base, MinDateLastSavedForUser=since)
    assert for_user["TotalRecordCount"] == 18
    _, legacy = await _jf(
        session, sim, f"/Users/{user_id}/Items", token, IncludeItemTypes="Series", Recursive="true"
    )
    assert legacy["TotalRecordCount"] == 3


async def test_jellyfin_delta_parameter_by_version(
    session: aiohttp.ClientSession, socket_enabled: Any
) -> None:
    """10.9/10.10: MinDateLastSaved alone answers 500; 10.11+: both names work."""
    for version, status in (("10.10.7", 500), ("10.11.7", 200), ("12.0.0", 200)):
        sim = JellyfinSimulator(version=version)
        sim.model.generate(shows=1, seasons=1, episodes=2)
        await sim.start()
        try:
            token, user_id = await _login(session, sim)
            got, _ = await _jf(
                session,
                sim,
                "/Items",
                token,
                userId=user_id,
                IncludeItemTypes="Episode",
                MinDateLastSaved="2000-01-01T00:00:00Z",
            )
            assert got == status, version
        finally:
            await sim.close()


async def test_jellyfin_delta_date_without_offset_is_server_local(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """``MinDateLastSaved`` without ``Z`` is read in the server's zone (UTC+2 by default)."""
    token, user_id = await _login(session, jellyfin_sim)
    show = next(iter(jellyfin_sim.model.libraries[tv_library_ids(jellyfin_sim.model)[0]].shows))
    jellyfin_sim.model.add_episode(show, 9, 1)  # saved now
    later = datetime.fromtimestamp(jellyfin_sim.clock.now() + 3600, UTC).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    base = {"userId": user_id, "IncludeItemTypes": "Episode", "Recursive": "true"}
    _, utc = await _jf(session, jellyfin_sim, "/Items", token, **base, MinDateLastSaved=later + "Z")
    _, local = await _jf(session, jellyfin_sim, "/Items", token, **base, MinDateLastSaved=later)
    assert utc["TotalRecordCount"] == 0  # an hour from now
    assert local["TotalRecordCount"] > 0  # an hour ago: the new episode was saved since


async def test_jellyfin_api_keys_have_no_user(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """An API key: /Items needs userId (400), counts and UserData only with one, placeholders."""
    key = jellyfin_sim.create_api_key()
    user_id = next(iter(jellyfin_sim.user_ids.values()))
    library = tv_library_ids(jellyfin_sim.model)[0]
    series = {"ParentId": library, "IncludeItemTypes": "Series", "Fields": "RecursiveItemCount"}
    assert await _jf(session, jellyfin_sim, "/Items", key, **series) == (400, "userId is required")
    _, with_user = await _jf(session, jellyfin_sim, "/Items", key, **series, userId=user_id)
    row = with_user["Items"][0]
    assert (row["RecursiveItemCount"], "UserData" in row) == (10, True)
    _, by_path = await _jf(session, jellyfin_sim, f"/Users/{user_id}/Items", key, **series)
    assert by_path["Items"][0]["RecursiveItemCount"] == 10

    show = _first_show(jellyfin_sim)
    jellyfin_sim.model.add_episode(show.id, 3, 1, virtual=True)
    _, listed = await _jf(session, jellyfin_sim, f"/Shows/{show.id}/Episodes", key)
    assert len(listed["Items"]) == 11
    assert all("UserData" not in item for item in listed["Items"])
    _, real = await _jf(session, jellyfin_sim, f"/Shows/{show.id}/Episodes", key, isMissing="false")
    assert len(real["Items"]) == 10
    # A user without DisplayMissingEpisodes gets no placeholders.
    token, _ = await _login(session, jellyfin_sim)
    jellyfin_sim.display_missing_episodes = False
    _, as_user = await _jf(session, jellyfin_sim, f"/Shows/{show.id}/Episodes", token)
    assert len(as_user["Items"]) == 10

    assert (await _jf(session, jellyfin_sim, "/Items/Latest", key))[0] == 404
    assert (await _jf(session, jellyfin_sim, "/Shows/NextUp", key))[0] == 404
    assert (await _jf(session, jellyfin_sim, "/UserViews", key))[0] == 404
    assert (await _jf(session, jellyfin_sim, "/Items/Latest", key, userId=user_id))[0] == 200
    assert (await _jf(session, jellyfin_sim, "/Items", "not-a-key"))[0] == 401


async def test_jellyfin_items_latest(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """A bare array by DateCreated (newest first), series grouping, played hidden, limit."""
    token, _ = await _login(session, jellyfin_sim)
    shows = list(jellyfin_sim.model.libraries[tv_library_ids(jellyfin_sim.model)[0]].shows.values())
    now = int(jellyfin_sim.clock.now())
    # Two new files in one show, one in another; DateCreated is the file's birth time.
    a1 = jellyfin_sim.model.add_episode(shows[0].id, 5, 1, file_created_at=now - 10)
    a2 = jellyfin_sim.model.add_episode(shows[0].id, 5, 2, file_created_at=now - 5)
    b1 = jellyfin_sim.model.add_episode(shows[1].id, 5, 1, file_created_at=now - 1)
    status, grouped = await _jf(session, jellyfin_sim, "/Items/Latest", token, limit="2")
    assert status == 200
    assert isinstance(grouped, list)
    assert [(i["Type"], i["Id"]) for i in grouped] == [("Episode", b1.id), ("Series", shows[0].id)]
    assert grouped[1]["ChildCount"] == 2
    _, flat = await _jf(
        session, jellyfin_sim, "/Items/Latest", token, groupItems="false", limit="3"
    )
    assert [i["Id"] for i in flat] == [b1.id, a2.id, a1.id]
    jellyfin_sim.model.set_watched(b1.id)
    _, hidden = await _jf(session, jellyfin_sim, "/Items/Latest", token, groupItems="false")
    assert b1.id not in {i["Id"] for i in hidden}
    assert len(hidden) == 20
    _, played = await _jf(session, jellyfin_sim, "/Items/Latest", token, isPlayed="true")
    assert [i["Id"] for i in played] == [b1.id]
    _, movies = await _jf(session, jellyfin_sim, "/Items/Latest", token, includeItemTypes="Movie")
    assert movies == []


async def test_jellyfin_next_up(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """The next unplayed episode after the last played one, per series in progress."""
    token, _ = await _login(session, jellyfin_sim)
    shows = list(jellyfin_sim.model.libraries[tv_library_ids(jellyfin_sim.model)[0]].shows.values())
    first = sorted(shows[0].episodes.values(), key=lambda e: (e.season or 0, e.number or 0))
    second = sorted(shows[1].episodes.values(), key=lambda e: (e.season or 0, e.number or 0))
    jellyfin_sim.model.set_watched(first[0].id)
    jellyfin_sim.model.set_watched(first[2].id)
    jellyfin_sim.clock.advance(60)
    jellyfin_sim.model.set_watched(second[4].id)  # the last of season 1
    status, up = await _jf(session, jellyfin_sim, "/Shows/NextUp", token)
    assert status == 200
    assert [i["Id"] for i in up["Items"]] == [second[5].id, first[3].id]
    _, one = await _jf(session, jellyfin_sim, "/Shows/NextUp", token, seriesId=shows[0].id)
    assert [i["Id"] for i in one["Items"]] == [first[3].id]


async def test_jellyfin_upcoming_includes_placeholders(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """PremiereDate from yesterday on (UTC), by date, virtual episodes included."""
    token, _ = await _login(session, jellyfin_sim)
    show = _first_show(jellyfin_sim)
    today = datetime.fromtimestamp(jellyfin_sim.clock.now(), UTC).date()

    def day(offset: int) -> str:
        return (today + timedelta(days=offset)).isoformat()

    later = jellyfin_sim.model.add_episode(show.id, 4, 2, air_date=day(7), virtual=True)
    yesterday = jellyfin_sim.model.add_episode(show.id, 4, 1, air_date=day(-1))
    jellyfin_sim.model.add_episode(show.id, 3, 9, air_date=day(-2))
    _, upcoming = await _jf(session, jellyfin_sim, "/Shows/Upcoming", token)
    ids = [i["Id"] for i in upcoming["Items"]]
    assert ids[-2:] == [yesterday.id, later.id]
    assert upcoming["Items"][-1]["LocationType"] == "Virtual"
    assert all(i["PremiereDate"][:10] >= day(-1) for i in upcoming["Items"])


async def test_jellyfin_starting_up_answers_503_on_10_11_and_newer(
    session: aiohttp.ClientSession, socket_enabled: Any
) -> None:
    """The start-up switch: 503 + Retry-After on 10.11+, nothing on older versions."""
    for version, status in (("10.10.7", 200), ("10.11.7", 503), ("12.0.0", 503)):
        sim = JellyfinSimulator(version=version, starting_up=True)
        await sim.start()
        try:
            async with session.get(sim.url + "/System/Info/Public") as reply:
                assert reply.status == status, version
                assert ("Retry-After" in reply.headers) == (status == 503)
        finally:
            await sim.close()


async def test_jellyfin_legacy_auth_switch(
    session: aiohttp.ClientSession, socket_enabled: Any
) -> None:
    """X-Emby-*, api_key and the Emby scheme only in legacy mode (off on 12.0); ApiKey always."""
    for version, legacy in (("10.11.7", True), ("12.0.0", False)):
        sim = JellyfinSimulator(version=version)
        await sim.start()
        try:
            token, user_id = await _login(session, sim)
            path = f"{sim.url}/Users/{user_id}/Views"
            ways: list[tuple[dict[str, str], dict[str, str], bool]] = [
                ({"X-Emby-Token": token}, {}, legacy),
                ({"X-Emby-Authorization": f'MediaBrowser Token="{token}"'}, {}, legacy),
                ({"Authorization": f'Emby Token="{token}"'}, {}, legacy),
                ({"Authorization": f'mediabrowser Token="{token}"'}, {}, True),
                ({}, {"api_key": token}, legacy),
                ({}, {"ApiKey": token}, True),
            ]
            for headers, params, accepted in ways:
                async with session.get(path, headers=headers, params=params) as reply:
                    assert reply.status == (200 if accepted else 401), (version, headers, params)
                    if reply.status == 401:
                        assert await reply.read() == b""
        finally:
            await sim.close()


async def test_jellyfin_query_names_and_lists(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """Names and enum values in any case; lists as commas or repeated names."""
    token, user_id = await _login(session, jellyfin_sim)
    library = tv_library_ids(jellyfin_sim.model)[0]
    url = (
        f"{jellyfin_sim.url}/Items?USERID={user_id}&parentid={library}"
        "&includeItemTypes=series&FIELDS=etag&fields=RecursiveItemCount"
    )
    header = f'MediaBrowser Token="{token}"'
    async with session.get(url, headers={"Authorization": header}) as reply:
        body = await reply.json()
    row = body["Items"][0]
    assert body["TotalRecordCount"] == 10
    assert "Etag" in row
    assert row["RecursiveItemCount"] == 10


async def test_jellyfin_fields_gating_and_no_date_last_saved(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """Extra fields only when named; ``DateLastSaved`` never, even when asked for."""
    token, user_id = await _login(session, jellyfin_sim)
    base = {"userId": user_id, "IncludeItemTypes": "Episode,Series", "Recursive": "true"}
    _, plain = await _jf(session, jellyfin_sim, "/Items", token, **base)
    extra = {"DateCreated", "Etag", "Path", "ProviderIds", "Overview", "ParentId"}
    assert all(not extra & item.keys() for item in plain["Items"])
    fields = "DateLastSaved,DateCreated,Etag,Path,ProviderIds,Overview,ParentId"
    _, asked = await _jf(session, jellyfin_sim, "/Items", token, **base, Fields=fields)
    episode = next(i for i in asked["Items"] if i["Type"] == "Episode")
    assert extra <= episode.keys()
    assert all("DateLastSaved" not in item for item in asked["Items"])


async def test_jellyfin_image_tags_follow_the_image_options(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """``ImageTags`` with images on (the default), ``{}`` when none passes; blurhashes always."""
    token, user_id = await _login(session, jellyfin_sim)
    show = _first_show(jellyfin_sim)
    bare, pictured = list(show.episodes.values())[:2]
    bare.has_image = False
    path = f"/Shows/{show.id}/Episodes"

    async def tags(**options: str) -> dict[str, Any]:
        _, reply = await _jf(session, jellyfin_sim, path, token, userId=user_id, **options)
        rows = {row["Id"]: row for row in reply["Items"]}
        assert all("ImageBlurHashes" in row for row in rows.values())
        return {i: rows[i].get("ImageTags") for i in (bare.id, pictured.id)}

    default = await tags()
    assert default[bare.id] == {}
    assert set(default[pictured.id]) == {"Primary"}
    assert await tags(EnableImageTypes="Primary", ImageTypeLimit="1") == default
    assert await tags(EnableImages="false") == {bare.id: None, pictured.id: None}
    assert await tags(EnableImageTypes="Backdrop") == {bare.id: {}, pictured.id: {}}
    assert await tags(ImageTypeLimit="0") == {bare.id: {}, pictured.id: {}}
    header = {"Authorization": f'MediaBrowser Client="t", Token="{token}"'}
    for item, status in ((bare, 404), (pictured, 200)):
        url = f"{jellyfin_sim.url}/Items/{item.id}/Images/Primary"
        async with session.get(url, headers=header) as reply:
            assert reply.status == status


async def test_jellyfin_route_counters(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """Requests are counted per route template."""
    token, user_id = await _login(session, jellyfin_sim)
    jellyfin_sim.clear_log()
    show = _first_show(jellyfin_sim)
    for _ in range(2):
        await _jf(session, jellyfin_sim, f"/Shows/{show.id}/Episodes", token, userId=user_id)
    await _jf(session, jellyfin_sim, "/Shows/Upcoming", token)
    assert jellyfin_sim.count_by_route() == {"/Shows/{sid}/Episodes": 2, "/Shows/Upcoming": 1}


async def test_jellyfin_10_8_server_syncs(
    hass: HomeAssistant, jellyfin_10_8: JellyfinSimulator, freezer: FrozenDateTimeFactory
) -> None:
    """The integration on 10.8: per-user routes, the ForUser delta, a new episode found."""
    entry = await jellyfin_entry(jellyfin_10_8)
    await setup_entry(hass, entry)
    assert state_of(hass, entry, "sensor", "episodes") == "18"
    jellyfin_10_8.model.add_episode(_first_show(jellyfin_10_8).id, 3, 1)
    jellyfin_10_8.clock.advance(60)
    await next_poll(hass, freezer)
    assert state_of(hass, entry, "sensor", "episodes") == "19"
    assert state_of(hass, entry, "sensor", "new_episodes") == "1"
    assert jellyfin_10_8.count("/UserViews") == 0
    items = [r for r in jellyfin_10_8.requests if r.path == "/Items"]
    assert items
    assert all("userId" in r.query for r in items)
    deltas = [r for r in jellyfin_10_8.requests if "MinDateLastSavedForUser" in r.query]
    assert deltas
    assert not any("MinDateLastSaved" in r.query for r in jellyfin_10_8.requests)


async def test_plex_show_fields_and_rating_keys(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """Show ``updatedAt`` ignores episode adds/removes; counts follow; keys are never reused."""
    section = _section(plex_sim)
    show = _first_show(plex_sim)

    async def show_row() -> dict[str, Any]:
        _, shows = await _plex(session, plex_sim, f"/library/sections/{section}/all?type=2")
        return dict(next(r for r in shows["Metadata"] if r["ratingKey"] == show.id))

    before = await show_row()
    plex_sim.clock.advance(3600)
    added = plex_sim.model.add_episode(show.id, 3, 1)
    plex_sim.model.set_watched(added.id)
    after = await show_row()
    assert after["updatedAt"] == before["updatedAt"]
    assert (after["leafCount"], after["childCount"], after["viewedLeafCount"]) == (11, 3, 1)
    assert after["lastViewedAt"] == added.last_viewed_at
    keys = [int(e.id) for e in plex_sim.model.all_episodes()]
    assert all(b - a != 1 for a, b in itertools.pairwise(keys))  # not sequential
    rematched = plex_sim.model.rekey_episode(added.id)
    assert rematched.id != added.id
    assert rematched.guid == added.guid
    assert int(rematched.id) > max(keys)  # a fresh key, never an old one
    assert (await _plex(session, plex_sim, f"/library/metadata/{added.id}"))[0] == 404


async def test_jellyfin_wire_format_and_query_result(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """32-hex ids, 7-digit ``Z`` dates, "0001-01-01…" unset; StartIndex, Limit=0, totals; Date."""
    token, user_id = await _login(session, jellyfin_sim)
    base = {"userId": user_id, "IncludeItemTypes": "Episode", "Recursive": "true"}
    _, page = await _jf(
        session,
        jellyfin_sim,
        "/Items",
        token,
        **base,
        StartIndex="5",
        Limit="3",
        Fields="DateCreated",
    )
    assert (page["StartIndex"], page["TotalRecordCount"], len(page["Items"])) == (5, 100, 3)
    item = page["Items"][0]
    assert len(item["Id"]) == 32
    assert item["Id"] == item["Id"].lower()
    int(item["Id"], 16)
    created = item["DateCreated"]
    assert created.endswith("Z")
    assert len(created.split(".")[1]) == 8  # 7 digits and the Z
    _, probe = await _jf(session, jellyfin_sim, "/Items", token, **base, Limit="0")
    assert (probe["Items"], probe["TotalRecordCount"]) == ([], 100)
    _, cheap = await _jf(
        session, jellyfin_sim, "/Items", token, **base, Limit="4", EnableTotalRecordCount="false"
    )
    assert cheap["TotalRecordCount"] == 4
    _, views = await _jf(session, jellyfin_sim, f"/Users/{user_id}/Views", token)
    assert views["Items"][0]["DateLastMediaAdded"] == "0001-01-01T00:00:00.0000000Z"
    jellyfin_sim.clock.advance(-86_400)
    async with session.get(jellyfin_sim.url + "/System/Info/Public") as reply:
        served = datetime.strptime(reply.headers["Date"], "%a, %d %b %Y %H:%M:%S GMT")
    assert abs(served.replace(tzinfo=UTC).timestamp() - jellyfin_sim.clock.now()) < 5


async def test_jellyfin_save_model_and_series_hints(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """Etag moves on saves only; a first-refresh delay; series re-saved when media-added moves."""
    token, user_id = await _login(session, jellyfin_sim)
    show = _first_show(jellyfin_sim)
    episode = next(iter(show.episodes.values()))

    async def etags() -> tuple[str, str]:
        _, items = await _jf(
            session,
            jellyfin_sim,
            "/Items",
            token,
            userId=user_id,
            Ids=episode.id,
            ParentId=show.id,
            IncludeItemTypes="Episode",
            Recursive="true",  # the episode is the series' grandchild (in a season)
            Fields="Etag",
        )
        _, series = await _jf(
            session,
            jellyfin_sim,
            "/Items",
            token,
            userId=user_id,
            IncludeItemTypes="Series",
            Recursive="true",
            Fields="Etag,DateLastMediaAdded",
        )
        row = next(s for s in series["Items"] if s["Id"] == show.id)
        return items["Items"][0]["Etag"], row["Etag"]

    first = await etags()
    jellyfin_sim.model.set_watched(episode.id)
    assert await etags() == first  # user data never saves the row
    jellyfin_sim.clock.advance(10)
    jellyfin_sim.model.rename_episode(episode.id, "Edited")
    edited = await etags()
    assert edited[0] != first[0]
    assert edited[1] == first[1]  # the series itself was not saved
    now = int(jellyfin_sim.clock.now())
    jellyfin_sim.model.add_episode(show.id, 1, 99, file_created_at=now - 86_400 * 5000)
    assert (await etags())[1] == edited[1]  # an old file does not move DateLastMediaAdded
    jellyfin_sim.model.add_episode(show.id, 1, 100, file_created_at=now)
    assert (await etags())[1] != edited[1]

    jellyfin_sim.first_refresh_delay = 30
    since = datetime.fromtimestamp(jellyfin_sim.clock.now() - 1, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fresh = jellyfin_sim.model.add_episode(show.id, 1, 101)
    delta = {
        "userId": user_id,
        "IncludeItemTypes": "Episode",
        "Recursive": "true",
        "MinDateLastSaved": since,
    }
    _, before = await _jf(session, jellyfin_sim, "/Items", token, **delta)
    assert fresh.id not in {i["Id"] for i in before["Items"]}  # NULL until the first refresh
    jellyfin_sim.clock.advance(31)
    _, after = await _jf(session, jellyfin_sim, "/Items", token, **delta)
    assert fresh.id in {i["Id"] for i in after["Items"]}
    jellyfin_sim.model.remove_episode(fresh.id)
    _, gone = await _jf(session, jellyfin_sim, "/Items", token, **delta)
    assert fresh.id not in {i["Id"] for i in gone["Items"]}  # deletion leaves no trace


async def test_jellyfin_emby_prefix_and_seasons(
    session: aiohttp.ClientSession, socket_enabled: Any
) -> None:
    """``/emby/…`` works up to 10.11 and is 404 on 12.0; ``/Shows/{id}/Seasons`` lists seasons."""
    for version, status in (("10.11.7", 200), ("12.0.0", 404)):
        sim = JellyfinSimulator(version=version)
        sim.model.generate(shows=1, seasons=3, episodes=1)
        await sim.start()
        try:
            token, user_id = await _login(session, sim)
            assert (await _jf(session, sim, f"/emby/Users/{user_id}/Views", token))[0] == status
            show = _first_show(sim)
            _, seasons = await _jf(session, sim, f"/Shows/{show.id}/Seasons", token)
            assert [s["IndexNumber"] for s in seasons["Items"]] == [1, 2, 3]
        finally:
            await sim.close()


async def test_jellyfin_login_rules(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """400 without the client fields, 401 text/plain on bad credentials, URL-decoded values,
    and a new login by the same user and DeviceId revokes the older token."""
    url = jellyfin_sim.url + "/Users/AuthenticateByName"
    user, password = next(iter(jellyfin_sim.users.items()))
    body = {"Username": user, "Pw": password}
    partial = 'MediaBrowser Client="t", Device="t", Version="1"'
    async with session.post(url, headers={"Authorization": partial}, json=body) as reply:
        assert reply.status == 400
    full = 'MediaBrowser Client="Home%20Assistant", Device="t", DeviceId="{}", Version="1"'
    wrong = {"Username": user, "Pw": "nope"}
    async with session.post(
        url, headers={"Authorization": full.format("d%201")}, json=wrong
    ) as reply:
        assert (reply.status, reply.content_type) == (401, "text/plain")
        assert await reply.text() == "Error processing request."
    tokens = []
    for device in ("d%201", "d 1"):  # the same DeviceId once decoded
        async with session.post(
            url, headers={"Authorization": full.format(device)}, json=body
        ) as reply:
            tokens.append((await reply.json())["AccessToken"])
    assert jellyfin_sim.tokens[tokens[1]][1] == "d 1"
    assert (await _jf(session, jellyfin_sim, "/Items", tokens[0]))[0] == 401
    assert (await _jf(session, jellyfin_sim, "/Shows/Upcoming", tokens[1]))[0] == 200


async def test_plex_client_leaves_trashed_episodes_out(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """The client's parser: a row with ``deletedAt`` is no mirrored episode (docs: plex §8)."""
    plex_sim.auto_empty_trash = False
    show = _first_show(plex_sim)
    trashed = plex_sim.delete_file(next(iter(show.episodes.values())).id)
    client = PlexClient(session, plex_sim.url, plex_sim.token, client_id="c")
    section = _section(plex_sim)
    listed = {e.id for e in episodes_of(await client.episodes(section))}
    assert trashed.id not in listed
    assert len(listed) == 99
    repaired = episodes_of(await client.show_episodes(section, show.id))
    shows = {s.id: s for s in await client.shows(section)}
    assert len(repaired) == shows[show.id].episode_count == 9


# -- both: the Date header on every answer (jellyfin §10 item 15) ----------------------------


def _served_at(reply: aiohttp.ClientResponse) -> float:
    return parsedate_to_datetime(reply.headers["Date"]).timestamp()


async def test_faults_and_unrouted_paths_carry_the_server_date(
    media_sim: PlexSimulator | JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """A slow, malformed or truncated answer and aiohttp's own 404/405 are dated by the
    simulated clock (never the host's); a reset sends no answer at all."""
    sim = media_sim
    sim.clock.advance(-3 * 86_400)  # the server runs three days behind the host
    headers = _plex_headers(sim) if isinstance(sim, PlexSimulator) else {}
    path = "/library/sections" if isinstance(sim, PlexSimulator) else "/System/Info/Public"
    for fault in (
        Fault(kind="timeout", delay=0.05),
        Fault(kind="malformed"),
        Fault(kind="status", status=503),
    ):
        sim.add_fault(fault)
        async with session.get(sim.url + path, headers=headers) as reply:
            assert abs(_served_at(reply) - sim.clock.now()) < 5, fault.kind
    sim.add_fault(Fault(kind="truncated"))
    async with session.get(sim.url + path, headers=headers) as reply:
        assert abs(_served_at(reply) - sim.clock.now()) < 5
        with pytest.raises(aiohttp.ClientPayloadError):
            await reply.read()
    sim.add_fault(Fault(kind="reset", times=2))  # aiohttp retries once on a reused connection
    with pytest.raises(aiohttp.ClientError):
        async with session.get(sim.url + path, headers=headers) as reply:
            await reply.read()
    # Jellyfin's unknown paths and wrong methods are aiohttp's own answers.
    for method, unknown in (("GET", "/no/such/path"), ("DELETE", path)):
        async with session.request(method, sim.url + unknown, headers=headers) as reply:
            assert reply.status in (404, 405)
            assert abs(_served_at(reply) - sim.clock.now()) < 5, (method, unknown)
    assert abs(sim.clock.now() - time.time()) > 86_400


async def test_socket_upgrades_carry_the_server_date(
    media_sim: PlexSimulator | JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """The websocket's 101 is dated by the simulated clock too."""
    sim = media_sim
    sim.clock.advance(86_400)
    if isinstance(sim, PlexSimulator):
        url, params = "/:/websockets/notifications", {"X-Plex-Token": sim.token}
    else:
        url, params = "/socket", {"ApiKey": (await _login(session, sim))[0]}
    ws = await session.ws_connect(websocket_url(sim.url) + url, params=params)
    try:
        assert ws._response is not None
        served = parsedate_to_datetime(ws._response.headers["Date"]).timestamp()
        assert abs(served - sim.clock.now()) < 5
    finally:
        await ws.close()


# -- Jellyfin: one set of API keys (checklist 5 and 17) ---------------------------------------


async def test_jellyfin_api_keys_open_the_socket_but_get_no_library_changed(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """A ``create_api_key`` key opens ``/socket`` (query or header) and gets keepalives only;
    the user socket gets ``LibraryChanged``. ``push.api_keys`` is the server's own set."""
    push = jellyfin_sim.push
    push.library_update_duration = 0.01
    key = jellyfin_sim.create_api_key()
    assert push.api_keys is jellyfin_sim.api_keys
    push.api_keys.add("added-through-the-alias")
    user_id = next(iter(jellyfin_sim.user_ids.values()))
    for api_key in (key, "added-through-the-alias"):
        status, _ = await _jf(session, jellyfin_sim, "/Items", api_key, userId=user_id)
        assert status == 200
    token, _ = await _login(session, jellyfin_sim)
    url = websocket_url(jellyfin_sim.url) + "/socket"
    user = await session.ws_connect(url, params={"ApiKey": token})
    by_query = await session.ws_connect(url, params={"ApiKey": key})
    by_header = await session.ws_connect(
        url, headers={"Authorization": f'MediaBrowser Client="x", Token="{key}"'}
    )
    try:
        for ws in (user, by_query, by_header):
            hello = await ws.receive_json(timeout=5)
            assert (hello["MessageType"], hello["Data"]) == ("ForceKeepAlive", 60)
        episode = jellyfin_sim.model.add_episode(_first_show(jellyfin_sim).id, 3, 1)
        changed = await user.receive_json(timeout=5)
        assert changed["MessageType"] == "LibraryChanged"
        assert changed["Data"]["ItemsAdded"] == [episode.id]
        for ws in (by_query, by_header):
            with pytest.raises(TimeoutError):
                await ws.receive_json(timeout=0.3)
    finally:
        for ws in (user, by_query, by_header):
            await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(url, params={"ApiKey": "revoked-or-never-made"})
    assert refused.value.status == 403


# -- Jellyfin: /Items structure, location filters, seasons (checklist 13, 16) ------------------


def _ids(body: dict[str, Any]) -> list[str]:
    return [item["Id"] for item in body["Items"]]


async def test_jellyfin_items_recursion_and_parents(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """Without ``Recursive=true`` a parent gives its direct children; a season is a parent;
    no types means every kind; no parent and no recursion gives the libraries."""
    sim = jellyfin_sim
    token, user_id = await _login(session, sim)
    library = tv_library_ids(sim.model)[0]
    show = _first_show(sim)
    season_one = show.season_ids[1]

    async def items(**params: str) -> dict[str, Any]:
        status, body = await _jf(session, sim, "/Items", token, userId=user_id, **params)
        assert status == 200, params
        return dict(body)

    direct = await items(ParentId=library)
    assert {i["Type"] for i in direct["Items"]} == {"Series"}
    assert direct["TotalRecordCount"] == 10
    # Types with a library parent but no Recursive: its children are no episodes.
    assert (await items(ParentId=library, IncludeItemTypes="Episode"))["TotalRecordCount"] == 0
    sim.library_types_imply_recursive = True  # what HEAD does (docs: jellyfin §2)
    assert (await items(ParentId=library, IncludeItemTypes="Episode"))["TotalRecordCount"] == 100
    sim.library_types_imply_recursive = False
    everything = await items(ParentId=library, Recursive="TRUE")
    kinds = [i["Type"] for i in everything["Items"]]
    assert (kinds.count("Series"), kinds.count("Season"), kinds.count("Episode")) == (10, 20, 100)

    seasons = await items(ParentId=library, IncludeItemTypes="Season", Recursive="true")
    assert seasons["TotalRecordCount"] == 20
    first = next(s for s in seasons["Items"] if s["Id"] == season_one)
    assert (first["Name"], first["IndexNumber"], first["SeriesId"]) == ("Season 1", 1, show.id)
    assert "UserData" in first
    assert "Etag" not in first  # fields gating applies to seasons too

    of_series = await items(ParentId=show.id)
    assert _ids(of_series) == [show.season_ids[1], show.season_ids[2]]
    assert (await items(ParentId=show.id, IncludeItemTypes="Episode"))["TotalRecordCount"] == 0
    assert (await items(ParentId=show.id, IncludeItemTypes="Episode", Recursive="true"))[
        "TotalRecordCount"
    ] == 10
    of_season = await items(ParentId=season_one, Fields="ParentId")
    expected = [e.id for e in show.episodes.values() if e.season == 1]
    assert _ids(of_season) == expected
    assert {i["ParentId"] for i in of_season["Items"]} == {season_one}
    assert _ids(await items(ParentId=season_one, Recursive="true")) == expected

    # No parent, no recursion: the user's root folder, whatever the types say.
    root = await items(IncludeItemTypes="Series")
    assert {i["Type"] for i in root["Items"]} == {"CollectionFolder"}
    # Ids find items anywhere without a parent; with one, the parent still filters.
    episode = expected[0]
    assert _ids(await items(Ids=episode)) == [episode]
    assert _ids(await items(Ids=episode, ParentId=show.id)) == []
    assert _ids(await items(Ids=episode, ParentId=show.id, Recursive="true")) == [episode]
    # An unknown parent is a bad request (ArgumentException), not a 404.
    assert (await _jf(session, sim, "/Items", token, ParentId="f" * 32, userId=user_id))[0] == 400


async def test_jellyfin_location_types_and_is_missing(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """``LocationTypes`` follows ItemsController's IsVirtualItem rule; ``IsMissing`` in any case."""
    sim = jellyfin_sim
    token, user_id = await _login(session, sim)
    show = _first_show(sim)
    placeholder = sim.model.add_episode(show.id, 2, 6, virtual=True)
    base = {
        "userId": user_id,
        "ParentId": show.id,
        "IncludeItemTypes": "Episode",
        "Recursive": "true",
    }
    cases = [
        ({}, 11),
        ({"ExcludeLocationTypes": "Virtual"}, 10),
        ({"excludelocationtypes": "virtual"}, 10),
        ({"LocationTypes": "FileSystem,Remote,Offline"}, 10),
        ({"LocationTypes": "Virtual"}, 1),
        ({"LocationTypes": "FileSystem,Virtual"}, 1),  # names Virtual: only placeholders
        ({"LocationTypes": "FileSystem,Remote,Offline,Virtual"}, 11),  # all four: no filter
        ({"IsMissing": "false"}, 10),
        ({"ISMISSING": "False"}, 10),
        ({"isMissing": "FALSE"}, 10),
        ({"IsMissing": "true"}, 1),
    ]
    for extra, total in cases:
        _, body = await _jf(session, sim, "/Items", token, **base, **extra)
        assert body["TotalRecordCount"] == total, extra
        if total == 1:
            assert _ids(body) == [placeholder.id]
            assert body["Items"][0]["LocationType"] == "Virtual"


async def test_jellyfin_show_seasons_route(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """``/Shows/{id}/Seasons``: placeholders unless ``isMissing=false``, user data with a
    user (``userId`` for an API key), Specials by name, and no paging (GetSeasons has none)."""
    sim = jellyfin_sim
    show = _first_show(sim)
    sim.model.add_episode(show.id, 0, 1, title="Behind the scenes")
    sim.model.add_episode(show.id, 3, 1, virtual=True)  # a season of placeholders only
    key = sim.create_api_key()
    user_id = next(iter(sim.user_ids.values()))
    path = f"/Shows/{show.id}/Seasons"

    _, listed = await _jf(session, sim, path, key)
    assert [s["IndexNumber"] for s in listed["Items"]] == [0, 1, 2, 3]
    assert [s["LocationType"] for s in listed["Items"]][-1] == "Virtual"
    assert listed["Items"][0]["Name"] == "Specials"
    assert all("UserData" not in s for s in listed["Items"])
    for spelling in ("false", "False", "FALSE"):
        _, real = await _jf(session, sim, path, key, isMissing=spelling)
        assert [s["IndexNumber"] for s in real["Items"]] == [0, 1, 2], spelling
    _, only_missing = await _jf(session, sim, path, key, IsMissing="true")
    assert [s["IndexNumber"] for s in only_missing["Items"]] == [3]
    _, no_specials = await _jf(session, sim, path, key, isMissing="false", isSpecialSeason="false")
    assert [s["IndexNumber"] for s in no_specials["Items"]] == [1, 2]

    _, with_user = await _jf(
        session, sim, path, key, userId=user_id, Fields="RecursiveItemCount,ChildCount,Etag"
    )
    season_one = with_user["Items"][1]
    assert season_one["UserData"]["UnplayedItemCount"] == 5
    assert (season_one["RecursiveItemCount"], season_one["ChildCount"]) == (5, 5)
    assert len(season_one["Etag"]) == 32
    # A user without DisplayMissingEpisodes gets no placeholder season.
    token, _ = await _login(session, sim)
    sim.display_missing_episodes = False
    _, as_user = await _jf(session, sim, path, token)
    assert [s["IndexNumber"] for s in as_user["Items"]] == [0, 1, 2]
    assert "UserData" in as_user["Items"][0]
    # Paging parameters are not the route's: the whole list, StartIndex 0.
    _, paged = await _jf(session, sim, path, token, StartIndex="1", Limit="1")
    assert (len(paged["Items"]), paged["TotalRecordCount"], paged["StartIndex"]) == (3, 3, 0)
    assert (await _jf(session, sim, f"/Shows/{'0' * 32}/Seasons", token))[0] == 404


async def test_jellyfin_show_episodes_by_season(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """``seasonId`` (404 when unknown) or ``season`` narrows ``/Shows/{id}/Episodes``."""
    sim = jellyfin_sim
    token, user_id = await _login(session, sim)
    show = _first_show(sim)
    path = f"/Shows/{show.id}/Episodes"
    in_two = [e.id for e in show.episodes.values() if e.season == 2]
    _, by_id = await _jf(session, sim, path, token, seasonId=show.season_ids[2], userId=user_id)
    assert _ids(by_id) == in_two
    _, by_number = await _jf(session, sim, path, token, season="2", userId=user_id)
    assert _ids(by_number) == in_two
    assert (await _jf(session, sim, path, token, seasonId="0" * 32))[0] == 404


# -- Jellyfin: the save model's hooks (checklist 9, 12) ----------------------------------------


async def test_jellyfin_replaced_file_and_edited_series(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """A replaced file sets DateCreated again and saves the row; the series moves only if
    its DateLastMediaAdded does, or when the series itself is edited."""
    sim = jellyfin_sim
    token, user_id = await _login(session, sim)
    show = _first_show(sim)
    ordered = sorted(show.episodes.values(), key=lambda e: e.file_created_at or 0)
    episode = ordered[0]  # not the newest file: its date alone never moves the series

    async def state() -> tuple[dict[str, Any], dict[str, Any]]:
        fields = "Etag,DateCreated,DateLastMediaAdded"
        _, body = await _jf(
            session,
            sim,
            "/Items",
            token,
            userId=user_id,
            Ids=f"{episode.id},{show.id}",
            Recursive="true",
            Fields=fields,
        )
        rows = {i["Id"]: i for i in body["Items"]}
        return rows[episode.id], rows[show.id]

    def since(offset: float = 0) -> str:
        moment = datetime.fromtimestamp(sim.clock.now() + offset, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    before_episode, before_series = await state()
    sim.clock.advance(60)
    mark = since(-1)
    old_copy = int(sim.clock.now()) - 86_400 * 4000  # copied with its timestamps kept
    sim.model.replace_file(episode.id, file_created_at=old_copy)
    episode_row, series_row = await state()
    assert episode_row["DateCreated"].startswith(
        datetime.fromtimestamp(old_copy, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    )
    assert episode_row["Etag"] != before_episode["Etag"]
    assert series_row["Etag"] == before_series["Etag"]
    delta = {"userId": user_id, "Recursive": "true", "MinDateLastSaved": mark}
    _, changed = await _jf(session, sim, "/Items", token, **delta)
    assert _ids(changed) == [episode.id]

    sim.clock.advance(60)
    sim.model.replace_file(episode.id)  # a fresh file: born now, the newest of the series
    episode_row, series_row = await state()
    assert episode_row["DateCreated"] == series_row["DateLastMediaAdded"]
    assert abs(_epoch(episode_row["DateCreated"]) - sim.clock.now()) < 2
    assert series_row["Etag"] != before_series["Etag"]

    sim.clock.advance(60)
    mark = since(-1)
    saved_series = series_row["Etag"]
    sim.model.edit_show(show.id, title="Renamed")
    episode_after, series_after = await state()
    assert series_after["Etag"] != saved_series
    assert series_after["Name"] == "Renamed"
    assert episode_after["Etag"] == episode_row["Etag"]  # the episodes were not saved
    _, edited = await _jf(session, sim, "/Items", token, **{**delta, "MinDateLastSaved": mark})
    assert _ids(edited) == [show.id]


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def test_jellyfin_delta_with_seasons(
    jellyfin_sim: JellyfinSimulator, session: aiohttp.ClientSession
) -> None:
    """The §9 step 2 delta (``Episode,Season``) finds a new season and its episode."""
    sim = jellyfin_sim
    token, user_id = await _login(session, sim)
    show = _first_show(sim)
    sim.clock.advance(60)
    mark = datetime.fromtimestamp(sim.clock.now() - 1, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    episode = sim.model.add_episode(show.id, 3, 1)
    _, body = await _jf(
        session,
        sim,
        "/Items",
        token,
        userId=user_id,
        IncludeItemTypes="Episode,Season",
        Recursive="true",
        ExcludeLocationTypes="Virtual",
        MinDateLastSaved=mark,
    )
    assert [(i["Type"], i["Id"]) for i in body["Items"]] == [
        ("Season", show.season_ids[3]),
        ("Episode", episode.id),
    ]


async def test_jellyfin_both_delta_parameters_by_version(
    session: aiohttp.ClientSession, socket_enabled: Any
) -> None:
    """Both names given: before 10.11 the ForUser value is the bound (both SQL clauses use
    its placeholder, docs: jellyfin §4.4); from 10.11 both bounds apply."""
    old, future = "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"
    for version, old_for_user, old_plain in (
        ("10.8.13", 6, 0),
        ("10.10.7", 6, 0),
        ("10.11.7", 0, 0),
        ("12.0.0", 0, 0),
    ):
        sim = JellyfinSimulator(version=version)
        sim.model.generate(shows=1, seasons=2, episodes=3)
        await sim.start()
        try:
            token, user_id = await _login(session, sim)
            base = {"userId": user_id, "IncludeItemTypes": "Episode", "Recursive": "true"}
            totals = []
            for for_user, plain in ((old, future), (future, old)):
                _, body = await _jf(
                    session,
                    sim,
                    "/Items",
                    token,
                    **base,
                    MinDateLastSavedForUser=for_user,
                    MinDateLastSaved=plain,
                )
                totals.append(body["TotalRecordCount"])
            assert totals == [old_for_user, old_plain], version
        finally:
            await sim.close()


# -- Jellyfin: the real client against short pages and a skewed clock ----------------------


async def test_jellyfin_client_with_a_server_page_cap(
    session: aiohttp.ClientSession, socket_enabled: Any
) -> None:
    """Fewer items than asked (``page_cap``): the real client's full listing and delta
    still get every item, in the pages the server really serves."""
    sim = JellyfinSimulator(page_cap=7)
    library = sim.model.generate(shows=9, seasons=2, episodes=2)
    await sim.start()
    try:
        client = JellyfinClient(session, sim.url, device_id="c" * 32)
        await client.login("alice", "secret")
        shows = await client.shows(library.id)
        assert sorted(s.id for s in shows) == sorted(library.shows)
        episodes = episodes_of(await client.episodes(library.id))
        assert sorted(e.id for e in episodes) == sorted(e.id for e in library.episodes())
        pages = [
            r
            for r in sim.requests
            if r.path == "/Items" and r.query.get("IncludeItemTypes") == "Episode"
        ]
        assert len(pages) == -(-36 // 7)
        assert all(int(r.query["Limit"]) >= 7 for r in pages)

        sim.clock.advance(600)
        since = int(sim.clock.now()) - 1
        show = next(iter(library.shows.values()))
        added = [sim.model.add_episode(show.id, 3, n).id for n in range(1, 11)]
        sim.clear_log()
        changed = episodes_of(await client.changed_episodes([library.id], since))
        assert sorted(e.id for e in changed) == sorted(added)
        deltas = [r for r in sim.requests if "MinDateLastSaved" in r.query]
        assert len(deltas) == -(-10 // 7)

        # A series' episodes are paged by their controller, which has no cap
        # and always counts them all (TvShowsController.GetEpisodes).
        path = f"/Shows/{show.id}/Episodes"
        _, body = await _jf(session, sim, path, str(client.token), Limit="9")
        assert (len(body["Items"]), body["TotalRecordCount"]) == (9, 14)
        _, body = await _jf(
            session, sim, path, str(client.token), StartIndex="12", EnableTotalRecordCount="false"
        )
        assert (len(body["Items"]), body["TotalRecordCount"]) == (2, 14)
    finally:
        await sim.close()


@pytest.mark.parametrize("skew", [-86_400, 86_400])
async def test_jellyfin_client_clock_follows_the_server(
    session: aiohttp.ClientSession, socket_enabled: Any, skew: int
) -> None:
    """The client reads the server's clock from ``Date``; a delta cursor from it finds a
    new episode that a cursor from Home Assistant's own clock misses (or over-fetches)."""
    sim = JellyfinSimulator(clock=SimClock(offset=skew))
    library = sim.model.generate(shows=2, seasons=1, episodes=3)
    await sim.start()
    try:
        client = JellyfinClient(session, sim.url, device_id="c" * 32)
        await client.login("alice", "secret")
        client.reset_stats()
        await client.libraries()
        assert client.request_count == 1
        assert client.server_clock is not None
        assert abs(client.server_clock - sim.clock.now()) < 5
        cursor = client.server_clock - 300
        sim.clock.advance(60)
        new = sim.model.add_episode(next(iter(library.shows)), 2, 1)
        changed = episodes_of(await client.changed_episodes([library.id], cursor))
        assert [e.id for e in changed] == [new.id]
        by_our_clock = episodes_of(await client.changed_episodes([library.id], int(time.time())))
        assert [e.id for e in by_our_clock] == ([] if skew < 0 else [new.id])
    finally:
        await sim.close()


def test_generator_extras_are_opt_in_and_deterministic() -> None:
    """``specials``/``unnumbered`` add season 0 and index-less episodes; off by default,
    and the default library is the same with or without the parameters."""
    clock = SimClock()

    def build(**extras: int) -> SimLibraryModel:
        counter = itertools.count(1)
        model = SimLibraryModel(clock=clock, id_factory=lambda: f"{next(counter):08d}")
        model.generate(shows=3, seasons=2, episodes=2, seed=4, **extras)
        return model

    def rows(model: SimLibraryModel) -> list[tuple[Any, ...]]:
        return [(e.id, e.show_id, e.season, e.number, e.title) for e in model.all_episodes()]

    assert rows(build()) == rows(build(specials=0, unnumbered=0))
    extras = build(specials=2, unnumbered=1)
    assert rows(extras) == rows(build(specials=2, unnumbered=1))
    episodes = list(extras.all_episodes())
    assert len(episodes) == 3 * (2 * 2 + 2 + 1)
    assert sum(e.season == 0 for e in episodes) == 6
    unnumbered = [e for e in episodes if e.number is None]
    assert len(unnumbered) == 3
    assert all(e.season == 1 for e in unnumbered)
    assert len({e.guid for e in episodes}) == len(episodes)
    assert all(
        0 in show.season_ids for lib in extras.libraries.values() for show in lib.shows.values()
    )


# -- Plex: auth before routing, operators, recomputed seasons ----------------------------------


async def test_plex_unknown_paths_need_the_token_first(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """Auth comes before routing: an unknown path is a 401 (HTML) without the token,
    whatever the method or Accept; with it, the HTML 404."""
    for method, path in (("GET", "/no/such/path"), ("POST", "/library/sections"), ("GET", "/x")):
        for headers in (JSON, {"Accept": "*/*"}, {**JSON, "X-Plex-Token": "wrong"}):
            async with session.request(method, plex_sim.url + path, headers=headers) as reply:
                assert (reply.status, reply.content_type) == (401, "text/html"), (method, path)
                assert await reply.text() == UNAUTHORIZED_HTML
        async with session.request(
            method, plex_sim.url + path, headers=_plex_headers(plex_sim)
        ) as reply:
            assert reply.status == 404
            assert await reply.text() == NOT_FOUND_HTML
    async with session.get(plex_sim.url + "/identity", headers=JSON) as reply:
        assert reply.status == 200


async def test_plex_integer_and_string_operators(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """Integers: strict ``>>=``/``<<=``, inclusive ``>=``/``<=``, ``!=``; strings: contains,
    ``==``, ``!==``, begins (``<=``) and ends (``>=``) with, raw or encoded (DESC §Operators)."""
    path = f"/library/sections/{_section(plex_sim)}/all?type=4"
    episodes = [e for e in plex_sim.model.all_episodes() if not e.virtual]

    async def keys(query: str) -> set[str]:
        status, container = await _plex(session, plex_sim, path + query, raw=True)
        assert status == 200, query
        return {r["ratingKey"] for r in container.get("Metadata", [])}

    def where(test: Callable[[SimEpisode], bool]) -> set[str]:
        return {e.id for e in episodes if test(e)}

    assert await keys("&index>=3") == where(lambda e: (e.number or 0) >= 3)
    assert await keys("&index%3E=3") == where(lambda e: (e.number or 0) >= 3)
    assert await keys("&index<=2") == where(lambda e: e.number is not None and e.number <= 2)
    assert await keys("&index>>=3") == where(lambda e: (e.number or 0) > 3)
    assert await keys("&index<<=3") == where(lambda e: e.number is not None and e.number < 3)
    assert await keys("&index!=1,2") == where(lambda e: e.number not in (None, 1, 2))
    assert await keys("&parentIndex>=2&index<=1") == where(
        lambda e: e.season == 2 and e.number == 1
    )

    # No generated title has this word (they are made of library._WORDS).
    target = plex_sim.model.rename_episode(episodes[0].id, "Lighthouse Keeper")
    other = plex_sim.model.rename_episode(episodes[1].id, "The Old Lighthouse")
    assert await keys("&title=lighthouse") == {target.id, other.id}  # contains, any case
    assert await keys("&title==Lighthouse%20Keeper") == {target.id}
    assert await keys("&title%3D=Lighthouse%20Keeper") == {target.id}  # plexapi's encoding
    assert await keys("&title==Lighthouse") == set()
    assert await keys("&title<=Lighthouse") == {target.id}  # begins with
    assert await keys("&title>=Lighthouse") == {other.id}  # ends with
    assert await keys("&title!=lighthouse") == where(lambda e: e.id not in (target.id, other.id))
    assert await keys("&title!==Lighthouse%20Keeper") == where(lambda e: e.id != target.id)
    for bad in ("&title>>=a", "&index==3", "&trash>=1", "&addedAt==5", "&index>=x"):
        assert (await _plex(session, plex_sim, path + bad, raw=True))[0] == 400, bad


async def test_plex_date_equality_operators(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """``=``/``!=`` on a date compare the epoch value; relative values work for them too."""
    path = f"/library/sections/{_section(plex_sim)}/all?type=4"
    episode = next(iter(_first_show(plex_sim).episodes.values()))
    stamp = episode.added_at
    same = {e.id for e in plex_sim.model.all_episodes() if e.added_at == stamp}
    _, equal = await _plex(session, plex_sim, f"{path}&addedAt={stamp}", raw=True)
    assert {r["ratingKey"] for r in equal["Metadata"]} == same
    _, other = await _plex(session, plex_sim, f"{path}&addedAt!={stamp}", raw=True)
    assert other["size"] == 100 - len(same)
    # A date the row lacks matches nothing, ``!=`` included (lastViewedAt: nothing watched).
    _, unwatched = await _plex(session, plex_sim, f"{path}&lastViewedAt!=1", raw=True)
    assert unwatched["size"] == 0
    plex_sim.clock.advance(3600)
    fresh = plex_sim.model.add_episode(_first_show(plex_sim).id, 3, 1)
    _, ahead = await _plex(session, plex_sim, f"{path}&addedAt<<=%2B60", raw=True)  # +60 s
    assert fresh.id in {r["ratingKey"] for r in ahead["Metadata"]}


async def test_plex_emptied_season_leaves_child_count_and_listings(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """The last episode of a season removed: ``childCount`` drops, ``type=3`` and
    ``/children`` stop listing it; a season that comes back gets a new key."""
    section = _section(plex_sim)
    show = _first_show(plex_sim)
    plex_sim.model.add_episode(show.id, 0, 1, title="Special")  # Specials count too

    async def show_row() -> dict[str, Any]:
        _, shows = await _plex(session, plex_sim, f"/library/sections/{section}/all?type=2")
        return dict(next(r for r in shows["Metadata"] if r["ratingKey"] == show.id))

    async def season_keys() -> list[str]:
        _, seasons = await _plex(session, plex_sim, f"/library/sections/{section}/all?type=3")
        return [r["ratingKey"] for r in seasons["Metadata"] if r["parentRatingKey"] == show.id]

    assert (await show_row())["childCount"] == 3
    _, children = await _plex(session, plex_sim, f"/library/metadata/{show.id}/children")
    assert [r["title"] for r in children["Metadata"]] == ["Specials", "Season 1", "Season 2"]
    old_key = show.season_ids[2]
    assert old_key in await season_keys()
    for episode in [e for e in show.episodes.values() if e.season == 2]:
        plex_sim.model.remove_episode(episode.id)
    assert (await show_row())["childCount"] == 2
    assert old_key not in await season_keys()
    _, children = await _plex(session, plex_sim, f"/library/metadata/{show.id}/children")
    assert [r["index"] for r in children["Metadata"]] == [0, 1]
    assert (await _plex(session, plex_sim, f"/library/metadata/{old_key}/children"))[0] == 404

    back = plex_sim.model.add_episode(show.id, 2, 1)
    assert show.season_ids[2] != old_key
    assert (await show_row())["childCount"] == 3
    _, listed = await _plex(session, plex_sim, f"/library/metadata/{back.id}")
    assert listed["Metadata"][0]["parentRatingKey"] == show.season_ids[2]
    # A trashed episode is still listed, so its season stays.
    plex_sim.auto_empty_trash = False
    plex_sim.delete_file(back.id)
    assert (await show_row())["childCount"] == 3


async def test_plex_show_edit_and_file_replacement(
    plex_sim: PlexSimulator, session: aiohttp.ClientSession
) -> None:
    """Editing the show moves its ``updatedAt`` and ``contentChangedAt``; a replaced file keeps
    the episode's key and ``addedAt`` and moves its ``updatedAt``."""
    section = _section(plex_sim)
    show = _first_show(plex_sim)
    episode = next(iter(show.episodes.values()))

    async def marker() -> int:
        _, container = await _plex(session, plex_sim, "/library/sections")
        return int(
            next(d for d in container["Directory"] if d["key"] == section)["contentChangedAt"]
        )

    start = await marker()
    plex_sim.clock.advance(3600)
    plex_sim.model.edit_show(show.id, title="Retitled")
    _, shows = await _plex(session, plex_sim, f"/library/sections/{section}/all?type=2")
    row = next(r for r in shows["Metadata"] if r["ratingKey"] == show.id)
    assert row["title"] == "Retitled"
    assert abs(row["updatedAt"] - plex_sim.clock.now()) < 5
    assert await marker() > start

    added = episode.added_at
    plex_sim.clock.advance(60)
    plex_sim.model.replace_file(episode.id)
    _, item = await _plex(session, plex_sim, f"/library/metadata/{episode.id}")
    replaced = item["Metadata"][0]
    assert replaced["addedAt"] == added
    assert abs(replaced["updatedAt"] - plex_sim.clock.now()) < 5
