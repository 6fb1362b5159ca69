"""`python -m sandbox serve --state-dir DIR [--host 127.0.0.1] [--fno-page-size N]`: run until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from sandbox.runner import start_sandbox


async def _serve(args: argparse.Namespace) -> None:
    running = await start_sandbox(Path(args.state_dir), host=args.host, fno_page_size=args.fno_page_size,
                                  teams_renderer_dir=args.teams_renderer_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"sandbox ready: {Path(args.state_dir).resolve() / 'sandbox.json'}", flush=True)
    print(f"  F&O   {running.state['fno']['base_url']}", flush=True)
    print(f"  Entra {running.state['entra']['authority_host']}", flush=True)
    if "teams" in running.state:
        print(f"  Teams {running.state['teams']['page_url']}", flush=True)
    try:
        await stop.wait()
    finally:
        await running.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="ml-connector local stand-ins")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start every stand-in and write DIR/sandbox.json")
    serve.add_argument("--state-dir", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--fno-page-size", type=int, default=None)
    serve.add_argument("--teams-renderer-dir", default=None,
                       help="folder with Microsoft's card renderer (cards/vendor) for the Teams page")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
