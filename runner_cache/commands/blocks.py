"""``runner-cache blocks save NAME``: keep the current configuration as a Prefect block."""

from __future__ import annotations

import argparse

from runner_cache.blocks.config_block import RunnerCacheConfig
from runner_cache.errors import UsageError
from runner_cache.output import emit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("blocks", help="save the configuration as a Prefect block")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    save = actions.add_parser(
        "save", help="save RUNNER_CACHE_* (environment, .env, TOML) as a Runner Cache Config block"
    )
    save.add_argument("name", help="block name; flows take it as their `config` parameter")
    save.add_argument("--overwrite", action="store_true", help="replace an existing block of that name")
    save.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    save.set_defaults(func=run_save)


def run_save(args: argparse.Namespace) -> int:
    block = RunnerCacheConfig.from_environment()
    if block.store.backend == "local" and block.store.access_key is None:
        # Pin the generated local credentials into the block, so flows run elsewhere use the same ones.
        access, secret = block.store.credentials(create=True)
        block.store = block.store.model_copy(update={"access_key": access, "secret_key": secret})
    try:
        block_id = block.save(args.name, overwrite=args.overwrite)
    except ValueError as error:
        if "already exists" not in str(error):
            raise
        raise UsageError(f"a block named {args.name!r} exists; pass --overwrite to replace it") from None
    emit(
        {"name": args.name, "block_type": "runner-cache-config", "id": str(block_id)},
        as_json=args.json,
        text=f"saved Runner Cache Config block {args.name!r}; run flows with config={args.name!r}",
    )
    return 0
