"""``runner-cache verify``: run the verify-runner-cache flow and print the verdict."""

from __future__ import annotations

import argparse

from runner_cache.blocks.config_block import resolve_config
from runner_cache.commands.common import add_common, report_flow_run, steps_text
from runner_cache.flows.verify import verify_runner_cache
from runner_cache.tasks.results import StepResult


def register(subparsers: argparse._SubParsersAction) -> None:
    verify = subparsers.add_parser("verify", help="prove with a two-job pipeline that the runner cache is shared")
    add_common(verify)
    verify.add_argument("--skip-roundtrip", action="store_true", help="go straight to the pipeline check")
    verify.set_defaults(func=run_verify)


def _text(steps: list[StepResult]) -> str:
    """The steps table, then the pipeline check's diagnosis and warnings one per line."""
    lines = [steps_text("verify", steps)]
    pipeline = next((step for step in steps if step.step == "pipeline"), None)
    if pipeline is not None:
        lines += [f"diagnosis: {sentence}" for sentence in pipeline.data.get("diagnosis", [])]
        lines += [f"warning: {warning}" for warning in pipeline.data.get("warnings", [])]
        if pipeline.data.get("pipeline_url"):
            lines.append(f"pipeline: {pipeline.data['pipeline_url']}")
    return "\n".join(lines)


def run_verify(args: argparse.Namespace) -> int:
    resolve_config(args.config)  # a configuration error stops here, before any flow run starts
    state = verify_runner_cache(config=args.config, roundtrip_first=not args.skip_roundtrip, return_state=True)
    return report_flow_run(state, args, "verify", text=_text)
