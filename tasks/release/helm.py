"""The runner's Helm release in the cluster: what is deployed, an upgrade only when something differs, rollback.

helm runs through ``runner_cache.tasks.chart.source.run_helm`` (the binary that renders, a timeout on every call). Values
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

Errors: helm failing raises :class:`HelmError`; a cluster helm cannot reach raises
:class:`HelmClusterUnreachable` (transient: retried by the task policy).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.events import emit_event
from pydantic import SecretStr

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.errors import ChartError, ConfigError, HelmClusterUnreachable, HelmError, HelmTimeout
from runner_cache.redaction import redact
from runner_cache.tasks.chart.helm_cli import run_helm
from runner_cache.tasks.chart.source import read_chart_yaml
from runner_cache.tasks.chart.values import load_values_file
from runner_cache.tasks.events import release_resource
from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.results import StepResult, timed

READ_TIMEOUT = 60.0  # seconds, at most, for status, history, get values and version
DIGEST_MARK = "runner-cache chart-sha256="
_DIGEST = re.compile(re.escape(DIGEST_MARK) + r"([0-9a-f]{64})")
_BUSY = {"pending-install", "pending-upgrade", "pending-rollback", "uninstalling"}
_UNREACHABLE = ("kubernetes cluster unreachable", "connection refused", "i/o timeout", "no such host")


@dataclass(frozen=True)
class DeployedRelease:
    """The release as helm records it: its latest revision, and the last revision that is ``deployed``."""

    revision: int
    status: str
    chart: str  # "<name>-<version>", as helm history prints it
    chart_digest: str | None
    values: dict[str, Any]
    deployed_revision: int | None


def _cluster_args(release: ReleaseSettings) -> list[str]:
    args = ["--namespace", release.namespace]
    args += ["--kubeconfig", str(release.kubeconfig)] if release.kubeconfig else []
    args += ["--kube-context", release.context] if release.context else []
    return args


def _read_timeout(release: ReleaseSettings) -> float:
    return min(READ_TIMEOUT, float(release.timeout_seconds))


def _helm(args: list[str], *, timeout: float, secrets: Sequence[SecretStr] = ()) -> str:
    """Run a helm cluster command; helm's reason comes back as :class:`HelmError` (scrubbed of ``secrets``)."""
    started = time.monotonic()
    try:
        return run_helm(args, timeout=timeout)
    except ChartError as error:
        message = redact(str(error), secrets)
        if time.monotonic() - started >= timeout:
            raise HelmTimeout(message) from None
        if any(words in message for words in _UNREACHABLE):
            raise HelmClusterUnreachable(message) from None
        raise HelmError(message) from None


def helm_major() -> int:
    """3 or 4, from ``helm version``: it decides the rollback-on-failure flag."""
    version = _helm(["version", "--template", "{{.Version}}"], timeout=READ_TIMEOUT).strip()
    match = re.match(r"^v?(\d+)\.", version)
    if not match or int(match[1]) not in (3, 4):
        raise ConfigError(f"helm reports version {version!r}; runner-cache needs helm 3 or 4")
    return int(match[1])


def deployed_release(release: ReleaseSettings) -> DeployedRelease | None:
    """What helm has for ``release`` (None when it was never installed)."""
    cluster, timeout = [release.release, *_cluster_args(release), "--output", "json"], _read_timeout(release)
    try:
        status = json.loads(_helm(["status", *cluster], timeout=timeout))
    except HelmError as error:
        if "release: not found" in str(error):
            return None
        raise
    revision = int(status["version"])
    history = json.loads(_helm(["history", *cluster, "--max", "20"], timeout=timeout)) or []
    latest = next((entry for entry in history if entry.get("revision") == revision), {})
    deployed = [entry["revision"] for entry in history if entry.get("status") == "deployed"]
    values = json.loads(_helm(["get", "values", *cluster, "--revision", str(revision)], timeout=timeout)) or {}
    digest = _DIGEST.search(latest.get("description", ""))
    return DeployedRelease(
        revision=revision,
        status=status.get("info", {}).get("status", "unknown"),
        chart=latest.get("chart", "unknown"),
        chart_digest=digest[1] if digest else None,
        values=values,
        deployed_revision=max(deployed) if deployed else None,
    )


def chart_digest(chart: Path) -> str:
    """sha256 of a chart's files (relative paths and contents), so a patched copy differs from its original."""
    digest = hashlib.sha256()
    files = sorted(path for path in chart.rglob("*") if path.is_file()) if chart.is_dir() else [chart]
    for path in files:
        digest.update(str(path.relative_to(chart) if chart.is_dir() else path.name).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def merge_values(base: dict, override: dict) -> dict:
    """helm's merge of successive ``-f`` files: maps merge key by key, anything else in ``override`` wins."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            merge_values(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def expected_values(release: ReleaseSettings, values: dict, deployed: DeployedRelease | None) -> dict:
    """The values helm will record: what the release already has, then the user's values file, then ours.

    This mirrors ``--reset-then-reuse-values``: everything the release was installed with (``gitlabUrl``, the
    runner token, a rebuild's image tag …) is kept, and runner-cache only ever overrides the keys it owns — without
    those values passing through a file of ours.
    """
    base = json.loads(json.dumps(deployed.values)) if deployed else {}
    user = json.loads(json.dumps(load_values_file(release.values_file)))
    return merge_values(merge_values(base, user), json.loads(json.dumps(values)))


def value_paths(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths where two values trees differ (both ways); names only, never values."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        return [
            diff
            for key in keys
            for diff in value_paths(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        ]
    return [] if old == new else [path or "values"]


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
    changed = value_paths(deployed.values, values)
    if changed:
        reasons.append(f"values differ at {', '.join(changed[:5])}{' …' if len(changed) > 5 else ''}")
    return reasons


def _write_values(directory: Path, values: dict) -> Path:
    path = directory / "runner-cache-values.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    return path


def upgrade_release(
    release: ReleaseSettings,
    chart: Path,
    values: dict,
    *,
    patched: bool = False,
    secrets: Sequence[SecretStr] = (),
    apply: bool = True,
) -> StepResult:
    """``helm upgrade --install`` the chart directory ``chart`` with ``values`` (ours), unless the deployed
    revision already has the same chart and values: then nothing runs and the step is ``unchanged``.

    helm waits for the resources and rolls back by itself when the upgrade fails (``--rollback-on-failure``
    on helm 4, ``--atomic`` on helm 3). The result's ``data`` has ``revision`` (the new one) and
    ``previous_revision`` (the last deployed one before, None on a first install): roll back to it with
    :func:`rollback_release` when a later verification fails. Emits ``runner-cache.release.upgraded``.
    ``apply=False`` reads only and says what would change.

    Raises:
        ConfigError: ``values`` contain one of ``secrets``, or the user's values file is unreadable.
        HelmError: helm failed (the release was rolled back by helm), or the release is busy.
    """
    encoded = json.dumps(values)
    if any(secret.get_secret_value() and secret.get_secret_value() in encoded for secret in secrets):
        raise ConfigError(
            "refusing to pass the store's credentials to helm in values: the chart must read them from the Secret"
        )
    name, version = read_chart_yaml(chart)
    label, digest, where = f"{name}-{version}", chart_digest(chart), f"{release.namespace}/{release.release}"
    with timed() as timer:
        deployed = deployed_release(release)
        wanted = expected_values(release, values, deployed)
        reasons = release_drift(deployed, label, digest, patched, wanted)
        previous = deployed.deployed_revision if deployed else None
        if reasons and apply:
            revision = _upgrade(release, chart, values, label, digest, reasons, secrets)
    data: dict[str, Any] = {
        "release": release.release,
        "namespace": release.namespace,
        "chart": label,
        "chart_digest": digest,
        "reasons": reasons,
    }
    if not reasons:
        current = deployed.revision if deployed else None
        detail = f"release {where} already runs chart {label} with these values (revision {current}): no upgrade"
        data |= {"revision": current, "previous_revision": None}
        return StepResult(step="release", status="unchanged", detail=detail, seconds=timer.seconds, data=data)
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
        detail=f"upgraded release {where} to chart {label}, revision {revision} ({before}): {'; '.join(reasons)}",
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
    """Run ``helm upgrade --install`` with our values in a private 0600 file; the new revision."""
    where = f"{release.namespace}/{release.release}"
    run_logger(__name__).info("upgrading release %s to chart %s: %s", where, label, "; ".join(reasons))
    rollback_flag = "--rollback-on-failure" if helm_major() >= 4 else "--atomic"
    timeout = release.timeout_seconds
    with tempfile.TemporaryDirectory(prefix="runner-cache-helm-") as private:  # mode 0700, removed with the file
        args = [
            "upgrade", release.release, str(chart), "--install", *_cluster_args(release), "--create-namespace",
            "--reset-then-reuse-values", "--wait", "--timeout", f"{timeout}s", rollback_flag, "--description", f"{DIGEST_MARK}{digest}",
            *(["--values", str(release.values_file)] if release.values_file else []),
            "--values", str(_write_values(Path(private), values)),
        ]  # fmt: skip
        try:
            # helm's own --timeout bounds the upgrade and, after a failure, its rollback; then a grace period
            _helm(args, timeout=2 * timeout + min(60, timeout), secrets=secrets)
        except HelmTimeout as error:
            raise HelmTimeout(
                f"upgrade of release {where} to {label} was stopped: {error}; the release may be left pending-upgrade, "
                f"see `helm history {release.release} -n {release.namespace}`"
            ) from None
        except HelmError as error:
            raise HelmError(
                f"upgrade of release {where} to {label} failed, and helm rolled it back ({rollback_flag}): {error}"
            ) from None
    now = deployed_release(release)
    return now.revision if now else None


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
                _helm(args, timeout=release.timeout_seconds + min(60, release.timeout_seconds))
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
    run_logger(__name__).info("rolled back release %s to revision %d", where, revision)
    return StepResult(
        step="rollback",
        status="changed",
        detail=f"rolled back release {where} to revision {revision}"
        + (f" after {len(errors)} failed attempts" if errors else ""),
        seconds=timer.seconds,
        data={
            "release": release.release,
            "namespace": release.namespace,
            "revision": revision,
            "attempts": len(errors) + 1,
        },
    )
