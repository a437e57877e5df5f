"""Arguments and output shared by the sub-commands."""

from __future__ import annotations

import argparse

from tasks.report import StepResult, markdown_table


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="BLOCK", help="a saved Runner Cache Config block (default: the environment)")
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
