"""Walk the cache under the configured Path, decide per object with :mod:`runner_cache.tasks.prune.rules`, delete in batches.

The listing is streamed page by page (1000 names at a time) and deletions go out as DeleteObjects batches of
``batch_size`` names to a bounded pool of workers, with a bounded number of batches in flight: memory depends on the
batch size and concurrency, never on the size of the bucket. Many small batches at once beat a few large ones: a
store deletes the keys of one request one after another, so concurrent requests are what keeps it busy (SeaweedFS:
32 × 250 deleted ~25 % faster than 8 × 1000, with 10-15 % less of the store's CPU; docs/benchmarks.md). Rules that
need the whole picture first (``--superseded``, ``--max-total-size``) add planning passes over the same listing
(see tasks/prune/rules.py).
"""

from __future__ import annotations

import bisect
import gc
import json
import logging
import random
import resource
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error, ServerError
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from pydantic import BaseModel, Field

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.gitlab import GitLabSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import (
    StoreAuthError,
    StoreError,
    StoreUnreachable,
    innermost_cause,
)
from runner_cache.tasks.keys.layout import CacheObject, name_prefixes, parse_object_name
from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.policy import external_task
from runner_cache.tasks.prune.listing import list_objects
from runner_cache.tasks.prune.rules import (
    Decider,
    Listed,
    PruneOptions,
    SizeCutoff,
    SupersededIndex,
    sort_key,
)

ROW_LIMIT = 500  # rows kept for the table artifact and the flow result; the full list goes to the deletions file
ERROR_LIMIT = 200
PROBLEM_LIMIT = 20  # distinct problem lines kept for stderr and the summary
PROGRESS_INTERVAL = 5.0  # seconds between progress artifact updates (each is an API call)
BATCH_SIZE = 250  # names per DeleteObjects request (S3 allows 1000)
CONCURRENCY = 32  # DeleteObjects requests at once
SLOW_DOWN_PAUSES = (0.5, 1.0, 2.0, 4.0)  # seconds (±50 %) before each resend of a batch refused with SlowDown


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
    deleted_count: int = Field(0, description="Objects the store confirmed deleted (in a dry run: would delete).")
    bytes_freed: int = 0
    in_doubt_count: int = Field(
        0, description="Objects sent in a DeleteObjects whose answer was lost: maybe deleted, maybe not."
    )
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
    problems: list[str] = Field(
        default_factory=list, description="One readable line per distinct problem, naming the system (for stderr)."
    )
    interrupted: str | None = Field(None, description="The signal that stopped the walk (SIGTERM, SIGINT), if any.")
    complete: bool = Field(True, description="False when the walk stopped early: a re-run finishes the job.")


def walk_root(cache: CacheSettings) -> str:
    """Everything under the configured Path as the runner's path.Join cleans it (the whole bucket when it is
    empty), both layouts included; a leading '/' is dropped as the default s3v2 adapter drops it."""
    return name_prefixes(cache.path)[-1]


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
    """Every object under ``root`` once, from concurrent ListObjectsV2 streams (tasks/prune/listing.py).

    Two streams: the client's pool has ``concurrency + 2`` connections, ``concurrency`` of them for deletions.
    """
    return list_objects(client, bucket, root, workers=2)


Doomed = tuple[Listed, CacheObject, str]


# What the store's client raises when the store fails; each is translated at this boundary (store_failure).
STORE_FAILURES = (S3Error, ServerError, urllib3.exceptions.HTTPError, OSError)


def store_failure(error: BaseException, endpoint: str, doing: str) -> StoreError:
    """A failure of the store's client as one of our errors: the store, what we were doing, what happened.

    Never the request's URL: a listing's URL carries its continuation token, a presigned one its signature.
    """
    again = "check that the store is up, then run prune again: it deletes what is left"
    if isinstance(error, S3Error):
        if error.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StoreAuthError(f"{endpoint} refused {doing}: {error.code}: {error.message}")
        return StoreError(f"{endpoint} refused {doing}: {error.code}: {error.message}", hint=again)
    if isinstance(error, ServerError):
        return StoreUnreachable(f"{endpoint} answered HTTP {error.status_code} to {doing}", hint=again)
    return StoreUnreachable(f"{endpoint} stopped answering {doing}: {innermost_cause(error)}", hint=again)


def _never_sent(error: BaseException) -> bool:
    """True when the request cannot have reached the store: no connection was ever made for it."""
    reason = getattr(error, "reason", error)
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def _delete_batch(
    client: Minio, bucket: str, endpoint: str, batch: list[Doomed]
) -> tuple[list[tuple[str, str]], str | None]:
    """One DeleteObjects request: the (name, error) of each object the store did not delete, and, when the
    store's answer was lost (or was a 5xx, which may come after part of the work), why the whole batch is in doubt.

    ``SlowDown`` (503) is S3's request-rate protection: AWS says to reduce the rate and retry with backoff
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ErrorBestPractices.html, "Tune application for repeated
    SlowDown errors"). The same batch is sent again after a pause, a few times — deleting a name twice is harmless
    — before its objects count as failed: an error answer, unlike a lost one, is taken as "not done".
    """
    doing = "a DeleteObjects request"
    doubt = f"{doing}, whose objects are now in doubt (maybe deleted, the answer was lost)"
    objects = [DeleteObject(item.name) for item, _, _ in batch]
    try:
        for pause in (*SLOW_DOWN_PAUSES, None):
            try:
                errors = client.remove_objects(bucket, objects)
                return [
                    (error.name, str(StoreError(f"{endpoint} did not delete it: {error.code}: {error.message}")))
                    for error in errors
                ], None
            except S3Error as error:
                if error.code != "SlowDown" or pause is None:
                    raise
                time.sleep(pause * random.uniform(0.5, 1.5))
    except S3Error as error:
        if error.code == "SlowDown":  # refused every time: nothing was deleted
            reason = str(store_failure(error, endpoint, f"{doing} {len(SLOW_DOWN_PAUSES) + 1} times"))
        elif error.response is not None and error.response.status >= 500:
            return [], str(store_failure(error, endpoint, doubt))
        else:
            reason = str(store_failure(error, endpoint, doing))  # the store answered: it deleted none of them
    except Exception as error:  # noqa: BLE001 - any failure of one batch is reported and the others go on
        if not _never_sent(error):
            return [], str(store_failure(error, endpoint, doubt))
        reason = str(store_failure(error, endpoint, f"{doing} (not sent)"))
    return [(item.name, reason) for item, _, _ in batch], None


class Recorder:
    """Counts outcomes (plain ints: this runs per object), keeps the first rows and errors, writes all to the deletions file."""

    def __init__(self, now: datetime, spool: IO[str] | None) -> None:
        self.now, self.spool = now, spool
        self.deleted_count = self.bytes_freed = self.errors_count = self.in_doubt_count = 0
        self.reasons: Counter[str] = Counter()
        self.problems: Counter[str] = Counter()  # distinct problem line -> objects it concerns
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

    def in_doubt(self, item: Listed, reason: str, error: str) -> None:
        """Sent for deletion, answer lost: neither deleted nor kept for sure; a re-run settles it."""
        self.in_doubt_count += 1
        self.problem(error)
        if self.spool:
            self.spool.write(
                json.dumps({"kind": "in_doubt", "key": item.name, "reason": reason, "size": item.size, "error": error})
                + "\n"
            )

    def problem(self, line: str) -> None:
        if line in self.problems or len(self.problems) < PROBLEM_LIMIT:
            self.problems[line] += 1

    def failed(self, name: str | None, error: str) -> None:
        self.errors_count += 1
        self.problem(error)
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
        report.in_doubt_count = self.in_doubt_count
        report.problems = [line if count == 1 else f"{line} [{count} objects]" for line, count in self.problems.items()]


class Deleter:
    """DeleteObjects batches of at most ``batch_size`` names on ``concurrency`` workers, a few more waiting."""

    def __init__(
        self,
        client: Minio,
        store: StoreSettings,
        recorder: Recorder,
        batch_size: int,
        concurrency: int,
        stack: ExitStack,
    ) -> None:
        self.client, self.bucket, self.endpoint = client, store.bucket, store.endpoint
        self.recorder, self.batch_size = recorder, batch_size
        self.pool = stack.enter_context(ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="prune-delete"))
        self.max_in_flight = concurrency + 4
        self.batch: list[Doomed] = []
        self.in_flight: deque[tuple[list[Doomed], Future[tuple[list[tuple[str, str]], str | None]]]] = deque()

    def add(self, item: Listed, obj: CacheObject, reason: str) -> None:
        self.batch.append((item, obj, reason))
        if len(self.batch) >= self.batch_size:
            self._submit()

    def _submit(self) -> None:
        if self.batch:
            self.in_flight.append(
                (self.batch, self.pool.submit(_delete_batch, self.client, self.bucket, self.endpoint, self.batch))
            )
            self.batch = []
        while len(self.in_flight) >= self.max_in_flight:
            self._collect()

    def _collect(self) -> None:
        batch, future = self.in_flight.popleft()
        errors, doubt = future.result()
        failed = dict(errors)
        for item, obj, reason in batch:
            if doubt is not None:
                self.recorder.in_doubt(item, reason, doubt)
            elif item.name in failed:
                self.recorder.failed(item.name, failed.pop(item.name))
            else:
                self.recorder.deleted(item, obj, reason)
        for name, error in failed.items():  # errors for names we did not send: still reported
            self.recorder.failed(name, error)

    def finish(self, *, send_rest: bool = True) -> None:
        """Wait for every batch in flight; ``send_rest=False`` (the walk was stopped) drops the unsent one."""
        if send_rest:
            self._submit()
        self.batch = []
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


class _Stop:
    """Set by SIGTERM/SIGINT during the walk: the listing stops, the batches in flight finish, the report is written."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # Python only lets the main thread set handlers
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.signal = signal.Signals(signum)
        self.restore()  # a second signal acts as it would without us

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._previous = {}


@contextmanager
def _stop_on_signals() -> Iterator[_Stop]:
    stop = _Stop()
    stop.install()
    try:
        yield stop
    finally:
        stop.restore()


def _until_failure(items: Iterator[Listed], failures: list[BaseException]) -> Iterator[Listed]:
    """The listing until the store fails; the failure is kept for the report instead of ending the run."""
    try:
        yield from items
    except STORE_FAILURES as error:
        failures.append(error)


@contextmanager
def _client_retries_quiet() -> Iterator[None]:
    """Keep urllib3's per-retry warnings off the console during a prune: each carries the request's URL (a
    listing's continuation token), and the report already says, once and in words, what failed."""
    logger = logging.getLogger("urllib3.connectionpool")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """Keep what was alive before the walk (Prefect's large heap) out of garbage collection while it runs.

    The walk allocates a few objects per listed object, so automatic collections run often; each one re-scanned
    every object of the process, which doubled the run time at 200,000 objects (docs/benchmarks.md). Only the young
    generations are collected first: a full collection of that heap took 0.17 s, as long as an empty walk.
    """
    gc.collect(1)
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@_client_retries_quiet()
def prune_cache(
    store: StoreSettings,
    cache: CacheSettings,
    gitlab_settings: GitLabSettings,
    options: PruneOptions,
    deletions_file: str | None = None,
    batch_size: int = BATCH_SIZE,
    concurrency: int = CONCURRENCY,
) -> PruneReport:
    """Walk every cache object under the configured Path (both layouts, every runner token) and prune by ``options``.

    Not retried as a whole: a retry would re-walk and report only what was left; each request is retried by
    the client instead, and a failed batch is reported while the others go on.

    The report never claims more than the store confirmed: a deletion counts once its DeleteObjects answer says
    so; a batch whose answer was lost is *in doubt*. When the store fails during the walk, or SIGTERM/SIGINT
    arrives, the listing stops, the batches in flight finish, and the report says so (``complete`` False);
    a re-run deletes what is left.

    Raises:
        StoreError: the store failed before anything was deleted (the first listings).
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
    refs = None
    if options.deleted_refs:  # python-gitlab is imported only for this rule
        from runner_cache.tasks.prune.live_refs import GitLabRefs

        refs = GitLabRefs(gitlab_settings)
    decider = Decider(options, now, SupersededIndex() if options.superseded else None, refs)
    doing = f"the listing of bucket {store.bucket}"
    try:
        starts = section_starts(client, store.bucket, root)
    except STORE_FAILURES as error:
        raise store_failure(error, store.endpoint, doing) from error
    progress = Progress(starts)
    with ExitStack() as stack:
        stack.enter_context(_heap_frozen())
        stop = stack.enter_context(_stop_on_signals())
        try:
            sizes = _plan(client, store.bucket, path, decider, options, report, progress)
        except STORE_FAILURES as error:
            raise store_failure(error, store.endpoint, doing) from error
        spool = stack.enter_context(open(deletions_file, "w", encoding="utf-8")) if deletions_file else None
        recorder = Recorder(now, spool)
        deleter = None if options.dry_run else Deleter(client, store, recorder, batch_size, concurrency, stack)
        listed = cache_objects = kept = beyond = 0
        failures: list[BaseException] = []
        for item in _until_failure(listing(client, store.bucket, root), failures):
            if stop.signal is not None:
                break
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
        report.complete = not failures and stop.signal is None
        if deleter is not None:
            deleter.finish(send_rest=report.complete)
        if failures:
            recorder.failed(None, str(store_failure(failures[0], store.endpoint, doing)))
        if refs is not None:
            report.notes += refs.notes
            for error in refs.errors:
                recorder.failed(None, error)
        recorder.fill(report)
        if stop.signal is not None:
            report.interrupted = stop.signal.name
            report.problems.append(
                f"prune: stopped by {stop.signal.name} after {listed} objects: the batches in flight were finished "
                "and are in the report; run prune again to finish"
            )
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
        "prune finished in %.2f s: %s %d cache objects (%d bytes) under %r, kept %d, skipped %d non-cache objects, "
        "%d errors; by rule: %s; peak memory of the process %.0f MB",
        report.seconds,
        verb,
        report.deleted_count,
        report.bytes_freed,
        root or "(bucket root)",
        report.kept_count,
        report.skipped_non_cache,
        report.errors_count,
        report.by_reason or "none",
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # kB on Linux (getrusage(2))
    )
    for note in report.notes:
        logger.info(note)
    for problem in report.problems:  # one line per distinct problem; every object is in the deletions file
        logger.error(problem)
    return report


def read_deletions(path: Path) -> Iterator[dict[str, Any]]:
    """The lines of a deletions file, one JSON object each (``kind`` is ``deleted``, ``in_doubt`` or ``error``)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


# Not retried: a retry would repeat the walk; what one run deleted stays deleted and is in its report.
prune_cache_task = external_task(prune_cache, "prune-cache-objects")
