"""The calendar: one event per mirrored episode on the day it aired.

An episode with a known air time (Plex over-the-air recordings) is a timed
event on its air date in Home Assistant's time zone, lasting its runtime; any
other episode with an air date is an all-day event. The display filters apply.

A mirror can hold 100,000 episodes, and the frontend, the calendar trigger
(every 15 minutes) and every state write ask for events. So the episodes are
grouped by air date once per mirror object (the mirror is immutable: a sync
that changes something replaces it) and a query only looks at the dates in its
range, found by bisection in the sorted list of distinct dates.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import islice

from homeassistant.components.calendar import (
    CalendarEntity,
    CalendarEntityDescription,
    CalendarEvent,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.util import dt as dt_util

from . import EpisodeSyncConfigEntry
from .api.models import At, Episode, EpisodeRow
from .coordinator import DisplayFilter, episode_code
from .entity import EpisodeSyncEntity
from .sync import Mirror

PARALLEL_UPDATES = 0

EPISODES = CalendarEntityDescription(key="episodes", translation_key="episodes")

#: Between the parts of an event's summary.
SEPARATOR = " \N{EN DASH} "
#: The length of a timed event whose runtime the server does not know.
DEFAULT_RUNTIME = timedelta(minutes=30)
#: Longer runtimes are cut to this, so a query only needs to look one day back
#: for events that started before its range and still run into it.
MAX_RUNTIME = timedelta(days=1)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EpisodeSyncConfigEntry,
    async_add_entities: AddEntitiesCallback,
) -> None:
    """Add the episode calendar of an entry."""
    async_add_entities([EpisodeCalendar(entry.runtime_data.coordinator, EPISODES)])


def summary(show: str, episode: Episode) -> str:
    """``Show - S01E02 - Title`` (en dashes), leaving out what the server does not know."""
    parts = (show, episode_code(episode.season, episode.number), episode.title)
    return SEPARATOR.join(part for part in parts if part)


@dataclass(slots=True)
class AirDateIndex:
    """The visible episodes of one mirror by air date (``YYYY-MM-DD`` sorts as dates)."""

    time_zone: tzinfo
    #: Show titles and episode rows by air date: rows, because the index lives
    #: as long as its mirror and the garbage collector does not walk them
    #: (``EpisodeRow``); a day's events are built when asked for.
    by_date: dict[str, list[tuple[str, EpisodeRow]]]
    #: The distinct air dates, sorted.
    dates: list[str]
    _events: dict[str, list[CalendarEvent]] = field(default_factory=dict)

    @classmethod
    def build(cls, mirror: Mirror, display: DisplayFilter, time_zone: tzinfo) -> AirDateIndex:
        """Group the visible episodes with a usable air date: one pass, no sort of episodes."""
        by_date: dict[str, list[tuple[str, EpisodeRow]]] = {}
        for library in mirror.libraries.values():
            for show in library.shows.values():
                title = show.show.title
                if display.hides_show(title):
                    continue
                for row in show.rows.values():
                    air_date = row[At.AIR_DATE]
                    if air_date is None or display.hides_season(row[At.SEASON]):
                        continue
                    by_date.setdefault(air_date, []).append((title, row))
        dates = []
        for day in by_date:
            try:
                date.fromisoformat(day)
            except ValueError:
                continue  # a server's odd date is no reason to fail the calendar
            dates.append(day)
        dates.sort()
        return cls(time_zone=time_zone, by_date=by_date, dates=dates)

    def in_time_zone(self, time_zone: tzinfo) -> AirDateIndex:
        """The same index in another time zone: the grouping stands, events are made anew."""
        return AirDateIndex(time_zone=time_zone, by_date=self.by_date, dates=self.dates)

    def events(self, day: str) -> list[CalendarEvent]:
        """The events of one air date in start order, made once per date."""
        if (events := self._events.get(day)) is None:
            aired = date.fromisoformat(day)
            events = [
                self._event(aired, show, Episode.from_row(row)) for show, row in self.by_date[day]
            ]
            events.sort(key=lambda e: (e.start_datetime_local, e.summary, e.uid or ""))
            self._events[day] = events
        return events

    def _event(self, aired: date, show: str, episode: Episode) -> CalendarEvent:
        start = _air_time(aired, episode.air_time, self.time_zone)
        if start is None:  # all day: the end date is exclusive
            return CalendarEvent(
                start=aired,
                end=aired + timedelta(days=1),
                summary=summary(show, episode),
                uid=episode.id,
            )
        runtime = timedelta(seconds=episode.duration) if episode.duration else DEFAULT_RUNTIME
        # Added in UTC: arithmetic on local times ignores a DST change in between.
        end = (start.astimezone(UTC) + min(runtime, MAX_RUNTIME)).astimezone(self.time_zone)
        return CalendarEvent(start=start, end=end, summary=summary(show, episode), uid=episode.id)


def _air_time(aired: date, air_time: str | None, time_zone: tzinfo) -> datetime | None:
    """The start of a timed airing; None for an all-day one (no or an unreadable time)."""
    if not air_time:
        return None
    try:
        clock = time.fromisoformat(air_time)
    except ValueError:
        return None
    # The server's local time, taken as Home Assistant's (both usually sit in one home);
    # one that a DST change skips is read as the offset before it, then normalised.
    return datetime.combine(aired, clock, tzinfo=time_zone).astimezone(UTC).astimezone(time_zone)


class EpisodeCalendar(EpisodeSyncEntity, CalendarEntity):
    """The mirrored episodes on their air dates."""

    _index: AirDateIndex | None = None
    _indexed: Mirror | None = None
    #: The index being built for a new mirror, then written as the state.
    _reindexing: asyncio.Task[None] | None = None

    async def async_added_to_hass(self) -> None:
        """Index the mirror before the first state is written."""
        await super().async_added_to_hass()
        await self._async_reindex(self.coordinator.data.mirror)

    @callback
    def _handle_coordinator_update(self) -> None:
        """A new mirror is indexed off the event loop first; then the state follows."""
        mirror = self.coordinator.data.mirror
        if mirror is self._indexed:
            super()._handle_coordinator_update()
            return
        if self._reindexing is not None:
            self._reindexing.cancel()  # overtaken: the newer one writes the state
        self._reindexing = self.coordinator.config_entry.async_create_task(
            self.hass, self._async_reindex(mirror, write=True), "episode_sync calendar index"
        )

    async def async_will_remove_from_hass(self) -> None:
        """Stop an index still being built: its state write would set timers no one cancels.

        ``CalendarEntity`` schedules the next state change (an airing's start
        or end) at each write and cancels it on removal; a write after that
        leaves the timer running.
        """
        if self._reindexing is not None:
            self._reindexing.cancel()
        await super().async_will_remove_from_hass()

    async def _async_reindex(self, mirror: Mirror, *, write: bool = False) -> None:
        """Build the index of the current mirror in an executor thread.

        At 100,000 episodes the build takes ~50 ms of CPU: in the loop that
        would stall Home Assistant. The mirror and the display filter are
        immutable, so a thread may read them while the loop goes on.
        """
        time_zone = dt_util.get_default_time_zone()
        index = await self.hass.async_add_executor_job(
            AirDateIndex.build, mirror, self.coordinator.display_filter, time_zone
        )
        if mirror is self.coordinator.data.mirror:  # not overtaken by a newer sync
            self._index, self._indexed = index, mirror
        if write:
            self.async_write_ha_state()

    def _air_dates(self) -> AirDateIndex:
        """The index of the mirror, in Home Assistant's current time zone; never built here.

        A new mirror is indexed off the loop by ``_async_reindex`` (started by
        the update that brought it), so a query in the meantime answers from
        the previous mirror's index. A changed time zone only needs the
        events made anew, not the index.
        """
        time_zone = dt_util.get_default_time_zone()
        index = self._index
        assert index is not None  # built in async_added_to_hass, before any state or query
        if index.time_zone is not time_zone:
            index = self._index = index.in_time_zone(time_zone)
        return index

    @property
    def event(self) -> CalendarEvent | None:
        """The episode airing now, else the next one to air."""
        now = dt_util.now()
        index = self._air_dates()
        # Yesterday's timed airings may still run (runtimes are cut to a day).
        first = bisect_left(index.dates, (now.date() - timedelta(days=1)).isoformat())
        for day in islice(index.dates, first, None):
            for event in index.events(day):
                if event.end_datetime_local > now:
                    return event
        return None

    async def async_get_events(
        self, hass: HomeAssistant, start_date: datetime, end_date: datetime
    ) -> list[CalendarEvent]:
        """The airings that overlap ``[start_date, end_date)``, in start order."""
        index = self._air_dates()
        first = (dt_util.as_local(start_date).date() - timedelta(days=1)).isoformat()
        last = dt_util.as_local(end_date).date().isoformat()
        days = index.dates[bisect_left(index.dates, first) : bisect_right(index.dates, last)]
        return [
            event
            for day in days
            for event in index.events(day)
            if event.start_datetime_local < end_date and event.end_datetime_local > start_date
        ]
