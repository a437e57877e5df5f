"""``verify-runner-cache``: a round trip through the store, then a real two-job pipeline that must share the cache.

:func:`run_pipeline_check` is the reusable part: setup and rebuild call it as their verification step.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.states import Failed, State

from runner_cache.blocks.config_block import resolve_config
from runner_cache.blocks.settings import RunnerCacheSections
from runner_cache.flows.reporting import run_steps, steps_markdown
from runner_cache.redaction import redact
from runner_cache.tasks.events import bucket_resource
from runner_cache.tasks.results import StepResult, markdown_table, timed
from runner_cache.tasks.store.roundtrip import check_roundtrip_task
from runner_cache.tasks.verify.diagnosis import (
    ObjectCheck,
    PipelineEvidence,
    StoreView,
    Verdict,
    created_key,
    diagnose,
    excerpt,
    runner_identity,
    uploaded,
)
from runner_cache.tasks.verify.pipeline import check_cache_object_task, run_verification_pipeline_task

FLOW_NAME = "verify-runner-cache"
EVIDENCE_ARTIFACT = "runner-cache-verification"
NOT_CONFIGURED = (
    "not configured: set RUNNER_CACHE_GITLAB__URL, RUNNER_CACHE_GITLAB__TOKEN and RUNNER_CACHE_GITLAB__PROJECT "
    "to prove the cache with a pipeline"
)


def _secrets(sections: RunnerCacheSections) -> list[str]:
    """Every secret value a trace, message or artifact could carry, for masking."""
    values = [sections.gitlab.token, sections.store.access_key, sections.store.secret_key]
    return [value.get_secret_value() for value in values if value is not None]


def _object_check(sections: RunnerCacheSections, evidence: PipelineEvidence) -> tuple[ObjectCheck | None, str | None]:
    """Look for the build job's object at the computed key, when the build trace says it uploaded one."""
    build = evidence.job("build")
    if build is None or evidence.project_id is None or not uploaded(build.trace):
        return None, None
    identity, key = runner_identity(build.trace), created_key(build.trace)
    if identity is None or key is None:
        return None, None
    try:
        return check_cache_object_task(sections.store, sections.cache, evidence.project_id, identity[1], key), None
    except Exception as error:  # reported as the diagnosis: the bucket could not be read
        return (
            None,
            f"could not look for the cache object in bucket {sections.store.bucket!r}: {type(error).__name__}: {error}",
        )


def evidence_markdown(
    evidence: PipelineEvidence, verdict: Verdict, check: ObjectCheck | None, secrets: list[str]
) -> str:
    """The artifact: verdict, diagnosis, a side-by-side of both jobs, the object check and trace excerpts (masked)."""
    facts = verdict.facts
    title = "PASSED" if verdict.passed else "FAILED"
    lines = [f"# Runner cache verification: {title}", "", f"**Verdict:** {verdict.summary}", ""]
    lines += [f"> **Warning:** {warning}" for warning in verdict.warnings]
    if verdict.diagnosis:
        lines += ["## Diagnosis", ""] + [f"- {sentence}" for sentence in verdict.diagnosis] + [""]
    build, test = evidence.job("build"), evidence.job("test")
    if build or test:
        rows = [
            ["status", build.status if build else "-", test.status if test else "-"],
            ["runner", f"{facts.get('build_runner')} ({facts.get('build_short_token')})", f"{facts.get('test_runner')} ({facts.get('test_short_token')})"],
            ["pod (HOSTNAME)", facts.get("build_host") or "-", facts.get("test_host") or "-"],
            ["cache key", facts.get("created_key") or "-", facts.get("checked_key") or "-"],
            ["cache transfer", "uploaded" if facts.get("uploaded") else "not uploaded", "extracted" if facts.get("extracted") else "not extracted"],
        ]  # fmt: skip
        lines += ["## Evidence", "", markdown_table(["", "build", "test"], rows), ""]
    if check is not None:
        where = f"found ({check.size} bytes)" if check.found else "missing"
        lines.append(f"Object `{check.expected}` in bucket `{check.bucket}`: {where}.")
        if check.elsewhere:
            lines.append(f"Found instead at: {', '.join(f'`{name}`' for name in check.elsewhere)}.")
        if check.deleted:
            lines.append(f"Deleted after the check: {', '.join(f'`{name}`' for name in check.deleted)}.")
        lines.append("")
    pipeline = f"[{evidence.pipeline_id}]({evidence.pipeline_url})" if evidence.pipeline_url else "none"
    lines.append(
        f"Pipeline {pipeline} on branch `{evidence.branch}`: {evidence.status or 'not started'} after "
        f"{evidence.waited_seconds:.0f} s{', cancelled' if evidence.cancelled else ''}; branch "
        f"{'deleted' if evidence.branch_deleted else 'not deleted'}."
    )
    lines += [f"- cleanup problem: {problem}" for problem in evidence.cleanup_errors]
    for job in (build, test):
        if job is not None and job.trace:
            text = excerpt(job.trace).replace("```", "'''")
            lines += ["", f"### {job.name} job trace (excerpt)", "", "```text", text, "```"]
    return redact("\n".join(lines) + "\n", secrets)


def emit_verify_event(sections: RunnerCacheSections, passed: bool, payload: dict[str, Any]) -> None:
    """``runner-cache.verify.passed`` / ``.failed`` about the verification project (values masked by the caller)."""
    project = sections.gitlab.project or "none"
    emit_event(
        event=f"runner-cache.verify.{'passed' if passed else 'failed'}",
        resource={"prefect.resource.id": f"runner-cache.gitlab-project.{project}", "prefect.resource.name": project},
        related=[{**bucket_resource(sections.store), "prefect.resource.role": "bucket"}],
        payload=payload,
    )


def run_pipeline_check(sections: RunnerCacheSections) -> StepResult:
    """Prove with a real pipeline that two jobs share the cache; call it inside a flow run.

    Returns a ``StepResult`` named ``pipeline``: ``skipped`` when GitLab is not configured (nothing else happens),
    ``unchanged`` when the check passed (``detail`` carries a "not proven across pods" warning when both jobs ran
    on one pod), ``failed`` with the diagnosis in ``detail`` otherwise. Never raises for a failed verification.
    ``data`` holds ``verdict``, ``proven_across_pods``, ``diagnosis``, ``warnings``, ``pipeline_id``,
    ``pipeline_url``, ``object`` and ``facts``. It also leaves the evidence artifact and emits
    ``runner-cache.verify.passed`` / ``.failed``. The branch is always deleted and an unfinished pipeline cancelled.
    """
    if not sections.gitlab.configured:
        return StepResult(step="pipeline", status="skipped", detail=NOT_CONFIGURED)
    logger = get_run_logger()
    secrets = _secrets(sections)
    with timed() as timer:
        evidence = run_verification_pipeline_task(sections.gitlab)
        check, check_error = _object_check(sections, evidence)
        store = StoreView(
            endpoint=sections.store.endpoint,
            bucket=sections.store.bucket,
            path=sections.cache.path,
            shared=sections.cache.shared,
        )
        verdict = diagnose(evidence, store, check)
        if check_error:
            verdict = Verdict(
                passed=False,
                summary="the bucket could not be checked",
                diagnosis=[check_error],
                warnings=verdict.warnings,
                facts=verdict.facts,
            )
    verdict = Verdict.model_validate_json(redact(verdict.model_dump_json(), secrets))
    create_markdown_artifact(
        key=EVIDENCE_ARTIFACT,
        markdown=evidence_markdown(evidence, verdict, check, secrets),
        description=f"verification pipeline: {'passed' if verdict.passed else 'failed'}",
    )
    for sentence in verdict.diagnosis:
        logger.error("diagnosis: %s", sentence)
    for warning in verdict.warnings:
        logger.warning("%s", warning)
    data = {
        "verdict": "passed" if verdict.passed else "failed",
        "proven_across_pods": verdict.proven_across_pods,
        "summary": verdict.summary,
        "diagnosis": verdict.diagnosis,
        "warnings": verdict.warnings,
        "pipeline_id": evidence.pipeline_id,
        "pipeline_url": evidence.pipeline_url,
        "object": check.expected if check else None,
        "facts": verdict.facts,
    }
    emit_verify_event(sections, verdict.passed, data)
    if verdict.passed:
        detail = f"two jobs shared the cache: {verdict.summary}" + "".join(f" (warning: {w})" for w in verdict.warnings)
        logger.info("pipeline check passed: %s", detail)
        return StepResult(step="pipeline", status="unchanged", detail=detail, seconds=timer.seconds, data=data)
    return StepResult(
        step="pipeline", status="failed", detail=" ".join(verdict.diagnosis), seconds=timer.seconds, data=data
    )


@flow(name=FLOW_NAME, persist_result=False)
def verify_runner_cache(config: str | None = None, roundtrip_first: bool = True) -> dict | State:
    """Check a round trip through the store, then prove with a two-job pipeline that the cache is shared.

    Args:
        config: Name of a saved Runner Cache Config block; empty means the RUNNER_CACHE_* environment.
        roundtrip_first: Run the cheap store round trip before the pipeline (and skip the pipeline when it fails).
    """
    sections = resolve_config(config)
    steps: list[StepResult] = []
    failure = (
        run_steps(steps, [("roundtrip", lambda: check_roundtrip_task(sections.store, sections.cache))])
        if roundtrip_first
        else None
    )
    if failure is None:
        steps.append(run_pipeline_check(sections))
    pipeline = steps[-1] if steps[-1].step == "pipeline" else None
    if pipeline is None or pipeline.status == "skipped":
        # run_pipeline_check emits the event when a pipeline ran; here no pipeline ran.
        emit_verify_event(sections, failure is None, {
            "verdict": "passed" if failure is None else "failed", "proven_across_pods": False,
            "pipeline": "skipped" if pipeline else "not run", "steps": {s.step: s.status for s in steps},
        })  # fmt: skip
    create_markdown_artifact(
        key=FLOW_NAME, markdown=steps_markdown(FLOW_NAME, steps), description=f"{FLOW_NAME} summary"
    )
    passed = not any(step.status == "failed" for step in steps)
    result = {
        "passed": passed,
        "proven_across_pods": bool(pipeline and pipeline.data.get("proven_across_pods")),
        "steps": [step.model_dump() for step in steps],
    }
    if not passed:
        failed_step = next(step for step in steps if step.status == "failed")
        return Failed(message=f"{failed_step.step} failed: {failed_step.detail}", data=result)
    if pipeline is not None and pipeline.status == "skipped":
        get_run_logger().warning("only the round trip was checked: %s", NOT_CONFIGURED)
    return result
