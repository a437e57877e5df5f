"""``runner-cache store status|stop``: the store process or container the backend manages."""

from __future__ import annotations

import argparse

from blocks.config_block import resolve_config
from blocks.store import StoreSettings
from runner_cache.commands.common import add_common
from runner_cache.output import emit
from tasks import local_store


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


def _managed(args: argparse.Namespace) -> StoreSettings:
    store = resolve_config(args.config).store
    if store.backend not in {"local", "docker"}:
        raise SystemExit(f"runner-cache: `store` manages the local and docker backends; this configuration uses {store.backend!r}")
    return store


def run_status(args: argparse.Namespace) -> int:
    store = _managed(args)
    if store.backend == "docker":
        from tasks.docker_store import docker_store_status

        document = docker_store_status(store)
        text = f"container {document['container']} {document.get('state', 'absent')} at {document['endpoint']}"
        emit(document, as_json=args.json, text=text)
        return 0 if document["engine_reachable"] else 1
    current = local_store.state(store)
    document = {
        "backend": "local",
        "running": current.running,
        "pid": current.pid if current.running else None,
        "endpoint": store.endpoint,
        "data_dir": str(current.data_dir),
        "log_file": str(current.log_file),
    }
    text = (
        f"local store running at {store.endpoint} (pid {current.pid}), data in {current.data_dir}"
        if current.running
        else f"local store not running (endpoint {store.endpoint}, data in {current.data_dir})"
    )
    emit(document, as_json=args.json, text=text)
    return 0


def run_stop(args: argparse.Namespace) -> int:
    store = _managed(args)
    if store.backend == "docker":
        from tasks.docker_store import stop_docker_store

        result = stop_docker_store(store, dry_run=args.dry_run)
        emit(result.model_dump(), as_json=args.json, text=result.detail)
        return 0
    running = local_store.state(store).running
    if args.dry_run:
        text = f"would stop the local store at {store.endpoint} (data kept)" if running else "the local store is not running: nothing to stop"
        emit({"stopped": False, "would_stop": running, "endpoint": store.endpoint}, as_json=args.json, text=text)
        return 0
    stopped = local_store.stop_local_store(store)
    emit(
        {"stopped": stopped, "endpoint": store.endpoint},
        as_json=args.json,
        text="stopped the local store (data kept)" if stopped else "the local store was not running: nothing to stop",
    )
    return 0
