"""``runner-cache store status|stop``: the store the configured backend manages."""

from __future__ import annotations

import argparse

from blocks.config_block import resolve_config
from runner_cache.commands.common import add_common
from runner_cache.output import emit
from tasks import local_store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("store", help="show or stop the store managed by the local backend")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, text in (("status", run_status, "show whether the store runs"), ("stop", run_stop, "stop the store")):
        action = actions.add_parser(name, help=text)
        add_common(action)
        action.set_defaults(func=func)


def _local(args: argparse.Namespace):
    store = resolve_config(args.config).store
    if store.backend != "local":
        raise SystemExit(f"runner-cache: `store` manages the local backend; this configuration uses {store.backend!r}")
    return store


def run_status(args: argparse.Namespace) -> int:
    store = _local(args)
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
    store = _local(args)
    stopped = local_store.stop_local_store(store)
    emit(
        {"stopped": stopped, "endpoint": store.endpoint},
        as_json=args.json,
        text="stopped the local store (data kept)" if stopped else "the local store was not running: nothing to stop",
    )
    return 0
