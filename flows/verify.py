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
from runner_cache.tasks.store.identity import prune_store
from runner_cache.tasks.store.roundtrip import check_roundtrip_task
from runner_cache.tasks.verify.diagnosis import (
    BUILD_JOB,
    TEST_JOB,
    Diagnosis,
    ObjectCheck,
    PipelineEvidence,
    StoreView,
    diagnose_pipeline,
)
from runner_cache.tasks.verify.pipeline import check_cache_object_task, run_verification_pipeline_task
from runner_cache.tasks.verify.trace import normalize

FLOW_NAME = "verify-runner-cache"
EVIDENCE_ARTIFACT = "runner-cache-verification"
NOT_CONFIGURED = (
    "not configured: set RUNNER_CACHE_GITLAB__URL, RUNNER_CACHE_GITLAB__TOKEN, RUNNER_CACHE_GITLAB__PROJECT and "
    "RUNNER_CACHE_GITLAB__RUNNER_TAGS to prove the cache with a pipeline"
)
EXCERPT_LINES = 40


def _secrets(sections: RunnerCacheSections) -> list[str]:
    """Every secret value a trace, message or artifact could carry, for redaction."""
    values = [sections.gitlab.token, sections.store.access_key, sections.store.secret_key]
    return [value.get_secret_value() for value in values if value is not None]


def _store_view(sections: RunnerCacheSections) -> StoreView:
    return StoreView(
        endpoint=sections.store.endpoint,
        bucket=sections.store.bucket,
        path=sections.cache.path,
        shared=sections.cache.shared,
    )


def _object_check(
    sections: RunnerCacheSections, evidence: PipelineEvidence, facts: dict[str, Any]
) -> ObjectCheck | None:
    """Look for (and delete) the build job's object whenever its trace says it uploaded one — pass or fail."""
    build = facts.get("build") or {}
    if (
        evidence.project_id is None
        or not build.get("uploaded")
        or not build.get("short_token")
        or not build.get("created_key")
    ):
        return None
    return check_cache_object_task(  # reads and deletes the object: the prune identity is enough
        prune_store(sections), sections.cache, evidence.project_id, build["short_token"], build["created_key"]
    )


def excerpt(trace: str) -> str:
    """The lines that matter, normalised: the runner header, both cache sections, the nonce lines, the job's end."""
    keep = []
    for line in normalize(trace).lines:
        text = line.text
        if (
            line.inside("restore_cache", "archive_cache", "archive_cache_on_failure")
            or text.startswith(("Running with gitlab-runner", "  on ", "  feature flags:", "Running on ", "ERROR: Job failed", "runner-cache-verify "))
            or text == "Job succeeded"
        ):  # fmt: skip
            keep.append(text)
    if len(keep) > EXCERPT_LINES:
        keep = keep[: EXCERPT_LINES // 2] + ["…"] + keep[-EXCERPT_LINES // 2 :]
    return "\n".join(keep)


def evidence_markdown(
    evidence: PipelineEvidence, verdict: Diagnosis, check: ObjectCheck | None, secrets: list[str]
) -> str:
    """The artifact: verdict and cause, the fix, the trace lines that show it, both jobs side by side, cleanup."""
    title = "PASSED" if verdict.passed else "FAILED"
    lines = [f"# Runner cache verification: {title} (`{verdict.cause}`)", "", verdict.message, ""]
    if verdict.fix:
        lines += [f"**Fix:** {verdict.fix}", ""]
    lines += [f"> **Warning:** {warning}" for warning in verdict.warnings]
    if verdict.evidence:
        lines += ["", "```text", *(line.replace("```", "'''") for line in verdict.evidence), "```", ""]
    build, test = verdict.facts.get("build") or {}, verdict.facts.get("test") or {}
    if build or test:

        def row(label: str, key: str) -> list[str]:
            return [label, str(build.get(key) or "-"), str(test.get(key) or "-")]

        rows = [
            row("status", "status"), row("failure reason", "failure_reason"), row("runner", "runner"),
            row("short token", "short_token"), row("runner manager (system ID)", "system_id"),
            row("manager pod", "manager"), row("job pod", "pod"), row("runner version", "runner_version"),
            ["cache key", str(build.get("created_key") or "-"), str(test.get("checked_key") or "-")],
            ["cache transfer", "uploaded" if build.get("uploaded") else "not uploaded",
             "extracted" if test.get("extracted") else "not extracted"],
        ]  # fmt: skip
        lines += ["## The two jobs", "", markdown_table(["", "build", "test"], rows), ""]
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
        f"{'deleted' if evidence.branch_deleted else 'not deleted'}; pipelines deleted: "
        f"{', '.join(map(str, evidence.deleted_pipelines)) or 'none'}."
    )
    lines += [f"- cleanup problem: {problem}" for problem in evidence.cleanup_errors]
    for name in (BUILD_JOB, TEST_JOB):
        job = evidence.job(name)
        if job is not None and job.trace:
            text = excerpt(job.trace).replace("```", "'''")
            lines += ["", f"### {job.name} (excerpt, normalised)", "", "```text", text, "```"]
    return redact("\n".join(lines) + "\n", secrets)


def emit_verify_event(sections: RunnerCacheSections, passed: bool, payload: dict[str, Any]) -> None:
    """``runner-cache.verify.passed`` / ``.failed`` about the verification project (values redacted by the caller)."""
    project = sections.gitlab.project or "none"
    emit_event(
        event=f"runner-cache.verify.{'passed' if passed else 'failed'}",
        resource={"prefect.resource.id": f"runner-cache.gitlab-project.{project}", "prefect.resource.name": project},
        related=[{**bucket_resource(sections.store), "prefect.resource.role": "bucket"}],
        payload=payload,
    )


def run_pipeline_check(sections: RunnerCacheSections) -> StepResult:
    """Prove with a real pipeline that two jobs share the cache; call it inside a flow run.

    Returns a ``StepResult`` named ``pipeline``: ``skipped`` when GitLab is not configured, ``unchanged`` when the
    test job restored the build job's cache from the store (warnings say when one runner manager ran both jobs),
    ``failed`` with the cause otherwise. ``data``: ``verdict``, ``cause``, ``message``, ``fix``, ``evidence``,
    ``warnings``, ``proven_across_managers``, ``pipeline_id``, ``pipeline_url``, ``object``, ``facts``. Leaves the
    evidence artifact and emits ``runner-cache.verify.passed`` / ``.failed``. The branch, its pipelines (when the
    role allows) and the cache object are always removed.
    """
    if not sections.gitlab.configured:
        return StepResult(step="pipeline", status="skipped", detail=NOT_CONFIGURED)
    logger = get_run_logger()
    secrets = _secrets(sections)
    store = _store_view(sections)
    with timed() as timer:
        evidence = run_verification_pipeline_task(sections.gitlab)
        verdict = diagnose_pipeline(evidence, store, None)
        check: ObjectCheck | None = None
        try:
            check = _object_check(sections, evidence, verdict.facts)
        except Exception as error:  # the verdict says the bucket could not be read; nothing else is lost
            verdict = Diagnosis(
                passed=False, cause="bucket_unreadable", facts=verdict.facts, warnings=verdict.warnings,
                message=f"runner-cache could not look for the cache object in bucket {store.bucket!r}: {type(error).__name__}: {error}",
                fix="Check RUNNER_CACHE_STORE__* (the same store must be reachable from where the flow runs).",
            )  # fmt: skip
        if check is not None:
            verdict = diagnose_pipeline(evidence, store, check)
    verdict = Diagnosis.model_validate_json(redact(verdict.model_dump_json(), secrets))
    create_markdown_artifact(
        key=EVIDENCE_ARTIFACT,
        markdown=evidence_markdown(evidence, verdict, check, secrets),
        description=f"verification pipeline: {'passed' if verdict.passed else verdict.cause}",
    )
    (logger.info if verdict.passed else logger.error)("%s: %s", verdict.cause, verdict.message)
    for warning in verdict.warnings:
        logger.warning("%s", warning)
    data = {
        "verdict": "passed" if verdict.passed else "failed",
        "cause": verdict.cause,
        "message": verdict.message,
        "fix": verdict.fix,
        "evidence": verdict.evidence,
        "warnings": verdict.warnings,
        "proven_across_managers": verdict.proven_across_managers,
        "pipeline_id": evidence.pipeline_id,
        "pipeline_url": evidence.pipeline_url,
        "object": check.expected if check else None,
        "facts": verdict.facts,
    }
    emit_verify_event(sections, verdict.passed, data)
    if verdict.passed:
        detail = verdict.message + "".join(f" (warning: {warning})" for warning in verdict.warnings)
        return StepResult(step="pipeline", status="unchanged", detail=detail, seconds=timer.seconds, data=data)
    detail = f"{verdict.cause}: {verdict.message}" + (f" Fix: {verdict.fix}" if verdict.fix else "")
    return StepResult(step="pipeline", status="failed", detail=detail, seconds=timer.seconds, data=data)


@flow(name=FLOW_NAME, persist_result=False)
def verify_runner_cache(config: str | None = None, roundtrip_first: bool = True) -> dict | State:
    """Check a round trip through the store, then prove with a two-job pipeline that the cache is shared.

    Args:
        config: Name of a saved Runner Cache Config block; empty means the RUNNER_CACHE_* environment.
        roundtrip_first: Run the cheap store round trip before the pipeline (and skip the pipeline when it fails).
    """
    sections = resolve_config(config)
    steps: list[StepResult] = []
    actions = [("roundtrip", lambda: check_roundtrip_task(sections.store, sections.cache))] if roundtrip_first else []
    failure = run_steps(steps, [*actions, ("pipeline", lambda: run_pipeline_check(sections))])
    pipeline = next((step for step in steps if step.step == "pipeline"), None)
    if pipeline is None or pipeline.status == "skipped" or not pipeline.data:
        # run_pipeline_check emits the event when a pipeline ran; here none did.
        emit_verify_event(sections, failure is None, {
            "verdict": "passed" if failure is None else "failed", "proven_across_managers": False,
            "pipeline": pipeline.status if pipeline else "not run", "steps": {s.step: s.status for s in steps},
        })  # fmt: skip
    create_markdown_artifact(
        key=FLOW_NAME, markdown=steps_markdown(FLOW_NAME, steps), description=f"{FLOW_NAME} summary"
    )
    passed = not any(step.status == "failed" for step in steps)
    result = {
        "passed": passed,
        "proven_across_managers": bool(pipeline and pipeline.data.get("proven_across_managers")),
        "steps": [step.model_dump() for step in steps],
    }
    if not passed:
        failed_step = next(step for step in steps if step.status == "failed")
        return Failed(message=f"{failed_step.step} failed: {failed_step.detail}", data=result)
    if pipeline is not None and pipeline.status == "skipped":
        get_run_logger().warning("only the round trip was checked: %s", NOT_CONFIGURED)
    return result
