"""What each step did, in a shape shared by the CLI's JSON, the markdown artifact and the events."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.states import Failed, State
from pydantic import BaseModel, Field

from blocks.release import ReleaseSettings
from blocks.store import StoreSettings
from tasks.logs import run_logger

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


def bucket_resource(store: StoreSettings) -> dict[str, str]:
    """The event resource for a bucket: flows acting on the same bucket share it."""
    return {"prefect.resource.id": f"runner-cache.bucket.{store.bucket}", "prefect.resource.name": store.bucket, "endpoint": store.endpoint}


def release_resource(release: ReleaseSettings) -> dict[str, str]:
    """The event resource for a Helm release: the upgrade event and the automation that verifies after it share it."""
    return {"prefect.resource.id": f"runner-cache.release.{release.namespace}.{release.release}", "prefect.resource.name": release.release}


def run_steps(steps: list[StepResult], actions: list[tuple[str, Callable[[], StepResult]]]) -> Exception | None:
    """Run named ``actions`` in order until one fails; the failure becomes a step with its reason."""
    logger = run_logger(__name__)
    for name, action in actions:
        try:
            result = action()
        except Exception as error:
            logger.error("%s failed: %s", name, error)
            steps.append(StepResult(step=name, status="failed", detail=f"{type(error).__name__}: {error}"))
            return error
        logger.info("%s %s: %s", result.step, result.status, result.detail)
        steps.append(result)
    return None


def finish(title: str, steps: list[StepResult], *, event: str, resource: dict[str, str]) -> dict | State:
    """The flow's artifact, event and return value, all from the same steps; a Failed state when a step failed.

    Args:
        title: Flow name; also the artifact key.
        steps: What each step did.
        event: Event name prefix; ``.completed`` or ``.failed`` is appended.
        resource: The Prefect event resource the flow acted on (``prefect.resource.id`` …).
    """
    changed = any(step.changed for step in steps)
    failed = any(step.status == "failed" for step in steps)
    create_markdown_artifact(key=title, markdown=steps_markdown(title, steps), description=f"{title} summary")
    emit_event(
        event=f"{event}.{'failed' if failed else 'completed'}",
        resource=resource,
        payload={"changed": changed, "steps": {step.step: step.status for step in steps}},
    )
    result = {"changed": changed, "steps": [step.model_dump() for step in steps]}
    if failed:
        failed_step = next(step for step in steps if step.status == "failed")
        return Failed(message=f"{failed_step.step} failed: {failed_step.detail}", data=result)
    if not changed:
        run_logger(__name__).info("no changes: everything was already as configured")
    return result
