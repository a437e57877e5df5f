"""``runner-cache prune``: run the prune-runner-cache flow locally and print what went and why."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from runner_cache.blocks.config_block import resolve_config
from runner_cache.commands.common import add_common
from runner_cache.errors import ConfigError, RunnerCacheError
from runner_cache.flows.prune import prune_options, prune_runner_cache
from runner_cache.output import emit
from runner_cache.tasks.prune.rules import human_size
from runner_cache.tasks.prune.walk import read_deletions
from runner_cache.tasks.results import markdown_table

TEXT_ROWS = 50


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="delete stale cache objects (run the prune-runner-cache flow)",
        description="Delete cache objects under the configured Path by the chosen rules (at least one). "
        "Without --dry-run it deletes, like `rclone delete`. See docs/prune.md for each rule's exact meaning.",
    )
    add_common(parser)
    parser.add_argument("--dry-run", action="store_true", help="name what would be deleted; delete nothing")
    parser.add_argument(
        "--max-age-days", type=float, metavar="N", help="delete objects last written more than N days ago"
    )
    parser.add_argument(
        "--superseded",
        action="store_true",
        help="delete objects of an older cache index once the same key has a newer one",
    )
    parser.add_argument(
        "--deleted-refs",
        action="store_true",
        help="delete keys that are the slug of no existing branch or tag (needs GitLab)",
    )
    parser.add_argument(
        "--max-total-size",
        metavar="SIZE",
        help="budget for all cache objects (500M, 10G, 10Gi); above it the oldest go first",
    )
    parser.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="GLOB",
        help="never delete a cache key or object name matching GLOB (repeatable)",
    )
    parser.add_argument("--max-deletions", type=int, metavar="N", help="stop deleting after N objects, and say so")
    parser.set_defaults(func=run_prune)


def _document_head(result: dict[str, Any] | None, deletions: Path) -> dict[str, Any]:
    """The totals: the flow's, or (when the flow failed before returning a report) counted from the deletions
    file, which holds every confirmed deletion, so that the document never says less than what happened."""
    if result:
        return {name: result[name] for name in ("deleted_count", "bytes_freed", "in_doubt_count", "kept_count")}
    head = {"deleted_count": 0, "bytes_freed": 0, "in_doubt_count": 0, "kept_count": 0}
    for line in read_deletions(deletions):
        if line["kind"] == "deleted":
            head["deleted_count"] += 1
            head["bytes_freed"] += line["size"]
        elif line["kind"] == "in_doubt":
            head["in_doubt_count"] += 1
    return head


def _write_list(out: TextIO, deletions: Path, kind: str, fields: tuple[str, ...]) -> None:
    out.write("[")
    first = True
    for line in read_deletions(deletions):
        if line["kind"] == kind:
            out.write(("" if first else ", ") + json.dumps({name: line[name] for name in fields}))
            first = False
    out.write("]")


def write_json(out: TextIO, dry_run: bool, result: dict[str, Any] | None, deletions: Path, failure: str | None) -> None:
    """The issue's JSON document, streamed from the deletions file so that memory stays flat for any bucket size.

    ``deleted`` lists what the store confirmed; ``in_doubt`` what was sent in a batch whose answer was lost.
    """
    out.write('{"dry_run": ' + json.dumps(dry_run) + ', "deleted": ')
    _write_list(out, deletions, "deleted", ("key", "reason", "size"))
    head = _document_head(result, deletions)
    out.write(", " + ", ".join(f"{json.dumps(name)}: {json.dumps(value)}" for name, value in head.items()))
    out.write(', "in_doubt": ')
    _write_list(out, deletions, "in_doubt", ("key", "reason", "size"))
    out.write(', "complete": ' + json.dumps(bool(result and result["complete"])) + ', "errors": [')
    first = True
    for line in read_deletions(deletions):
        if line["kind"] == "error":
            out.write(("" if first else ", ") + json.dumps({"key": line["key"], "error": line["error"]}))
            first = False
    if failure is not None:
        out.write(("" if first else ", ") + json.dumps({"key": None, "error": failure}))
    out.write("]}\n")
    out.flush()


def text_summary(result: dict[str, Any]) -> str:
    dry_run = result["dry_run"]
    verb = "would delete" if dry_run else "deleted"
    lines = [
        f"prune{' (dry run)' if dry_run else ''}: {verb} {result['deleted_count']} cache objects ({human_size(result['bytes_freed'])}), "
        f"kept {result['kept_count']}, skipped {result['skipped_non_cache']} non-cache objects, {result['errors_count']} errors",
    ]
    if result["in_doubt_count"]:
        lines.append(f"in doubt: {result['in_doubt_count']} objects (sent for deletion, the answer was lost)")
    if result["by_reason"]:
        lines.append("by rule: " + ", ".join(f"{rule} {count}" for rule, count in sorted(result["by_reason"].items())))
    lines += result["notes"]
    rows = result["rows"][:TEXT_ROWS]
    if rows:
        lines += [
            "",
            markdown_table(
                ["object", "size", "age (days)", "reason"],
                [[r["key"], r["size"], r["age_days"], r["reason"]] for r in rows],
            ),
        ]
        if result["deleted_count"] > len(rows):
            lines.append(f"…and {result['deleted_count'] - len(rows)} more (--json lists all)")
    if result["errors"]:
        lines += ["", "errors:"] + [f"  {e['key'] or '(lookup)'}: {e['error']}" for e in result["errors"][:TEXT_ROWS]]
    return "\n".join(lines)


def _say_problems(result: dict[str, Any] | None, failure: BaseException | None) -> None:
    """One line per problem on stderr, each naming the system (the flow log keeps the tracebacks)."""
    lines = list(result["problems"]) if result else []
    if failure is not None:
        lines.append(str(failure) if isinstance(failure, RunnerCacheError) else f"{type(failure).__name__}: {failure}")
    for line in lines:
        print(f"runner-cache: {line}", file=sys.stderr)
    sys.stderr.flush()


def run_prune(args: argparse.Namespace) -> int:
    options = prune_options(
        as_flags=True,
        dry_run=args.dry_run,
        max_age_days=args.max_age_days,
        superseded=args.superseded,
        deleted_refs=args.deleted_refs,
        max_total_size=args.max_total_size,
        keep=args.keep,
        max_deletions=args.max_deletions,
    )
    sections = resolve_config(args.config)  # configuration errors stop here, before any flow run starts
    if options.deleted_refs and not (sections.gitlab.url and sections.gitlab.token):
        raise ConfigError("--deleted-refs needs GitLab: set RUNNER_CACHE_GITLAB__URL and RUNNER_CACHE_GITLAB__TOKEN")
    with tempfile.TemporaryDirectory(prefix="runner-cache-prune-") as scratch:
        deletions = Path(scratch) / "deletions.jsonl"
        deletions.touch()
        state = prune_runner_cache(
            config=args.config, **options.model_dump(), deletions_file=str(deletions), return_state=True
        )
        result = state.result(raise_on_failure=False)
        error = None if isinstance(result, dict) else result
        report = result if error is None else None
        failure = None
        if error is not None:
            failure = str(error) if isinstance(error, RunnerCacheError) else f"{type(error).__name__}: {error}"
        if args.json:
            write_json(sys.stdout, options.dry_run, report, deletions, failure)
        else:
            emit(None, as_json=False, text=text_summary(report) if report else f"prune FAILED: {failure}")
        _say_problems(report, error if isinstance(error, BaseException) else None)
    if isinstance(error, RunnerCacheError):
        return error.exit_code
    if report and report["interrupted"] == "SIGINT":
        return 130
    return 1 if state.is_failed() else 0
