"""``prune-runner-cache``: remove stale cache objects by the chosen rules, and say what went and why."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.states import Failed, State
from pydantic import ValidationError

from runner_cache.blocks.config_block import resolve_config
from runner_cache.errors import ConfigError
from runner_cache.tasks.prune.rules import PruneOptions, human_size
from runner_cache.tasks.prune.walk import PruneReport, prune_cache_task
from runner_cache.tasks.results import markdown_table

TOTALS = ("deleted_count", "bytes_freed", "kept_count", "skipped_non_cache", "errors_count", "beyond_limit", "listed")


def prune_options(**flags: object) -> PruneOptions:
    """The rules from CLI flags or flow parameters; a :class:`ConfigError` naming each bad one."""
    try:
        return PruneOptions(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as error:
        raise ConfigError.from_validation(error) from None


def summary_markdown(report: PruneReport, bucket: str) -> str:
    """The summary artifact: verdict, totals, notes, the first errors."""
    verb = "Would delete" if report.dry_run else "Deleted"
    verdict = f"**{verb} {report.deleted_count} cache objects ({human_size(report.bytes_freed)}).**"
    if report.errors_count:
        verdict += f" **{report.errors_count} errors.**"
    totals = markdown_table(
        [
            "deleted" if not report.dry_run else "would delete",
            "bytes freed",
            "kept",
            "skipped as non-cache",
            "errors",
            "by rule",
        ],
        [
            [
                report.deleted_count,
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
    report = prune_cache_task(sections.store, sections.cache, sections.gitlab, options, deletions_file)
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
    emit_event(
        event="runner-cache.prune.completed",
        resource={"prefect.resource.id": f"runner-cache.bucket.{bucket}", "prefect.resource.name": bucket},
        payload={
            "dry_run": report.dry_run,
            "by_reason": report.by_reason,
            **{name: getattr(report, name) for name in TOTALS},
        },
    )
    result = report.model_dump(mode="json")
    if report.errors_count:
        return Failed(message=f"{report.errors_count} objects or lookups failed; the rest was pruned", data=result)
    return result
