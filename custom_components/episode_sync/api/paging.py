"""Paged listings fetched with bounded concurrency, robust to short pages.

Both servers may serve fewer items than asked (a Plex server-side cap,
Jellyfin's own limits), so the end of a listing is never inferred from a
short page (docs: plex §3, jellyfin §3). The first page tells the total and
how many items the server really serves per page; the remaining pages are
then requested at that stride, a few at a time. Any gap left by a page that
came back shorter than the stride is filled by asking again from where the
rows stop, so nothing is skipped even when the server changes its mind.

A caller may also ask, for the duration of one listing, that each page's
items be swapped as the page arrives (see ``reuse_items``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

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

#: Maps a freshly parsed page of items to the items to keep (same length).
type Reuse = Callable[[list[Any]], list[Any]]

#: The listing's reuse step, set with ``reuse_items``. A context variable, not
#: a parameter, so the clients' and the engine's ``Backend`` signatures stay
#: as they are: any listing made inside the ``with`` block (and the tasks it
#: starts) applies it.
_REUSE: ContextVar[Reuse | None] = ContextVar("episode_sync_reuse", default=None)


@contextlib.contextmanager
def reuse_items(reuse: Reuse) -> Iterator[None]:
    """Pass every page parsed inside this block through ``reuse`` as it arrives.

    The sync engine uses it during a full sync to keep the mirror's own,
    equal rows instead of the ones just parsed. Swapped page by page, the
    parsed duplicates die at once instead of doubling a 100,000-episode
    mirror's memory until the end of the listing.
    """
    token = _REUSE.set(reuse)
    try:
        yield
    finally:
        _REUSE.reset(token)


async def fetch_all[T](
    fetch: PageFetcher[T], page_size: int, concurrency: int, *, page_while_full: bool = False
) -> list[T]:
    """Every item of a listing, each page parsed as it arrives.

    Parsing per page keeps at most a few pages of raw JSON alive at once: at
    100,000 episodes, holding every raw row until the end made the garbage
    collector's full passes block the event loop.

    A first page without a total is the whole listing on Plex (no
    ``totalSize``: nothing was paged, docs: plex §3); with
    ``page_while_full`` (Jellyfin) pages are asked for as long as they come
    back full (docs: jellyfin §3).
    """
    reuse = _REUSE.get()
    if reuse is not None:
        fetch = _with_reuse(fetch, reuse)
    first = await fetch(0, page_size)
    items = list(first.items)
    total = first.total
    if total is None and page_while_full:
        position, served = first.served, first.served
        while served == page_size:
            page = await fetch(position, page_size)
            items.extend(page.items)
            position, served = position + page.served, page.served
        return items
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


def _with_reuse[T](fetch: PageFetcher[T], reuse: Reuse) -> PageFetcher[T]:
    """``fetch`` with each page's items passed through ``reuse``."""

    async def fetch_reusing(start: int, size: int) -> Page[T]:
        page = await fetch(start, size)
        return Page(reuse(page.items), page.served, page.total)

    return fetch_reusing


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

    ``concurrency`` workers take the jobs in turn, so a generator of jobs is
    drawn one job at a time: a 200-page listing keeps a few coroutines alive,
    not 200 (at 100,000 episodes every live object counts, see
    ``models.EpisodeRow``). The siblings of a failed job are cancelled (no
    request outlives its sync), jobs never started are closed, and the error
    is raised as itself, not wrapped in an exception group, so callers map it
    like any other.
    """
    queue = enumerate(jobs)
    results: dict[int, T] = {}

    async def worker() -> None:
        for index, job in queue:  # shared: each worker takes the next job
            results[index] = await job

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, concurrency)):
                group.create_task(worker())
    except BaseExceptionGroup as error_group:
        error: BaseException = error_group
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error from None
    finally:
        for _, job in queue:  # not started (a sibling failed): no "never awaited"
            if isinstance(job, Coroutine):
                job.close()
    return [results[index] for index in range(len(results))]
