"""``runner-cache plan`` and ``runner-cache setup``."""

from __future__ import annotations

import argparse

from runner_cache.blocks.config_block import resolve_config
from runner_cache.commands.common import add_common, report_flow_run, steps_text
from runner_cache.flows.setup import plan_setup, setup_runner_cache
from runner_cache.output import emit


def register(subparsers: argparse._SubParsersAction) -> None:
    plan = subparsers.add_parser("plan", help="show what setup would do; touches nothing")
    add_common(plan)
    plan.set_defaults(func=run_plan)
    setup = subparsers.add_parser("setup", help="run the setup-runner-cache flow")
    add_common(setup)
    setup.add_argument(
        "--no-rollback", action="store_true", help="keep an upgraded release even when the pipeline check fails"
    )
    setup.set_defaults(func=run_setup)


def run_plan(args: argparse.Namespace) -> int:
    steps = plan_setup(resolve_config(args.config))
    document = {"changed": any(step.changed for step in steps), "steps": [step.model_dump() for step in steps]}
    emit(document, as_json=args.json, text=steps_text("plan", steps))
    return 1 if any(step.status == "failed" for step in steps) else 0


def run_setup(args: argparse.Namespace) -> int:
    resolve_config(args.config)  # a configuration error stops here, before any flow run starts
    state = setup_runner_cache(config=args.config, rollback_on_failure=not args.no_rollback, return_state=True)
    return report_flow_run(state, args, "setup")
