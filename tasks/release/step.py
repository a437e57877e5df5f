"""The runner release step shared by setup and rebuild: chart → credentials Secret → helm upgrade → rollout,
then verification inside a Prefect transaction whose rollback hook returns the release to its previous revision.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from prefect.transactions import Transaction, TransactionState, transaction

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.blocks.settings import RunnerCacheSections
from runner_cache.errors import WorkFailed
from runner_cache.tasks.chart.patch import ChartPlan, prepare_chart
from runner_cache.tasks.chart.values import chart_default_values
from runner_cache.tasks.kube.api import ensure_cache_secret, wait_for_rollout
from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.policy import external_task
from runner_cache.tasks.release.helm import rollback_release, upgrade_release
from runner_cache.tasks.results import StepResult, timed


class VerificationFailed(WorkFailed):
    """Verification after an upgrade failed; raised inside the transaction so that its rollback hook runs."""


SECRET_VERSION_ANNOTATION = "runner-cache.io/cache-secret-version"


def release_values(plan: ChartPlan, image_tag: str | None, secret_version: str | None) -> dict[str, Any]:
    """Our values, plus the runner image tag in the shape the chart's ``image`` value has (map or string), plus
    the credentials Secret's version as a pod annotation, so new credentials restart the runner pods (the runner
    reads them only when it starts)."""
    values = dict(plan.values)
    if secret_version:
        values["podAnnotations"] = {**values.get("podAnnotations", {}), SECRET_VERSION_ANNOTATION: secret_version}
    if not image_tag:
        return values
    image = chart_default_values(plan.chart_dir).get("image")
    if isinstance(image, str):
        repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        return {**values, "image": f"{repository}:{image_tag}"}
    return {**values, "image": {**(image or {}), **values.get("image", {}), "tag": image_tag}}


def _deployment(plan: ChartPlan) -> str | None:
    """The runner's Deployment name from the rendered chart (``Deployment/<name> container <c>``)."""
    workload = plan.runner.split(" container ", 1)[0]
    kind, _, name = workload.partition("/")
    return name if kind == "Deployment" else None


def prepare_release(
    config: RunnerCacheSections, workdir: Path, chart_version: str | None = None
) -> tuple[ChartPlan, StepResult]:
    """Render, verify and (if needed) patch the chart; create or update the credentials Secret. Safe to retry."""
    plan = prepare_chart(config, version=chart_version, workdir=workdir)
    return plan, ensure_cache_secret(config.release, config.store)


def upgrade_and_roll_out(
    config: RunnerCacheSections, plan: ChartPlan, secret: StepResult, image_tag: str | None = None
) -> StepResult:
    """``helm upgrade`` (skipped when nothing differs), then wait for the runner Deployment's rollout.

    Not retried as a whole: a retry after a successful upgrade would find nothing to do and lose the
    previous revision that a failed verification rolls back to. helm itself waits and rolls back its own failures.
    """
    release = config.release
    access, secret_key = config.store.credentials()
    values = release_values(plan, image_tag, secret.data.get("resource_version"))
    with timed() as timer:
        upgrade = upgrade_release(release, plan.chart_dir, values, patched=plan.patched, secrets=[access, secret_key])
        deployment = _deployment(plan)
        if upgrade.status == "changed" and deployment:
            rollout = wait_for_rollout(release, release.namespace, deployment, timeout=release.timeout_seconds)
            upgrade.detail += f"; {rollout.detail}"
    parts = [secret.detail, upgrade.detail]
    if plan.patched:
        parts.insert(
            0,
            f"patched a copy of chart {plan.name}-{plan.version} ({plan.generation}) so the runner reads its cache settings right",
        )
    return StepResult(
        step="release",
        status="changed" if "changed" in {secret.status, upgrade.status} else "unchanged",
        detail="; ".join(parts),
        seconds=round(timer.seconds + secret.seconds, 3),
        data={
            **upgrade.data,
            "generation": plan.generation,
            "patched": plan.patched,
            "patch": plan.patch,
            "secret": secret.data,
            "previous_revision": upgrade.data.get("previous_revision") if upgrade.status == "changed" else None,
        },
    )


def plan_release(config: RunnerCacheSections) -> StepResult:
    """What the release step would do: renders the chart and reads the cluster, changes nothing."""
    with tempfile.TemporaryDirectory(prefix="runner-cache-chart-") as workdir:
        plan = prepare_chart(config, workdir=Path(workdir))
        secret = ensure_cache_secret(config.release, config.store, apply=False)
        access, secret_key = config.store.credentials()
        values = release_values(plan, None, secret.data.get("resource_version"))
        upgrade = upgrade_release(
            config.release, plan.chart_dir, values, patched=plan.patched, secrets=[access, secret_key], apply=False
        )
    planned = "planned" in {secret.status, upgrade.status}
    return StepResult(
        step="release", status="planned" if planned else "unchanged", detail=f"{secret.detail}; {upgrade.detail}"
    )


prepare_release_task = external_task(prepare_release, "prepare-release", delays=(10, 30))
upgrade_and_roll_out_task = external_task(upgrade_and_roll_out, "upgrade-release")


@upgrade_and_roll_out_task.on_rollback
def _roll_back(txn: Transaction) -> None:
    """Return the release to the revision it had before this run upgraded it (a no-op when nothing was upgraded)."""
    release: ReleaseSettings | None = txn.get("release", None)
    previous: int | None = txn.get("previous_revision", None)
    if release is None or previous is None:
        run_logger(__name__).info("rollback: this run did not upgrade the release, nothing to roll back")
        return
    try:
        result = rollback_release(release, previous)
    except Exception as error:  # rollback_release has retried and emitted runner-cache.release.rollback-failed
        result = StepResult(step="rollback", status="failed", detail=f"{type(error).__name__}: {error}")
        txn.set("rollback", result.model_dump())
        raise
    txn.set("rollback", result.model_dump())


def release_then_verify(
    config: RunnerCacheSections,
    steps: list[StepResult],
    verifications: list[tuple[str, Callable[[], StepResult]]],
    *,
    chart_version: str | None = None,
    image_tag: str | None = None,
    rollback_on_failure: bool = True,
) -> Exception | None:
    """Upgrade the release, run ``verifications``; when one fails after an upgrade, roll the release back.

    With ``rollback_on_failure`` everything runs in one Prefect transaction: a failed verification (a failed
    task, or a failed step, which raises :class:`VerificationFailed`) rolls it back, and the release task's
    rollback hook returns the release to its previous revision. Appends every step (release, each
    verification, rollback) to ``steps``; returns the first failure.
    """
    scope = transaction() if rollback_on_failure else nullcontext()
    try:
        with scope as txn, tempfile.TemporaryDirectory(prefix="runner-cache-chart-") as workdir:
            plan, secret = prepare_release_task(config, Path(workdir), chart_version)
            release = upgrade_and_roll_out_task(config, plan, secret, image_tag)
            steps.append(release)
            if txn is not None:
                txn.set("release", config.release)
                txn.set("previous_revision", release.data.get("previous_revision"))
            for name, verify in verifications:
                try:
                    result = verify()
                except Exception as error:
                    result = StepResult(step=name, status="failed", detail=f"{type(error).__name__}: {error}")
                steps.append(result)
                if result.status == "failed":
                    raise VerificationFailed(f"{name} failed after the release step: {result.detail}")
    except VerificationFailed as failure:
        if txn is None:
            run_logger(__name__).warning("%s; not rolling back (rollback_on_failure is off)", failure)
            return failure
        if txn.state != TransactionState.ROLLED_BACK:
            txn.rollback()
        # The hook ran in the release task's own (child) transaction, so its report is stored there.
        rollback = next((child.get("rollback") for child in txn.children if child.get("rollback", None)), None)
        if rollback:
            steps.append(StepResult(**rollback))
        elif release.data.get("previous_revision") is not None:
            steps.append(
                StepResult(step="rollback", status="failed", detail="the rollback hook did not run: see the run's logs")
            )
        return failure
    except Exception as error:  # the release step itself failed: helm already rolled back its own upgrade
        steps.append(StepResult(step="release", status="failed", detail=f"{type(error).__name__}: {error}"))
        return error
    return None
