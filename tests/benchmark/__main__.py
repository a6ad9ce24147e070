"""``python -m tests.benchmark`` (what ``script/bench`` runs)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
import sys

from .remote import SimSpec
from .run import run_server, table, to_json

SIZES = {
    "5k": (100, 5, 10),  # 100 shows x 5 seasons x 10 episodes = 5,000
    "100k": (1000, 10, 10),  # 1,000 shows x 10 seasons x 10 episodes = 100,000
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write table, JSON and chart."""
    parser = argparse.ArgumentParser(prog="script/bench")
    parser.add_argument("--latency", type=float, default=50.0, help="ms per request (NAS: 50)")
    parser.add_argument("--sizes", default="5k,100k", help="comma list of: " + ", ".join(SIZES))
    parser.add_argument("--servers", default="plex,jellyfin")
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--out", default="bench-results", help="folder for JSON and PNG")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    runs = []
    for size in args.sizes.split(","):
        shows, seasons, episodes = SIZES[size]
        for server in args.servers.split(","):
            spec = SimSpec(
                server=server,
                shows=shows,
                seasons=seasons,
                episodes=episodes,
                latency=args.latency / 1000,
            )
            print(f"running {server} {size} ...", file=sys.stderr, flush=True)
            runs.append(
                asyncio.run(run_server(spec, concurrency=args.concurrency, naive=not args.no_naive))
            )
    print(table(runs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = vars(args)
    (out / "bench.json").write_bytes(to_json(runs, settings))
    try:
        from .run import chart

        chart(runs, str(out / "bench.png"))
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)", file=sys.stderr)
    print(f"\nwrote {out / 'bench.json'} and {out / 'bench.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
