"""``runner-cache server status|stop``: the local Prefect server that commands start when PREFECT_API_URL is unset,
and the warm process that runs them (tasks/warm_process.py)."""

from __future__ import annotations

import argparse
import os

from runner_cache.output import emit
from runner_cache.tasks import prefect_server, warm_process


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("server", help="show or stop the local Prefect server (its UI shows every run)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="show whether it runs, and where its UI is")
    status.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    status.set_defaults(func=run_status)
    stop = actions.add_parser(
        "stop", help="stop it and the warm process (its runs are kept; the next command starts both again)"
    )
    stop.add_argument("--dry-run", action="store_true", help="say what would be stopped; stop nothing")
    stop.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    stop.set_defaults(func=run_stop)


def _warm_text(document: dict) -> str:
    warm = document["warm_process"]
    if warm["pid"] is None:
        return "warm process not running: the next command starts it" + (
            "" if warm["enabled"] else f" (off: {warm_process.VARIABLE} is set)"
        )
    return f"warm process running (pid {warm['pid']}, log {warm['log_file']})"


def _status_text(document: dict) -> str:
    return f"{_warm_text(document)}\n{_server_text(document)}"  # the UI's address stays the last line


def _server_text(document: dict) -> str:
    if document["explicit_api_url"]:
        ui = document["explicit_api_url"].removesuffix("/").removesuffix("/api")
        lead = (
            f"PREFECT_API_URL is set: runner-cache uses {document['explicit_api_url']} (UI: {ui}), not a local server"
        )
        local = "running" if document["running"] else "not running"
        return f"{lead}\nthe local Prefect server is {local} (state in {document['home']})"
    if document["running"]:
        health = "" if document["healthy"] else " but does not answer yet"
        return (
            f"local Prefect server running (pid {document['pid']}){health}\n"
            f"Prefect UI: {document['ui_url']}/runs  (API {document['api_url']}, log {document['log_file']})"
        )
    return (
        "local Prefect server not running: the next command that needs Prefect starts it "
        f"(state in {document['home']}, UI then at {document['ui_url']})"
    )


def run_status(args: argparse.Namespace) -> int:
    document = prefect_server.status(prefect_server.configured_state_dir())
    # Asked without importing Prefect (seconds): only the environment can set it for this check.
    document["explicit_api_url"] = os.environ.get("PREFECT_API_URL") or None
    where = warm_process.files()
    document["warm_process"] = {
        "enabled": warm_process.enabled(),
        "pid": warm_process.running_pid(where),
        "socket": str(where.socket),
        "log_file": str(where.log_file),
    }
    emit(document, as_json=args.json, text=_status_text(document))
    return 0


def run_stop(args: argparse.Namespace) -> int:
    result = prefect_server.stop(prefect_server.configured_state_dir(), apply=not args.dry_run)
    warm = warm_process.stop(warm_process.files(), apply=not args.dry_run)
    emit({**result.model_dump(), "warm_process": warm}, as_json=args.json, text=f"{result.detail}\n{warm}")
    return 0
