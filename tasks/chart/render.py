"""Render a chart with ``helm template`` and read back what the runner process really gets.

The runner's ``register`` command (run by the chart's entrypoint) builds ``[runners.cache]`` from two places:
its environment (``CACHE_*``, parsed by go-flags) and, when the chart passes ``--template-config``, the rendered
``runners.config`` TOML. Environment values win; template values fill whatever the environment left empty or
false. This module models exactly that:

- the runner container is the one whose command, env or image show it runs gitlab-runner — not a fixed name;
- its env follows Kubernetes rules (``envFrom`` first, later ``env`` entries override earlier ones);
- a boolean env var is read as go-flags reads it: ``""`` means **true**, ``true/false/1/0/t/f`` as
  ``strconv.ParseBool``, anything else makes registration fail;
- names current runners do not read (``S3_CACHE_INSECURE`` and the other ``S3_*`` names of runners before
  11.0, which charts before 0.3.0 emitted) are reported, not used.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from runner_cache.errors import ChartError
from runner_cache.redaction import redact
from runner_cache.tasks.chart.helm_cli import run_helm
from runner_cache.tasks.chart.values import COMPARED_FIELDS, Intended

TEMPLATE_TIMEOUT = 60.0
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}

# The env var behind each compared setting (gitlab-runner common/config.go).
FIELD_ENV = {
    "Type": "CACHE_TYPE",
    "Path": "CACHE_PATH",
    "Shared": "CACHE_SHARED",
    "ServerAddress": "CACHE_S3_SERVER_ADDRESS",
    "BucketName": "CACHE_S3_BUCKET_NAME",
    "BucketLocation": "CACHE_S3_BUCKET_LOCATION",
    "Insecure": "CACHE_S3_INSECURE",
}
# Old (pre-11.0) names that charts before 0.3.0 emitted and current runners do not read, and the name they read.
UNREAD_ALIASES = {
    "S3_SERVER_ADDRESS": "CACHE_S3_SERVER_ADDRESS",
    "S3_BUCKET_NAME": "CACHE_S3_BUCKET_NAME",
    "S3_BUCKET_LOCATION": "CACHE_S3_BUCKET_LOCATION",
    "S3_CACHE_PATH": "CACHE_PATH",
    "S3_CACHE_INSECURE": "CACHE_S3_INSECURE",
}
BOOL_FIELDS = {"Insecure", "Shared"}
TOML_SECTION = {"Type": "cache", "Path": "cache", "Shared": "cache"}  # others live in [runners.cache.s3]
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_RUNNER_ENV_MARKERS = {"CI_SERVER_URL", "RUNNER_EXECUTOR"}


@dataclass
class RunnerView:
    """What the rendered chart gives the runner container."""

    workload: str
    container: str
    env: dict[str, str]
    secrets: set[str]
    config_template: dict[str, Any] | None = None
    config_source: str | None = None
    config_text: str | None = None  # the rendered TOML the runner registers with (``--template-config``)
    unresolved_env: set[str] = field(default_factory=set)


class Reading(BaseModel):
    """One effective setting and where the runner gets it from, in plain words."""

    value: str | bool | None
    source: str


class Difference(BaseModel):
    """A setting the runner would get wrong."""

    field: str
    intended: Any
    effective: Any
    why: str

    def __str__(self) -> str:
        return (
            f"{self.field}: intended {json.dumps(self.intended)}, runner gets {json.dumps(self.effective)} ({self.why})"
        )


def render_manifests(
    chart_dir: Path,
    *,
    release: str,
    namespace: str,
    values: dict[str, Any],
    values_files: list[Path],
    release_values: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """``helm template`` of ``chart_dir`` with the values an upgrade of the release would have: the deployed
    release's ``release_values`` first (``--reset-then-reuse-values`` keeps them under everything else), then the
    user's ``values_files``, then ``values`` (through stdin). ``release_values`` may hold the release's tokens:
    they go to helm in a 0600 file in a private directory, removed when helm returns."""
    args = ["template", release, str(chart_dir), "--namespace", namespace]
    with tempfile.TemporaryDirectory(prefix="runner-cache-render-") as private:  # mode 0700
        if release_values:
            path = Path(private) / "release-values.json"
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
                json.dump(release_values, handle)
            args += ["--values", str(path)]
        for file in values_files:
            args += ["--values", str(file)]
        args += ["--values", "-"]
        try:
            output = run_helm(args, stdin=yaml.safe_dump(values, sort_keys=False), timeout=TEMPLATE_TIMEOUT)
        except ChartError as error:  # helm may quote values in its error (a tpl failure quotes the whole text)
            raise ChartError(redact(str(error.message), _secret_values(release_values or {}))) from None
    try:
        documents = list(yaml.safe_load_all(output))
    except yaml.YAMLError as error:
        raise ChartError(f"helm template produced invalid YAML: {error}") from None
    return [doc for doc in documents if isinstance(doc, dict)]


_SECRET_KEY = re.compile(r"(?i)token|secret|password|key$")


def _secret_values(values: Any) -> list[str]:
    """String values under keys that name a secret (``runnerToken``, ``runnerRegistrationToken``, …)."""
    if not isinstance(values, dict):
        return []
    found = []
    for key, value in values.items():
        if isinstance(value, str) and _SECRET_KEY.search(str(key)):
            found.append(value)
        found += _secret_values(value)
    return found


def _runner_signals(container: dict[str, Any]) -> list[str]:
    command = " ".join(str(part) for part in (container.get("command") or []) + (container.get("args") or []))
    env_names = {entry.get("name") for entry in container.get("env") or [] if isinstance(entry, dict)}
    image = str(container.get("image") or "")
    signals = []
    if re.search(r"(^|[/\s])(entrypoint|gitlab-runner)\b", command):
        signals.append("runs the runner entrypoint")
    if env_names & _RUNNER_ENV_MARKERS:
        signals.append("has the runner's registration env")
    if "gitlab-runner" in image and "helper" not in image:
        signals.append("runs a gitlab-runner image")
    return signals


def _find_runner(manifests: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (workload, container) that runs gitlab-runner: the container with the most runner signals."""
    candidates = []
    for doc in manifests:
        if doc.get("kind") not in WORKLOAD_KINDS:
            continue
        pod = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in pod.get("containers") or []:
            signals = _runner_signals(container)
            if signals:
                candidates.append((len(signals), doc, container))
    if not candidates:
        raise ChartError(
            "no runner container in the rendered chart: no Deployment/StatefulSet/DaemonSet container runs the "
            "runner entrypoint, has CI_SERVER_URL/RUNNER_EXECUTOR in its env or runs a gitlab-runner image"
        )
    best = max(score for score, _, _ in candidates)
    top = [(doc, container) for score, doc, container in candidates if score == best]
    if len(top) > 1:
        names = ", ".join(f"{doc['metadata']['name']}/{container.get('name')}" for doc, container in top)
        raise ChartError(f"cannot tell which container is the runner: {names} look alike")
    return top[0]


def _config_maps(manifests: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: {str(k): str(v) for k, v in (doc.get("data") or {}).items()}
        for doc in manifests
        if doc.get("kind") == "ConfigMap" and (doc.get("metadata") or {}).get("name")
    }


def _container_env(container: dict[str, Any], config_maps: dict[str, dict[str, str]], view: RunnerView) -> None:
    """Fill ``view.env`` and ``view.secrets`` as Kubernetes builds the container's environment."""
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        if "configMapRef" in source:
            for key, value in config_maps.get(source["configMapRef"].get("name"), {}).items():
                view.env[prefix + key] = value
        if "secretRef" in source:
            view.secrets.add(source["secretRef"].get("name"))
    for entry in container.get("env") or []:
        name = entry.get("name")
        if "valueFrom" not in entry:
            view.env[name] = "" if entry.get("value") is None else str(entry["value"])
            view.unresolved_env.discard(name)
            continue
        view.env.pop(name, None)
        reference = entry["valueFrom"]
        if "secretKeyRef" in reference:
            view.secrets.add(reference["secretKeyRef"].get("name"))
        elif "configMapKeyRef" in reference:
            ref = reference["configMapKeyRef"]
            value = config_maps.get(ref.get("name"), {}).get(ref.get("key"))
            if value is not None:
                view.env[name] = value
                view.unresolved_env.discard(name)
                continue
        view.unresolved_env.add(name)


def _config_template(
    pod: dict[str, Any], config_maps: dict[str, dict[str, str]]
) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """The rendered runners.config: the one ``*.toml`` entry with ``[[runners]]`` among the pod's ConfigMaps."""
    names = []
    for volume in pod.get("volumes") or []:
        if "configMap" in volume:
            names.append(volume["configMap"].get("name"))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                names.append(source["configMap"].get("name"))
    found = []
    for name in names:
        for key, text in config_maps.get(name, {}).items():
            if not key.endswith(".toml"):
                continue
            try:
                document = tomllib.loads(text)
            except tomllib.TOMLDecodeError as error:
                raise ChartError(f"ConfigMap {name} key {key} is not valid TOML after rendering: {error}") from None
            if "runners" in document:
                found.append((document, f"ConfigMap {name} key {key}", text))
    if len(found) > 1:
        raise ChartError("more than one rendered config template has [[runners]]: " + ", ".join(s for _, s, _ in found))
    if not found:
        return None, None, None
    document, where, text = found[0]
    runners = document["runners"]
    if not isinstance(runners, list) or len(runners) != 1:
        raise ChartError(f"{where} must hold exactly one [[runners]] table (the runner's register template takes one)")
    return runners[0], where, text


def runner_view(manifests: list[dict[str, Any]]) -> RunnerView:
    """Find the runner container in rendered manifests and collect its env, secrets and config template."""
    workload, container = _find_runner(manifests)
    pod = workload["spec"]["template"]["spec"]
    config_maps = _config_maps(manifests)
    view = RunnerView(
        workload=f"{workload['kind']}/{workload['metadata']['name']}",
        container=str(container.get("name")),
        env={},
        secrets=set(),
    )
    _container_env(container, config_maps, view)
    for volume in pod.get("volumes") or []:
        if "secret" in volume:
            view.secrets.add(volume["secret"].get("secretName"))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                view.secrets.add(source["secret"].get("name"))
    view.secrets.discard(None)
    view.config_template, view.config_source, view.config_text = _config_template(pod, config_maps)
    return view


def _env_reading(field_name: str, name: str, raw: str) -> Reading | None:
    """The env var's value as the runner reads it, or None when it is empty/false and the template may fill it."""
    if field_name not in BOOL_FIELDS:
        return Reading(value=raw, source=f"env {name}={json.dumps(raw)}") if raw else None
    if raw == "":
        return Reading(value=True, source=f'env {name}="" (an empty boolean reads as true)')
    if raw in _TRUE:
        return Reading(value=True, source=f"env {name}={json.dumps(raw)}")
    if raw in _FALSE:
        return None
    return Reading(value=None, source=f"env {name}={json.dumps(raw)} is not a boolean: the runner's registration fails")


def effective_settings(view: RunnerView) -> dict[str, Reading]:
    """Each compared setting as the runner ends up with it, and where it came from."""
    cache = (view.config_template or {}).get("cache") or {}
    readings: dict[str, Reading] = {}
    for field_name in COMPARED_FIELDS:
        name = FIELD_ENV[field_name]
        if name in view.unresolved_env:
            readings[field_name] = Reading(
                value=None, source=f"env {name} comes from outside the chart: cannot verify it"
            )
            continue
        raw = view.env.get(name)
        reading = None if raw is None else _env_reading(field_name, name, raw)
        if reading is None:
            section = cache if TOML_SECTION.get(field_name) == "cache" else cache.get("s3") or {}
            if field_name in section:
                path = "[runners.cache]" if section is cache else "[runners.cache.s3]"
                left = (
                    ""
                    if raw is None
                    else f" (env {name}={json.dumps(raw)} is empty or false, so the template fills it)"
                )
                reading = Reading(value=section[field_name], source=f"{view.config_source} {path} {field_name}{left}")
            else:
                default: str | bool = False if field_name in BOOL_FIELDS else ""
                reading = Reading(value=default, source="not set" if raw is None else f"env {name}={json.dumps(raw)}")
        ignored = [alias for alias, target in UNREAD_ALIASES.items() if target == name and alias in view.env]
        if ignored:
            reading.source += "; " + ", ".join(
                f"{alias}={json.dumps(view.env[alias])} is set, but current runners do not read {alias}"
                for alias in ignored
            )
        readings[field_name] = reading
    return readings


def differences(
    intended: Intended, readings: dict[str, Reading], view: RunnerView, secret_name: str
) -> list[Difference]:
    """Where the runner would get something other than intended, including credentials it could not read."""
    found = [
        Difference(field=name, intended=intended[name], effective=readings[name].value, why=readings[name].source)
        for name in COMPARED_FIELDS
        if readings[name].value != intended[name] or type(readings[name].value) is not type(intended[name])
    ]
    if secret_name not in view.secrets:
        found.append(
            Difference(
                field="credentials",
                intended=secret_name,
                effective=sorted(view.secrets),
                why=f"the runner pod does not mount or reference Secret {secret_name!r}, so it gets no accesskey/secretkey",
            )
        )
    return found
