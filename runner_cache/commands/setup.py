"""``runner-cache plan`` and ``runner-cache setup``."""

from __future__ import annotations

import argparse

from blocks.config_block import resolve_config
from flows.setup import plan_setup, setup_runner_cache
from runner_cache.commands.common import add_common, steps_text
from runner_cache.output import emit
from tasks.report import StepResult


def register(subparsers: argparse._SubParsersAction) -> None:
    plan = subparsers.add_parser("plan", help="show what setup would do; touches nothing")
    add_common(plan)
    plan.set_defaults(func=run_plan)
    setup = subparsers.add_parser("setup", help="run the setup-runner-cache flow")
    add_common(setup)
    setup.set_defaults(func=run_setup)


def run_plan(args: argparse.Namespace) -> int:
    steps = plan_setup(resolve_config(args.config))
    document = {"changed": any(step.changed for step in steps), "steps": [step.model_dump() for step in steps]}
    emit(document, as_json=args.json, text=steps_text("plan", steps))
    return 1 if any(step.status == "failed" for step in steps) else 0


def run_setup(args: argparse.Namespace) -> int:
    resolve_config(args.config)  # a configuration error stops here, before any flow run starts
    state = setup_runner_cache(config=args.config, return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, dict):
        steps = [StepResult(**step) for step in result["steps"]]
        emit({**result, "flow_run_id": str(state.state_details.flow_run_id)}, as_json=args.json, text=steps_text("setup", steps))
        return 1 if state.is_failed() else 0
    document = {"changed": False, "steps": [], "error": str(result), "flow_run_id": str(state.state_details.flow_run_id)}
    emit(document, as_json=args.json, text=f"setup FAILED: {result}")
    return 1
