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
from runner_cache.errors import HelmError, RolloutFailed, RolloutTimeout, WorkFailed
from runner_cache.tasks.chart.patch import ChartPlan, prepare_chart
from runner_cache.tasks.chart.values import merge_values, under_key
from runner_cache.tasks.kube.api import ensure_cache_secret, wait_for_rollout
from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.policy import external_task
from runner_cache.tasks.release.helm import deployed_release, rollback_release, upgrade_release
from runner_cache.tasks.results import StepResult, timed
from runner_cache.tasks.store.identity import runner_store


class VerificationFailed(WorkFailed):
    """Verification after an upgrade failed; raised inside the transaction so that its rollback hook runs."""


SECRET_VERSION_ANNOTATION = "runner-cache.io/cache-secret-version"


def release_values(plan: ChartPlan, secret_version: str | None) -> dict[str, Any]:
    """Our values (a rebuild's image tag is already in them, set where the chart keeps it), plus the credentials
    Secret's version as a pod annotation, so new credentials restart the runner pods (the runner reads them only
    when it starts). An umbrella chart takes the annotation under its dependency's key, like the rest of ours."""
    if not secret_version:
        return plan.values
    annotation = {"podAnnotations": {SECRET_VERSION_ANNOTATION: secret_version}}
    return merge_values(plan.values, under_key(annotation, plan.values_key))


def _deployment(plan: ChartPlan) -> str | None:
    """The runner's Deployment name from the rendered chart (``Deployment/<name> container <c>``)."""
    workload = plan.runner.split(" container ", 1)[0]
    kind, _, name = workload.partition("/")
    return name if kind == "Deployment" else None


def prepare_chart_for_release(
    config: RunnerCacheSections, workdir: Path, chart_version: str | None = None, image_tag: str | None = None
) -> ChartPlan:
    """The chart and our values on top of what the deployed release runs (``helm get values`` of its deployed
    revision): its own ``runners.config`` is the base of ours unless the values file has one, and the render
    check — and the Deployment the rollout waits for — sees the values the upgrade really produces."""
    deployed = deployed_release(config.release)
    release_values = deployed.values if deployed else None
    return prepare_chart(
        config, version=chart_version, workdir=workdir, release_values=release_values, image_tag=image_tag
    )


def prepare_release(
    config: RunnerCacheSections, workdir: Path, chart_version: str | None = None, image_tag: str | None = None
) -> tuple[ChartPlan, StepResult]:
    """Render, verify and (if needed) patch the chart; create or update the credentials Secret. Safe to retry."""
    plan = prepare_chart_for_release(config, workdir, chart_version, image_tag)
    return plan, ensure_cache_secret(config.release, runner_store(config))


def upgrade_and_roll_out(
    config: RunnerCacheSections,
    plan: ChartPlan,
    secret: StepResult,
    *,
    roll_back: bool = True,
) -> StepResult:
    """``helm upgrade`` (skipped when nothing differs), then wait for the runner Deployment's rollout; when that
    rollout fails or times out, roll back to the revision recorded before the upgrade (``roll_back``).

    helm's ``--wait`` does not cover this: helm 3 is satisfied once ``replicas - maxUnavailable`` new pods are
    ready (``pkg/kube/ready.go@v3.16.4`` deploymentReady), before our wait (kubectl's rules) is, so its own
    rollback never runs for such a failure. Not retried as a whole: a retry after a successful upgrade would find
    nothing to do and lose the previous revision that a failed verification rolls back to.
    """
    release = config.release
    access, secret_key = config.store.credentials()
    values = release_values(plan, secret.data.get("credentials_version"))
    with timed() as timer:
        upgrade = upgrade_release(release, plan.installable, values, secrets=[access, secret_key])
        deployment = _deployment(plan)
        if upgrade.status == "changed" and deployment:
            try:
                rollout = wait_for_rollout(release, release.namespace, deployment, timeout=release.timeout_seconds)
            except (RolloutTimeout, RolloutFailed) as error:
                raise _rolled_back_rollout(release, upgrade, error, roll_back=roll_back) from None
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


def _rolled_back_rollout(
    release: ReleaseSettings, upgrade: StepResult, error: RolloutTimeout | RolloutFailed, *, roll_back: bool
) -> RolloutTimeout | RolloutFailed:
    """The rollout's error, extended by what was done about it and which revision runs now."""
    previous, new = upgrade.data.get("previous_revision"), upgrade.data.get("revision")
    if not roll_back:
        words = f"not rolled back (rollback_on_failure is off): revision {new} stays deployed"
    elif previous is None:
        words = f"nothing to roll back to (revision {new} is the first install): it stays deployed"
    else:
        try:
            words = rollback_release(release, previous).detail
        except HelmError as rollback_error:
            words = f"the rollback to revision {previous} failed too: {rollback_error}"
    return type(error)(f"{error.message}; {words}", hint=error.hint)


def plan_release(config: RunnerCacheSections) -> StepResult:
    """What the release step would do: renders the chart and reads the cluster, changes nothing."""
    with tempfile.TemporaryDirectory(prefix="runner-cache-chart-") as workdir:
        plan = prepare_chart_for_release(config, Path(workdir))
        secret = ensure_cache_secret(config.release, runner_store(config, planning=True), apply=False)
        access, secret_key = config.store.credentials()
        values = release_values(plan, secret.data.get("credentials_version"))
        upgrade = upgrade_release(config.release, plan.installable, values, secrets=[access, secret_key], apply=False)
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


# Verification verdicts that say nothing about the release: a rollback would undo a healthy upgrade.
NOT_ABOUT_THE_RELEASE = {"gitlab_refused"}


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
            plan, secret = prepare_release_task(config, Path(workdir), chart_version, image_tag)
            release = upgrade_and_roll_out_task(config, plan, secret, roll_back=rollback_on_failure)
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
                if result.status == "failed" and result.data.get("cause") in NOT_ABOUT_THE_RELEASE:
                    # GitLab refused to run the check (token, empty repository): it says nothing of the release
                    run_logger(__name__).warning("%s could not run: the release is kept as it is", name)
                    return VerificationFailed(f"{name} could not run after the release step: {result.detail}")
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
    except Exception as error:  # the release step itself failed; its error says what was rolled back and what runs
        steps.append(StepResult(step="release", status="failed", detail=f"{type(error).__name__}: {error}"))
        return error
    return None
