"""``setup-runner-cache``: store → bucket → round trip → runner release → pipeline check → report.

The release step (kubernetes, helm) and the pipeline check (python-gitlab) are imported only when configured:
together they are a third of a second of every ``runner-cache setup`` and ``plan`` that does not use them.
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow
from prefect.states import State

from runner_cache.blocks.config_block import resolve_config
from runner_cache.blocks.settings import RunnerCacheSections
from runner_cache.errors import UsageError
from runner_cache.flows.locks import exclusive
from runner_cache.flows.reporting import finish, run_steps
from runner_cache.tasks.events import bucket_resource
from runner_cache.tasks.results import StepResult
from runner_cache.tasks.store import ensure_store, ensure_store_task
from runner_cache.tasks.store.bucket import ensure_bucket, ensure_bucket_task
from runner_cache.tasks.store.identity import identity_steps, plan_identity, revoke_steps
from runner_cache.tasks.store.roundtrip import check_roundtrip_task


def _not_configured(step: str, enable: str) -> StepResult:
    return StepResult(step=step, status="skipped", detail=f"not configured: {enable}")


def skipped_steps(config: RunnerCacheSections) -> list[StepResult]:
    """Steps whose target is not configured, each saying what would enable it."""
    steps = []
    if not config.release.configured:
        steps.append(
            _not_configured(
                "release", "set RUNNER_CACHE_RELEASE__CHART (and the cluster) to configure the runner release"
            )
        )
    if not config.gitlab.configured:
        steps.append(
            _not_configured(
                "pipeline",
                "set RUNNER_CACHE_GITLAB__URL, RUNNER_CACHE_GITLAB__TOKEN and RUNNER_CACHE_GITLAB__PROJECT to prove the cache with a pipeline",
            )
        )
    return steps


def _read_only(step: str, action: Callable[[], StepResult]) -> StepResult:
    """A plan step; a store or cluster that cannot be read becomes a failed row (exit 1), not a crash; bad settings still stop (exit 2)."""
    try:
        return action()
    except UsageError:
        raise
    except Exception as error:
        return StepResult(step=step, status="failed", detail=f"{type(error).__name__}: {error}")


def plan_setup(config: RunnerCacheSections) -> list[StepResult]:
    """What setup would do, touching nothing (reads the store and the cluster when they are reachable)."""
    store_step = _read_only("store", lambda: ensure_store(config.store, apply=False))
    steps = [store_step]
    if store_step.status == "unchanged":
        steps.append(_read_only("bucket", lambda: ensure_bucket(config.store, config.cache, apply=False)))
    else:
        steps.append(
            StepResult(
                step="bucket",
                status="planned",
                detail=f"would ensure bucket {config.store.bucket!r} and its lifecycle rule once the store runs",
            )
        )
    steps += plan_identity(config, store_running=store_step.status == "unchanged")
    steps.append(
        StepResult(step="roundtrip", status="planned", detail="would write, read back and delete a test archive")
    )
    if config.release.configured:
        from runner_cache.tasks.release.step import plan_release

        steps.append(_read_only("release", lambda: plan_release(config)))
    if config.gitlab.configured:
        steps.append(
            StepResult(
                step="pipeline",
                status="planned",
                detail=f"would prove the cache with a two-job pipeline in {config.gitlab.project}",
            )
        )
    return steps + skipped_steps(config)


@flow(name="setup-runner-cache", persist_result=False)
def setup_runner_cache(
    config: str | None = None, rollback_on_failure: bool = True, rotate_runner_credentials: bool = False
) -> dict | State:
    """Provision the store, ensure the bucket, check a round trip, configure the release, prove the cache.

    Args:
        config: Name of a saved Runner Cache Config block; empty means the RUNNER_CACHE_* environment.
        rollback_on_failure: Roll the release back when the pipeline check fails after an upgrade.
        rotate_runner_credentials: Give the runner a new key; the old one is revoked only after the release
            and the checks work with the new one.
    """
    sections = resolve_config(config)
    steps: list[StepResult] = []
    with exclusive(release=sections.release if sections.release.configured else None, store=sections.store):
        failure = run_steps(
            steps,
            [
                ("store", lambda: ensure_store_task(sections.store)),
                ("bucket", lambda: ensure_bucket_task(sections.store, sections.cache)),
                *identity_steps(sections, rotate=rotate_runner_credentials),
                ("roundtrip", lambda: check_roundtrip_task(sections.store, sections.cache)),
            ],
        )
        pipeline = []
        if sections.gitlab.configured:
            from runner_cache.flows.verify import run_pipeline_check

            pipeline = [("pipeline", lambda: run_pipeline_check(sections))]
        if failure is None and sections.release.configured:
            from runner_cache.tasks.release.step import release_then_verify

            verified = release_then_verify(sections, steps, pipeline, rollback_on_failure=rollback_on_failure) is None
        else:
            verified = failure is None and run_steps(steps, pipeline) is None
        if verified:  # old keys go only once the release and the checks work with the current one
            run_steps(steps, revoke_steps(sections))
    if failure is None:
        steps += skipped_steps(sections)
    return finish("setup-runner-cache", steps, event="runner-cache.setup", resource=bucket_resource(sections.store))
