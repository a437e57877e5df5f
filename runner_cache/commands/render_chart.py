"""``runner-cache render-chart``: render the gitlab-runner chart without a cluster and check what the runner gets.

``--release-values FILE`` renders as an upgrade of a deployed release would: on top of the values it was installed
with (``helm get values RELEASE -o yaml > FILE``), so its own ``runners.config`` is the base of ours.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from runner_cache.blocks.config_block import resolve_config
from runner_cache.commands.common import add_common
from runner_cache.errors import ChartError, ConfigError
from runner_cache.output import emit
from runner_cache.tasks.chart.patch import ChartMismatch, prepare_chart
from runner_cache.tasks.chart.values import parse_release_values


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render-chart",
        help="render the runner chart with the cache values and check what the runner gets; needs no cluster",
    )
    parser.add_argument(
        "--chart",
        metavar="PATH_OR_REF",
        help="chart directory, .tgz or repo reference (default: RUNNER_CACHE_RELEASE__CHART)",
    )
    parser.add_argument(
        "--version",
        help="chart version to pull, or to expect of a local chart (default: RUNNER_CACHE_RELEASE__CHART_VERSION)",
    )
    parser.add_argument(
        "--release-values",
        metavar="FILE",
        type=Path,
        help="values of the deployed release, as `helm get values RELEASE -o yaml` prints them: render as its upgrade",
    )
    add_common(parser)
    parser.set_defaults(func=run_render_chart)


def _release_values(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"--release-values {path}: {error.strerror}") from None
    return parse_release_values(text, f"--release-values {path}")


def run_render_chart(args: argparse.Namespace) -> int:
    config = resolve_config(args.config)
    release_values = _release_values(args.release_values)
    with tempfile.TemporaryDirectory(prefix="runner-cache-chart-") as workdir:
        try:
            plan = prepare_chart(config, args.chart, args.version, workdir=Path(workdir), release_values=release_values)
        except ChartMismatch as mismatch:
            plan = mismatch.plan
        except ChartError as error:
            reference = args.chart or config.release.chart
            emit({"chart": reference, "error": str(error)}, as_json=args.json, text=f"render-chart FAILED: {error}")
            return 1
    emit(plan.document(), as_json=args.json, text=plan.summary())
    return 0 if plan.ok else 1
