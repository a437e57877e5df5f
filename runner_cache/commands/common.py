"""Arguments and output shared by the sub-commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from prefect.states import State

from runner_cache.output import emit
from runner_cache.tasks.results import StepResult, markdown_table


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="BLOCK", help="a saved Runner Cache Config block (default: the environment)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout and nothing else there")


def steps_text(title: str, steps: list[StepResult]) -> str:
    """The human summary of a flow's steps: a table, then the verdict line."""
    table = markdown_table(["step", "result", "what and why"], [[s.step, s.status, s.detail] for s in steps])
    if any(step.status == "failed" for step in steps):
        verdict = "FAILED"
    elif any(step.changed for step in steps):
        verdict = "changes made" if title != "plan" else "changes planned"
    else:
        verdict = "no changes"
    return f"{title}: {verdict}\n\n{table}"


def report_flow_run(
    state: State, args: argparse.Namespace, title: str, text: Callable[[list[StepResult]], str] | None = None
) -> int:
    """Print a finished flow run's result (its steps, or the error that stopped it); 1 when the run failed."""
    result = state.result(raise_on_failure=False)
    flow_run_id = str(state.state_details.flow_run_id)
    if isinstance(result, dict):
        steps = [StepResult(**step) for step in result["steps"]]
        emit(
            {**result, "flow_run_id": flow_run_id},
            as_json=args.json,
            text=(text or (lambda s: steps_text(title, s)))(steps),
        )
        return 1 if state.is_failed() else 0
    emit(
        {"changed": False, "steps": [], "error": str(result), "flow_run_id": flow_run_id},
        as_json=args.json,
        text=f"{title} FAILED: {result}",
    )
    return 1
