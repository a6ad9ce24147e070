"""Run a simulator standalone: ``python -m tests.simulator plex|jellyfin [options]``.

Used by ``script/develop`` (try the integration in a real Home Assistant) and
handy for poking at the API with curl. Prints the URL and the credentials to
enter in the config flow, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from .jellyfin import JellyfinSimulator
from .plex import PlexSimulator


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.simulator")
    parser.add_argument("server", choices=("plex", "jellyfin"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--shows", type=int, default=20)
    parser.add_argument("--seasons", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=8, help="episodes per season")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument(
        "--version", default=None, help="Jellyfin server version (10.10, 10.11, 12.0)"
    )
    parser.add_argument(
        "--add-every",
        type=float,
        default=0.0,
        help="add a new episode to a random show every N seconds (0: never)",
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    sim: PlexSimulator | JellyfinSimulator
    if args.server == "plex":
        sim = PlexSimulator(latency=args.latency)
    else:
        sim = JellyfinSimulator(latency=args.latency, version=args.version or "10.11.7")
    library = sim.model.generate(
        shows=args.shows, seasons=args.seasons, episodes=args.episodes, seed=args.seed
    )
    url = await sim.start(args.host, args.port)
    total = sum(1 for _ in library.episodes())
    print(f"{args.server} simulator at {url}  ({args.shows} shows, {total} episodes)")
    if isinstance(sim, PlexSimulator):
        print(f"  config flow: Plex, URL {url}, token {sim.token}")
    else:
        user, password = next(iter(sim.users.items()))
        print(f"  config flow: Jellyfin, URL {url}, username {user}, password {password!r}")
    sys.stdout.flush()
    try:
        number = 100
        while True:
            if args.add_every <= 0:
                await asyncio.sleep(3600)
                continue
            await asyncio.sleep(args.add_every)
            show = next(iter(library.shows.values()))
            number += 1
            episode = sim.model.add_episode(show.id, 1, number, title=f"Fresh episode {number}")
            print(f"  added {show.title} S01E{number:02d} ({episode.id})")
            sys.stdout.flush()
    finally:
        await sim.close()


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until interrupted."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(_parse(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
