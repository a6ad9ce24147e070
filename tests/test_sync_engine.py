"""The sync engine on its own, against an in-memory backend.

The engine has no Home Assistant imports, so its decisions (when to go full,
what a re-key is, which ``added_at`` an episode gets, when counts are
inconsistent) are tested here directly; the HTTP path is covered by the tests
that drive Home Assistant against the simulators.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import pytest

from custom_components.episode_sync import sync as sync_module
from custom_components.episode_sync.api.errors import (
    MediaServerConnectionError,
    MediaServerProtocolError,
    ServerChangedError,
)
from custom_components.episode_sync.api.models import (
    At,
    Episode,
    EpisodeRow,
    Library,
    ServerInfo,
    ServerKind,
    Show,
    episode_row,
)
from custom_components.episode_sync.sync import (
    CURSOR_OVERLAP,
    REMOVED_FOR,
    SHOWS_CHECK_INTERVAL,
    FullSyncReason,
    Mirror,
    ShowMirror,
    SyncEngine,
    SyncMode,
    SyncResult,
    SyncState,
)
from tests.helpers import episodes_of


def _row(episode: Episode) -> EpisodeRow:
    return episode_row(**asdict(episode))


@dataclass
class FakeBackend:
    """A server held in dicts; counts calls like a client counts requests."""

    has_library_markers: bool = True
    trusts_added_at: bool = True
    page_size: int = 500
    clock: int = 1_000_000
    libraries_list: list[Library] = field(
        default_factory=lambda: [Library(id="1", title="TV", marker="m1")]
    )
    shows_by_library: dict[str, list[Show]] = field(default_factory=dict)
    episodes_by_show: dict[str, list[Episode]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail_on: str | None = None
    since_seen: list[int] = field(default_factory=list)
    #: Episodes the delta returns (None: every episode updated since the cursor).
    delta: list[Episode] | None = None

    @property
    def request_count(self) -> int:
        return len(self.calls)

    @property
    def server_clock(self) -> int | None:
        return self.clock

    def reset_stats(self) -> None:
        self.calls.clear()

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail_on == name:
            self.fail_on = None
            raise MediaServerProtocolError(f"bad {name}")

    async def server_info(self) -> ServerInfo:
        self._call("server_info")
        return ServerInfo(kind=ServerKind.PLEX, server_id="srv", name="Srv", version="1")

    async def libraries(self) -> list[Library]:
        self._call("libraries")
        return list(self.libraries_list)

    async def shows(self, library_id: str) -> list[Show]:
        self._call("shows")
        return [self._counted(s) for s in self.shows_by_library.get(library_id, [])]

    async def episodes(self, library_id: str) -> list[EpisodeRow]:
        self._call("episodes")
        return [
            _row(e)
            for s in self.shows_by_library.get(library_id, [])
            for e in self.episodes_by_show.get(s.id, [])
        ]

    async def show_episodes(self, library_id: str, show_id: str) -> list[EpisodeRow]:
        self._call("show_episodes")
        return [_row(e) for e in self.episodes_by_show.get(show_id, [])]

    async def changed_episodes(self, library_ids: Sequence[str], since: int) -> list[EpisodeRow]:
        self._call("delta")
        self.since_seen.append(since)
        if self.delta is not None:
            return [_row(e) for e in self.delta]
        return [
            _row(e)
            for lid in library_ids
            for s in self.shows_by_library.get(lid, [])
            for e in self.episodes_by_show.get(s.id, [])
            if (e.updated_at or 0) >= since
        ]

    def _counted(self, show: Show) -> Show:
        episodes = self.episodes_by_show.get(show.id, [])
        return replace(
            show, episode_count=len(episodes), watched_count=sum(e.watched for e in episodes)
        )

    # -- mutations -------------------------------------------------------------

    def add(self, show_id: str, episode_id: str, season: int, number: int, **kw: object) -> Episode:
        episode = Episode(
            id=episode_id,
            show_id=show_id,
            library_id=str(kw.get("library_id", "1")),
            season=season,
            number=number,
            title=str(kw.get("title", f"E{number}")),
            air_date=None,
            added_at=int(kw.get("added_at", self.clock)),  # type: ignore[call-overload]
            watched=bool(kw.get("watched", False)),
            updated_at=self.clock,
        )
        self.episodes_by_show.setdefault(show_id, []).append(episode)
        return episode

    def remove(self, episode_id: str) -> None:
        for episodes in self.episodes_by_show.values():
            episodes[:] = [e for e in episodes if e.id != episode_id]

    def bump(self) -> None:
        """Content changed: move the library marker and the clock."""
        self.clock += 60
        self.libraries_list = [replace(lib, marker=f"{lib.marker}+") for lib in self.libraries_list]


def make_backend(**kw: object) -> FakeBackend:
    backend = FakeBackend(**kw)  # type: ignore[arg-type]
    backend.shows_by_library["1"] = [
        Show(id=f"s{i}", library_id="1", title=f"Show {i}", episode_count=0, watched_count=0)
        for i in range(3)
    ]
    for i in range(3):
        for n in range(1, 5):
            backend.add(f"s{i}", f"e{i}-{n}", 1, n, added_at=500_000 + n)
    return backend


class Harness:
    """Runs syncs like the coordinator does: keeps the committed mirror and state."""

    def __init__(self, backend: FakeBackend, **kw: object) -> None:
        self.backend = backend
        self.now = 10_000.0
        self.engine = SyncEngine(
            backend,
            server_id="srv",
            library_ids=kw.pop("library_ids", ["1"]),  # type: ignore[arg-type]
            clock=lambda: self.now,
            **kw,  # type: ignore[arg-type]
        )
        self.mirror = Mirror()
        self.state = SyncState()

    async def sync(self, *, force_full: bool = False, advance: float = 600) -> SyncResult:
        self.now += advance
        result = await self.engine.sync(self.mirror, self.state, force_full=force_full)
        self.mirror, self.state = result.mirror, result.state
        return result

    def ids(self) -> set[str]:
        return {e.id for _, _, e in self.mirror.episodes()}


async def test_first_sync_is_full_and_not_new() -> None:
    harness = Harness(make_backend())
    result = await harness.sync()
    assert result.mode is SyncMode.FULL
    assert result.reason is FullSyncReason.NO_MIRROR
    assert result.first_sync
    assert result.first_seen == {"1"}
    assert len(result.added) == 12
    assert result.new_episodes == ()
    assert result.mirror_changed
    assert len(harness.ids()) == 12
    assert harness.backend.calls == ["libraries", "shows", "episodes"]
    assert harness.state.cursor == harness.backend.clock


async def test_unchanged_is_one_call_and_no_change() -> None:
    harness = Harness(make_backend())
    await harness.sync()
    before = harness.mirror
    result = await harness.sync()
    assert result.mode is SyncMode.INCREMENTAL
    assert harness.backend.calls == ["libraries"]
    assert not result.mirror_changed
    assert harness.mirror is before


async def test_added_episode_three_calls_and_delta_cursor() -> None:
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    cursor = harness.state.cursor
    backend.bump()
    new = backend.add("s1", "new", 2, 1)
    result = await harness.sync()
    assert backend.calls == ["libraries", "shows", "delta"]
    assert backend.since_seen == [cursor - CURSOR_OVERLAP]  # type: ignore[operator]
    assert [e.id for e in episodes_of(result.added)] == ["new"]
    assert episodes_of(result.added)[0].added_at == new.added_at
    assert "new" in harness.ids()


async def test_removed_episode_repairs_only_that_show() -> None:
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.bump()
    backend.remove("e2-3")
    result = await harness.sync()
    assert backend.calls == ["libraries", "shows", "delta", "show_episodes"]
    assert [e.id for e in episodes_of(result.removed)] == ["e2-3"]
    assert "e2-3" not in harness.ids()


async def test_removed_show_and_library() -> None:
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.bump()
    backend.shows_by_library["1"] = backend.shows_by_library["1"][1:]
    result = await harness.sync()
    assert {e.show_id for e in episodes_of(result.removed)} == {"s0"}
    assert harness.mirror.show_count == 2
    backend.libraries_list = []
    result = await harness.sync()
    assert harness.mirror.episode_count == 0
    assert len(result.removed) == 8


async def test_watch_state_waits_for_hourly_show_check() -> None:
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.clock += 3600  # watch state does not move updated_at
    episode = backend.episodes_by_show["s0"][0]
    backend.episodes_by_show["s0"][0] = replace(episode, watched=True)
    await harness.sync()
    assert backend.calls == ["libraries"]
    await harness.sync(advance=SHOWS_CHECK_INTERVAL)
    # The library's delta looks back to its own last one (the first sync), so the
    # episode comes with it; no repair of the show is needed.
    assert backend.calls == ["libraries", "shows", "delta"]
    assert next(e for _, _, e in harness.mirror.episodes() if e.id == episode.id).watched


async def test_rekey_keeps_added_at_and_is_not_new() -> None:
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    old = backend.episodes_by_show["s1"][1]
    backend.bump()
    backend.remove(old.id)
    backend.add("s1", "rekeyed", old.season or 0, old.number or 0)
    result = await harness.sync()
    assert result.added == ()
    assert result.removed == ()
    assert result.rekeyed == 1
    stored = next(e for _, _, e in harness.mirror.episodes() if e.id == "rekeyed")
    assert stored.added_at == old.added_at


@pytest.mark.parametrize("force_full", [False, True])
async def test_an_unselected_library_is_dropped_not_held_back_as_removed(
    force_full: bool,
) -> None:
    """Unselected at a scheduled (or forced) full sync: gone, no removals, no hold-back."""
    backend = make_backend()
    backend.libraries_list.append(Library(id="2", title="Anime", marker="a"))
    backend.shows_by_library["2"] = [
        Show(id="a0", library_id="2", title="Anime 0", episode_count=0, watched_count=0)
    ]
    for n in range(1, 21):
        backend.add("a0", f"anime-{n}", 1, n, library_id="2")
    harness = Harness(backend, library_ids=["1", "2"], full_sync_interval=86_400)
    await harness.sync()
    harness.engine = SyncEngine(
        backend,
        server_id="srv",
        library_ids=["1"],
        full_sync_interval=86_400,
        clock=lambda: harness.now,
    )
    result = await harness.sync(advance=86_400, force_full=force_full)
    assert result.mode is SyncMode.FULL
    assert (result.removed, dict(result.held_back)) == ((), {})
    assert set(harness.mirror.libraries) == {"1"}
    assert harness.mirror.removed == {}


@pytest.mark.parametrize("trusts_added_at", [True, False])
async def test_a_newly_selected_library_is_mirrored_without_announcing(
    trusts_added_at: bool,
) -> None:
    """Its episodes are added, not new; later arrivals in it are new (both date rules)."""
    backend = make_backend(trusts_added_at=trusts_added_at)
    harness = Harness(backend)
    await harness.sync()
    backend.libraries_list.append(Library(id="2", title="Anime", marker="a"))
    backend.shows_by_library["2"] = [
        Show(id="a0", library_id="2", title="Anime 0", episode_count=0, watched_count=0)
    ]
    backend.add("a0", "old-anime", 1, 1, added_at=12, library_id="2")
    backend.add("s0", "new-here", 2, 1, added_at=backend.clock)  # in the known library
    harness.engine = SyncEngine(
        backend, server_id="srv", library_ids=["1", "2"], clock=lambda: harness.now
    )
    result = await harness.sync()
    assert result.reason is FullSyncReason.LIBRARIES_CHANGED
    assert result.first_seen == {"2"}
    assert sorted(e.id for e in episodes_of(result.added)) == ["new-here", "old-anime"]
    assert [e.id for e in episodes_of(result.new_episodes)] == ["new-here"]
    # In a library mirrored for the first time, the server's "added" date stands.
    stored = {e.id: e for _, _, e in harness.mirror.episodes()}
    assert stored["old-anime"].added_at == 12

    backend.bump()
    backend.add("a0", "arrival", 1, 2, library_id="2")
    result = await harness.sync()
    assert result.first_seen == frozenset()
    assert [e.id for e in episodes_of(result.new_episodes)] == ["arrival"]


@pytest.mark.parametrize("trusts_added_at", [True, False])
async def test_an_episode_back_under_its_id_is_restored_not_new(trusts_added_at: bool) -> None:
    """A share offline then back: no new episode, the old ``added_at``; remembered 30 days."""
    backend = make_backend(trusts_added_at=trusts_added_at)
    harness = Harness(backend)
    await harness.sync()
    gone = backend.episodes_by_show["s1"][0]
    backend.bump()
    backend.remove(gone.id)
    result = await harness.sync()
    assert [e.id for e in episodes_of(result.removed)] == [gone.id]
    assert harness.mirror.removed == {
        gone.id: (gone.added_at, harness.now, gone.show_id, gone.season, gone.number, "show 1")
    }

    backend.bump()
    backend.episodes_by_show["s1"].append(replace(gone, added_at=backend.clock))
    result = await harness.sync()
    assert (result.added, result.new_episodes, result.updated) == ((), (), 1)
    stored = {e.id: e for _, _, e in harness.mirror.episodes()}
    assert stored[gone.id].added_at == gone.added_at
    assert harness.mirror.removed == {}

    # Removed again and back after REMOVED_FOR: then it is new.
    backend.bump()
    backend.remove(gone.id)
    await harness.sync()
    backend.bump()
    backend.episodes_by_show["s1"].append(replace(gone, added_at=backend.clock))
    result = await harness.sync(advance=REMOVED_FOR)
    assert [e.id for e in episodes_of(result.new_episodes)] == [gone.id]


async def test_an_episode_replaced_a_sync_later_is_a_rekey_not_new() -> None:
    """A file replaced by a better one (new id, same show, season and number) across syncs."""
    backend = make_backend(trusts_added_at=False)
    harness = Harness(backend)
    await harness.sync()
    old = backend.episodes_by_show["s2"][1]
    backend.bump()
    backend.remove(old.id)
    await harness.sync()
    backend.bump()
    backend.add("s2", "better-file", old.season or 0, old.number or 0, added_at=backend.clock)
    backend.add("s2", "truly-new", 9, 1)
    result = await harness.sync()
    assert [e.id for e in episodes_of(result.new_episodes)] == ["truly-new"]
    assert (result.rekeyed, result.updated) == (1, 1)
    stored = {e.id: e for _, _, e in harness.mirror.episodes()}
    assert stored["better-file"].added_at == old.added_at
    assert old.id not in harness.mirror.removed


@pytest.mark.parametrize("trusts_added_at", [True, False])
async def test_a_show_back_under_new_ids_a_sync_later_is_no_news(trusts_added_at: bool) -> None:
    """Removed at one scan, added back at the next (new show and episode ids): matched by
    its title, season and number, like a show re-keyed within one sync."""
    backend = make_backend(trusts_added_at=trusts_added_at)
    harness = Harness(backend)
    await harness.sync()
    first_seen = {
        e.number: e.added_at for _, _, e in harness.mirror.episodes() if e.show_id == "s1"
    }
    backend.bump()
    gone = backend.shows_by_library["1"].pop(1)
    episodes = backend.episodes_by_show.pop(gone.id)
    assert len((await harness.sync()).removed) == 4
    backend.bump()
    backend.shows_by_library["1"].append(replace(gone, id="back", title="SHOW 1"))
    for episode in episodes[:3]:
        backend.add("back", f"back-{episode.number}", 1, episode.number or 0)
    backend.add("back", "truly-new", 1, 9)
    # Another show new to the mirror with a number still remembered is news.
    backend.shows_by_library["1"].append(replace(gone, id="other", title="Other"))
    backend.add("other", "other-4", 1, 4)
    result = await harness.sync()
    assert sorted(e.id for e in episodes_of(result.new_episodes)) == ["other-4", "truly-new"]
    assert (result.rekeyed, result.updated) == (3, 3)
    back = {e.number: e.added_at for _, _, e in harness.mirror.episodes() if e.show_id == "back"}
    assert {n: back[n] for n in (1, 2, 3)} == {n: first_seen[n] for n in (1, 2, 3)}
    assert sorted(harness.mirror.removed) == [episodes[3].id]  # the fourth is still away


async def test_an_empty_library_gone_from_the_server_leaves_the_mirror() -> None:
    backend = make_backend()
    backend.libraries_list.append(Library(id="2", title="Empty", marker="m2"))
    harness = Harness(backend, library_ids=["1", "2"])
    await harness.sync()
    assert set(harness.mirror.libraries) == {"1", "2"}
    backend.libraries_list.pop()
    result = await harness.sync()
    assert result.mirror_changed
    assert set(harness.mirror.libraries) == {"1"}


async def test_only_the_latest_removals_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most ``REMOVED_MEMORY`` of them, or as many as the mirror held."""
    monkeypatch.setattr(sync_module, "REMOVED_MEMORY", 3)
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    order = [f"e{i}-{n}" for i in range(3) for n in range(1, 5)]
    for episode_id in order[:4]:  # one by one: the mirror held more than 3
        backend.bump()
        backend.remove(episode_id)
        await harness.sync()
    assert list(harness.mirror.removed) == order[:4]
    backend.bump()
    for episode_id in order[4:]:  # the 8 others at once: 12 removals, 8 kept
        backend.remove(episode_id)
    await harness.sync()
    assert sorted(harness.mirror.removed) == sorted(order[4:])
    # Another server's removals mean nothing here.
    other = SyncEngine(backend, server_id="other", library_ids=["1"], clock=lambda: harness.now)
    result = await other.sync(harness.mirror, harness.state)
    assert result.mirror.removed == {}


async def test_a_library_removed_whole_and_back_is_remembered_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More removals than ``REMOVED_MEMORY`` at once (a removal the guard saw twice): all
    remembered, so the library's return announces nothing and keeps the first-seen dates."""
    monkeypatch.setattr(sync_module, "REMOVED_MEMORY", 3)
    backend = make_backend(has_library_markers=False, trusts_added_at=False)
    harness = Harness(backend)
    await harness.sync()
    first_seen = {e.id: e.added_at for _, _, e in harness.mirror.episodes()}
    episodes, backend.episodes_by_show = backend.episodes_by_show, {}
    assert (await harness.sync()).held_back == {"1": 12}
    assert len((await harness.sync()).removed) == 12  # confirmed
    backend.add("s0", "meanwhile", 9, 1)  # a sync that changes something, mirror smaller
    await harness.sync()
    assert len(harness.mirror.removed) == 12
    backend.episodes_by_show = episodes
    backend.clock += 3600
    result = await harness.sync()
    assert (len(result.added), result.new_episodes) == (0, ())
    assert {e.id: e.added_at for _, _, e in harness.mirror.episodes()} == first_seen


async def test_untrusted_added_at_uses_first_seen_time() -> None:
    """Jellyfin rule: DateCreated on the first sync, first-seen time afterwards."""
    backend = make_backend(has_library_markers=False, trusts_added_at=False)
    harness = Harness(backend)
    await harness.sync()
    assert {e.added_at for _, _, e in harness.mirror.episodes()} == {
        500_001,
        500_002,
        500_003,
        500_004,
    }
    backend.clock += 3600
    backend.add("s2", "old-file", 2, 1, added_at=12)  # a file born years ago
    result = await harness.sync()
    assert [e.id for e in episodes_of(result.added)] == ["old-file"]
    assert episodes_of(result.added)[0].added_at == backend.clock
    # A later full sync reports DateCreated again; the mirror keeps first-seen times.
    result = await harness.sync(force_full=True)
    assert result.added == ()
    assert result.updated == 0
    stored = next(e for _, _, e in harness.mirror.episodes() if e.id == "old-file")
    assert stored.added_at == backend.clock


async def test_without_markers_every_library_is_listed() -> None:
    backend = make_backend(has_library_markers=False)
    harness = Harness(backend)
    await harness.sync()
    result = await harness.sync()
    assert backend.calls == ["shows", "delta"]
    assert not result.mirror_changed


@pytest.mark.parametrize("step", ["shows", "delta", "show_episodes"])
async def test_protocol_error_falls_back_to_full(step: str) -> None:
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.bump()
    backend.remove("e0-1")
    backend.fail_on = step
    result = await harness.sync()
    assert result.mode is SyncMode.FULL
    assert result.reason is FullSyncReason.PROTOCOL_ERROR
    assert "e0-1" not in harness.ids()


async def test_inconsistent_counts_fall_back_to_full() -> None:
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.bump()
    # The show listing claims one more episode than the show's own listing has.
    backend.add("s0", "ghost", 1, 9)
    backend.delta = []
    original = backend.show_episodes

    async def missing_ghost(library_id: str, show_id: str) -> list[EpisodeRow]:
        return [e for e in await original(library_id, show_id) if e[At.ID] != "ghost"]

    backend.show_episodes = missing_ghost  # type: ignore[method-assign]
    result = await harness.sync()
    assert result.mode is SyncMode.FULL
    assert result.reason is FullSyncReason.INCONSISTENT


async def test_connection_error_commits_nothing() -> None:
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    mirror, state = harness.mirror, harness.state
    backend.bump()
    backend.remove("e0-1")

    async def down(library_id: str) -> list[Show]:
        raise MediaServerConnectionError("down")

    backend.shows = down  # type: ignore[method-assign]
    with pytest.raises(MediaServerConnectionError):
        await harness.sync()
    assert harness.mirror is mirror
    assert harness.state is state


async def test_scheduled_forced_and_selection_reasons() -> None:
    backend = make_backend()
    harness = Harness(backend, full_sync_interval=86_400)
    await harness.sync()
    assert (await harness.sync(force_full=True)).reason is FullSyncReason.FORCED
    assert (await harness.sync(advance=86_400)).reason is FullSyncReason.SCHEDULED
    backend.libraries_list.append(Library(id="2", title="Anime", marker="a"))
    harness.engine = SyncEngine(
        backend, server_id="srv", library_ids=["1", "2"], clock=lambda: harness.now
    )
    assert (await harness.sync()).reason is FullSyncReason.LIBRARIES_CHANGED
    other = SyncEngine(backend, server_id="other", library_ids=["1"], clock=lambda: harness.now)
    result = await other.sync(harness.mirror, harness.state)
    assert result.reason is FullSyncReason.SERVER_CHANGED


async def test_refreshing_library_is_looked_at_again() -> None:
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.libraries_list = [replace(backend.libraries_list[0], refreshing=True)]
    await harness.sync()
    assert backend.calls == ["libraries", "shows", "delta"]
    backend.libraries_list = [replace(backend.libraries_list[0], refreshing=False)]
    await harness.sync()
    assert backend.calls == ["libraries", "shows", "delta"]
    await harness.sync()
    assert backend.calls == ["libraries"]


def big_backend() -> FakeBackend:
    backend = make_backend()
    for n in range(5, 15):
        backend.add("s0", f"e0-{n}", 2, n)
    return backend  # 22 episodes, 14 in show s0


@pytest.mark.parametrize("force_full", [False, True])
@pytest.mark.parametrize("trusts_added_at", [True, False])
async def test_an_episode_moved_to_another_show_under_its_id_is_no_new_episode(
    trusts_added_at: bool, force_full: bool
) -> None:
    """Shows merged: their episodes keep their ids under the other show (as Plex's
    Merge is taken to do; UNCONFIRMED), and the date the mirror first saw them."""
    backend = make_backend(trusts_added_at=trusts_added_at)
    backend.clock += 100_000  # the episodes are old news
    harness = Harness(backend)
    await harness.sync()
    first_seen = {e.id: e.added_at for _, _, e in harness.mirror.episodes() if e.show_id == "s0"}
    merged = [replace(e, show_id="s1", season=2) for e in backend.episodes_by_show.pop("s0")]
    backend.episodes_by_show["s1"].extend(merged)
    backend.shows_by_library["1"] = backend.shows_by_library["1"][1:]
    backend.bump()
    result = await harness.sync(force_full=force_full)
    assert (result.added, result.removed, result.new_episodes) == ((), (), ())
    assert result.updated == len(merged)
    moved = {e.id: e for e in harness.mirror.libraries["1"].shows["s1"].episodes.values()}
    assert {eid: moved[eid].added_at for eid in first_seen} == first_seen
    assert {moved[eid].season for eid in first_seen} == {2}


async def test_a_moved_episode_is_no_predecessor_for_a_re_keyed_one() -> None:
    """A show merged into another, and a new show of its title: the new show's episodes
    are new, not re-keyed versions of the ones that moved."""
    backend = make_backend()
    backend.clock += 100_000
    harness = Harness(backend)
    await harness.sync()
    merged = [replace(e, show_id="s1", season=2) for e in backend.episodes_by_show.pop("s0")]
    backend.episodes_by_show["s1"].extend(merged)
    backend.shows_by_library["1"][0] = replace(backend.shows_by_library["1"][0], id="n0")
    backend.add("n0", "n0-1", 1, 1)
    backend.bump()
    result = await harness.sync()
    assert [e.id for e in episodes_of(result.new_episodes)] == ["n0-1"]
    assert (result.removed, result.rekeyed) == ((), 0)


@dataclass
class ListedMidChange(FakeBackend):
    """A library listing served while a change lands (a row slipped past, a stale row),
    and shows that count episodes no listing has (Plex's trash, counted)."""

    slipped: str | None = None
    stale: EpisodeRow | None = None
    unlisted: dict[str, int] = field(default_factory=dict)

    async def episodes(self, library_id: str) -> list[EpisodeRow]:
        rows = [row for row in await super().episodes(library_id) if row[At.ID] != self.slipped]
        return rows + ([self.stale] if self.stale is not None else [])

    def _counted(self, show: Show) -> Show:
        counted = super()._counted(show)
        return replace(counted, episode_count=counted.episode_count + self.unlisted.get(show.id, 0))


def listed_mid_change() -> ListedMidChange:
    backend, shown = ListedMidChange(), make_backend()
    backend.shows_by_library, backend.episodes_by_show = (
        shown.shows_by_library,
        shown.episodes_by_show,
    )
    return backend


async def test_full_sync_relists_a_show_that_changed_while_its_library_was_listed() -> None:
    """Rows that disagree with their show's counts: the show's own listing settles it."""
    backend = listed_mid_change()
    harness = Harness(backend)
    await harness.sync()
    backend.stale = _row(next(e for e in backend.episodes_by_show["s1"] if e.id == "e1-2"))
    backend.remove("e1-2")  # deleted once its row was served
    backend.slipped = "e2-3"  # a row that slid between two pages
    backend.bump()
    backend.reset_stats()
    result = await harness.sync(force_full=True)
    assert harness.ids() == {f"e{i}-{n}" for i in range(3) for n in range(1, 5)} - {"e1-2"}
    assert [row[At.ID] for row in result.removed] == ["e1-2"]
    assert result.added == ()
    assert backend.calls == ["libraries", "shows", "episodes", "show_episodes", "show_episodes"]

    backend.stale = backend.slipped = None
    backend.reset_stats()
    await harness.sync(force_full=True)  # nothing disagrees now: no show is listed on its own
    assert backend.calls == ["libraries", "shows", "episodes"]


async def test_full_sync_keeps_a_mismatch_its_show_listing_confirms() -> None:
    """A show that counts an episode no listing has: one show listing per full sync, no loop."""
    backend = listed_mid_change()
    harness = Harness(backend)
    await harness.sync()
    backend.unlisted["s0"] = 1
    backend.clock += 1000  # later: the next delta has no row of these episodes
    backend.bump()
    backend.reset_stats()
    result = await harness.sync(force_full=True)
    assert result.mode is SyncMode.FULL
    assert backend.calls == ["libraries", "shows", "episodes", "show_episodes"]
    assert harness.mirror.libraries["1"].shows["s0"].mismatch == (1, 0)
    assert len(harness.ids()) == 12

    backend.bump()
    backend.reset_stats()
    result = await harness.sync()
    assert result.mode is SyncMode.INCREMENTAL
    assert backend.calls == ["libraries", "shows", "delta"]  # the mismatch is known


async def test_mass_removal_is_held_back_until_confirmed() -> None:
    backend = big_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.bump()
    backend.shows_by_library["1"] = []  # the drive is unmounted: the library looks empty
    result = await harness.sync()
    assert result.held_back == {"1": 22}
    assert result.removed == ()
    assert harness.mirror.episode_count == 22
    # Confirmed by the next sync: now it is applied.
    result = await harness.sync()
    assert result.held_back == {}
    assert len(result.removed) == 22
    assert harness.mirror.episode_count == 0


async def test_mass_removal_hold_clears_when_library_returns() -> None:
    backend = big_backend()
    harness = Harness(backend)
    await harness.sync()
    shows = backend.shows_by_library["1"]
    backend.bump()
    backend.shows_by_library["1"] = []
    assert (await harness.sync()).held_back == {"1": 22}
    backend.bump()
    backend.shows_by_library["1"] = shows
    result = await harness.sync()
    assert result.held_back == {}
    assert result.removed == ()
    assert harness.mirror.episode_count == 22


async def test_mass_removal_applied_at_once_when_forced() -> None:
    backend = big_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.bump()
    backend.shows_by_library["1"] = []
    result = await harness.sync(force_full=True)
    assert result.held_back == {}
    assert harness.mirror.episode_count == 0


async def test_small_or_partial_removals_are_not_held() -> None:
    backend = big_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.bump()
    backend.shows_by_library["1"] = backend.shows_by_library["1"][1:]  # 14 of 22 is > half
    assert (await harness.sync()).held_back == {"1": 14}
    harness2 = Harness(make_backend())
    await harness2.sync()
    harness2.backend.bump()
    harness2.backend.remove("e0-1")
    harness2.backend.remove("e0-2")
    harness2.backend.shows_by_library["1"] = harness2.backend.shows_by_library["1"][:1]
    result = await harness2.sync()  # 10 of 12 removed: most, but not more than 10
    assert result.held_back == {}
    assert len(result.removed) == 10
    harness3 = Harness(big_backend())
    await harness3.sync()
    harness3.backend.bump()
    harness3.backend.shows_by_library["1"] = harness3.backend.shows_by_library["1"][:1]
    result = await harness3.sync()  # 8 of 22 removed: applied
    assert result.held_back == {}
    assert len(result.removed) == 8


async def test_mass_removal_share_is_more_than_half() -> None:
    """11 of 22 removed (exactly half) is applied; 12 of 22 is held back."""
    for removed, held in ((11, {}), (12, {"1": 12})):
        backend = big_backend()
        harness = Harness(backend)
        await harness.sync()
        backend.bump()
        for episode in [e for s in ("s0", "s1") for e in backend.episodes_by_show[s]][:removed]:
            backend.remove(episode.id)
        result = await harness.sync()
        assert result.held_back == held
        assert len(result.removed) == (0 if held else removed)


async def test_held_back_removal_checks_the_server_and_keeps_its_cursor() -> None:
    """A library looking emptied is what another server looks like; its edits stay owed."""
    backend = big_backend()
    harness = Harness(backend)
    await harness.sync()
    cursor = harness.state.cursors["1"]
    backend.bump()
    backend.shows_by_library["1"] = []
    result = await harness.sync()
    assert result.held_back == {"1": 22}
    assert "server_info" in backend.calls
    assert harness.state.cursors["1"] == cursor  # the next delta looks from where this one did
    # The same at an address that now leads to another server: nothing is committed.
    other = Harness(big_backend())
    await other.sync()
    other.engine = SyncEngine(
        other.backend, server_id="not-srv", library_ids=["1"], clock=lambda: other.now
    )
    other.backend.bump()
    other.backend.shows_by_library["1"] = []
    with pytest.raises(ServerChangedError):
        await other.sync()


async def test_an_episode_back_beside_a_held_back_removal_stays_remembered() -> None:
    """The held-back sync commits nothing of its library, the return of an episode neither."""
    backend = big_backend()
    harness = Harness(backend)
    await harness.sync()
    gone = backend.episodes_by_show["s1"][0]
    backend.bump()
    backend.remove(gone.id)
    await harness.sync()
    assert gone.id in harness.mirror.removed

    backend.bump()
    backend.episodes_by_show["s1"].append(replace(gone, added_at=backend.clock))
    backend.episodes_by_show["s0"] = []
    result = await harness.sync()
    assert result.held_back == {"1": 14}
    assert gone.id in harness.mirror.removed  # its library was kept as it was
    result = await harness.sync()  # confirmed: applied, and the episode is back, not new
    assert (result.held_back, len(result.removed), result.new_episodes) == ({}, 14, ())
    stored = {e.id: e for _, _, e in harness.mirror.episodes()}
    assert stored[gone.id].added_at == gone.added_at
    assert gone.id not in harness.mirror.removed


async def test_a_latest_view_the_mirror_never_had_is_adopted_without_a_repair() -> None:
    """A store from before latest views were kept: the first one listed costs no request."""
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    shows = backend.shows_by_library["1"]
    backend.shows_by_library["1"] = [replace(shows[0], last_viewed_at=123), *shows[1:]]
    backend.bump()
    result = await harness.sync()
    assert backend.calls == ["libraries", "shows", "delta"]
    assert result.mirror_changed
    assert harness.mirror.libraries["1"].shows["s0"].show.last_viewed_at == 123


async def test_full_sync_picks_up_a_library_renamed_and_nothing_else() -> None:
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.libraries_list = [replace(backend.libraries_list[0], title="Series")]
    result = await harness.sync(force_full=True)
    assert result.mode is SyncMode.FULL
    assert result.mirror_changed
    assert harness.mirror.libraries["1"].title == "Series"


async def test_full_sync_during_a_scan_keeps_no_marker() -> None:
    """The marker of a library still scanning says nothing of what the scan adds next."""
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.bump()
    backend.libraries_list = [replace(backend.libraries_list[0], refreshing=True)]
    result = await harness.sync(force_full=True)
    assert "1" not in result.state.markers
    # The scan ends with the marker it already had, having added one more episode.
    backend.libraries_list = [replace(backend.libraries_list[0], refreshing=False)]
    backend.clock += 60
    backend.add("s1", "late", 1, 9)
    result = await harness.sync()
    assert [row[At.ID] for row in result.added] == ["late"]


async def test_library_renamed_unselected_and_reappearing() -> None:
    backend = make_backend()
    backend.libraries_list.append(Library(id="2", title="Anime", marker="a"))
    backend.shows_by_library["2"] = [
        Show(id="a0", library_id="2", title="A", episode_count=0, watched_count=0)
    ]
    backend.add("a0", "a0-1", 1, 1)
    harness = Harness(backend, library_ids=["1", "2"])
    await harness.sync()
    assert set(harness.mirror.libraries) == {"1", "2"}

    backend.libraries_list[0] = replace(backend.libraries_list[0], title="Series")
    result = await harness.sync()
    assert result.mirror_changed
    assert harness.mirror.libraries["1"].title == "Series"

    # The user unselects "2": it leaves the mirror without a request for it.
    harness.engine = SyncEngine(
        backend, server_id="srv", library_ids=["1"], clock=lambda: harness.now
    )
    result = await harness.sync()
    assert (result.mode, result.reason) == (SyncMode.INCREMENTAL, None)
    assert result.mirror_changed
    assert set(harness.mirror.libraries) == {"1"}

    # "2" disappears from the server, then comes back while selected: full sync.
    harness.engine = SyncEngine(
        backend, server_id="srv", library_ids=["1", "2"], clock=lambda: harness.now
    )
    saved = backend.libraries_list.pop()
    result = await harness.sync()
    assert result.reason is FullSyncReason.LIBRARIES_CHANGED
    assert set(harness.mirror.libraries) == {"1"}
    backend.libraries_list.append(saved)
    result = await harness.sync()
    assert result.reason is FullSyncReason.INCONSISTENT
    assert set(harness.mirror.libraries) == {"1", "2"}


async def test_without_markers_a_selected_library_back_on_the_server_is_picked_up() -> None:
    """Jellyfin lists libraries only while a selected one is missing from the mirror."""
    backend = make_backend(has_library_markers=False)
    saved = Library(id="2", title="Anime")
    backend.libraries_list.append(saved)
    backend.shows_by_library["2"] = [
        Show(id="a0", library_id="2", title="A", episode_count=0, watched_count=0)
    ]
    backend.add("a0", "a0-1", 1, 1, library_id="2")
    harness = Harness(backend, library_ids=["1", "2"])
    await harness.sync()
    await harness.sync()
    assert "libraries" not in backend.calls  # both are mirrored: no listing

    backend.libraries_list.remove(saved)  # gone from the server
    await harness.sync(force_full=True)
    assert set(harness.mirror.libraries) == {"1"}
    result = await harness.sync()
    assert (result.mode, backend.calls[0]) == (SyncMode.INCREMENTAL, "libraries")

    backend.libraries_list.append(saved)  # back, same id
    result = await harness.sync()
    assert result.reason is FullSyncReason.INCONSISTENT
    assert set(harness.mirror.libraries) == {"1", "2"}
    await harness.sync()
    assert "libraries" not in backend.calls


async def test_new_empty_show_and_show_metadata_change() -> None:
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.bump()
    backend.shows_by_library["1"].append(
        Show(id="s9", library_id="1", title="Announced", episode_count=0, watched_count=0)
    )
    shows = backend.shows_by_library["1"]
    shows[0] = replace(shows[0], title="Retitled")
    result = await harness.sync()
    assert result.mirror_changed
    assert result.added == ()
    assert harness.mirror.libraries["1"].shows["s9"].episodes == {}
    assert harness.mirror.libraries["1"].shows["s0"].show.title == "Retitled"


async def test_cursor_without_a_server_clock() -> None:
    class NoClock(FakeBackend):
        @property
        def server_clock(self) -> int | None:
            return None

    backend = NoClock()
    backend.shows_by_library["1"] = []
    harness = Harness(backend)
    await harness.sync()
    assert harness.state.cursor == int(harness.now)
    await harness.sync()
    assert harness.state.cursor == int(harness.now - 600)  # kept: no newer server time


def rekey_everything(backend: FakeBackend) -> None:
    """A re-created server: every show and episode under a new id, same titles and numbers."""
    backend.bump()
    shows = backend.shows_by_library["1"]
    backend.shows_by_library["1"] = [
        replace(s, id=f"new-{s.id}", title=s.title.upper()) for s in shows
    ]
    for show in shows:
        old = backend.episodes_by_show.pop(show.id)
        backend.episodes_by_show[f"new-{show.id}"] = [
            replace(e, id=f"new-{e.id}", show_id=f"new-{show.id}", added_at=backend.clock)
            for e in old
        ]


@pytest.mark.parametrize("trusts_added_at", [True, False])
@pytest.mark.parametrize("force_full", [False, True], ids=["incremental", "full"])
async def test_rekeyed_library_is_an_update_not_a_flood(
    force_full: bool, trusts_added_at: bool
) -> None:
    """New show ids whose titles, seasons and numbers are known: nothing is new or removed."""
    backend = big_backend()
    backend.trusts_added_at = backend.has_library_markers = trusts_added_at  # Plex / Jellyfin
    harness = Harness(backend)
    await harness.sync()
    before = {(e.season, e.number, e.show_id): e.added_at for _, _, e in harness.mirror.episodes()}
    rekey_everything(backend)
    backend.add("new-s0", "truly-new", 9, 1)  # one real newcomer among the re-keyed
    result = await harness.sync(force_full=force_full)
    assert result.mode is (SyncMode.FULL if force_full else SyncMode.INCREMENTAL)
    assert [e.id for e in episodes_of(result.added)] == ["truly-new"]
    assert result.removed == ()
    assert result.held_back == {}  # re-keyed episodes are not a mass removal
    assert result.rekeyed == 22
    assert result.updated == 22
    assert harness.mirror.episode_count == 23
    after = {
        (e.season, e.number, e.show_id.removeprefix("new-")): e.added_at
        for _, _, e in harness.mirror.episodes()
        if e.id != "truly-new"
    }
    assert after == before  # every re-keyed episode kept its added_at


async def test_rekey_across_shows_needs_the_same_title_and_a_gone_show() -> None:
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.bump()
    # s0 is gone; a new show with another title has the same numbers: it is new.
    gone = backend.shows_by_library["1"].pop(0)
    backend.episodes_by_show.pop(gone.id)
    backend.shows_by_library["1"].append(
        Show(id="other", library_id="1", title="Another Show", episode_count=0, watched_count=0)
    )
    for n in range(1, 5):
        backend.add("other", f"o-{n}", 1, n)
    # A new show titled like s1 (which is still there) does not take s1's episodes either.
    backend.shows_by_library["1"].append(
        Show(id="twin", library_id="1", title="show 1", episode_count=0, watched_count=0)
    )
    backend.add("twin", "t-1", 1, 1)
    result = await harness.sync()
    assert sorted(e.id for e in episodes_of(result.added)) == ["o-1", "o-2", "o-3", "o-4", "t-1"]
    assert sorted(e.id for e in episodes_of(result.removed)) == ["e0-1", "e0-2", "e0-3", "e0-4"]
    assert result.rekeyed == 0


async def test_dirty_library_is_looked_at_with_an_unchanged_marker() -> None:
    """A push hint makes the engine look at a library whose marker did not move."""
    backend = make_backend()
    harness = Harness(backend)
    await harness.sync()
    backend.clock += 60  # an edit that leaves the marker alone
    episode = backend.episodes_by_show["s1"][0]
    backend.episodes_by_show["s1"][0] = replace(episode, title="Renamed", updated_at=backend.clock)
    await harness.sync()
    assert backend.calls == ["libraries"]  # the marker alone hides the edit
    harness.now += 600
    result = await harness.engine.sync(harness.mirror, harness.state, dirty={"1", "unknown"})
    assert backend.calls == ["libraries", "shows", "delta"]
    assert result.mode is SyncMode.INCREMENTAL
    assert result.updated == 1
    renamed = next(e for _, _, e in result.mirror.episodes() if e.id == episode.id)
    assert renamed.title == "Renamed"


async def test_unnumbered_episodes_of_a_rekeyed_show_cannot_be_matched() -> None:
    """Without a number there is no slot to match: the old one goes, the new one is new."""
    backend = make_backend()
    backend.add("s0", "special", 0, 0)
    backend.episodes_by_show["s0"][-1] = replace(backend.episodes_by_show["s0"][-1], number=None)
    harness = Harness(backend)
    await harness.sync()
    rekey_everything(backend)
    result = await harness.sync()
    assert [e.id for e in episodes_of(result.added)] == ["new-special"]
    assert [e.id for e in episodes_of(result.removed)] == ["special"]
    assert result.rekeyed == 12


def test_show_mirror_knows_its_newest_episode() -> None:
    """``latest_added`` lets "what is new" skip a show without looking at its episodes."""
    show = Show(id="s", library_id="l", title="S", episode_count=2, watched_count=0)
    rows = {
        eid: episode_row(
            id=eid,
            show_id="s",
            library_id="l",
            season=1,
            number=n,
            title="",
            air_date=None,
            added_at=added,
            watched=False,
        )
        for eid, n, added in (("a", 1, 100), ("b", 2, 300))
    }
    assert ShowMirror.build(show, rows).latest_added == 300
    assert ShowMirror.build(show, {}).latest_added == 0
