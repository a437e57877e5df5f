"""What each step did, in a shape shared by the CLI's JSON, the markdown artifact and the events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["changed", "unchanged", "skipped", "failed", "planned"]


class StepResult(BaseModel):
    """One step of a flow: what it did (``status``), why (``detail``), how long, and facts for machines."""

    step: str
    status: Status
    detail: str
    seconds: float = 0.0
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.status in {"changed", "planned"}


class Timer:
    """Measures a step; ``seconds`` is final once the ``with`` block ends."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    timer = Timer()
    try:
        yield timer
    finally:
        timer.seconds = round(time.monotonic() - timer.started, 3)


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table; pipes and newlines in cells are escaped so rows stay intact."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def steps_markdown(title: str, steps: list[StepResult]) -> str:
    """The summary artifact of a flow: one row per step, then the verdict."""
    changed = any(step.changed for step in steps)
    failed = [step.step for step in steps if step.status == "failed"]
    verdict = f"**Failed:** {', '.join(failed)}" if failed else ("**Changes made.**" if changed else "**No changes.**")
    table = markdown_table(
        ["step", "result", "what and why", "seconds"],
        [[step.step, step.status, step.detail, f"{step.seconds:.2f}"] for step in steps],
    )
    return f"# {title}\n\n{verdict}\n\n{table}\n"
