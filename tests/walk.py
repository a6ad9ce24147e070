"""A seeded random walk of library changes on a simulator, for the tests that follow one.

``Walk.step`` makes a few changes of every kind the simulators know, the way
a server's library drifts between two syncs; the helpers read what the
server and a mirror hold, in comparable rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
import random
from typing import Any

from custom_components.episode_sync.sync import Mirror
from tests.helpers import tv_library_ids
from tests.simulator.common import Fault, FaultKind
from tests.simulator.jellyfin import JellyfinSimulator
from tests.simulator.library import SimEpisode, SimShow
from tests.simulator.plex import PlexSimulator

type Sim = PlexSimulator | JellyfinSimulator

#: Faults a sync meets now and then (the fault matrix of test_faults has them all).
FAULTS: tuple[FaultKind, ...] = ("status", "reset", "malformed", "truncated")


@dataclass
class Walk:
    """A seeded random walk over a simulator's TV libraries, one step between two syncs."""

    sim: Sim
    rng: random.Random
    #: Whether the syncs hear of watch changes (Jellyfin push), so that one
    #: episode watched and another unwatched in one show is seen.
    push: bool = False
    #: Episodes removed (or trashed) that may be put back under their id.
    removed: list[SimEpisode] = field(default_factory=list)
    #: Episodes watched or unwatched since the last sync that took them in.
    played: set[str] = field(default_factory=set)
    #: The changes of the last step, for the failure message.
    log: list[str] = field(default_factory=list)
    #: Per show, the highest episode number it was ever given: a new episode
    #: under the number of one removed in the same step is a re-key (a file
    #: replaced by a re-match), not news, so the walk never reuses one.
    numbers: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.numbers = {
            show.id: max((e.number or 0 for e in show.episodes.values()), default=0)
            for show in self._shows()
        }

    def step(self, synced: set[str]) -> set[str]:
        """Make one to four changes; return the ids of the new episodes still there.

        Changes pick their targets among the episodes the mirror holds and
        each target once: an episode both added and re-keyed between two
        syncs is new under its last id, which this walk does not model. A
        step removes at most ten episodes of a library, so that no sync has
        a mass removal to hold back (SPEC §5 "Safety").
        """
        new: set[str] = set()
        self.log.clear()
        targets = [e for e in self._episodes() if e.id in synced]
        self.rng.shuffle(targets)
        toggled: set[str] = set()
        removals: Counter[str] = Counter()
        for _ in range(self.rng.randint(1, 4)):
            self.sim.clock.advance(self.rng.randint(1, 90))
            change = self.rng.choice(self._changes())
            if change in ("add", "show"):
                added = self._add(new_show=change == "show")
                self.log.append(f"{change} {sorted(added)}")
                new |= added
                continue
            if change == "restore":
                back = self.rng.choice(self._restorable())
                self.removed.remove(back)
                self.sim.model.restore_episode(back)
                self.log.append(f"restore {back.id}")
                continue
            # Each target once; none whose show this step removed.
            targets = [e for e in targets if self.sim.model.find_episode(e.id) is e]
            episode = next(
                (e for e in targets if change != "watch" or e.show_id not in toggled), None
            )
            if episode is None:
                continue
            library_id = self.sim.model.library_of(episode.show_id).id
            cost = self._removes(change, episode)
            if removals[library_id] + cost > 10:
                continue
            removals[library_id] += cost
            targets.remove(episode)
            self._change(change, episode)
            self.log.append(f"{change} {episode.id} of show {episode.show_id}")
            if change == "watch" and not self._swaps_seen:
                toggled.add(episode.show_id)
        return {eid for eid in new if self.sim.model.find_episode(eid) is not None}

    def fault(self) -> Fault | None:
        """Now and then, a fault on one request of the coming sync."""
        if self.rng.random() < 0.7:
            return None
        kind = self.rng.choice(FAULTS)
        fault = Fault(kind=kind, status=self.rng.choice((500, 502)), skip=self.rng.randrange(5))
        self.log.append(f"fault {kind} after {fault.skip} requests")
        return self.sim.add_fault(fault)

    def _changes(self) -> list[str]:
        changes = ["add", "add", "show", "remove", "rename", "rekey", "watch", "watch", "replace"]
        changes.append("edit_show")
        if len(list(self._shows())) > 4:
            changes.append("remove_show")
        if self._restorable():
            changes.append("restore")
        if self._swaps_seen:
            changes.append("swap")
        if isinstance(self.sim, PlexSimulator) and not self.sim.auto_empty_trash:
            changes.append("trash")
        return changes

    def _change(self, change: str, episode: SimEpisode) -> None:
        model = self.sim.model
        match change:
            case "remove":
                self.removed.append(model.remove_episode(episode.id))
            case "rename":
                model.rename_episode(episode.id, f"{episode.title} (cut {self.rng.randint(1, 99)})")
            case "rekey":
                model.rekey_episode(episode.id)
            case "watch":
                self._toggle(episode)
            case "swap":  # watch one, unwatch another: the show's counts stay
                show = model.show(episode.show_id).episodes.values()
                other = next((e for e in show if e.watched != episode.watched), None)
                self._toggle(episode)
                if other is not None:
                    self._toggle(other)
            case "replace":
                model.replace_file(episode.id)
            case "edit_show":
                model.edit_show(episode.show_id, title=f"Show {self.rng.randint(1, 10**6)}")
            case "remove_show":
                model.remove_show(episode.show_id)
            case "trash":
                assert isinstance(self.sim, PlexSimulator)
                self.removed.append(self.sim.delete_file(episode.id))

    @property
    def _swaps_seen(self) -> bool:
        """Plex's ``lastViewedAt`` moves with any watch; Jellyfin's push names the items."""
        return isinstance(self.sim, PlexSimulator) or self.push

    def _toggle(self, episode: SimEpisode) -> None:
        self.sim.model.set_watched(episode.id, not episode.watched)
        self.played.add(episode.id)

    def _removes(self, change: str, episode: SimEpisode) -> int:
        """How many listed episodes a change takes away."""
        if change == "remove_show":
            show = self.sim.model.show(episode.show_id)
            return sum(listed(e) for e in show.episodes.values())
        return int(change in ("remove", "trash"))

    def _restorable(self) -> list[SimEpisode]:
        """Removed or trashed episodes whose show is still there to take them back."""
        return [e for e in self.removed if self.sim.model.find_show(e.show_id) is not None]

    def _add(self, *, new_show: bool) -> set[str]:
        model = self.sim.model
        if new_show:
            library_id = self.rng.choice(tv_library_ids(model))
            show = model.add_show(library_id, f"New {self.rng.randint(1, 10**6)}")
            self.numbers[show.id] = self.rng.randint(1, 3)
            return {
                model.add_episode(show.id, 1, number).id
                for number in range(1, self.numbers[show.id] + 1)
            }
        show = self.rng.choice(list(self._shows()))
        self.numbers[show.id] += 1
        return {model.add_episode(show.id, 1, self.numbers[show.id]).id}

    def _shows(self) -> Iterator[SimShow]:
        for library_id in tv_library_ids(self.sim.model):
            yield from self.sim.model.libraries[library_id].shows.values()

    def _episodes(self) -> list[SimEpisode]:
        return [e for show in self._shows() for e in show.episodes.values() if listed(e)]


def listed(episode: SimEpisode) -> bool:
    """Whether the mirror should hold the episode: a real file, not in Plex's trash."""
    return not episode.virtual and episode.deleted_at is None


def server_rows(sim: Sim, library_id: str) -> set[tuple[Any, ...]]:
    return {
        (e.id, e.show_id, e.season, e.number, e.title, e.watched)
        for e in sim.model.libraries[library_id].episodes()
        if listed(e)
    }


def library_rows(mirror: Mirror, library_id: str) -> set[tuple[Any, ...]]:
    return {
        (e.id, e.show_id, e.season, e.number, e.title, e.watched)
        for show in mirror.libraries[library_id].shows.values()
        for e in show.episodes.values()
    }


def without_watched(rows: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    return {row[:-1] for row in rows}


def watch_some(sim: Sim) -> None:
    """Mark every third episode watched, before the first sync: swaps need both states."""
    episodes = sorted(sim.model.all_episodes(), key=lambda e: e.id)
    for episode in episodes[::3]:
        sim.model.set_watched(episode.id)
