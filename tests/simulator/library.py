"""The simulated media library, neutral to the server that serves it.

Both simulators (Plex and Jellyfin) serve the same model: libraries hold shows,
shows hold episodes. Ids are minted by the server (the ``id_factory`` it passes
in) and never reused, as on real servers. The generator is seeded, so a given
``(shows, seasons, episodes, seed)`` always produces the same library.

Mutations go through ``SimLibraryModel`` so each server can hook its own
bookkeeping (Plex's ``contentChangedAt`` counter, Jellyfin's ``DateLastSaved``)
into ``on_change`` (after the change) and ``before_change`` (before it, with
the show about to change: Jellyfin records the series' DateLastMediaAdded as
it was).

A season exists while it holds an episode: the last one removed takes it
along, so ``childCount``/``ChildCount`` and the season listings follow
(docs: plex §10 "childCount ... always recomputed", jellyfin §10 item 12).
Its id is never reused; a season that comes back gets a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
import random
import time

# Titles are made of these, so generated libraries look plausible in the UI.
_WORDS = [
    "Amber",
    "Bright",
    "Cedar",
    "Delta",
    "Ember",
    "Falcon",
    "Garnet",
    "Harbor",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meadow",
    "Nova",
    "Orchid",
    "Pioneer",
    "Quartz",
    "Raven",
    "Sierra",
    "Tundra",
    "Umber",
    "Vale",
    "Willow",
    "Xenon",
    "Yarrow",
    "Zephyr",
]


class SimClock:
    """The server's clock: real time plus a test-controlled offset.

    Tests skew it against Home Assistant's clock to prove the integration
    takes its watermarks from the server, never from its own clock.
    """

    def __init__(self, offset: float = 0.0) -> None:
        """Start at real time plus ``offset`` seconds."""
        self.offset = offset

    def now(self) -> float:
        """Return the server's current time in epoch seconds."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward."""
        self.offset += seconds


@dataclass(kw_only=True)
class SimEpisode:
    """One episode file on the simulated server."""

    id: str
    show_id: str
    season: int | None
    number: int | None
    title: str
    air_date: str | None
    added_at: int
    updated_at: int
    duration_ms: int = 1_800_000
    view_count: int = 0
    last_viewed_at: int | None = None
    #: Jellyfin's DateCreated is the file's birth time, which may be years old.
    file_created_at: int | None = None
    #: Jellyfin's hidden DateLastSaved (None until the first metadata refresh).
    saved_at: float | None = None
    #: Jellyfin's placeholders for missing episodes (LocationType Virtual).
    virtual: bool = False
    #: Plex keeps trashed items (auto-empty off) with ``deletedAt`` set.
    deleted_at: int | None = None
    guid: str = ""
    #: Whether the server has artwork for it (a still the scanner could not
    #: grab, an agent that found none: Plex leaves ``thumb`` out, Jellyfin's
    #: ``ImageTags`` have no ``Primary``, and both answer 404 for the image).
    #: Listings are rendered once per content change: set in place, it shows
    #: only in those rendered after the next change (``add_episode`` takes it).
    has_image: bool = True

    @property
    def watched(self) -> bool:
        """Whether the episode has been played."""
        return self.view_count > 0


@dataclass(kw_only=True)
class SimShow:
    """One show, its episodes keyed by id in insertion order."""

    id: str
    library_id: str
    title: str
    year: int
    added_at: int
    updated_at: int
    saved_at: float | None = None
    season_ids: dict[int, str] = field(default_factory=dict)
    #: Jellyfin's hidden DateLastSaved of each season row (set when it is created).
    season_saved_at: dict[int, float] = field(default_factory=dict)
    episodes: dict[str, SimEpisode] = field(default_factory=dict)
    #: Whether the server has a poster for it (see ``SimEpisode.has_image``).
    has_image: bool = True

    def real_episodes(self) -> list[SimEpisode]:
        """Episodes that exist as files (not virtual, not trashed)."""
        return [e for e in self.episodes.values() if not e.virtual and e.deleted_at is None]


@dataclass(kw_only=True)
class SimLibrary:
    """One TV library (or another kind, to prove the client filters them)."""

    id: str
    title: str
    kind: str = "show"
    uuid: str = ""
    created_at: int = 0
    shows: dict[str, SimShow] = field(default_factory=dict)

    def episodes(self) -> Iterator[SimEpisode]:
        """Every episode of the library, show by show."""
        for show in self.shows.values():
            yield from show.episodes.values()


class SimLibraryModel:
    """The server's content plus the mutations tests and the benchmark call."""

    def __init__(
        self,
        *,
        clock: SimClock,
        id_factory: Callable[[], str],
        on_change: Callable[[str, str, SimEpisode | SimShow | None], None] | None = None,
        before_change: Callable[[str, SimShow], None] | None = None,
    ) -> None:
        """Create an empty model; ``on_change(kind, library_id, item)`` hooks servers in.

        ``before_change(kind, show)`` runs before a mutation of one show's
        episodes or of the show itself, ``on_change`` after every mutation.
        """
        self.clock = clock
        self.new_id = id_factory
        self.on_change = on_change or (lambda kind, library_id, item: None)
        self.before_change = before_change or (lambda kind, show: None)
        self.libraries: dict[str, SimLibrary] = {}
        self._episode_index: dict[str, SimEpisode] = {}
        self._show_index: dict[str, SimShow] = {}

    # -- generation -----------------------------------------------------

    def generate(
        self,
        *,
        library_id: str | None = None,
        title: str = "TV Shows",
        shows: int = 10,
        seasons: int = 2,
        episodes: int = 5,
        seed: int = 1,
        specials: int = 0,
        unnumbered: int = 0,
    ) -> SimLibrary:
        """Add a TV library of ``shows x seasons x episodes``, deterministically.

        ``specials`` adds that many episodes per show in season 0 (Plex's
        "Specials", docs: plex §5), ``unnumbered`` that many episodes per show
        in season 1 with no episode number (no ``index``/``IndexNumber``,
        docs: plex §10 "some episodes with no index"). Both default to 0: the
        tests count on ``shows x seasons x episodes`` rows. With both 0 the
        library is the same as before they existed (same titles, same ids).
        """
        rng = random.Random(seed)
        library = self.add_library(title=title, library_id=library_id)
        now = int(self.clock.now())
        for s in range(shows):
            name = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} {s + 1}"
            added = now - rng.randint(86_400 * 30, 86_400 * 3_000)
            show = self.add_show(library.id, name, added_at=added, notify=False)
            for season in range(1, seasons + 1):
                for number in range(1, episodes + 1):
                    self.add_episode(
                        show.id,
                        season,
                        number,
                        title=f"{rng.choice(_WORDS)} {rng.choice(_WORDS)}",
                        added_at=added + season * 86_400 + number * 60,
                        notify=False,
                    )
            for number in range(1, specials + 1):
                self.add_episode(
                    show.id,
                    0,
                    number,
                    title=f"Special {rng.choice(_WORDS)}",
                    added_at=added + number * 60 + 30,
                    notify=False,
                )
            for extra in range(unnumbered):
                self.add_episode(
                    show.id,
                    1,
                    None,
                    title=f"Untold {rng.choice(_WORDS)} {extra + 1}",
                    added_at=added + 86_400 + 3_600 + extra * 60,
                    notify=False,
                )
        return library

    def add_library(
        self, *, title: str, library_id: str | None = None, kind: str = "show"
    ) -> SimLibrary:
        """Create an empty library."""
        library = SimLibrary(
            id=library_id or self.new_id(),
            title=title,
            kind=kind,
            uuid=self.new_id(),
            created_at=int(self.clock.now()),
        )
        self.libraries[library.id] = library
        return library

    # -- lookups ----------------------------------------------------------

    def episode(self, episode_id: str) -> SimEpisode:
        """Return an episode by id (KeyError when unknown)."""
        return self._episode_index[episode_id]

    def show(self, show_id: str) -> SimShow:
        """Return a show by id (KeyError when unknown)."""
        return self._show_index[show_id]

    def find_episode(self, episode_id: str) -> SimEpisode | None:
        """Return an episode by id, or None."""
        return self._episode_index.get(episode_id)

    def find_show(self, show_id: str) -> SimShow | None:
        """Return a show by id, or None."""
        return self._show_index.get(show_id)

    def library_of(self, show_id: str) -> SimLibrary:
        """Return the library that holds a show."""
        return self.libraries[self._show_index[show_id].library_id]

    def all_episodes(self) -> Iterator[SimEpisode]:
        """Every episode on the server."""
        return iter(self._episode_index.values())

    def find_season(self, season_id: str) -> tuple[SimShow, int] | None:
        """The show and season number of a season id, or None."""
        for show in self._show_index.values():
            for number, known in show.season_ids.items():
                if known == season_id:
                    return show, number
        return None

    def _ensure_season(self, show: SimShow, season: int | None, saved_at: float) -> None:
        """Create the season row an episode goes into, with a fresh id if it is new."""
        if season is not None and season not in show.season_ids:
            show.season_ids[season] = self.new_id()
            show.season_saved_at[season] = saved_at

    def _prune_season(self, show: SimShow, season: int | None) -> None:
        """Drop a season left without episodes (its id is never handed out again)."""
        if season is None or season not in show.season_ids:
            return
        if not any(e.season == season for e in show.episodes.values()):
            del show.season_ids[season]
            show.season_saved_at.pop(season, None)

    # -- mutations --------------------------------------------------------

    def add_show(
        self, library_id: str, title: str, *, added_at: int | None = None, notify: bool = True
    ) -> SimShow:
        """Add an empty show to a library."""
        now = int(self.clock.now())
        show = SimShow(
            id=self.new_id(),
            library_id=library_id,
            title=title,
            year=2000 + len(self._show_index) % 25,
            added_at=added_at if added_at is not None else now,
            updated_at=added_at if added_at is not None else now,
            saved_at=self.clock.now(),
        )
        self.libraries[library_id].shows[show.id] = show
        self._show_index[show.id] = show
        if notify:
            self.on_change("show_added", library_id, show)
        return show

    def add_episode(
        self,
        show_id: str,
        season: int | None,
        number: int | None,
        *,
        title: str | None = None,
        added_at: int | None = None,
        file_created_at: int | None = None,
        air_date: str | None = None,
        virtual: bool = False,
        has_image: bool = True,
        notify: bool = True,
    ) -> SimEpisode:
        """Add an episode; ``added_at`` defaults to the server's now."""
        show = self._show_index[show_id]
        if notify:
            self.before_change("episode_added", show)
        now = int(self.clock.now())
        added = added_at if added_at is not None else now
        self._ensure_season(show, season, self.clock.now() if notify else float(added))
        episode = SimEpisode(
            id=self.new_id(),
            show_id=show_id,
            season=season,
            number=number,
            title=title or f"Episode {number}",
            air_date=air_date
            if air_date is not None
            else time.strftime("%Y-%m-%d", time.gmtime(added - 86_400)),
            added_at=added,
            updated_at=max(added, now) if notify else added,
            file_created_at=file_created_at if file_created_at is not None else added,
            saved_at=self.clock.now() if notify else float(added),
            virtual=virtual,
            has_image=has_image,
            guid=f"sim://episode/{show_id}/{season}/{number}",
        )
        if number is None:  # no number to tell two such episodes apart: the id does
            episode.guid = f"sim://episode/{show_id}/{season}/{episode.id}"
        show.episodes[episode.id] = episode
        self._episode_index[episode.id] = episode
        if notify:
            self.on_change("episode_added", show.library_id, episode)
        return episode

    def remove_episode(self, episode_id: str) -> SimEpisode:
        """Delete an episode from the server (and its season, if it was the last one)."""
        show = self._show_index[self._episode_index[episode_id].show_id]
        self.before_change("episode_removed", show)
        episode = self._episode_index.pop(episode_id)
        del show.episodes[episode_id]
        # The hooks still see the season (Jellyfin's push names it in
        # FoldersRemovedFrom); it goes right after.
        self.on_change("episode_removed", show.library_id, episode)
        self._prune_season(show, episode.season)
        return episode

    def restore_episode(self, episode: SimEpisode) -> SimEpisode:
        """A removed or trashed episode's file is back under the same id.

        A share that was offline comes back, or Plex's trash is restored: Plex
        keeps the item (ratingKey, addedAt), and Jellyfin's item id is a hash
        of the file's path (LibraryManager.GetNewItemIdInternal), so a file put
        back at its path is the same item again.
        """
        now = self.clock.now()
        show = self._show_index[episode.show_id]
        self.before_change("episode_added", show)
        self._ensure_season(show, episode.season, now)
        episode.deleted_at = None
        episode.updated_at = int(now)
        episode.saved_at = now
        show.episodes[episode.id] = episode
        self._episode_index[episode.id] = episode
        self.on_change("episode_added", show.library_id, episode)
        return episode

    def trash_episode(self, episode_id: str) -> SimEpisode:
        """The episode's file vanished but the server keeps the item (Plex trash)."""
        episode = self._episode_index[episode_id]
        show = self._show_index[episode.show_id]
        self.before_change("episode_trashed", show)
        episode.deleted_at = int(self.clock.now())
        self.on_change("episode_trashed", show.library_id, episode)
        return episode

    def empty_trash(self, library_id: str) -> list[SimEpisode]:
        """Delete every trashed episode of a library for good."""
        trashed = [e for e in self.libraries[library_id].episodes() if e.deleted_at is not None]
        return [self.remove_episode(e.id) for e in trashed]

    def rename_episode(self, episode_id: str, title: str) -> SimEpisode:
        """Edit an episode's title (a metadata edit: updatedAt/DateLastSaved move)."""
        episode = self._episode_index[episode_id]
        show = self._show_index[episode.show_id]
        self.before_change("episode_updated", show)
        episode.title = title
        episode.updated_at = int(self.clock.now())
        episode.saved_at = self.clock.now()
        self.on_change("episode_updated", show.library_id, episode)
        return episode

    def replace_file(self, episode_id: str, *, file_created_at: int | None = None) -> SimEpisode:
        """The episode's file is replaced (a new encode, a repair): same item, new file.

        The file's mtime changes, so the next refresh re-reads it: Jellyfin
        sets DateCreated again from the file's creation time
        (``UseFileCreationTimeForDateAdded``, docs: jellyfin §4.1), which is
        ``file_created_at`` (default: now, a file born today; pass an old
        time for a file copied with its timestamps kept), and saves the row
        (DateLastSaved/Etag move, §4.2, checklist 9). The series is saved
        again only if its DateLastMediaAdded moves (§4.6). Plex keeps the
        item and its ``addedAt``; ``updatedAt`` moves with the refresh.
        """
        episode = self._episode_index[episode_id]
        show = self._show_index[episode.show_id]
        self.before_change("episode_updated", show)
        now = self.clock.now()
        episode.file_created_at = file_created_at if file_created_at is not None else int(now)
        episode.updated_at = int(now)
        episode.saved_at = now
        self.on_change("episode_updated", show.library_id, episode)
        return episode

    def edit_show(self, show_id: str, *, title: str | None = None) -> SimShow:
        """Edit the show's own metadata (title; a re-identify or new artwork alike).

        Jellyfin saves the series row: DateLastSaved and Etag move (docs:
        jellyfin §4.2, §4.3, checklist 12 "or the series itself is edited").
        Plex: the show's ``updatedAt`` follows its own metadata (docs: plex §5)
        and the section's ``contentChangedAt`` moves.
        """
        show = self._show_index[show_id]
        self.before_change("show_updated", show)
        if title is not None:
            show.title = title
        now = self.clock.now()
        show.updated_at = int(now)
        show.saved_at = now
        self.on_change("show_updated", show.library_id, show)
        return show

    def rekey_episode(self, episode_id: str) -> SimEpisode:
        """Re-match: the episode vanishes and comes back under a new id (same guid)."""
        old = self.remove_episode(episode_id)
        new = self.add_episode(
            old.show_id, old.season, old.number, title=old.title, air_date=old.air_date
        )
        new.guid = old.guid
        return new

    def set_watched(self, episode_id: str, watched: bool = True) -> SimEpisode:
        """Mark an episode watched or unwatched (user data: no metadata save)."""
        episode = self._episode_index[episode_id]
        if watched:
            episode.view_count += 1
            episode.last_viewed_at = int(self.clock.now())
        else:
            episode.view_count = 0
            episode.last_viewed_at = None
        self.on_change("watched", self._show_index[episode.show_id].library_id, episode)
        return episode

    def remove_show(self, show_id: str) -> SimShow:
        """Delete a show and its episodes."""
        show = self._show_index.pop(show_id)
        for episode_id in show.episodes:
            self._episode_index.pop(episode_id, None)
        del self.libraries[show.library_id].shows[show_id]
        self.on_change("show_removed", show.library_id, show)
        return show

    def wipe_library(self, library_id: str) -> None:
        """Empty a library (an unmounted drive looks like this to the server)."""
        for show_id in list(self.libraries[library_id].shows):
            self.remove_show(show_id)
        self.on_change("library_wiped", library_id, None)

    def restore_library(self, library: SimLibrary) -> None:
        """Put back a removed library as it was (the same folder added again: same ids)."""
        self.libraries[library.id] = library
        for show in library.shows.values():
            self._show_index[show.id] = show
            self._episode_index.update(show.episodes)
        self.on_change("library_added", library.id, None)

    def remove_library(self, library_id: str) -> None:
        """Delete a library entirely."""
        for show_id in list(self.libraries[library_id].shows):
            self._show_index.pop(show_id, None)
            for episode_id in self.libraries[library_id].shows[show_id].episodes:
                self._episode_index.pop(episode_id, None)
        del self.libraries[library_id]
        self.on_change("library_removed", library_id, None)
