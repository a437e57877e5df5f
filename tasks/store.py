"""Provision the store with the configured backend, as Prefect tasks retried on transient errors only."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.store import StoreSettings
from tasks import local_store
from tasks.report import StepResult, timed
from tasks.s3 import check_access, retry_on_transient


def _external(store: StoreSettings) -> StepResult:
    with timed() as timer:
        check_access(store.client(retries=0), store.endpoint)
    return StepResult(
        step="store",
        status="unchanged",
        detail=f"external store {store.endpoint} is reachable and accepts the credentials",
        seconds=timer.seconds,
        data={"backend": "external", "endpoint": store.endpoint},
    )


def provision(store: StoreSettings) -> StepResult:
    """Bring the store up (or check it, for ``external``) and wait until it answers signed requests."""
    if store.backend == "local":
        return local_store.ensure_local_store(store)
    if store.backend == "docker":
        from tasks.docker_store import ensure_docker_store

        return ensure_docker_store(store)
    if store.backend == "kubernetes":
        from tasks.kube_store import ensure_kube_store

        return ensure_kube_store(store)
    return _external(store)


def plan(store: StoreSettings) -> StepResult:
    """What :func:`provision` would do; reads only."""
    if store.backend == "local":
        return local_store.plan_local_store(store)
    if store.backend == "external":
        return _external(store)
    if store.backend == "docker":
        from tasks.docker_store import plan_docker_store

        return plan_docker_store(store)
    from tasks.kube_store import ensure_kube_store

    return ensure_kube_store(store, apply=False)


provision_store = task(
    provision,
    name="provision-store",
    retries=3,
    retry_delay_seconds=[2, 5, 10],
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
