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
from typing import Any

type Row = dict[str, Any]
#: Parsing hands the event loop back every this many rows (a 100,000-episode
#: listing parsed in one go would block Home Assistant for a noticeable time).
PARSE_STEP = 2000
#: Fetch ``size`` rows from ``start``; return the rows and the total when known.
type PageFetcher = Callable[[int, int], Awaitable[tuple[list[Row], int | None]]]


async def fetch_all(fetch: PageFetcher, page_size: int, concurrency: int) -> list[Row]:
    """Every row of a listing."""
    rows, total = await fetch(0, page_size)
    if total is None or not rows or len(rows) >= total:
        return rows
    stride = len(rows)
    starts = list(range(stride, total, stride))
    pages = await bounded_gather((fetch(start, stride) for start in starts), concurrency)
    for start, (page, _) in zip(starts, pages, strict=True):
        if len(rows) < start:
            rows.extend(await _sequential(fetch, len(rows), start, stride))
        rows.extend(page[len(rows) - start :])
    if len(rows) < total:
        rows.extend(await _sequential(fetch, len(rows), total, stride))
    return rows


async def _sequential(fetch: PageFetcher, start: int, end: int, size: int) -> list[Row]:
    """Rows from ``start`` up to ``end``, one page after the other."""
    rows: list[Row] = []
    while start + len(rows) < end:
        page, _ = await fetch(start + len(rows), min(size, end - start - len(rows)))
        if not page:
            break
        rows.extend(page)
    return rows


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
