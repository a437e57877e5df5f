"""The ``external`` backend: a store someone else runs. runner-cache only checks that it answers and accepts
the credentials; it never starts or stops it."""

from __future__ import annotations

from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import RunnerCacheError, UsageError
from runner_cache.tasks.results import StepResult, timed
from runner_cache.tasks.store.s3 import check_access


def ensure(store: StoreSettings, *, apply: bool = True) -> StepResult:
    """One signed request: the store is reachable and accepts the credentials (the same with ``apply=False``)."""
    with timed() as timer:
        check_access(store.client(retries=0), store.endpoint)
    return StepResult(
        step="store",
        status="unchanged",
        detail=f"external store {store.endpoint} is reachable and accepts the credentials",
        seconds=timer.seconds,
        data={"backend": "external", "endpoint": store.endpoint},
    )


def status(store: StoreSettings) -> dict:
    """Whether the store answers signed requests; a failure is a status, not an error."""
    try:
        ensure(store)
        return {"backend": "external", "endpoint": store.endpoint, "reachable": True}
    except RunnerCacheError as error:
        return {"backend": "external", "endpoint": store.endpoint, "reachable": False, "error": str(error)}


def stop(store: StoreSettings, *, apply: bool = True) -> StepResult:
    """An external store is not ours to stop."""
    raise UsageError(f"`store stop` stops only stores runner-cache runs (local, docker); {store.endpoint} is external")
