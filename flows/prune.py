"""``prune-runner-cache``: remove stale cache objects by the chosen rules, and say what went and why."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.states import Failed, State
from pydantic import ValidationError

from runner_cache.blocks.config_block import resolve_config
from runner_cache.errors import ConfigError
from runner_cache.flows.locks import exclusive
from runner_cache.tasks.prune.rules import PruneOptions, human_size
from runner_cache.tasks.prune.walk import PruneReport, prune_cache_task
from runner_cache.tasks.results import markdown_table
from runner_cache.tasks.store.identity import prune_store

TOTALS = (
    "deleted_count",
    "in_doubt_count",
    "bytes_freed",
    "kept_count",
    "skipped_non_cache",
    "errors_count",
    "beyond_limit",
    "listed",
)


def prune_options(*, as_flags: bool = False, **flags: object) -> PruneOptions:
    """The rules from CLI flags or flow parameters; a :class:`ConfigError` naming each bad one, as the user typed
    it (``--max-age-days`` with ``as_flags``, else the parameter ``max_age_days``) and never its value."""
    try:
        return PruneOptions(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as error:
        if not as_flags:
            raise ConfigError.from_validation(error) from None
        lines = []
        for item in error.errors(include_input=False, include_url=False, include_context=False):
            field = str(item["loc"][0]) if item["loc"] else ""
            where = "--" + field.replace("_", "-") if field else "flags"
            lines.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
        raise ConfigError("; ".join(lines)) from None


def failure_message(report: PruneReport) -> str | None:
    """Why the run failed, in one line, or None: errors, objects in doubt, or a walk that stopped early."""
    parts = []
    if report.errors_count:
        parts.append(f"{report.errors_count} objects or lookups failed")
    if report.in_doubt_count:
        parts.append(f"{report.in_doubt_count} objects are in doubt (their DeleteObjects answer was lost)")
    if report.interrupted:
        parts.append(f"stopped by {report.interrupted}")
    elif not report.complete:
        parts.append("the walk stopped early")
    if not parts:
        return None
    return f"{'; '.join(parts)}; {report.deleted_count} deleted, confirmed by the store; run prune again to finish"


def summary_markdown(report: PruneReport, bucket: str) -> str:
    """The summary artifact: verdict, totals, notes, the first errors."""
    verb = "Would delete" if report.dry_run else "Deleted"
    verdict = f"**{verb} {report.deleted_count} cache objects ({human_size(report.bytes_freed)}).**"
    if report.in_doubt_count:
        verdict += f" **{report.in_doubt_count} in doubt** (sent for deletion, answer lost: maybe deleted)."
    if report.errors_count:
        verdict += f" **{report.errors_count} errors.**"
    if not report.complete:
        verdict += f" **Stopped early{f' by {report.interrupted}' if report.interrupted else ''}: run prune again.**"
    totals = markdown_table(
        [
            "deleted" if not report.dry_run else "would delete",
            "in doubt",
            "bytes freed",
            "kept",
            "skipped as non-cache",
            "errors",
            "by rule",
        ],
        [
            [
                report.deleted_count,
                report.in_doubt_count,
                report.bytes_freed,
                report.kept_count,
                report.skipped_non_cache,
                report.errors_count,
                ", ".join(f"{rule} {count}" for rule, count in sorted(report.by_reason.items())) or "none",
            ]
        ],
    )
    parts = [
        f"# prune-runner-cache{' (dry run)' if report.dry_run else ''}",
        verdict,
        f"Bucket `{bucket}`, prefix `{report.prefix or '(bucket root)'}`: {report.listed} objects walked "
        f"in {report.passes} pass(es), {report.seconds:.1f} s.",
        totals,
    ]
    if report.notes:
        parts.append("\n".join(f"- {note}" for note in report.notes))
    if report.problems:
        parts.append("## Problems\n\n" + "\n".join(f"- {problem}" for problem in report.problems))
    if report.errors:
        shown = markdown_table(
            ["object", "error"], [[error.key or "(lookup)", error.error] for error in report.errors[:50]]
        )
        more = f"\n\n…and {report.errors_count - 50} more errors." if report.errors_count > 50 else ""
        parts.append(f"## Errors\n\n{shown}{more}")
    if report.deleted_count > len(report.rows):
        parts.append(
            f"The table artifact lists the first {len(report.rows)} of {report.deleted_count}; "
            "`runner-cache prune --json` or the flow's `deletions_file` has all of them."
        )
    return "\n\n".join(parts) + "\n"


@flow(name="prune-runner-cache", persist_result=False)
def prune_runner_cache(
    config: str | None = None,
    dry_run: bool = False,
    max_age_days: float | None = None,
    superseded: bool = False,
    deleted_refs: bool = False,
    max_total_size: str | None = None,
    keep: list[str] | None = None,
    max_deletions: int | None = None,
    deletions_file: str | None = None,
) -> dict | State:
    """Delete stale GitLab Runner cache objects under the configured Path; every deletion carries its reason.

    Args:
        config: Name of a saved Runner Cache Config block; empty means the RUNNER_CACHE_* environment.
        dry_run: Name what would be deleted; delete nothing.
        max_age_days: Delete cache objects last written more than this many days ago.
        superseded: Delete objects of an older cache index once the same key has a newer one ("Clear runner caches").
        deleted_refs: Delete keys that are the slug of no existing branch or tag of their project (needs GitLab).
        max_total_size: Budget for all cache objects, e.g. 50G or 40Gi; above it the oldest go first.
        keep: Globs on the cache key or the object name that are never deleted.
        max_deletions: Stop deleting after this many objects, and say so.
        deletions_file: Write one JSON line per deleted object and per error to this file (an audit log).
    """
    options = prune_options(
        dry_run=dry_run,
        max_age_days=max_age_days,
        superseded=superseded,
        deleted_refs=deleted_refs,
        max_total_size=max_total_size,
        keep=keep,
        max_deletions=max_deletions,
    )
    sections = resolve_config(config)
    with exclusive(store=sections.store):  # prune and setup of one bucket never overlap (flows/locks.py)
        store = prune_store(sections)  # the prune identity: list, read and delete under the prefix, nothing else
        report = prune_cache_task(store, sections.cache, sections.gitlab, options, deletions_file)
    bucket = sections.store.bucket
    create_table_artifact(
        key="prune-runner-cache-objects",
        table=[
            {
                "project": row.project,
                "key": row.cache_key,
                "size": row.size,
                "age (days)": row.age_days,
                "reason": row.reason,
            }
            for row in report.rows
        ],
        description=f"prune-runner-cache: {'would delete' if report.dry_run else 'deleted'} (first {len(report.rows)} of {report.deleted_count})",
    )
    create_markdown_artifact(
        key="prune-runner-cache", markdown=summary_markdown(report, bucket), description="prune-runner-cache summary"
    )
    failure = failure_message(report)
    emit_event(
        event="runner-cache.prune.completed" if failure is None else "runner-cache.prune.failed",
        resource={"prefect.resource.id": f"runner-cache.bucket.{bucket}", "prefect.resource.name": bucket},
        payload={
            "dry_run": report.dry_run,
            "by_reason": report.by_reason,
            "complete": report.complete,
            "interrupted": report.interrupted,
            **{name: getattr(report, name) for name in TOTALS},
        },
    )
    result = report.model_dump(mode="json")
    if failure is not None:
        return Failed(message=failure, data=result)
    return result
