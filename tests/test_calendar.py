"""The episode calendar: all-day and timed airings, its state, the HTTP API and the trigger."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import Event, HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.episode_sync import calendar as calendar_module
from custom_components.episode_sync.calendar import SEPARATOR, AirDateIndex
from tests.helpers import entity_id, next_poll, plex_entry, setup_entry, tv_library_ids
from tests.simulator.library import SimShow
from tests.simulator.plex import PlexSimulator

TIME_ZONE = "Europe/Berlin"
D = SEPARATOR


def _first_show(sim: PlexSimulator) -> SimShow:
    return next(iter(sim.model.libraries[tv_library_ids(sim.model)[0]].shows.values()))


async def _get_events(hass: HomeAssistant, calendar: str, start: datetime, end: datetime) -> Any:
    response = await hass.services.async_call(
        "calendar",
        "get_events",
        {
            "entity_id": calendar,
            "start_date_time": start.isoformat(),
            "end_date_time": end.isoformat(),
        },
        blocking=True,
        return_response=True,
    )
    return response[calendar]["events"]  # type: ignore[index]


@pytest.fixture
async def air_day(hass: HomeAssistant, plex_sim: PlexSimulator) -> date:
    """A day three days ahead with four airings of the first show.

    The simulator stamps episode numbers divisible by 7 (or none) with an air
    time (``YYYY-MM-DD 20:00:00``, an over-the-air recording); the others carry
    a date only. Its episodes run 30 minutes.
    """
    await hass.config.async_set_time_zone(TIME_ZONE)
    day = dt_util.now().date() + timedelta(days=3)
    show = _first_show(plex_sim)
    plex_sim.model.add_episode(show.id, 3, 7, title="Live", air_date=day.isoformat())
    plex_sim.model.add_episode(show.id, 3, 1, title="Daytime", air_date=day.isoformat())
    plex_sim.model.add_episode(show.id, None, None, title="Pilot", air_date=day.isoformat())
    plex_sim.model.add_episode(show.id, None, 2, title="Bonus", air_date=day.isoformat())
    return day


async def test_events_of_a_day_all_day_and_timed(
    hass: HomeAssistant, plex_sim: PlexSimulator, air_day: date
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    calendar = entity_id(hass, entry, "calendar", "episodes")
    show = _first_show(plex_sim).title
    tz = dt_util.get_default_time_zone()
    midnight = datetime.combine(air_day, time(), tzinfo=tz)

    events = await _get_events(hass, calendar, midnight, midnight + timedelta(days=1))

    all_day = {"start": air_day.isoformat(), "end": (air_day + timedelta(days=1)).isoformat()}
    evening = {
        "start": datetime.combine(air_day, time(20), tzinfo=tz).isoformat(),
        "end": datetime.combine(air_day, time(20, 30), tzinfo=tz).isoformat(),
    }
    # In start order; at the same start, by summary. A missing season or number is left out.
    assert events == [
        {**all_day, "summary": f"{show}{D}E02{D}Bonus"},
        {**all_day, "summary": f"{show}{D}S03E01{D}Daytime"},
        {**evening, "summary": f"{show}{D}Pilot"},
        {**evening, "summary": f"{show}{D}S03E07{D}Live"},
    ]
    # Only what overlaps the range: after 20:30 the evening airings are over.
    late = await _get_events(
        hass, calendar, midnight + timedelta(hours=20, minutes=30), midnight + timedelta(hours=21)
    )
    assert [e["summary"] for e in late] == [f"{show}{D}E02{D}Bonus", f"{show}{D}S03E01{D}Daytime"]
    after = await _get_events(
        hass, calendar, midnight + timedelta(days=1), midnight + timedelta(days=2)
    )
    assert after == []
    # The library's own episodes aired in the past: a range around today has none of them.
    assert await _get_events(hass, calendar, dt_util.now(), dt_util.now() + timedelta(days=1)) == []


async def test_an_index_still_built_at_unload_writes_no_state(
    hass: HomeAssistant, plex_sim: PlexSimulator, air_day: date
) -> None:
    """A sync's new mirror is indexed in a thread; an unload meanwhile stops that: no state
    is written for the removed entity. On Home Assistant 2025.4 such a write left the
    timer of its next airing running, which the test harness fails as a lingering timer."""
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    calendar = entity_id(hass, entry, "calendar", "episodes")
    plex_sim.model.add_episode(_first_show(plex_sim).id, 4, 1, air_date=air_day.isoformat())
    await entry.runtime_data.coordinator.async_refresh()  # the index is being built
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    state = hass.states.get(calendar)
    assert state is not None
    assert state.state == "unavailable"


async def test_calendar_http_api(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    air_day: date,
    hass_client: ClientSessionGenerator,
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    calendar = entity_id(hass, entry, "calendar", "episodes")
    client = await hass_client()
    start = datetime.combine(air_day, time(19), tzinfo=dt_util.get_default_time_zone())
    response = await client.get(
        f"/api/calendars/{calendar}",
        params={"start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat()},
    )
    assert response.status == 200
    events = await response.json()
    assert [(e["summary"].rsplit(D, 1)[-1], "dateTime" in e["start"]) for e in events] == [
        ("Bonus", False),
        ("Daytime", False),
        ("Pilot", True),
        ("Live", True),
    ]
    assert events[3]["uid"] == next(
        e.id for e in plex_sim.model.all_episodes() if e.title == "Live"
    )


async def test_state_follows_the_next_airing(
    hass: HomeAssistant, plex_sim: PlexSimulator, air_day: date, freezer: FrozenDateTimeFactory
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    calendar = entity_id(hass, entry, "calendar", "episodes")
    show = _first_show(plex_sim).title
    state = hass.states.get(calendar)
    assert state is not None
    assert state.state == "off"
    assert state.attributes["message"] == f"{show}{D}E02{D}Bonus"
    assert state.attributes["all_day"] is True

    tz = dt_util.get_default_time_zone()
    freezer.move_to(datetime.combine(air_day, time(20, 10), tzinfo=tz))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    state = hass.states.get(calendar)
    assert state is not None
    assert state.state == "on"  # the all-day airings run all day
    freezer.move_to(datetime.combine(air_day + timedelta(days=1), time(0, 5), tzinfo=tz))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    state = hass.states.get(calendar)
    assert state is not None
    assert state.state == "off"
    assert "message" not in state.attributes  # nothing left to air


async def test_calendar_trigger_fires_when_an_episode_airs(
    hass: HomeAssistant, plex_sim: PlexSimulator, air_day: date, freezer: FrozenDateTimeFactory
) -> None:
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    calendar = entity_id(hass, entry, "calendar", "episodes")
    tz = dt_util.get_default_time_zone()
    freezer.move_to(datetime.combine(air_day, time(19, 55), tzinfo=tz))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    aired: list[Event] = []
    hass.bus.async_listen("episode_aired", aired.append)  # type: ignore[arg-type]
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "mode": "parallel",  # two episodes air at 20:00
                "triggers": {"trigger": "calendar", "event": "start", "entity_id": calendar},
                "actions": {
                    "event": "episode_aired",
                    "event_data": {"summary": "{{ trigger.calendar_event.summary }}"},
                },
            }
        },
    )
    await hass.async_block_till_done()
    assert aired == []
    freezer.move_to(datetime.combine(air_day, time(20, 0, 1), tzinfo=tz))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    show = _first_show(plex_sim).title
    # Runs of one moment may finish in either order.
    assert sorted(e.data["summary"] for e in aired) == [
        f"{show}{D}Pilot",
        f"{show}{D}S03E07{D}Live",
    ]
    # Detach the trigger (it polls every 15 minutes) before the test ends.
    await hass.services.async_call("automation", "turn_off", {"entity_id": "all"}, blocking=True)


async def test_index_is_built_once_per_mirror(
    hass: HomeAssistant,
    plex_sim: PlexSimulator,
    air_day: date,
    freezer: FrozenDateTimeFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Queries and unchanged syncs reuse the index; a sync that changes the mirror rebuilds it."""
    builds: list[int] = []
    original = AirDateIndex.build.__func__  # type: ignore[attr-defined]

    def counting(cls: type[AirDateIndex], *args: Any) -> AirDateIndex:
        builds.append(1)
        return original(cls, *args)  # type: ignore[no-any-return]

    monkeypatch.setattr(AirDateIndex, "build", classmethod(counting))
    entry = plex_entry(plex_sim)
    await setup_entry(hass, entry)
    calendar = entity_id(hass, entry, "calendar", "episodes")
    assert len(builds) == 1
    start = dt_util.now()
    for _ in range(3):
        await _get_events(hass, calendar, start, start + timedelta(days=30))
    await next_poll(hass, freezer)  # unchanged library: the same mirror object
    assert len(builds) == 1
    plex_sim.model.add_episode(
        _first_show(plex_sim).id, 3, 2, title="Later", air_date=air_day.isoformat()
    )
    await next_poll(hass, freezer)
    events = await _get_events(hass, calendar, start, start + timedelta(days=30))
    assert len(builds) == 2
    assert "Later" in {e["summary"].rsplit(D, 1)[-1] for e in events}
    # Another time zone moves timed airings: their events are made anew, the index stays.
    timed = {e["summary"]: e["start"] for e in events if "T" in e["start"]}
    assert timed
    await hass.config.async_set_time_zone("Pacific/Auckland")
    moved = await _get_events(hass, calendar, start, start + timedelta(days=30))
    assert len(builds) == 2
    assert any(event["summary"] in timed for event in moved)
    for event in moved:
        if event["summary"] in timed:
            assert event["start"] != timed[event["summary"]]
            assert event["start"].endswith(("+12:00", "+13:00"))  # Auckland


def test_odd_dates_and_times_do_not_break_the_calendar() -> None:
    """A server's unreadable air date is left out; an unreadable air time makes an all-day event."""
    from custom_components.episode_sync.api.models import EpisodeRow, Show, episode_row
    from custom_components.episode_sync.coordinator import DisplayFilter
    from custom_components.episode_sync.sync import LibraryMirror, Mirror, ShowMirror

    def episode(id_: str, air_date: str, air_time: str | None) -> EpisodeRow:
        return episode_row(
            id=id_, show_id="s", library_id="l", season=1, number=int(id_), title="",
            air_date=air_date, added_at=0, watched=False, air_time=air_time, duration=None,
        )  # fmt: skip

    episodes = {
        "1": episode("1", "0000-00-00", None),
        "2": episode("2", "2026-01-02", "25:99"),
        "3": episode("3", "2026-01-02", "20:00"),
    }
    show = Show(id="s", library_id="l", title="Show", episode_count=3, watched_count=0)
    mirror = Mirror(
        server_id="x",
        libraries={
            "l": LibraryMirror(id="l", title="TV", shows={"s": ShowMirror.build(show, episodes)})
        },
    )
    tz = dt_util.get_default_time_zone()
    index = AirDateIndex.build(mirror, DisplayFilter(), tz)
    assert index.dates == ["2026-01-02"]
    events = index.events("2026-01-02")
    assert [(e.summary, e.all_day) for e in events] == [
        (f"Show{D}S01E02", True),
        (f"Show{D}S01E03", False),
    ]
    # No runtime: the default length.
    assert events[1].end - events[1].start == calendar_module.DEFAULT_RUNTIME  # type: ignore[operator]


@pytest.mark.parametrize(
    ("day", "clock", "start"),
    [
        ("2026-03-08", "02:30", "2026-03-08T03:30:00-04:00"),  # skipped by the spring change
        ("2026-11-01", "01:30", "2026-11-01T01:30:00-04:00"),  # the first of two 01:30s
    ],
)
def test_a_timed_airing_on_a_dst_night_lasts_its_runtime(day: str, clock: str, start: str) -> None:
    """Half an hour is half an hour when the clocks change during it (or before it starts)."""
    from zoneinfo import ZoneInfo

    from custom_components.episode_sync.api.models import Show, episode_row
    from custom_components.episode_sync.coordinator import DisplayFilter
    from custom_components.episode_sync.sync import LibraryMirror, Mirror, ShowMirror

    row = episode_row(
        id="1", show_id="s", library_id="l", season=1, number=1, title="Late",
        air_date=day, added_at=0, watched=False, air_time=clock, duration=1800,
    )  # fmt: skip
    show = Show(id="s", library_id="l", title="Show", episode_count=1, watched_count=0)
    mirror = Mirror(
        server_id="x",
        libraries={
            "l": LibraryMirror(id="l", title="TV", shows={"s": ShowMirror.build(show, {"1": row})})
        },
    )
    (event,) = AirDateIndex.build(mirror, DisplayFilter(), ZoneInfo("America/New_York")).events(day)
    assert isinstance(event.start, datetime)
    assert isinstance(event.end, datetime)
    assert event.start.isoformat() == start
    # As Home Assistant sends them: with their offsets (a subtraction would use wall clocks).
    ends = datetime.fromisoformat(event.end.isoformat())
    assert ends - datetime.fromisoformat(start) == timedelta(minutes=30)
