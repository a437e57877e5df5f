"""``runner-cache key locate|explain``: where a runner writes a cache key, and what an object name is.

Needs no store and no Prefect server; imports only the pure layout module (and the settings, lazily, for the
configured Path and Shared), so it starts well under a second.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from runner_cache.errors import UsageError
from runner_cache.output import emit
from runner_cache.tasks.keys.layout import CHECKED_UP_TO, NEWEST, Version, explain_object_name, locate, short_token

if TYPE_CHECKING:
    from runner_cache.blocks.cache import CacheSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "key",
        help="where a runner writes a cache key, and what an object name is (no store needed)",
        description="Cache object names exactly as GitLab Runner writes them, release by release. "
        "See docs/cache-keys.md for every rule and its source.",
    )
    actions = parser.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    where = actions.add_parser(
        "locate",
        help="the object name a runner writes for a key",
        description="The object name a runner of the given version writes for KEY: the key as the runner receives "
        "it, with GitLab's -<index> and -protected/-non_protected suffixes applied and variables expanded.",
    )
    where.add_argument("--project-id", type=int, required=True, metavar="N", help="the project's numeric id")
    where.add_argument("--key", required=True, help="the key as the runner receives it, e.g. main-protected")
    where.add_argument(
        "--token", metavar="TOKEN", help="the runner's token; '-' reads it from stdin (keeps it out of ps and history)"
    )
    where.add_argument(
        "--short-token", metavar="TEXT", help="the runner's short token instead of its token (as shown in job logs)"
    )
    where.add_argument(
        "--runner-version",
        metavar="X.Y.Z",
        help=f"runner release, patch level included (default: newest rules, read up to {CHECKED_UP_TO})",
    )
    where.add_argument("--path", metavar="P", help="[runners.cache] Path (default: the configured one)")
    where.add_argument(
        "--shared",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="[runners.cache] Shared (default: the configured one)",
    )
    where.add_argument("--hash-keys", action="store_true", help="FF_HASH_CACHE_KEYS is on (runner ≥ 18.4.0)")
    where.add_argument(
        "--legacy-s3-adapter", action="store_true", help="FF_USE_LEGACY_S3_CACHE_ADAPTER is on (keeps a leading '/')"
    )
    where.add_argument("--json", action="store_true", help="print one JSON document")
    where.set_defaults(func=run_locate)
    what = actions.add_parser(
        "explain",
        help="whether a runner can have written an object name, and its parts",
        description="For each object name: whether a runner can have written it, and if so its layout, short token, "
        "project, key, index, protection and whether it is hashed; if not, why not. Exit code 1 when any is not.",
    )
    what.add_argument("names", nargs="+", metavar="NAME", help="object names as the bucket lists them")
    what.add_argument("--path", metavar="P", help="[runners.cache] Path (default: the configured one)")
    what.add_argument("--json", action="store_true", help="print a JSON list, in the order given")
    what.set_defaults(func=run_explain)


def _configured() -> CacheSettings:
    """The configured ``[runners.cache]`` layout (environment or runner-cache.toml): no store, no server."""
    from runner_cache.blocks.settings import load_settings  # only when a flag is missing: it reads the whole config

    return load_settings().cache


def _version(text: str | None) -> Version:
    if text is None:
        return NEWEST
    try:
        return Version.parse(text)
    except ValueError as error:
        raise UsageError(f"--runner-version: {error}") from None


def run_locate(args: argparse.Namespace) -> int:
    version = _version(args.runner_version)
    configured = _configured() if args.path is None or args.shared is None else None
    path = args.path if configured is None or args.path is not None else configured.path
    shared = args.shared if configured is None or args.shared is not None else configured.shared
    if args.token is not None and args.short_token is not None:
        raise UsageError("give --token or --short-token, not both")
    short = args.short_token
    if args.token is not None:
        token = sys.stdin.readline().strip() if args.token == "-" else args.token
        if not token:
            raise UsageError("--token: empty token")
        short = short_token(token, version)
    if not shared and short is None:
        raise UsageError(
            "this cache is not shared: give --token (or --token - to read it from stdin), --short-token, or --shared"
        )
    where = locate(
        args.key,
        project_id=args.project_id,
        version=version,
        path=path,
        shared=shared,
        short=short,
        hash_keys=args.hash_keys,
        legacy_s3_adapter=args.legacy_s3_adapter,
    )
    lines = [where.object_name if where.object_name is not None else f"no object: {where.reason}"]
    lines.append(f"  rules: runner {where.rules}")
    if where.short_token is not None:
        lines.append(f"  short token: {where.short_token}")
    if where.metadata_cachekey is not None:
        lines.append(f"  x-amz-meta-cachekey: {where.metadata_cachekey}")
    lines += [f"  note: {note}" for note in where.notes]
    emit(where.as_json(), as_json=args.json, text="\n".join(lines))
    return 0 if where.object_name is not None else 1


def run_explain(args: argparse.Namespace) -> int:
    path = args.path if args.path is not None else _configured().path
    explained = [explain_object_name(name, path) for name in args.names]
    lines: list[str] = []
    for item in explained:
        obj = item.cache_object
        if obj is None:
            lines.append(f"{item.name}\n  not a runner's cache object: {item.reason}")
        else:
            facts = item.as_json()
            lines.append(item.name)
            for label in (
                "layout",
                "short_token",
                "project_id",
                "key",
                "key_base",
                "index",
                "protection",
                "hashed",
                "shard",
            ):
                if facts[label] is not None:
                    lines.append(f"  {label.replace('_', ' ')}: {facts[label]}")
            lines += [f"  written by: {who}" for who in item.written_by]
        lines += [f"  note: {note}" for note in item.notes]
    emit([item.as_json() for item in explained], as_json=args.json, text="\n".join(lines))
    return 0 if all(item.cache_object is not None for item in explained) else 1
