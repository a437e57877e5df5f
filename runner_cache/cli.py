"""The ``runner-cache`` command: local runs of the flows, the local store, blocks and run history."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from runner_cache.commands import blocks, history, prune, rebuild, render_chart, serve, setup, store, verify
from runner_cache.errors import RunnerCacheError

COMMANDS = (setup, verify, prune, rebuild, render_chart, store, blocks, history, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner-cache",
        description="Set up, verify and prune GitLab Runner's S3 distributed cache.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit codes: 0 ok, 1 the work or an outside system failed, 2 bad usage or configuration."""
    args = build_parser().parse_args(argv)
    if getattr(args, "json", False):
        # Prefect's console logging goes to stderr; make sure nothing else reaches stdout either.
        logging.getLogger().handlers = [logging.StreamHandler(sys.stderr)]
    try:
        return int(args.func(args) or 0)
    except RunnerCacheError as error:
        print(f"runner-cache: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
