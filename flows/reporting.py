"""Flow plumbing: run steps in order, then leave the summary artifact, the event and the return value from them."""

from __future__ import annotations

from collections.abc import Callable

from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.states import Failed, State

from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.results import StepResult, markdown_table


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
