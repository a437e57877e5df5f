"""``runner-cache rebuild``: after a runner upgrade, upgrade the release, verify, roll back on failure."""

from __future__ import annotations

import argparse

from runner_cache.blocks.config_block import resolve_config
from runner_cache.commands.common import add_common, report_flow_run
from runner_cache.errors import ConfigError
from runner_cache.flows.rebuild import RebuildParameters, rebuild_runner


def register(subparsers: argparse._SubParsersAction) -> None:
    rebuild = subparsers.add_parser(
        "rebuild", help="run the rebuild-runner flow (upgrade the release, verify, roll back on failure)"
    )
    add_common(rebuild)
    rebuild.add_argument(
        "--chart-version", help="gitlab-runner chart version to upgrade to (default: the configured one)"
    )
    rebuild.add_argument("--runner-image-tag", help="override the runner image tag, e.g. alpine-v18.6.0")
    rebuild.add_argument(
        "--no-verify", action="store_true", help="upgrade only; skip the round trip and the pipeline check"
    )
    rebuild.add_argument(
        "--no-rollback", action="store_true", help="keep the upgraded release even when verification fails"
    )
    rebuild.set_defaults(func=run_rebuild)


def run_rebuild(args: argparse.Namespace) -> int:
    if not resolve_config(args.config).release.configured:
        raise ConfigError("rebuild needs a release: set RUNNER_CACHE_RELEASE__CHART (and the cluster settings)")
    parameters = RebuildParameters(
        chart_version=args.chart_version,
        runner_image_tag=args.runner_image_tag,
        verify=not args.no_verify,
        rollback_on_failure=not args.no_rollback,
    )
    state = rebuild_runner(config=args.config, parameters=parameters, return_state=True)
    return report_flow_run(state, args, "rebuild")
