"""The runner's Helm release in the cluster: what is deployed, an upgrade only when something differs, rollback.

helm runs as :func:`run_cluster_helm`: the binary that renders (``tasks/chart/helm_cli.py``), pointed at the cluster
the one rule picks (``tasks/kube/cluster.py``, shared with the Kubernetes client), stopped with SIGTERM when its time
runs out — helm then marks the release failed and rolls back — and killed only after a grace period. Values
never go on the command line: ours are written to a 0600 file in a private temp dir, passed with ``-f`` after
the user's own values file (``release.values_file``, so ours win) and deleted as soon as helm returns.
Credentials are never in values at all: the chart reads them from the Secret ``runner_cache.tasks.kube.api.ensure_cache_secret``
keeps, and :func:`upgrade_release` refuses values that contain any of the secrets it is given.

No-op detection: ``helm status`` (latest revision and its state), ``helm history`` (that revision's chart and
description), ``helm get values`` (its user-supplied values). When the deployed revision runs the same chart
name-version with the same values (the user's file merged with ours, as helm merges them), nothing runs and no
revision is made. Our upgrades record a digest of the chart's files in the revision's description, which tells
a patched copy of a chart from the original of the same version; a revision without one (deployed by hand)
counts as the same chart only when ours is not a patched copy.

Which values helm reuses: ``--reset-then-reuse-values`` (helm >= 3.14) takes the last *deployed* revision's
(``pkg/action/upgrade.go@v3.16.4`` prepareUpgrade), so that is the revision compared with, not the latest one.

A release left ``pending-*`` (a helm that was killed) blocks every upgrade ("another operation … is in progress",
``pkg/action/upgrade.go@v3.16.4`` L218-221). :func:`settle_pending` recovers it deliberately: a pending upgrade or
rollback older than a helm run could last is rolled back to the last deployed revision (``helm rollback`` has no
pending check); a pending first install has nothing to roll back to and is left to ``helm uninstall``.

Errors: helm failing raises :class:`HelmError` (saying which revision runs now); a cluster helm cannot reach raises
:class:`HelmClusterUnreachable` (transient: retried by the task policy).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from prefect.events import emit_event
from pydantic import SecretStr

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.errors import ConfigError, HelmClusterUnreachable, HelmError, HelmTimeout
from runner_cache.redaction import redact
from runner_cache.tasks.chart.helm_cli import helm_binary
from runner_cache.tasks.chart.patch import InstallableChart
from runner_cache.tasks.chart.values import describe_value_changes, merge_values
from runner_cache.tasks.events import release_resource
from runner_cache.tasks.kube.cluster import select_cluster
from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.results import StepResult, timed

READ_TIMEOUT = 60.0  # seconds, at most, for status, history, get values and version
READ_GRACE = 5.0  # seconds a read-only helm command gets between SIGTERM and SIGKILL
GRACE_EXTRA = 30.0  # seconds beyond helm's own --timeout that an upgrade or rollback gets after SIGTERM
MIN_HELM = (3, 14, 0)  # --reset-then-reuse-values: cmd/helm/upgrade.go@v3.14.0 L255, absent @v3.13.3
DIGEST_MARK = "runner-cache chart-sha256="
RBAC_DOC = "docs/deployments.md, 'RBAC: the least runner-cache needs'"
_DIGEST = re.compile(re.escape(DIGEST_MARK) + r"([0-9a-f]{64})")
PENDING = {"pending-install", "pending-upgrade", "pending-rollback"}
_BUSY = PENDING | {"uninstalling"}
# helm 3 says "Kubernetes cluster unreachable" (pkg/kube/client.go@v3.16.4 L129-135), helm 4 "kubernetes cluster
# unreachable" (@v4.1.4 L252-258)
_UNREACHABLE = re.compile(r"kubernetes cluster unreachable|connection refused|i/o timeout|no such host", re.IGNORECASE)


@dataclass(frozen=True)
class DeployedRelease:
    """The release as helm records it: its latest revision, and the last revision that is ``deployed``."""

    revision: int
    status: str
    chart: str  # "<name>-<version>", as helm history prints it
    chart_digest: str | None
    values: dict[str, Any]
    deployed_revision: int | None
    updated: str = ""  # when the latest revision was written (helm history), to tell a stale pending one


def _cluster_args(release: ReleaseSettings) -> list[str]:
    """The namespace, and the cluster the one rule picks as helm flags (the Kubernetes client uses the same)."""
    return ["--namespace", release.namespace, *select_cluster(release.kubeconfig, release.context).helm_args()]


def _read_timeout(release: ReleaseSettings) -> float:
    return min(READ_TIMEOUT, float(release.timeout_seconds))


def run_cluster_helm(args: list[str], *, timeout: float, grace: float, env: dict[str, str]) -> str:
    """Run helm; past ``timeout`` it gets SIGTERM, and SIGKILL only ``grace`` seconds later.

    helm traps SIGTERM (``cmd/helm/upgrade.go@v3.16.4`` L226-240, ``pkg/cmd/upgrade.go@v4.1.4`` L236-251): the
    upgrade's context is cancelled, the revision marked failed and, with --atomic/--rollback-on-failure, rolled back
    (``pkg/action/upgrade.go@v3.16.4`` handleContext L406-417, failRelease L485-540). A SIGKILL leaves it
    ``pending-upgrade``, which blocks every later upgrade.

    Raises:
        HelmTimeout: the time ran out; ``killed`` is True when it took SIGKILL (the release may be left pending).
        HelmError: helm failed; its stderr is the message.
    """
    command = [str(helm_binary()), *args]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=grace)
            killed = False
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            killed = True
        how = f"SIGTERM, then SIGKILL {grace:g} s later" if killed else "SIGTERM"
        said = err.strip().splitlines()[-1] if err.strip() else ""
        timeout_error = HelmTimeout(
            f"helm {args[0]} did not finish within {timeout:g} s and was stopped ({how})"
            + (f": {said}" if said else "")
        )
        timeout_error.killed = killed  # type: ignore[attr-defined]
        raise timeout_error from None
    if process.returncode != 0:
        raise HelmError(f"helm {args[0]} failed: {err.strip() or f'exit code {process.returncode}'}")
    return out


def _helm(
    release: ReleaseSettings,
    args: list[str],
    *,
    timeout: float,
    grace: float = READ_GRACE,
    secrets: Sequence[SecretStr] = (),
) -> str:
    """Run a helm cluster command against the release's cluster; helm's reason comes back scrubbed of ``secrets``."""
    env = select_cluster(release.kubeconfig, release.context).helm_env(os.environ)
    try:
        return run_cluster_helm(args, timeout=timeout, grace=grace, env=env)
    except HelmTimeout as error:
        error.message = redact(error.message, secrets)
        raise
    except HelmError as error:
        message = redact(error.message, secrets)
        if _UNREACHABLE.search(message):
            raise HelmClusterUnreachable(message) from None
        hint = f"the identity helm runs as lacks a permission: {RBAC_DOC}" if "is forbidden" in message else None
        raise HelmError(message, hint=hint) from None


def helm_version(release: ReleaseSettings) -> tuple[int, int, int]:
    """helm's version. Refuses helm 2, and helm < 3.14, which has no ``--reset-then-reuse-values`` (it keeps the
    release's own values — gitlabUrl, the runner token — while taking the new chart's defaults)."""
    text = _helm(release, ["version", "--template", "{{.Version}}"], timeout=READ_TIMEOUT).strip()
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", text)
    if not match or int(match[1]) not in (3, 4):
        raise ConfigError(f"helm reports version {text!r}; runner-cache needs helm 3 or 4")
    version = (int(match[1]), int(match[2]), int(match[3]))
    if version < MIN_HELM:
        raise ConfigError(
            f"helm {text} is too old: runner-cache needs helm 3.14 or later for --reset-then-reuse-values (it keeps "
            "the release's own values while taking the new chart's defaults); install a newer helm (scripts/get-helm.sh)"
        )
    return version


def deployed_release(release: ReleaseSettings) -> DeployedRelease | None:
    """What helm has for ``release`` (None when it was never installed)."""
    cluster, timeout = [release.release, *_cluster_args(release), "--output", "json"], _read_timeout(release)
    try:
        status = json.loads(_helm(release, ["status", *cluster], timeout=timeout))
    except HelmError as error:
        if "release: not found" in str(error):
            return None
        raise
    revision = int(status["version"])
    history = json.loads(_helm(release, ["history", *cluster, "--max", "20"], timeout=timeout)) or []
    latest = next((entry for entry in history if entry.get("revision") == revision), {})
    deployed = [entry["revision"] for entry in history if entry.get("status") == "deployed"]
    # what runs, and whose values --reset-then-reuse-values takes: the last deployed revision, else the latest
    running = max(deployed) if deployed else revision
    entry = next((entry for entry in history if entry.get("revision") == running), latest)
    read_values = ["get", "values", *cluster, "--revision", str(running)]
    values = json.loads(_helm(release, read_values, timeout=timeout)) or {}
    digest = _DIGEST.search(entry.get("description", ""))
    return DeployedRelease(
        revision=revision,
        status=status.get("info", {}).get("status", "unknown"),
        chart=entry.get("chart", "unknown"),
        chart_digest=digest[1] if digest else None,
        values=values,
        deployed_revision=max(deployed) if deployed else None,
        updated=str(latest.get("updated") or status.get("info", {}).get("last_deployed") or ""),
    )


def chart_digest(chart: Path) -> str:
    """sha256 of a chart's files (relative paths and contents), so a patched copy differs from its original."""
    digest = hashlib.sha256()
    files = sorted(path for path in chart.rglob("*") if path.is_file()) if chart.is_dir() else [chart]
    for path in files:
        digest.update(str(path.relative_to(chart) if chart.is_dir() else path.name).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def expected_values(user_values: dict, values: dict, deployed: DeployedRelease | None) -> dict:
    """The values helm will record: what the release already has, then the user's values file, then ours.

    This mirrors ``--reset-then-reuse-values``: everything the release was installed with (``gitlabUrl``, the
    runner token, a rebuild's image tag …) is kept, and runner-cache only ever overrides the keys it owns — without
    those values passing through a file of ours.
    """
    base = json.loads(json.dumps(deployed.values)) if deployed else {}
    user = json.loads(json.dumps(user_values, default=yaml_scalar_text))
    return merge_values(merge_values(base, user), json.loads(json.dumps(values)))


def yaml_scalar_text(value: Any) -> str:
    """A YAML date as helm keeps it: helm reads values files with sigs.k8s.io/yaml (go-yaml v2), which leaves a
    timestamp-looking scalar a string when decoding into interface{}; PyYAML turns ``2024-01-01`` into a date,
    which JSON cannot encode (and which would otherwise look like drift)."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" " if value.tzinfo is None else "T").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"values hold a {type(value).__name__}, which helm's JSON cannot hold")


def release_drift(deployed: DeployedRelease | None, chart: str, digest: str, patched: bool, values: dict) -> list[str]:
    """Why the release needs an upgrade, in words; empty when the deployed revision already is what we would deploy."""
    if deployed is None:
        return ["not installed yet"]
    if deployed.status in _BUSY:
        raise HelmError(
            f"release is {deployed.status} (revision {deployed.revision}): another helm operation runs or was interrupted; "
            "wait for it, or roll back to the last good revision with `helm rollback`"
        )
    reasons = [] if deployed.status == "deployed" else [f"its latest revision {deployed.revision} is {deployed.status}"]
    if deployed.chart != chart:
        reasons.append(f"chart {deployed.chart} → {chart}")
    elif deployed.chart_digest != digest and (deployed.chart_digest is not None or patched):
        reasons.append("chart files differ (a patched copy)" if patched else "chart files differ")
    changed = describe_value_changes(deployed.values, values)
    if changed:
        reasons.append("values: " + "; ".join(changed))
    return reasons


def _write_values(directory: Path, values: dict) -> Path:
    path = directory / "runner-cache-values.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    return path


def upgrade_release(
    release: ReleaseSettings,
    chart: InstallableChart,
    values: dict,
    *,
    secrets: Sequence[SecretStr] = (),
    apply: bool = True,
) -> StepResult:
    """``helm upgrade --install`` the prepared ``chart`` (``ChartPlan.installable``: read once) with ``values``
    (ours) on top of the user's values file, unless the deployed
    revision already has the same chart and values: then nothing runs and the step is ``unchanged``.

    helm waits for the resources and rolls back by itself when the upgrade fails (``--rollback-on-failure``
    on helm 4, ``--atomic`` on helm 3). The result's ``data`` has ``revision`` (the new one) and
    ``previous_revision`` (the last deployed one before, None on a first install): roll back to it with
    :func:`rollback_release` when a later verification fails. Emits ``runner-cache.release.upgraded``.
    ``apply=False`` reads only and says what would change.

    Raises:
        ConfigError: ``values`` contain one of ``secrets``, or the user's values file is unreadable.
        HelmError: helm failed (the message says what helm rolled back and which revision runs now), or the
            release is busy (another helm may be at work, or a pending install needs ``helm uninstall``).
    """
    encoded = json.dumps(values)
    if any(secret.get_secret_value() and secret.get_secret_value() in encoded for secret in secrets):
        raise ConfigError(
            "refusing to pass the store's credentials to helm in values: the chart must read them from the Secret"
        )
    label, where = f"{chart.name}-{chart.version}", f"{release.namespace}/{release.release}"
    digest = chart_digest(chart.path)
    data: dict[str, Any] = {"release": release.release, "namespace": release.namespace, "chart": label}
    with timed() as timer:
        deployed = deployed_release(release)
        settled = ""
        if deployed and deployed.status in PENDING:
            if not apply:
                detail = f"would {pending_recovery(release, deployed)}, then upgrade release {where}"
                data |= {"chart_digest": digest, "reasons": [f"revision {deployed.revision} is {deployed.status}"]}
                return StepResult(step="release", status="planned", detail=detail, seconds=timer.seconds, data=data)
            deployed, settled = settle_pending(release, deployed)
        wanted = expected_values(chart.user_values, values, deployed)
        reasons = release_drift(deployed, label, digest, chart.patched, wanted)
        previous = deployed.deployed_revision if deployed else None  # recorded before helm runs
        if reasons and apply:
            revision = _upgrade(release, chart.path, values, label, digest, reasons, secrets)
    data |= {"chart_digest": digest, "reasons": reasons}
    if settled:
        data["settled"] = settled
    if not reasons:
        current = deployed.revision if deployed else None
        detail = (
            f"{settled}release {where} already runs chart {label} with these values (revision {current}): no upgrade"
        )
        data |= {"revision": current, "previous_revision": None}
        status = "changed" if settled else "unchanged"  # settling a pending revision made one
        return StepResult(step="release", status=status, detail=detail, seconds=timer.seconds, data=data)
    if not apply:
        detail = f"would upgrade release {where}: {'; '.join(reasons)}"
        return StepResult(step="release", status="planned", detail=detail, seconds=timer.seconds, data=data)
    emit_event(
        event="runner-cache.release.upgraded",
        resource=release_resource(release),
        payload={"chart": label, "revision": revision, "previous_revision": previous, "reasons": reasons},
    )
    before = f"revision {previous}" if previous else "nothing deployed before"
    return StepResult(
        step="release",
        status="changed",
        detail=f"{settled}upgraded release {where} to chart {label}, revision {revision} ({before}): {'; '.join(reasons)}",
        seconds=timer.seconds,
        data={**data, "revision": revision, "previous_revision": previous},
    )


def _upgrade(
    release: ReleaseSettings,
    chart: Path,
    values: dict,
    label: str,
    digest: str,
    reasons: list[str],
    secrets: Sequence[SecretStr],
) -> int | None:
    """Run ``helm upgrade --install`` with our values in a private 0600 file; the new revision.

    No ``--create-namespace``: helm then always *creates* the namespace on a first install
    (``pkg/action/install.go@v3.16.4`` L366-389, no read first), which fails without cluster-wide rights even when it
    exists; the cache Secret's step has created a missing namespace already (when it may).
    """
    where = f"{release.namespace}/{release.release}"
    run_logger(__name__).info("upgrading release %s to chart %s: %s", where, label, "; ".join(reasons))
    rollback_flag = "--rollback-on-failure" if helm_version(release)[0] >= 4 else "--atomic"
    timeout = release.timeout_seconds
    with tempfile.TemporaryDirectory(prefix="runner-cache-helm-") as private:  # mode 0700, removed with the file
        args = [
            "upgrade", release.release, str(chart), "--install", *_cluster_args(release),
            "--reset-then-reuse-values", "--wait", "--timeout", f"{timeout}s", rollback_flag, "--description", f"{DIGEST_MARK}{digest}",
            *(["--values", str(release.values_file)] if release.values_file else []),
            "--values", str(_write_values(Path(private), values)),
        ]  # fmt: skip
        try:
            # helm's --timeout bounds its wait and, after a failure, its own rollback: 2x, plus its other work
            _helm(release, args, timeout=2 * timeout + min(60, timeout), grace=upgrade_grace(timeout), secrets=secrets)
        except HelmTimeout as error:
            now, settled = _after_failure(release)
            if now and now.status in PENDING and getattr(error, "killed", False):
                now, settled = settle_pending(release, now, ours=True)  # we killed it: no helm runs on it any more
            raise HelmTimeout(
                f"upgrade of release {where} to {label} was stopped: {error}; {settled}{running_now(where, now)}"
            ) from None
        except HelmError as error:
            now, settled = _after_failure(release)
            raise HelmError(
                f"upgrade of release {where} to {label} failed: {error.message}; {settled}{running_now(where, now)}",
                hint=error.hint,
            ) from None
    now = deployed_release(release)
    return now.revision if now else None


def upgrade_grace(timeout: float) -> float:
    """Seconds between SIGTERM and SIGKILL for an upgrade: after SIGTERM, helm rolls back (--atomic) and waits for
    that up to its --timeout again (failRelease, ``pkg/action/upgrade.go@v3.16.4`` L504-538)."""
    return timeout + GRACE_EXTRA


def _after_failure(release: ReleaseSettings) -> tuple[DeployedRelease | None, str]:
    """The release as helm left it after a failed or stopped upgrade; '' or why it could not be read."""
    try:
        return deployed_release(release), ""
    except (HelmError, ConfigError) as error:
        return None, f"(could not read the release afterwards: {error}) "


def running_now(where: str, now: DeployedRelease | None) -> str:
    """Which revision runs now, in words: what a failed step must report (helm may have rolled back, or not)."""
    if now is None:
        return f"nothing of release {where} is installed now (a failed first install is uninstalled by helm)"
    if now.deployed_revision is None:
        return f"no revision of release {where} is deployed now (the latest, {now.revision}, is {now.status})"
    return f"revision {now.deployed_revision} of release {where} is deployed now ({now.chart})"


def _pending_age(deployed: DeployedRelease) -> float | None:
    """Seconds since the pending revision was written, or None when helm did not say."""
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", deployed.updated.strip()).replace("Z", "+00:00")  # Go's nanoseconds
    try:
        written = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return (datetime.now(UTC) - (written if written.tzinfo else written.replace(tzinfo=UTC))).total_seconds()


def pending_recovery(release: ReleaseSettings, deployed: DeployedRelease) -> str:
    """What :func:`settle_pending` would do, in words."""
    where = f"{release.namespace}/{release.release}"
    return (
        f"roll release {where} back from the interrupted {deployed.status} revision {deployed.revision} "
        f"to revision {deployed.deployed_revision}"
    )


def settle_pending(
    release: ReleaseSettings, deployed: DeployedRelease, *, ours: bool = False
) -> tuple[DeployedRelease | None, str]:
    """Settle a release left ``pending-*`` by a helm that was killed, so that it can be upgraded again.

    ``pending-upgrade``/``pending-rollback``: ``helm rollback`` to the last deployed revision (rollback has no
    pending check, ``pkg/action/rollback.go@v3.16.4`` prepareRollback; it is what helm itself does on SIGTERM with
    --atomic). Unless ``ours`` (we just killed that helm), only when the pending revision is older than any helm run
    of ours could last — a younger one may be another helm still at work. ``pending-install``: nothing was ever
    deployed, there is no revision to roll back to ("release has no 0 version"): refused, with the command to run.

    Returns the release afterwards and what was done, in words (ending in "; ").
    """
    where, name, namespace = f"{release.namespace}/{release.release}", release.release, release.namespace
    if deployed.status == "pending-install" or deployed.deployed_revision is None:
        raise HelmError(
            f"release {where} is {deployed.status} (revision {deployed.revision}): an install was interrupted and "
            "nothing was ever deployed, so there is no revision to roll back to",
            hint=f"if no helm works on it any more: `helm uninstall {name} -n {namespace}`, then run again",
        )
    age, limit = _pending_age(deployed), 2 * release.timeout_seconds + 60 + upgrade_grace(release.timeout_seconds)
    if not ours and (age is None or age < limit):
        since = f" for {age:.0f} s" if age is not None else ""
        raise HelmError(
            f"release {where} is {deployed.status} (revision {deployed.revision}){since}: another helm operation may "
            "still be running",
            hint=f"wait for it and run again; if no helm works on it any more, settle it with "
            f"`helm rollback {name} {deployed.deployed_revision} -n {namespace}`",
        )
    run_logger(__name__).warning("settling release %s: %s", where, pending_recovery(release, deployed))
    rollback_release(release, deployed.deployed_revision, attempts=1)
    words = f"rolled release {where} back from the interrupted {deployed.status} revision {deployed.revision} to revision {deployed.deployed_revision}; "
    return deployed_release(release), words


def rollback_release(release: ReleaseSettings, revision: int, *, attempts: int = 3, delay: float = 5.0) -> StepResult:
    """``helm rollback`` to ``revision``, tried ``attempts`` times ``delay``·n seconds apart.

    When every attempt fails, emits ``runner-cache.release.rollback-failed`` (someone must act: the release
    is left on a revision that failed verification) and raises :class:`HelmError`.
    """
    where = f"{release.namespace}/{release.release}"
    args = [
        "rollback",
        release.release,
        str(revision),
        *_cluster_args(release),
        "--wait",
        "--timeout",
        f"{release.timeout_seconds}s",
    ]
    errors: list[str] = []
    with timed() as timer:
        for attempt in range(1, attempts + 1):
            try:
                timeout = release.timeout_seconds + min(60, release.timeout_seconds)
                _helm(release, args, timeout=timeout, grace=upgrade_grace(release.timeout_seconds))
                break
            except (HelmError, HelmClusterUnreachable) as error:
                errors.append(str(error))
                run_logger(__name__).warning(
                    "rollback of %s to revision %d failed (attempt %d of %d): %s",
                    where,
                    revision,
                    attempt,
                    attempts,
                    error,
                )
                if attempt < attempts:
                    time.sleep(delay * attempt)
        else:
            emit_event(
                event="runner-cache.release.rollback-failed",
                resource=release_resource(release),
                payload={"revision": revision, "attempts": attempts, "error": errors[-1]},
            )
            times = f"{attempts} time{'s' if attempts != 1 else ''}"
            raise HelmError(
                f"rollback of release {where} to revision {revision} failed {times}; last error: {errors[-1]}"
            )
        now, unread = _after_failure(release)
    run_logger(__name__).info("rolled back release %s to revision %d", where, revision)
    tries = f" after {len(errors)} failed attempts" if errors else ""
    return StepResult(
        step="rollback",
        status="changed",
        detail=f"rolled back release {where} to revision {revision}{tries}: {unread}{running_now(where, now)}",
        seconds=timer.seconds,
        data={
            "release": release.release,
            "namespace": release.namespace,
            "revision": revision,
            "running_revision": now.deployed_revision if now else None,
            "attempts": len(errors) + 1,
        },
    )
