"""Paged listings fetched with bounded concurrency, robust to short pages.

Both servers may serve fewer items than asked (a Plex server-side cap,
Jellyfin's own limits), so the end of a listing is never inferred from a
short page (docs: plex §3, jellyfin §3). The first page tells the total and
how many items the server really serves per page; the remaining pages are
then requested at that stride, a few at a time. Any gap left by a page that
came back shorter than the stride is filled by asking again from where the
rows stop, so nothing is skipped even when the server changes its mind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

#: Parsing hands the event loop back every this many rows (a 100,000-episode
#: listing parsed in one go would block Home Assistant for a noticeable time).
PARSE_STEP = 2000


@dataclass(frozen=True, slots=True)
class Page[T]:
    """One page: what it parsed to, how many rows the server served, the total."""

    items: list[T]
    served: int
    total: int | None


#: Fetch and parse ``size`` rows from ``start``.
type PageFetcher[T] = Callable[[int, int], Awaitable[Page[T]]]


async def fetch_all[T](fetch: PageFetcher[T], page_size: int, concurrency: int) -> list[T]:
    """Every item of a listing, each page parsed as it arrives.

    Parsing per page keeps at most a few pages of raw JSON alive at once: at
    100,000 episodes, holding every raw row until the end made the garbage
    collector's full passes block the event loop.
    """
    first = await fetch(0, page_size)
    items = list(first.items)
    total = first.total
    if total is None or first.served == 0 or first.served >= total:
        return items
    stride = first.served
    starts = list(range(stride, total, stride))
    pages = await bounded_gather((fetch(start, stride) for start in starts), concurrency)
    position = stride
    for start, page in zip(starts, pages, strict=True):
        if position < start:
            position = await _sequential(fetch, position, start, stride, items)
        items.extend(page.items)
        position = start + page.served
    if position < total:
        await _sequential(fetch, position, total, stride, items)
    return items


async def _sequential[T](
    fetch: PageFetcher[T], start: int, end: int, size: int, into: list[T]
) -> int:
    """Fill rows ``start`` up to ``end`` page after page; return where it stopped."""
    position = start
    while position < end:
        page = await fetch(position, min(size, end - position))
        if page.served == 0:
            break
        into.extend(page.items)
        position += page.served
    return position


async def bounded_gather[T](jobs: Iterable[Awaitable[T]], concurrency: int) -> list[T]:
    """Run jobs with at most ``concurrency`` at once; fail fast with the first error.

    The siblings of a failed job are cancelled (no request outlives its
    sync), and the error is raised as itself, not wrapped in an exception
    group, so callers map it like any other.
    """
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def run(job: Awaitable[T]) -> T:
        async with semaphore:
            return await job

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run(job)) for job in jobs]
    except BaseExceptionGroup as error_group:
        error: BaseException = error_group
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error from None
    return [task.result() for task in tasks]
