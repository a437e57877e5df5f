"""``setup-runner-cache``: store → bucket → round trip → runner release → pipeline check → report."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.states import Failed, State

from blocks.config_block import resolve_config
from blocks.settings import RunnerCacheSections
from tasks.bucket import ensure_bucket, ensure_bucket_task
from tasks.report import StepResult, steps_markdown
from tasks.roundtrip import roundtrip
from tasks.store import plan as plan_store
from tasks.store import provision_store


def _not_configured(step: str, enable: str) -> StepResult:
    return StepResult(step=step, status="skipped", detail=f"not configured: {enable}")


def skipped_steps(config: RunnerCacheSections) -> list[StepResult]:
    """Steps whose target is not configured, each saying what would enable it."""
    steps = []
    if not config.release.configured:
        steps.append(_not_configured("release", "set RUNNER_CACHE_RELEASE__CHART (and the cluster) to configure the runner release"))
    if not config.gitlab.configured:
        steps.append(
            _not_configured(
                "pipeline", "set RUNNER_CACHE_GITLAB__URL, RUNNER_CACHE_GITLAB__TOKEN and RUNNER_CACHE_GITLAB__PROJECT to prove the cache with a pipeline"
            )
        )
    return steps


def plan_setup(config: RunnerCacheSections) -> list[StepResult]:
    """What setup would do, touching nothing (reads the store when it is reachable)."""
    store_step = plan_store(config.store)
    steps = [store_step]
    if store_step.status == "unchanged":
        steps.append(ensure_bucket(config.store, config.cache, apply=False))
    else:
        steps.append(StepResult(step="bucket", status="planned", detail=f"would ensure bucket {config.store.bucket!r} and its lifecycle rule once the store runs"))
    steps.append(StepResult(step="roundtrip", status="planned", detail="would write, read back and delete a test archive"))
    return steps + skipped_steps(config)


def run_steps(steps: list[StepResult], actions: list[tuple[str, Callable[[], StepResult]]]) -> Exception | None:
    """Run named ``actions`` in order until one fails; the failure becomes a step with its reason."""
    logger = get_run_logger()
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


def finish(title: str, steps: list[StepResult], bucket: str) -> dict | State:
    """The flow's artifact, event and return value, all from the same steps; a Failed state when a step failed."""
    changed = any(step.changed for step in steps)
    failed = any(step.status == "failed" for step in steps)
    create_markdown_artifact(key=title, markdown=steps_markdown(title, steps), description=f"{title} summary")
    emit_event(
        event=f"runner-cache.{title.split('-')[0]}.{'failed' if failed else 'completed'}",
        resource={"prefect.resource.id": f"runner-cache.bucket.{bucket}", "prefect.resource.name": bucket},
        payload={"changed": changed, "steps": {step.step: step.status for step in steps}},
    )
    result = {"changed": changed, "steps": [step.model_dump() for step in steps]}
    if failed:
        failed_step = next(step for step in steps if step.status == "failed")
        return Failed(message=f"{failed_step.step} failed: {failed_step.detail}", data=result)
    if not changed:
        get_run_logger().info("no changes: everything was already as configured")
    return result


@flow(name="setup-runner-cache", persist_result=False)
def setup_runner_cache(config: str | None = None) -> dict | State:
    """Provision the store, ensure the bucket, check a round trip, and report each step.

    Args:
        config: Name of a saved Runner Cache Config block; empty means the RUNNER_CACHE_* environment.
    """
    sections = resolve_config(config)
    steps: list[StepResult] = []
    failure = run_steps(
        steps,
        [
            ("store", lambda: provision_store(sections.store)),
            ("bucket", lambda: ensure_bucket_task(sections.store, sections.cache)),
            ("roundtrip", lambda: roundtrip(sections.store, sections.cache)),
        ],
    )
    if failure is None:
        steps += skipped_steps(sections)
    return finish("setup-runner-cache", steps, sections.store.bucket)
