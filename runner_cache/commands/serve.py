"""``runner-cache serve``: serve the four deployments from this process until it is stopped."""

from __future__ import annotations

import argparse
import sys

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from runner_cache.blocks.config_block import resolve_config
from runner_cache.commands.common import add_common, steps_text
from runner_cache.deployments.serve import (
    PRUNE,
    build_deployments,
    deployment_name,
    load_serve_settings,
    prepare,
    serve_forever,
)
from runner_cache.errors import ConfigError
from runner_cache.output import emit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve setup, nightly prune, verify and rebuild as Prefect deployments",
        description="Registers the deployments on the Prefect server at PREFECT_API_URL and runs their flow runs "
        "until stopped. The nightly prune's schedule and rules come from RUNNER_CACHE_SCHEDULE__*.",
    )
    add_common(parser)
    parser.add_argument(
        "--limit", type=_positive, metavar="N", help="run at most N flow runs at once (default: no limit)"
    )
    parser.set_defaults(func=run_serve)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of 1 or more")
    return int(text)


def run_serve(args: argparse.Namespace) -> int:
    api = PREFECT_API_URL.value()
    if not api:
        raise ConfigError(
            "serve needs a Prefect server that outlives this process: start one with `prefect server start` "
            "and set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)"
        )
    sections = resolve_config(args.config)  # configuration errors stop here, before anything is registered
    schedule = load_serve_settings().schedule
    with get_client(sync_client=True) as client:
        if client.api_healthcheck() is not None:
            print(f"runner-cache: the Prefect API at {api} does not answer; is the server running?", file=sys.stderr)
            return 1
    deployments = build_deployments(args.config, schedule)
    steps = prepare(sections, deployments)
    names = [f"{deployment.flow_name}/{deployment.name}" for deployment in deployments]
    document = {
        "api_url": api,
        "deployments": names,
        "schedule": {"deployment": deployment_name(PRUNE), **schedule.model_dump(mode="json")},
        "steps": [step.model_dump() for step in steps],
    }
    text = "\n".join(
        [
            steps_text("serve", steps),
            "",
            f"serving {', '.join(names)} on {api}",
            f"nightly prune: {schedule.cron} ({schedule.timezone}){'' if schedule.active else ', paused'}",
            "stop with Ctrl+C or SIGTERM; the deployments are paused until the next start",
        ]
    )
    emit(document, as_json=args.json, text=text)
    serve_forever(deployments, limit=args.limit)
    return 0
