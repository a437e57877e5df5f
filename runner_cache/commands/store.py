"""``runner-cache store status|stop``: the store process or container the backend manages."""

from __future__ import annotations

import argparse

from runner_cache.blocks.config_block import resolve_config
from runner_cache.commands.common import add_common
from runner_cache.output import emit
from runner_cache.tasks.store import backend


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("store", help="show or stop the store managed by the local or docker backend")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="show whether the store runs")
    add_common(status)
    status.set_defaults(func=run_status)
    stop = actions.add_parser("stop", help="stop the store (its data is kept)")
    add_common(stop)
    stop.add_argument("--dry-run", action="store_true", help="say what would be stopped; stop nothing")
    stop.set_defaults(func=run_stop)


def _status_text(document: dict) -> str:
    if document["backend"] == "local":
        if document["running"]:
            return (
                f"local store running at {document['endpoint']} (pid {document['pid']}), data in {document['data_dir']}"
            )
        return f"local store not running (endpoint {document['endpoint']}, data in {document['data_dir']})"
    if document["backend"] == "docker":
        return f"container {document['container']} {document.get('state', 'absent')} at {document['endpoint']}"
    return ", ".join(f"{key}: {value}" for key, value in document.items())


def run_status(args: argparse.Namespace) -> int:
    store = resolve_config(args.config).store
    document = backend(store).status(store)
    emit(document, as_json=args.json, text=_status_text(document))
    return 0 if document.get("engine_reachable", document.get("reachable", True)) else 1


def run_stop(args: argparse.Namespace) -> int:
    store = resolve_config(args.config).store
    result = backend(store).stop(store, apply=not args.dry_run)
    emit(result.model_dump(), as_json=args.json, text=result.detail)
    return 0
