"""Keep runs apart: one run at a time per Helm release, and per bucket, through Prefect global concurrency limits.

Prefect 3.9 silently skips a limit that does not exist (a warning, then no locking at all), so :func:`exclusive`
first makes sure each limit exists with exactly one slot, then takes them strictly. Slots are leased: a run
that dies without releasing frees its lock when the lease runs out (``LEASE_SECONDS``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import WorkFailed
from runner_cache.tasks.logs import run_logger

# How long a run waits for another to finish before it gives up: a release upgrade plus a pipeline check.
DEFAULT_WAIT_SECONDS = 3600.0
# A holder renews its lease every 3/4 of this; a crashed holder's lock frees itself after at most this long.
LEASE_SECONDS = 300.0


class LockTimeout(WorkFailed):
    """Another run kept the lock for longer than this run was willing to wait.

    Not a ``TimeoutError``: Prefect would report the run as "TimedOut", as if its own time limit had passed.
    """


def release_lock_name(release: ReleaseSettings) -> str:
    """The lock of one Helm release: setup and rebuild runs for it never overlap."""
    return f"runner-cache:release:{release.namespace}:{release.release}"


def bucket_lock_name(store: StoreSettings) -> str:
    """The lock of one bucket on one endpoint: prune and setup on it never overlap."""
    return f"runner-cache:bucket:{store.server_address.lower()}:{store.bucket}"


def ensure_limit(name: str) -> str:
    """Make ``name`` an active limit of one slot; return ``created``, ``updated`` or ``unchanged``.

    Safe when two runs race to create it (the loser finds it existing).
    """
    with get_client(sync_client=True) as client:
        return _ensure(client, name)[0]


def _ensure(client: SyncPrefectClient, name: str) -> tuple[str, bool]:
    """:func:`ensure_limit` on an open client; also whether another run holds the lock right now."""
    try:
        existing = client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:  # another run created it a moment ago
            return "unchanged", client.read_global_concurrency_limit_by_name(name).active_slots >= 1
        return "created", False
    if existing.limit == 1 and existing.active:
        return "unchanged", existing.active_slots >= 1
    client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1, active=True))
    run_logger(__name__).warning(
        "lock %s had limit %s (active: %s); set it back to 1 active slot so runs cannot overlap",
        name,
        existing.limit,
        existing.active,
    )
    return "updated", existing.active_slots >= 1


@contextmanager
def exclusive(
    *,
    release: ReleaseSettings | None = None,
    store: StoreSettings | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> Iterator[list[str]]:
    """Hold the release lock and/or the bucket lock for the ``with`` block; both are taken at once or not at all.

    Setup takes both, rebuild the release lock, prune the bucket lock. Yields the lock names.

    Raises:
        LockTimeout: another run held a lock for more than ``wait_seconds``.
    """
    names = [release_lock_name(release)] if release is not None else []
    names += [bucket_lock_name(store)] if store is not None else []
    if not names:
        raise ValueError("exclusive() needs a release, a store, or both")
    logger = run_logger(__name__)
    with get_client(sync_client=True) as client:
        ensured = {name: _ensure(client, name) for name in names}
    for name, (outcome, _) in ensured.items():
        if outcome == "created":
            logger.info("created lock %s (a Prefect global concurrency limit of 1)", name)
    busy = [name for name, (_, held) in ensured.items() if held]
    if busy:
        logger.info("waiting for %s: another run holds it (up to %g s)", ", ".join(busy), wait_seconds)
    run = FlowRunContext.get()
    holder = ConcurrencyLeaseHolder(type="flow_run", id=run.flow_run.id) if run and run.flow_run else None
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(
                    names, timeout_seconds=wait_seconds, lease_duration=LEASE_SECONDS, strict=True, holder=holder
                )
            )
        except TimeoutError:
            raise LockTimeout(
                f"gave up after {wait_seconds:g} s waiting for {', '.join(names)}: another run still holds it "
                "(see Concurrency in the Prefect UI)"
            ) from None
        logger.info("holding %s", ", ".join(names))
        yield names
