"""``runner-cache runner-credentials`` and ``runner-cache rotate-runner-credentials``.

For runners configured by hand (no release step): print the runner identity's key and the ``[runners.cache]``
settings to paste; the secret key only with ``--show-secret``. Rotation runs the setup flow with
``rotate_runner_credentials``: a new key, the Secret and the pods updated, verified, and only then the old key
revoked.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from runner_cache.blocks.config_block import resolve_config
from runner_cache.blocks.settings import RunnerCacheSections
from runner_cache.commands.common import add_common, report_flow_run
from runner_cache.output import emit

HIDDEN = "<hidden: add --show-secret>"


def register(subparsers: argparse._SubParsersAction) -> None:
    show = subparsers.add_parser(
        "runner-credentials", help="print the runner identity's key and the [runners.cache] settings"
    )
    add_common(show)
    show.add_argument("--show-secret", action="store_true", help="also print the secret key (it is hidden otherwise)")
    show.set_defaults(func=run_show)
    rotate = subparsers.add_parser(
        "rotate-runner-credentials",
        help="new runner key: update the Secret, roll the pods, verify, then revoke the old key",
    )
    add_common(rotate)
    rotate.add_argument(
        "--no-rollback", action="store_true", help="keep an upgraded release even when the pipeline check fails"
    )
    rotate.add_argument(
        "--finish",
        action="store_true",
        help="only revoke the old keys (runners configured by hand: after they got the new key)",
    )
    rotate.set_defaults(func=run_rotate)


def runners_cache_toml(sections: RunnerCacheSections, access_key: str, secret_key: str) -> str:
    """The ``[runners.cache]`` section of a runner's ``config.toml`` for this store and layout."""
    store, cache = sections.store, sections.cache
    endpoint = urlsplit(store.runner_endpoint)
    return "\n".join(
        [
            "[runners.cache]",
            '  Type = "s3"',
            f"  Path = {_quote(cache.path)}",
            f"  Shared = {str(cache.shared).lower()}",
            "  [runners.cache.s3]",
            f"    ServerAddress = {_quote(endpoint.netloc)}",
            f"    AccessKey = {_quote(access_key)}",
            f"    SecretKey = {_quote(secret_key)}",
            f"    BucketName = {_quote(store.bucket)}",
            f"    BucketLocation = {_quote(store.region)}",
            f"    Insecure = {str(endpoint.scheme == 'http').lower()}",
        ]
    )


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_show(args: argparse.Namespace) -> int:
    from runner_cache.tasks.store.identity import identity_credentials

    sections = resolve_config(args.config)
    credentials = identity_credentials(sections.store, "runner")
    secret = credentials.secret_key.get_secret_value() if args.show_secret else HIDDEN
    toml = runners_cache_toml(sections, credentials.access_key, secret)
    document = {
        "access_key": credentials.access_key,
        "secret_key": secret if args.show_secret else None,
        "bucket": sections.store.bucket,
        "server_address": urlsplit(sections.store.runner_endpoint).netloc,
        "runners_cache_toml": toml,
    }
    note = "" if args.show_secret else "\n\n(the secret key is hidden; add --show-secret to print it)"
    emit(document, as_json=args.json, text=toml + note)
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    from runner_cache.flows.setup import setup_runner_cache
    from runner_cache.tasks.store.identity import revoke_pending

    sections = resolve_config(args.config)
    if args.finish:
        result = revoke_pending(sections.store, "runner")
        emit({"changed": result.changed, "steps": [result.model_dump()]}, as_json=args.json, text=result.detail)
        return 0
    state = setup_runner_cache(
        config=args.config, rollback_on_failure=not args.no_rollback, rotate_runner_credentials=True, return_state=True
    )
    return report_flow_run(state, args, "rotate-runner-credentials")
