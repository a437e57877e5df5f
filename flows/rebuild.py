"""``rebuild-runner``: after a runner upgrade — upgrade the release, verify, roll back when verification fails."""

from __future__ import annotations

from prefect import flow
from prefect.states import Failed, State
from pydantic import BaseModel, Field

from runner_cache.blocks.config_block import resolve_config
from runner_cache.flows.locks import exclusive
from runner_cache.flows.reporting import finish
from runner_cache.flows.verify import run_pipeline_check
from runner_cache.tasks.events import release_resource
from runner_cache.tasks.release.step import release_then_verify
from runner_cache.tasks.results import StepResult
from runner_cache.tasks.store.roundtrip import check_roundtrip_task


class RebuildParameters(BaseModel):
    """What the UI's form asks for when a runner upgrade needs a rebuild."""

    chart_version: str | None = Field(
        None,
        title="Chart Version",
        description="gitlab-runner chart version to upgrade to (default: the configured one).",
    )
    runner_image_tag: str | None = Field(
        None, title="Runner Image Tag", description="Override the runner image tag, e.g. alpine-v18.6.0."
    )
    verify: bool = Field(
        True,
        title="Verify",
        description="Prove the cache afterwards (round trip, and the pipeline when GitLab is configured).",
    )
    rollback_on_failure: bool = Field(
        True, title="Rollback On Failure", description="Roll the release back when verification fails."
    )


@flow(name="rebuild-runner", persist_result=False)
def rebuild_runner(config: str | None = None, parameters: RebuildParameters = RebuildParameters()) -> dict | State:
    """Upgrade the runner release, verify the shared cache, and roll back when verification fails.

    Args:
        config: Name of a saved Runner Cache Config block; empty means the RUNNER_CACHE_* environment.
        parameters: Chart version, runner image tag, whether to verify and to roll back on failure.
    """
    sections = resolve_config(config)
    if not sections.release.configured:
        return Failed(
            message="rebuild-runner needs a release: set RUNNER_CACHE_RELEASE__CHART (and the cluster settings)"
        )
    verifications = []
    if parameters.verify:
        verifications = [
            ("roundtrip", lambda: check_roundtrip_task(sections.store, sections.cache)),
            ("pipeline", lambda: run_pipeline_check(sections)),
        ]
    steps: list[StepResult] = []
    with exclusive(release=sections.release):
        release_then_verify(
            sections,
            steps,
            verifications,
            chart_version=parameters.chart_version,
            image_tag=parameters.runner_image_tag,
            rollback_on_failure=parameters.rollback_on_failure,
        )
    return finish("rebuild-runner", steps, event="runner-cache.rebuild", resource=release_resource(sections.release))
