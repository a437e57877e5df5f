"""``runner-cache verify``: run the verify-runner-cache flow and print the verdict, its cause and the fix."""

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
    """The steps table, then the pipeline check's cause, fix, the trace lines that show it, and warnings."""
    lines = [steps_text("verify", steps)]
    pipeline = next((step for step in steps if step.step == "pipeline"), None)
    if pipeline is not None and pipeline.data:
        data = pipeline.data
        lines += ["", f"{data['verdict']}: {data['cause']} — {data['message']}"]
        if data.get("fix"):
            lines.append(f"fix: {data['fix']}")
        lines += [f"  {line}" for line in data.get("evidence", [])]
        lines += [f"warning: {warning}" for warning in data.get("warnings", [])]
        if data.get("pipeline_url"):
            lines.append(f"pipeline: {data['pipeline_url']}")
    return "\n".join(lines)


def run_verify(args: argparse.Namespace) -> int:
    resolve_config(args.config)  # a configuration error (runner tags missing too) stops here, before any flow run
    state = verify_runner_cache(config=args.config, roundtrip_first=not args.skip_roundtrip, return_state=True)
    return report_flow_run(state, args, "verify", text=_text)
