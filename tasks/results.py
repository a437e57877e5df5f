"""What each step did (:class:`StepResult`), in one shape for the CLI's JSON, the artifacts and the events; no I/O."""

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
