"""The baseline: a naive mirror that walks show -> seasons -> episodes on every sync.

What most clients do today (SPEC §1): list the shows, then each show's
seasons, then each season's episodes, with the same concurrency as ours.
Unpaged listings, as those clients send them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import orjson

type Fetch = Callable[[str, dict[str, str]], Awaitable[Any]]


class NaiveWalker:
    """Walks a server the naive way, counting requests and bytes."""

    def __init__(self, session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
        """Bind to a server; ``headers`` carry the credentials."""
        self._session = session
        self._url = url.rstrip("/")
        self._headers = {"Accept": "application/json", **headers}
        self.requests = 0
        self.bytes = 0

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """One GET, parsed."""
        self.requests += 1
        async with self._session.get(
            self._url + path, params=params or {}, headers=self._headers
        ) as response:
            response.raise_for_status()
            body = await response.read()
        self.bytes += len(body)
        return orjson.loads(body)

    async def _bounded(self, concurrency: int, jobs: Sequence[Awaitable[Any]]) -> list[Any]:
        semaphore = asyncio.Semaphore(concurrency)

        async def run(job: Awaitable[Any]) -> Any:
            async with semaphore:
                return await job

        return await asyncio.gather(*(run(job) for job in jobs))

    async def plex(self, library_ids: list[str], concurrency: int) -> int:
        """Walk Plex; return the number of episodes seen."""
        await self.get("/library/sections")
        episodes = 0
        for library_id in library_ids:
            shows = await self.get(f"/library/sections/{library_id}/all", {"type": "2"})
            show_keys = [m["ratingKey"] for m in shows["MediaContainer"].get("Metadata", [])]
            seasons = await self._bounded(
                concurrency, [self.get(f"/library/metadata/{key}/children") for key in show_keys]
            )
            season_keys = [
                m["ratingKey"]
                for page in seasons
                for m in page["MediaContainer"].get("Metadata", [])
                if m.get("type") == "season"
            ]
            pages = await self._bounded(
                concurrency,
                [self.get(f"/library/metadata/{key}/children") for key in season_keys],
            )
            episodes += sum(len(p["MediaContainer"].get("Metadata", [])) for p in pages)
        return episodes

    async def jellyfin(self, user_id: str, library_ids: list[str], concurrency: int) -> int:
        """Walk Jellyfin; return the number of episodes seen."""
        await self.get(f"/Users/{user_id}/Views")
        episodes = 0
        for library_id in library_ids:
            series = await self.get(
                "/Items",
                {
                    "userId": user_id,
                    "ParentId": library_id,
                    "IncludeItemTypes": "Series",
                    "Recursive": "true",
                },
            )
            series_ids = [item["Id"] for item in series["Items"]]
            seasons = await self._bounded(
                concurrency,
                [self.get(f"/Shows/{sid}/Seasons", {"userId": user_id}) for sid in series_ids],
            )
            season_jobs = [
                self.get(
                    f"/Shows/{sid}/Episodes",
                    {"userId": user_id, "seasonId": season["Id"], "isMissing": "false"},
                )
                for sid, page in zip(series_ids, seasons, strict=True)
                for season in page["Items"]
            ]
            pages = await self._bounded(concurrency, season_jobs)
            episodes += sum(len(page["Items"]) for page in pages)
        return episodes
