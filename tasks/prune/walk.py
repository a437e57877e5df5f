"""Walk the cache under the configured Path, decide per object with :mod:`runner_cache.tasks.prune.rules`, delete in batches.

The listing is streamed page by page (1000 names at a time) and deletions go out as DeleteObjects batches of at
most 1000 names to a bounded pool of workers, with a bounded number of batches in flight: memory depends on the
batch size and concurrency, never on the size of the bucket. Rules that need the whole picture first
(``--superseded``, ``--max-total-size``) add planning passes over the same listing (see tasks/prune/rules.py).
"""

from __future__ import annotations

import bisect
import gc
import json
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import gitlab
import requests
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from pydantic import BaseModel, Field

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.gitlab import GitLabSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import ConfigError, GitLabError, GitLabUnreachable
from runner_cache.tasks.gitlab.client import gitlab_client
from runner_cache.tasks.keys.layout import CacheObject, parse_object_name
from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.policy import external_task
from runner_cache.tasks.prune.rules import (
    Decider,
    Listed,
    PruneOptions,
    SizeCutoff,
    SupersededIndex,
    ref_slug,
    sort_key,
)

ROW_LIMIT = 500  # rows kept for the table artifact and the flow result; the full list goes to the deletions file
ERROR_LIMIT = 200
PROGRESS_INTERVAL = 5.0  # seconds between progress artifact updates (each is an API call)


class DeletionRow(BaseModel):
    """One deleted (or, in a dry run, doomed) cache object, as the table artifact shows it."""

    key: str = Field(description="The object name in the bucket.")
    project: int
    cache_key: str
    size: int
    age_days: float
    reason: str


class PruneError(BaseModel):
    """An object that could not be deleted (``key``), or a lookup that failed (``key`` is None)."""

    key: str | None
    error: str


class PruneReport(BaseModel):
    """Totals of one prune run, with the first rows and errors; the deletions file has every one of them."""

    dry_run: bool
    prefix: str
    listed: int = 0
    cache_objects: int = 0
    deleted_count: int = 0
    bytes_freed: int = 0
    kept_count: int = 0
    skipped_non_cache: int = 0
    errors_count: int = 0
    by_reason: dict[str, int] = Field(default_factory=dict)
    limit_reached: bool = False
    beyond_limit: int = Field(0, description="Objects the rules selected after --max-deletions was reached; kept.")
    passes: int = 0
    seconds: float = 0.0
    rows: list[DeletionRow] = Field(default_factory=list)
    errors: list[PruneError] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def walk_root(cache: CacheSettings) -> str:
    """Everything under the configured Path (the whole bucket when it is empty), both layouts included."""
    return f"{cache.path}/" if cache.path else ""


def section_starts(client: Minio, bucket: str, root: str) -> list[str]:
    """Sorted prefixes that split the walk for progress: each top-level prefix, each runner token."""
    starts = [root]
    for entry in client.list_objects(bucket, prefix=root or None):
        if entry.is_dir:
            starts.append(entry.object_name)
            if entry.object_name == f"{root}runner/":
                starts += [
                    sub.object_name for sub in client.list_objects(bucket, prefix=entry.object_name) if sub.is_dir
                ]
    return sorted(starts)


def listing(client: Minio, bucket: str, root: str) -> Iterator[Listed]:
    """Every object under ``root``, streamed in the store's pages."""
    for entry in client.list_objects(bucket, prefix=root or None, recursive=True):
        if not entry.is_dir:
            yield Listed(entry.object_name, entry.size or 0, entry.last_modified)


class GitLabRefs:
    """The slugs of each project's live branches and tags, fetched once per project through python-gitlab."""

    def __init__(self, settings: GitLabSettings) -> None:
        if not (settings.url and settings.token):
            raise ConfigError(
                "--deleted-refs needs GitLab: set RUNNER_CACHE_GITLAB__URL and RUNNER_CACHE_GITLAB__TOKEN"
            )
        self._gitlab = gitlab_client(settings)
        self._slugs: dict[int, frozenset[str] | None] = {}
        self.notes: list[str] = []
        self.errors: list[PruneError] = []
        try:  # fail before anything is deleted when the token is wrong
            self._gitlab.auth()
        except gitlab.exceptions.GitlabAuthenticationError:
            raise GitLabError(
                f"{settings.url} rejected the token (401)",
                hint="--deleted-refs needs RUNNER_CACHE_GITLAB__TOKEN with read_api scope",
            ) from None
        except gitlab.exceptions.GitlabError as error:
            raise GitLabError(
                f"{settings.url} refused to answer for --deleted-refs (HTTP {error.response_code})"
            ) from None
        except requests.RequestException as error:
            raise GitLabUnreachable(
                f"{settings.url} did not answer for --deleted-refs ({type(error).__name__})",
                hint="check RUNNER_CACHE_GITLAB__URL and that GitLab is up",
            ) from None

    def __call__(self, project_id: int) -> frozenset[str] | None:
        if project_id not in self._slugs:
            self._slugs[project_id] = self._fetch(project_id)
        return self._slugs[project_id]

    def _fetch(self, project_id: int) -> frozenset[str] | None:
        project = self._gitlab.projects.get(project_id, lazy=True)
        kept = "its caches were kept by --deleted-refs"
        try:
            refs = [branch.name for branch in project.branches.list(iterator=True)]
        except gitlab.exceptions.GitlabError as error:
            if error.response_code in (403, 404):
                self.notes.append(f"project {project_id}: not found in GitLab (HTTP {error.response_code}); {kept}")
            else:
                self.errors.append(
                    PruneError(key=None, error=f"GitLab project {project_id}: HTTP {error.response_code}; {kept}")
                )
            return None
        except requests.RequestException as error:
            self.errors.append(
                PruneError(key=None, error=f"GitLab project {project_id}: {type(error).__name__}; {kept}")
            )
            return None
        if not refs:
            self.notes.append(f"project {project_id}: GitLab lists no branch; {kept}")
            return None
        try:
            refs += [tag.name for tag in project.tags.list(iterator=True)]
        except gitlab.exceptions.GitlabError as error:
            if error.response_code not in (403, 404):
                self.errors.append(
                    PruneError(key=None, error=f"GitLab project {project_id} tags: HTTP {error.response_code}; {kept}")
                )
                return None
            self.notes.append(
                f"project {project_id}: GitLab does not list its tags (HTTP {error.response_code}); only branches were compared"
            )
        except requests.RequestException as error:
            self.errors.append(
                PruneError(key=None, error=f"GitLab project {project_id} tags: {type(error).__name__}; {kept}")
            )
            return None
        return frozenset(ref_slug(ref) for ref in refs)


Doomed = tuple[Listed, CacheObject, str]


def _delete_batch(client: Minio, bucket: str, batch: list[Doomed]) -> list[tuple[str, str]]:
    """One DeleteObjects request; the (name, error) of each object that was not deleted."""
    try:
        errors = client.remove_objects(bucket, [DeleteObject(item.name) for item, _, _ in batch])
        return [(error.name, f"{error.code}: {error.message}") for error in errors]
    except S3Error as error:
        reason = f"the batch of {len(batch)} failed: {error.code}: {error.message}"
    except Exception as error:  # noqa: BLE001 - any failure of one batch is reported and the others go on
        reason = f"the batch of {len(batch)} failed: {type(error).__name__}: {error}"
    return [(item.name, reason) for item, _, _ in batch]


class Recorder:
    """Counts outcomes (plain ints: this runs per object), keeps the first rows and errors, writes all to the deletions file."""

    def __init__(self, now: datetime, spool: IO[str] | None) -> None:
        self.now, self.spool = now, spool
        self.deleted_count = self.bytes_freed = self.errors_count = 0
        self.reasons: Counter[str] = Counter()
        self.rows: list[DeletionRow] = []
        self.errors: list[PruneError] = []

    def deleted(self, item: Listed, obj: CacheObject, reason: str) -> None:
        self.deleted_count += 1
        self.bytes_freed += item.size
        self.reasons[reason.split(":", 1)[0]] += 1
        if len(self.rows) < ROW_LIMIT:
            age = round((self.now - item.last_modified).total_seconds() / 86400, 2)
            self.rows.append(
                DeletionRow(
                    key=item.name,
                    project=obj.project_id,
                    cache_key=obj.key,
                    size=item.size,
                    age_days=age,
                    reason=reason,
                )
            )
        if self.spool:
            self.spool.write(
                json.dumps({"kind": "deleted", "key": item.name, "reason": reason, "size": item.size}) + "\n"
            )

    def failed(self, name: str | None, error: str) -> None:
        self.errors_count += 1
        if len(self.errors) < ERROR_LIMIT:
            self.errors.append(PruneError(key=name, error=error))
        if self.spool:
            self.spool.write(json.dumps({"kind": "error", "key": name, "error": error}) + "\n")

    def fill(self, report: PruneReport) -> None:
        report.deleted_count, report.bytes_freed, report.errors_count = (
            self.deleted_count,
            self.bytes_freed,
            self.errors_count,
        )
        report.by_reason, report.rows, report.errors = dict(self.reasons), self.rows, self.errors


class Deleter:
    """DeleteObjects batches of at most ``batch_size`` names on ``concurrency`` workers, at most 2× that in flight."""

    def __init__(
        self, client: Minio, bucket: str, recorder: Recorder, batch_size: int, concurrency: int, stack: ExitStack
    ) -> None:
        self.client, self.bucket, self.recorder, self.batch_size = client, bucket, recorder, batch_size
        self.pool = stack.enter_context(ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="prune-delete"))
        self.max_in_flight = 2 * concurrency
        self.batch: list[Doomed] = []
        self.in_flight: deque[tuple[list[Doomed], Future[list[tuple[str, str]]]]] = deque()

    def add(self, item: Listed, obj: CacheObject, reason: str) -> None:
        self.batch.append((item, obj, reason))
        if len(self.batch) >= self.batch_size:
            self._submit()

    def _submit(self) -> None:
        if self.batch:
            self.in_flight.append((self.batch, self.pool.submit(_delete_batch, self.client, self.bucket, self.batch)))
            self.batch = []
        while len(self.in_flight) >= self.max_in_flight:
            self._collect()

    def _collect(self) -> None:
        batch, future = self.in_flight.popleft()
        failed = dict(future.result())
        for item, obj, reason in batch:
            if item.name in failed:
                self.recorder.failed(item.name, failed.pop(item.name))
            else:
                self.recorder.deleted(item, obj, reason)
        for name, error in failed.items():  # errors for names we did not send: still reported
            self.recorder.failed(name, error)

    def finish(self) -> None:
        self._submit()
        while self.in_flight:
            self._collect()


class Progress:
    """The progress artifact: by objects once a planning pass counted them, else by section of the walk."""

    def __init__(self, sections: list[str]) -> None:
        self.sections = sections
        self.expected: int | None = None
        self.artifact = create_progress_artifact(
            progress=0.0, key="prune-runner-cache-progress", description="prune-runner-cache: walking the cache"
        )
        self.updated = time.monotonic()

    def planned(self, passes: int, counted: int) -> None:
        """A planning pass ended: say so, and measure the deleting pass by its object count."""
        self.expected = counted
        update_progress_artifact(
            self.artifact,
            progress=0.0,
            description=f"prune-runner-cache: planning pass {passes} done ({counted} objects)",
        )

    def tick(self, seen: int, name: str, recorder: Recorder, dry_run: bool) -> None:
        if time.monotonic() - self.updated < PROGRESS_INTERVAL:
            return
        if self.expected:
            fraction = min(seen / self.expected, 0.99)
        else:
            fraction = (bisect.bisect_right(self.sections, name) - 1) / len(self.sections)
        verb = "would delete" if dry_run else "deleted"
        description = f"prune-runner-cache: {seen} objects walked, {verb} {recorder.deleted_count}"
        update_progress_artifact(self.artifact, progress=round(100 * fraction, 1), description=description)
        run_logger(__name__).info(
            "so far: %d objects walked, %s %d, %d errors", seen, verb, recorder.deleted_count, recorder.errors_count
        )
        self.updated = time.monotonic()

    def done(self, walked: int) -> None:
        update_progress_artifact(
            self.artifact, progress=100.0, description=f"prune-runner-cache: done, {walked} objects walked"
        )


def _plan(
    client: Minio,
    bucket: str,
    path: str,
    decider: Decider,
    options: PruneOptions,
    report: PruneReport,
    progress: Progress,
) -> SizeCutoff | None:
    """Planning passes for the rules that need the whole picture; returns the size cut-off."""
    logger = run_logger(__name__)
    root = report.prefix
    if decider.superseded is not None:
        counted = 0
        for item in listing(client, bucket, root):
            counted += 1
            if (obj := parse_object_name(item.name, path)) is not None:
                decider.superseded.observe(obj, item.last_modified)
        decider.superseded.freeze()
        report.passes += 1
        progress.planned(report.passes, counted)
        logger.info(
            "planning pass %d: %d objects, %d cache key groups for --superseded",
            report.passes,
            counted,
            decider.superseded.groups,
        )
    budget = options.max_total_bytes
    if budget is None:
        return None
    sizes = SizeCutoff(budget)
    while not sizes.done:
        counted = 0
        for item in listing(client, bucket, root):
            counted += 1
            obj = parse_object_name(item.name, path)
            if obj is None:
                continue
            reason, glob = decider.before_size(item, obj)
            if reason is None:
                sizes.count(item.size)
                if glob is None:
                    sizes.add(sort_key(item), item.size)
        sizes.settle()
        report.passes += 1
        progress.planned(report.passes, counted)
        logger.info(
            "planning pass %d: %d objects, %d bytes of cache against a budget of %d",
            report.passes,
            counted,
            sizes.total,
            budget,
        )
    if sizes.need is not None and sizes.need <= 0:
        report.notes.append(f"--max-total-size: the cache ({sizes.total} bytes) is within the budget ({budget} bytes)")
    return sizes


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """Keep what was alive before the walk (Prefect's large heap) out of garbage collection while it runs.

    The walk allocates a few objects per listed object, so automatic collections run often; each one re-scanned
    every object of the process, which doubled the run time at 200,000 objects (docs/benchmarks.md).
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def prune_cache(
    store: StoreSettings,
    cache: CacheSettings,
    gitlab_settings: GitLabSettings,
    options: PruneOptions,
    deletions_file: str | None = None,
    batch_size: int = 1000,
    concurrency: int = 8,
) -> PruneReport:
    """Walk every cache object under the configured Path (both layouts, every runner token) and prune by ``options``.

    Not retried as a whole: a retry would re-walk and report only what was left; each request is retried by
    the client instead, and a failed batch is reported while the others go on.
    """
    if not 1 <= batch_size <= 1000:
        raise ValueError("batch_size must be between 1 and 1000 (the DeleteObjects limit)")
    logger = run_logger(__name__)
    started = time.monotonic()
    now = datetime.now(UTC)
    root = walk_root(cache)
    path = cache.path
    report = PruneReport(dry_run=options.dry_run, prefix=root)
    client = store.client(pool_size=concurrency + 2)
    refs = GitLabRefs(gitlab_settings) if options.deleted_refs else None
    decider = Decider(options, now, SupersededIndex() if options.superseded else None, refs)
    progress = Progress(section_starts(client, store.bucket, root))
    with ExitStack() as stack:
        stack.enter_context(_heap_frozen())
        sizes = _plan(client, store.bucket, path, decider, options, report, progress)
        spool = stack.enter_context(open(deletions_file, "w", encoding="utf-8")) if deletions_file else None
        recorder = Recorder(now, spool)
        deleter = None if options.dry_run else Deleter(client, store.bucket, recorder, batch_size, concurrency, stack)
        listed = cache_objects = kept = beyond = 0
        for item in listing(client, store.bucket, root):
            listed += 1
            progress.tick(listed, item.name, recorder, options.dry_run)
            obj = parse_object_name(item.name, path)
            if obj is None:
                continue
            cache_objects += 1
            reason, glob = decider.before_size(item, obj)
            if reason is None and glob is None and sizes is not None:
                reason = sizes.reason(sort_key(item))
            if reason is None:
                kept += 1
            elif options.max_deletions is not None and cache_objects - kept - beyond > options.max_deletions:
                beyond += 1
            elif deleter is None:
                recorder.deleted(item, obj, reason)
            else:
                deleter.add(item, obj, reason)
        if deleter is not None:
            deleter.finish()
        if refs is not None:
            report.notes += refs.notes
            for error in refs.errors:
                recorder.failed(error.key, error.error)
        recorder.fill(report)
        report.listed, report.cache_objects, report.skipped_non_cache = listed, cache_objects, listed - cache_objects
        report.kept_count, report.beyond_limit, report.limit_reached = kept + beyond, beyond, beyond > 0
        report.passes += 1
        report.seconds = round(time.monotonic() - started, 3)
        progress.done(listed)
    if report.limit_reached:
        report.notes.append(
            f"stopped after --max-deletions {options.max_deletions}: {report.beyond_limit} more objects matched and were kept"
        )
    verb = "would delete" if options.dry_run else "deleted"
    logger.info(
        "prune finished in %.2f s: %s %d cache objects (%d bytes) under %r, kept %d, skipped %d non-cache objects, %d errors; by rule: %s",
        report.seconds,
        verb,
        report.deleted_count,
        report.bytes_freed,
        root or "(bucket root)",
        report.kept_count,
        report.skipped_non_cache,
        report.errors_count,
        report.by_reason or "none",
    )
    for note in report.notes:
        logger.info(note)
    for error in report.errors[:20]:
        logger.error("could not delete %s: %s", error.key or "(lookup)", error.error)
    return report


def read_deletions(path: Path) -> Iterator[dict[str, Any]]:
    """The lines of a deletions file, one JSON object each (``kind`` is ``deleted`` or ``error``)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


# Not retried: a retry would repeat the walk; what one run deleted stays deleted and is in its report.
prune_cache_task = external_task(prune_cache, "prune-cache-objects")
