"""A recording fake ``helm`` for the cluster commands only (status, history, get values, upgrade, rollback, version).

helm cannot talk to a fake API server, so tests of the orchestration around helm put this first on PATH
(:func:`install`). It answers from a JSON state file (``$FAKE_HELM_STATE``) shaped like helm's own release
records, prints what helm 3/4 print (``-o json`` documents, ``Error: release: not found``), rejects flags the
chosen version does not know, and appends one JSON line per call to ``$FAKE_HELM_LOG``: its argv, its stdin,
and each ``--values`` file as it was *while helm ran* (mode, content), so tests can check what reached helm.
Rendering (``helm template``, ``helm pull``) is not faked: with ``$FAKE_HELM_REAL`` set, the fake hands those to
the real binary, so flow tests render for real while the cluster commands stay recorded.

State: ``{"version": "v4.1.4", "releases": {"NS/NAME": [revision, ...]}, "fail": {...}, "sleep": {...}}``
where a revision is ``{"revision", "status", "chart", "version", "app_version", "description", "values"}``,
``fail`` maps a command (``status``, ``upgrade``, ``rollback``…) to the error it fails with (``fail_times``: only
that many times; a failed upgrade is recorded and rolled back like helm does), and ``sleep`` maps a command
to seconds to hang (for timeouts).
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import yaml

VALUE_FLAGS = {
    "--namespace",
    "-n",
    "--kubeconfig",
    "--kube-context",
    "--output",
    "-o",
    "--max",
    "--revision",
    "--timeout",
}
VALUE_FLAGS |= {"--description", "--values", "-f", "--template", "--version"}
BOOL_FLAGS = {
    "--install",
    "--create-namespace",
    "--reset-then-reuse-values",
    "--wait",
    "--atomic",
    "--rollback-on-failure",
}
V4_ONLY = {"--rollback-on-failure"}


class HelmFailure(Exception):
    pass


def _parse(argv: list[str], version: str) -> tuple[list[str], dict[str, list[str]]]:
    positional: list[str] = []
    flags: dict[str, list[str]] = {}
    items = iter(argv)
    for item in items:
        name, _, inline = item.partition("=")
        if not item.startswith("-"):
            positional.append(item)
        elif name in BOOL_FLAGS and not (name in V4_ONLY and not version.startswith("v4")):
            flags.setdefault(name, []).append(inline or "true")
        elif name in VALUE_FLAGS:
            flags.setdefault({"-n": "--namespace", "-o": "--output", "-f": "--values"}.get(name, name), []).append(
                inline or next(items)
            )
        else:
            raise HelmFailure(f"unknown flag: {name}")
    return positional, flags


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def _history_entry(revision: dict) -> dict:
    return {
        "revision": revision["revision"],
        "updated": "2026-01-01T00:00:00Z",
        "status": revision["status"],
        "chart": f"{revision['chart']}-{revision['version']}",
        "app_version": revision.get("app_version", ""),
        "description": revision["description"],
    }


def _new_revision(revisions: list[dict], template: dict, status: str, description: str) -> dict:
    for old in revisions:
        if old["status"] == "deployed" and status == "deployed":
            old["status"] = "superseded"
    revision = {**template, "revision": len(revisions) + 1, "status": status, "description": description}
    revisions.append(revision)
    return revision


def run(argv: list[str], state: dict, record: dict) -> str:
    """Do what helm would for ``argv``; returns stdout, raises :class:`HelmFailure` with helm's error text."""
    version = state.get("version", "v4.1.4")
    positional, flags = _parse(argv, version)
    command, args = positional[0], positional[1:]
    time.sleep(state.get("sleep", {}).get(command, 0))
    failure = state.get("fail", {}).get(command)
    remaining = state.setdefault("fail_times", {}).get(command)
    if failure and remaining is not None:
        failure = failure if remaining > 0 else None
        state["fail_times"][command] = max(remaining - 1, 0)
    if failure and command != "upgrade":
        raise HelmFailure(failure)
    if command == "version":
        return version
    if command == "get":
        command, args = "get " + args[0], args[1:]
    namespace = flags.get("--namespace", ["default"])[-1]
    key = f"{namespace}/{args[0]}"
    revisions = state.setdefault("releases", {}).get(key)
    if command == "upgrade":
        return _upgrade(state, key, args, flags, record, version, failure)
    if not revisions:
        raise HelmFailure("release: not found")
    latest = revisions[-1]
    if command == "status":
        info = {
            "status": latest["status"],
            "description": latest["description"],
            "last_deployed": "2026-01-01T00:00:00Z",
        }
        return json.dumps(
            {
                "name": args[0],
                "info": info,
                "config": latest["values"],
                "version": latest["revision"],
                "namespace": namespace,
            }
        )
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
        target = next((revision for revision in revisions if revision["revision"] == int(args[1])), None)
        if target is None:
            raise HelmFailure(f"release has no {args[1]} version")
        _new_revision(revisions, target, "deployed", f"Rollback to {args[1]}")
        return "Rollback was a success! Happy Helming!"
    raise HelmFailure(f"the fake helm does not know {command!r}")


def _upgrade(
    state: dict, key: str, args: list[str], flags: dict[str, list[str]], record: dict, version: str, failure: str | None
) -> str:
    name, chart_path = args[0], Path(args[1])
    revisions = state["releases"].get(key)
    if not revisions and "--install" not in flags:
        raise HelmFailure(f'UPGRADE FAILED: "{name}" has no deployed releases')
    if "--atomic" in flags and version.startswith("v4"):
        sys.stderr.write("Flag --atomic has been deprecated, use --rollback-on-failure instead\n")
    chart = yaml.safe_load((chart_path / "Chart.yaml").read_text())
    last = next((revision for revision in reversed(revisions or []) if revision["status"] == "deployed"), None)
    values: dict = dict(last["values"] or {}) if last and "--reset-then-reuse-values" in flags else {}
    for path in flags.get("--values", []):
        if path == "-":
            values = _merge(values, yaml.safe_load(record["stdin"]) or {})
            continue
        file = Path(path)
        record["values_files"].append(
            {"path": path, "mode": oct(stat.S_IMODE(file.stat().st_mode)), "content": file.read_text()}
        )
        values = _merge(values, yaml.safe_load(file.read_text()) or {})
    template = {
        "chart": chart["name"],
        "version": str(chart["version"]),
        "app_version": str(chart.get("appVersion", "")),
        "values": values,
    }
    revisions = state["releases"].setdefault(key, [])
    if failure:
        previous = next((revision for revision in reversed(revisions) if revision["status"] == "deployed"), None)
        _new_revision(revisions, template, "failed", f'Upgrade "{name}" failed: {failure}')
        if previous and ({"--atomic", "--rollback-on-failure"} & set(flags)):
            _new_revision(revisions, previous, "deployed", f"Rollback to {previous['revision']}")
            raise HelmFailure(
                f"UPGRADE FAILED: release {name} failed, and has been rolled back due to rollback-on-failure being set: {failure}"
            )
        raise HelmFailure(f"UPGRADE FAILED: {failure}")
    described = flags.get("--description", ["Install complete" if not revisions else "Upgrade complete"])[-1]
    revision = _new_revision(revisions, template, "deployed", described)
    return f'Release "{name}" has been upgraded. Happy Helming!\nNAME: {name}\nREVISION: {revision["revision"]}\n'


def main() -> int:
    real = os.environ.get("FAKE_HELM_REAL")
    if real and sys.argv[1:2] in (["template"], ["pull"]):
        os.execv(real, [real, *sys.argv[1:]])  # rendering and pulling need no cluster: the real binary does them
    state_file, log_file = Path(os.environ["FAKE_HELM_STATE"]), Path(os.environ["FAKE_HELM_LOG"])
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    stdin = sys.stdin.read() if "-" in sys.argv[1:] else ""  # only `--values -` reads stdin; never block on an open one
    record: dict[str, Any] = {"argv": sys.argv[1:], "stdin": stdin, "values_files": []}
    try:
        out, code = run(sys.argv[1:], state, record), 0
    except HelmFailure as failure:
        sys.stderr.write(f"Error: {failure}\n")
        out, code = "", 1
    state_file.write_text(json.dumps(state, indent=1))
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
