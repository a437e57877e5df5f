"""A recording fake ``helm`` for the cluster commands (status, history, get values, upgrade, rollback, uninstall,
version), behaving per helm version as the real one does (helm/helm sources cited per rule).

helm cannot talk to a fake API server, so tests of the orchestration around helm put this first on PATH
(:func:`install`). It answers from a JSON state file (``$FAKE_HELM_STATE``) shaped like helm's own release
records, prints what helm 3/4 print (``-o json`` documents, ``Error: release: not found``), rejects flags the
chosen version does not know, and appends one JSON line per call to ``$FAKE_HELM_LOG``: its argv, its stdin,
each ``--values`` file as it was *while helm ran* (mode, content), and ``api_calls``: the Kubernetes requests the
real helm would make for this command and these flags. With ``$FAKE_HELM_RBAC`` (documented RBAC features, e.g.
``release,namespaces``) each of those requests is authorised against docs/deployments.md (tests/fakes/rbac.py),
and the first refused one fails the command with the API server's 403 text, as a real helm would.
Rendering (``helm template``, ``helm pull``) is not faked: with ``$FAKE_HELM_REAL`` set, the fake hands those to
the real binary, and uses it to render the release's objects on upgrade.

State: ``{"version": "v4.1.4", "releases": {"NS/NAME": [revision, ...]}, "fail": {...}, "sleep": {...},
"unreachable": false}`` where a revision is ``{"revision", "status", "chart", "version", "app_version",
"description", "values", "objects", "updated"}``; ``fail`` maps a command to the error it fails with
(``fail_times``: only that many times; a failed upgrade is recorded and, with --atomic/--rollback-on-failure,
rolled back — or, for a first install, uninstalled — like helm does), and ``sleep`` maps a command to seconds to
hang. While an upgrade hangs its revision is stored ``pending-install``/``pending-upgrade``: SIGTERM makes the
fake do what helm's signal handler does (mark it failed, roll back or uninstall with --atomic), SIGKILL leaves it
pending, as with helm.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: make `tests.fakes` importable

from tests.fakes.rbac import Rbac, Request  # noqa: E402

VALUE_FLAGS = {"--namespace", "-n", "--kubeconfig", "--kube-context", "--output", "-o", "--max", "--revision"}
VALUE_FLAGS |= {"--timeout", "--description", "--values", "-f", "--template", "--version"}
BOOL_FLAGS = {"--install", "--create-namespace", "--reset-then-reuse-values", "--wait", "--atomic"}
BOOL_FLAGS |= {"--rollback-on-failure"}
PENDING = {"pending-install", "pending-upgrade", "pending-rollback"}
# kind -> (API group, resource) of what a gitlab-runner chart renders
RESOURCES = {
    "ConfigMap": ("", "configmaps"),
    "Secret": ("", "secrets"),
    "ServiceAccount": ("", "serviceaccounts"),
    "Service": ("", "services"),
    "Deployment": ("apps", "deployments"),
    "Role": ("rbac.authorization.k8s.io", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
}


class HelmFailure(Exception):
    pass


class Cancelled(Exception):
    """SIGTERM or SIGINT arrived: helm's handler cancels the context (cmd/helm/upgrade.go@v3.16.4 L226-240)."""


def version_tuple(version: str) -> tuple[int, int, int]:
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2]), int(match[3])) if match else (0, 0, 0)


def known_bool_flags(version: str) -> set[str]:
    """--reset-then-reuse-values appeared in 3.14.0 (cmd/helm/upgrade.go@v3.14.0 L255); --rollback-on-failure in
    4.0 (pkg/cmd/upgrade.go@v4.1.4 L289), where --atomic stays as its deprecated alias."""
    flags = set(BOOL_FLAGS)
    if version_tuple(version) < (3, 14, 0):
        flags.discard("--reset-then-reuse-values")
    if version_tuple(version)[0] < 4:
        flags.discard("--rollback-on-failure")
    return flags


def _parse(argv: list[str], version: str) -> tuple[list[str], dict[str, list[str]]]:
    positional: list[str] = []
    flags: dict[str, list[str]] = {}
    known = known_bool_flags(version)
    items = iter(argv)
    for item in items:
        name, _, inline = item.partition("=")
        if not item.startswith("-"):
            positional.append(item)
        elif name in known:
            flags.setdefault(name, []).append(inline or "true")
        elif name in VALUE_FLAGS:
            canonical = {"-n": "--namespace", "-o": "--output", "-f": "--values"}.get(name, name)
            flags.setdefault(canonical, []).append(inline or next(items))
        else:
            raise HelmFailure(f"unknown flag: {name}")
    return positional, flags


def unreachable_words(version: str, detail: str) -> str:
    """helm 3: "Kubernetes cluster unreachable" (pkg/kube/client.go@v3.16.4 L129-135); helm 4 lower-cases it
    (pkg/kube/client.go@v4.1.4 L252-258)."""
    head = "kubernetes cluster unreachable" if version_tuple(version)[0] >= 4 else "Kubernetes cluster unreachable"
    return f"{head}: {detail}"


def rolled_back_words(version: str, name: str, error: str, *, install: bool) -> str:
    """pkg/action/upgrade.go@v3.16.4 L538 / install.go L512 ("atomic"); @v4.1.4 L590 / L589 ("rollback-on-failure")."""
    flag = "rollback-on-failure" if version_tuple(version)[0] >= 4 else "atomic"
    done = "uninstalled" if install else "rolled back"
    return f"release {name} failed, and has been {done} due to {flag} being set: {error}"


class _HelmYamlLoader(yaml.SafeLoader):
    """YAML as helm reads values files (sigs.k8s.io/yaml on go-yaml v2): a timestamp-looking scalar stays a string."""


_HelmYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def helm_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_HelmYamlLoader)  # noqa: S506 - a SafeLoader subclass


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both else value
    return merged


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _history_entry(revision: dict) -> dict:
    return {
        "revision": revision["revision"],
        "updated": revision.get("updated", "2026-01-01T00:00:00Z"),
        "status": revision["status"],
        "chart": f"{revision['chart']}-{revision['version']}",
        "app_version": revision.get("app_version", ""),
        "description": revision["description"],
    }


def installed_by_hand(values: dict, app_version: str = "16.7.0") -> dict:
    """Revision 1 of gitlab-runner chart 0.60.0 as `helm install -f values.yaml` leaves it, for ``set_state``."""
    return {
        "revision": 1,
        "status": "deployed",
        "chart": "gitlab-runner",
        "version": "0.60.0",
        "app_version": app_version,
        "description": "Install complete",
        "values": values,
    }


def _new_revision(revisions: list[dict], template: dict, status: str, description: str) -> dict:
    for old in revisions:
        if old["status"] == "deployed" and status == "deployed":
            old["status"] = "superseded"
    revision = {**template, "revision": len(revisions) + 1, "status": status, "description": description}
    revision["updated"] = _now()
    revisions.append(revision)
    return revision


def _last_deployed(revisions: list[dict]) -> dict | None:
    return next((revision for revision in reversed(revisions) if revision["status"] == "deployed"), None)


# --- the Kubernetes requests a command implies --------------------------------------------------------------


def _storage(verb: str, namespace: str, name: str = "") -> Request:
    """helm's release records are Secrets (pkg/storage/driver/secrets.go@v3.16.4: Get, List, Create, Update, Delete)."""
    return Request(verb, "", "secrets", namespace, name)


def object_calls(objects: list[list[str]], before: list[list[str]], namespace: str, version: str) -> list[Request]:
    """Applying a release's objects: helm 3 GETs each then creates or 3-way patches it (pkg/kube/client.go Update);
    helm 4 applies server-side (PATCH, authorised as create too when the object is new: apiserver
    handlers/patch.go). Objects the new revision drops are deleted."""
    calls: list[Request] = []
    existing = {tuple(item) for item in before}
    for kind, name in objects:
        group, resource = RESOURCES.get(kind, ("", kind.lower() + "s"))
        new = (kind, name) not in existing
        if version_tuple(version)[0] >= 4:
            calls += [Request("patch", group, resource, namespace, name)]
            calls += [Request("create", group, resource, namespace, name)] if new else []
        else:
            calls += [Request("get", group, resource, namespace, name)]
            calls += [Request("create" if new else "patch", group, resource, namespace, name)]
    for kind, name in sorted(existing - {tuple(item) for item in objects}):
        group, resource = RESOURCES.get(kind, ("", kind.lower() + "s"))
        calls.append(Request("delete", group, resource, namespace, name))
    return calls


def wait_calls(objects: list[list[str]], namespace: str, version: str) -> list[Request]:
    """--wait. helm 3 (pkg/kube/ready.go@v3.16.4): GET each Deployment/Service/PVC/Pod…, and for a Deployment LIST
    its ReplicaSets (deploymentutil.GetNewReplicaSet). helm 4 (--wait=watcher, pkg/kube/statuswait.go@v4.1.4): a
    kstatus watcher LISTs and WATCHes every kind of the release in the namespace; its Deployment reader lists the
    ReplicaSets and their Pods (fluxcd/cli-utils pkg/kstatus/polling/statusreaders)."""
    calls: list[Request] = []
    kinds = sorted({kind for kind, _ in objects})
    if version_tuple(version)[0] >= 4:
        for kind in kinds:
            group, resource = RESOURCES.get(kind, ("", kind.lower() + "s"))
            calls += [Request("list", group, resource, namespace), Request("watch", group, resource, namespace)]
        if "Deployment" in kinds:
            calls += [Request("list", "apps", "replicasets", namespace), Request("list", "", "pods", namespace)]
        return calls
    for kind, name in objects:
        if kind in {"Deployment", "Service", "PersistentVolumeClaim", "Pod", "DaemonSet", "StatefulSet"}:
            group, resource = RESOURCES.get(kind, ("", kind.lower() + "s"))
            calls.append(Request("get", group, resource, namespace, name))
        if kind == "Deployment":
            calls.append(Request("list", "apps", "replicasets", namespace))
    return calls


def command_calls(
    command: str, flags: dict[str, list[str]], namespace: str, name: str, **context: Any
) -> list[Request]:
    """Every Kubernetes request the real helm makes for this command (beyond discovery, which every authenticated
    user may do through the default system:discovery ClusterRole)."""
    version = context.get("version", "v4.1.4")
    if command in {"status", "history"}:
        return [_storage("list", namespace)]
    if command == "get values":
        revision = flags.get("--revision")
        return (
            [_storage("get", namespace, f"sh.helm.release.v1.{name}.v{revision[-1]}")]
            if revision
            else [_storage("list", namespace)]
        )
    if command == "rollback":
        return (
            [_storage("list", namespace), _storage("get", namespace), _storage("create", namespace)]
            + [_storage("update", namespace)]
            + object_calls(context["objects"], context["before"], namespace, version)
            + (wait_calls(context["objects"], namespace, version) if "--wait" in flags else [])
        )
    if command == "uninstall":
        return (
            [_storage("list", namespace), _storage("update", namespace)]
            + object_calls([], context["before"], namespace, version)
            + [_storage("delete", namespace)]
        )
    if command == "upgrade":
        install = not context["before_exists"]
        calls = [_storage("list", namespace)]
        if install and "--create-namespace" in flags:  # pkg/action/install.go@v3.16.4 L366-389: CREATE, no GET
            calls.append(Request("create", "", "namespaces", "", namespace))
        calls += [_storage("create", namespace)]
        calls += object_calls(context["objects"], context["before"], namespace, version)
        if {"--wait", "--atomic", "--rollback-on-failure"} & set(flags):
            calls += wait_calls(context["objects"], namespace, version)
        calls += [_storage("update", namespace)]
        return calls
    return []


def authorise(calls: list[Request], rendered: list[dict]) -> None:
    """Refuse the first request the documented RBAC does not allow, as the API server would (403 text)."""
    features = [item for item in os.environ.get("FAKE_HELM_RBAC", "").split(",") if item]
    if not features:
        return
    rbac = Rbac.documented(*features)
    for call in calls:
        if not rbac.allows(call):
            raise HelmFailure(call.words(rbac.user))
    by_name = {(obj["kind"], obj["metadata"]["name"]): obj for obj in rendered}
    for obj in rendered:
        refused = rbac.refuse_escalation(obj, obj["metadata"].get("namespace", ""), roles=by_name)
        if refused:
            raise HelmFailure(f"failed to create resource: {refused}")


# --- rendering the release's objects -------------------------------------------------------------------------


def render_objects(name: str, chart: Path, namespace: str, values: dict) -> list[dict]:
    """The release's objects: rendered by the real helm when ``$FAKE_HELM_REAL`` is set — with the values the
    revision gets (the reused ones included, as helm renders them), on stdin — else each template's
    ``kind:``/``name:`` lines (enough for charts without logic around them)."""
    real = os.environ.get("FAKE_HELM_REAL")
    if real:
        args = [real, "template", name, str(chart), "--namespace", namespace, "--values", "-"]
        done = subprocess.run(args, input=json.dumps(values), capture_output=True, text=True, check=False)
        if done.returncode == 0:
            objects = [doc for doc in yaml.safe_load_all(done.stdout) if isinstance(doc, dict) and doc.get("kind")]
            for obj in objects:
                obj.setdefault("metadata", {}).setdefault("namespace", namespace)
            return objects
        raise HelmFailure(done.stderr.strip().removeprefix("Error: "))
    objects = []
    for template in sorted((chart / "templates").glob("*.yaml")):
        kinds = re.findall(r"^kind:\s*\"?(\w+)", template.read_text(), re.M)
        objects += [
            {"kind": kind, "metadata": {"name": f"{name}-{template.stem}", "namespace": namespace}} for kind in kinds
        ]
    return objects


# --- commands ----------------------------------------------------------------------------------------------------


def run(argv: list[str], state: dict, record: dict, persist: Callable[[], None] = lambda: None) -> str:
    """Do what helm would for ``argv``; returns stdout, raises :class:`HelmFailure` with helm's error text."""
    version = state.get("version", "v4.1.4")
    positional, flags = _parse(argv, version)
    command, args = positional[0], positional[1:]
    if command == "version":
        return version
    if state.get("unreachable"):
        raise HelmFailure(
            unreachable_words(
                version, 'Get "https://10.0.0.1:6443/version": dial tcp 10.0.0.1:6443: connect: connection refused'
            )
        )
    failure = state.get("fail", {}).get(command)
    remaining = state.setdefault("fail_times", {}).get(command)
    if failure and remaining is not None:
        failure = failure if remaining > 0 else None
        state["fail_times"][command] = max(remaining - 1, 0)
    if failure and command != "upgrade":
        raise HelmFailure(failure)
    if command != "upgrade":
        time.sleep(state.get("sleep", {}).get(command, 0))
    if command == "get":
        command, args = "get " + args[0], args[1:]
    namespace = flags.get("--namespace", ["default"])[-1]
    key = f"{namespace}/{args[0]}"
    revisions = state.setdefault("releases", {}).get(key)
    if command == "upgrade":
        return _upgrade(state, key, args, flags, record, version, failure, persist)
    if not revisions:
        if command in {"status", "history", "get values"}:
            record["api_calls"] = [vars(call) for call in command_calls(command, flags, namespace, args[0])]
            authorise(command_calls(command, flags, namespace, args[0]), [])
        raise HelmFailure("release: not found")
    latest = revisions[-1]
    context = {"version": version, "objects": [], "before": latest.get("objects", []), "before_exists": True}
    if command == "rollback":
        target = next((revision for revision in revisions if revision["revision"] == int(args[1])), None)
        context["objects"] = (target or {}).get("objects", [])
    calls = command_calls(command, flags, namespace, args[0], **context)
    record["api_calls"] = [vars(call) for call in calls]
    authorise(calls, [])
    if command == "status":
        info = {
            "status": latest["status"],
            "description": latest["description"],
            "last_deployed": latest.get("updated", "2026-01-01T00:00:00Z"),
        }
        out = {
            "name": args[0],
            "info": info,
            "config": latest["values"],
            "version": latest["revision"],
            "namespace": namespace,
        }
        return json.dumps(out)
    if command == "history":
        limit = int(flags.get("--max", ["256"])[-1])
        return json.dumps([_history_entry(revision) for revision in revisions[-limit:]])
    if command == "get values":
        wanted = int(flags.get("--revision", [str(latest["revision"])])[-1])
        found = next((revision for revision in revisions if revision["revision"] == wanted), None)
        if found is None:
            raise HelmFailure("release: not found")
        return json.dumps(found["values"] or None)
    if command == "rollback":
        return _rollback(revisions, args)
    if command == "uninstall":
        del state["releases"][key]
        return f'release "{args[0]}" uninstalled\n'
    raise HelmFailure(f"the fake helm does not know {command!r}")


def _rollback(revisions: list[dict], args: list[str]) -> str:
    """pkg/action/rollback.go@v3.16.4: no pending check; the current revision becomes superseded, the target's
    chart and values become a new deployed revision "Rollback to N"."""
    target = next((revision for revision in revisions if revision["revision"] == int(args[1])), None)
    if target is None:
        raise HelmFailure(f"release has no {args[1]} version")
    if revisions[-1]["status"] in PENDING:
        revisions[-1]["status"] = "superseded"
    _new_revision(revisions, target, "deployed", f"Rollback to {args[1]}")
    return "Rollback was a success! Happy Helming!"


def _upgrade(
    state: dict,
    key: str,
    args: list[str],
    flags: dict[str, list[str]],
    record: dict,
    version: str,
    failure: str | None,
    persist: Callable[[], None],
) -> str:
    name, chart_path = args[0], Path(args[1])
    namespace = key.split("/", 1)[0]
    revisions = state["releases"].get(key)
    if not revisions and "--install" not in flags:
        raise HelmFailure(f'UPGRADE FAILED: "{name}" has no deployed releases')
    install = not revisions
    prefix = "" if install else "UPGRADE FAILED: "  # cmd/helm/upgrade.go@v3.16.4 L159: the install path is not wrapped
    if revisions and revisions[-1]["status"] in PENDING:  # pkg/action/upgrade.go@v3.16.4 L218-221
        raise HelmFailure(f"{prefix}another operation (install/upgrade/rollback) is in progress")
    if "--atomic" in flags and version_tuple(version)[0] >= 4:
        sys.stderr.write("Flag --atomic has been deprecated, use --rollback-on-failure instead\n")
    atomic = bool({"--atomic", "--rollback-on-failure"} & set(flags))
    chart = yaml.safe_load((chart_path / "Chart.yaml").read_text())
    # the values helm reuses are the last *deployed* revision's (pkg/action/upgrade.go@v3.16.4 L223-238)
    last = _last_deployed(revisions or []) or ((revisions or [None])[-1])
    values: dict = dict(last["values"] or {}) if last and "--reset-then-reuse-values" in flags else {}
    for path in flags.get("--values", []):
        if path == "-":
            values = _merge(values, helm_yaml(record["stdin"]) or {})
            continue
        file = Path(path)
        record["values_files"].append(
            {"path": path, "mode": oct(stat.S_IMODE(file.stat().st_mode)), "content": file.read_text()}
        )
        values = _merge(values, helm_yaml(file.read_text()) or {})
    rendered = render_objects(name, chart_path, namespace, values)
    objects = [[obj["kind"], obj["metadata"]["name"]] for obj in rendered]
    before = (last or {}).get("objects", [])
    calls = command_calls(
        "upgrade", flags, namespace, name, version=version, objects=objects, before=before, before_exists=not install
    )
    record["api_calls"] = [vars(call) for call in calls]
    authorise(calls, rendered)
    template = {
        "chart": chart["name"],
        "version": str(chart["version"]),
        "app_version": str(chart.get("appVersion", "")),
        "values": values,
        "objects": objects,
    }
    revisions = state["releases"].setdefault(key, [])
    previous = _last_deployed(revisions)
    pending = _new_revision(
        revisions, template, "pending-install" if install else "pending-upgrade", "Preparing upgrade"
    )
    try:
        _hang(state.get("sleep", {}).get("upgrade", 0), persist, state.get("ignore_sigterm", False))
    except Cancelled:
        sys.stdout.write(f"Release {name} has been cancelled.\n")
        failure = "context canceled"
    revisions.remove(pending)
    if failure:
        return _fail(state, key, revisions, template, name, failure, version, previous, atomic=atomic, install=install)
    described = flags.get("--description", ["Install complete" if install else "Upgrade complete"])[-1]
    revision = _new_revision(revisions, template, "deployed", described)
    return f'Release "{name}" has been upgraded. Happy Helming!\nNAME: {name}\nREVISION: {revision["revision"]}\n'


def _hang(seconds: float, persist: Callable[[], None], ignore_sigterm: bool = False) -> None:
    """Wait like a slow ``--wait``, the pending revision stored (what a SIGKILL leaves behind); SIGTERM/SIGINT
    cancel, like helm's handler (``ignore_sigterm``: a helm stuck too hard to react, so only SIGKILL ends it)."""
    if not seconds:
        return
    persist()

    def cancel(signum: int, frame: object) -> None:
        raise Cancelled

    signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore_sigterm else cancel)
    signal.signal(signal.SIGINT, cancel)
    time.sleep(seconds)


def _fail(
    state: dict,
    key: str,
    revisions: list[dict],
    template: dict,
    name: str,
    failure: str,
    version: str,
    previous: dict | None,
    *,
    atomic: bool,
    install: bool,
) -> str:
    """failRelease: pkg/action/upgrade.go@v3.16.4 L485-540, install.go L500-515."""
    if install:
        if atomic:  # the failed first install is uninstalled, its history too (KeepHistory false)
            del state["releases"][key]
            raise HelmFailure(rolled_back_words(version, name, failure, install=True))
        _new_revision(revisions, template, "failed", f'Release "{name}" failed: {failure}')
        raise HelmFailure(failure)
    _new_revision(revisions, template, "failed", f'Upgrade "{name}" failed: {failure}')
    if atomic and previous:
        _new_revision(revisions, previous, "deployed", f"Rollback to {previous['revision']}")
        raise HelmFailure(f"UPGRADE FAILED: {rolled_back_words(version, name, failure, install=False)}")
    raise HelmFailure(f"UPGRADE FAILED: {failure}")


def main() -> int:
    real = os.environ.get("FAKE_HELM_REAL")
    if real and sys.argv[1:2] in (["template"], ["pull"]):
        os.execv(real, [real, *sys.argv[1:]])  # rendering and pulling need no cluster: the real binary does them
    state_file, log_file = Path(os.environ["FAKE_HELM_STATE"]), Path(os.environ["FAKE_HELM_LOG"])
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    stdin = sys.stdin.read() if "-" in sys.argv[1:] else ""  # only `--values -` reads stdin; never block on an open one
    record: dict[str, Any] = {"argv": sys.argv[1:], "stdin": stdin, "values_files": [], "api_calls": []}
    unfinished: list[str] = []

    def persist() -> None:
        """Store the state now (what a SIGKILL leaves behind), and the call as unfinished."""
        state_file.write_text(json.dumps(state, indent=1))
        unfinished.append(json.dumps({**record, "unfinished": True}))
        with log_file.open("a") as log:
            log.write(unfinished[-1] + "\n")

    try:
        out, code = run(sys.argv[1:], state, record, persist), 0
    except HelmFailure as failure:
        sys.stderr.write(f"Error: {failure}\n")
        out, code = "", 1
    state_file.write_text(json.dumps(state, indent=1))
    lines = [line for line in log_file.read_text().splitlines() if line not in unfinished] if unfinished else None
    if lines is not None:
        log_file.write_text("".join(line + "\n" for line in lines))
    with log_file.open("a") as log:
        log.write(json.dumps(record) + "\n")
    sys.stdout.write(out)
    return code


def install(bin_dir: Path, state_file: Path, log_file: Path, state: dict) -> Path:
    """Write a ``helm`` executable into ``bin_dir`` that runs this fake, and the initial ``state``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    helm = bin_dir / "helm"
    helm.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    helm.chmod(0o755)
    state_file.write_text(json.dumps(state))
    return helm


if __name__ == "__main__":
    raise SystemExit(main())
