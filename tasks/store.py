"""Provision the store with the configured backend, as Prefect tasks retried on transient errors only."""

from __future__ import annotations


from blocks.store import StoreSettings
from tasks import local_store
from tasks.external import external_task
from tasks.report import StepResult, timed
from tasks.s3 import check_access


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


provision_store = external_task(provision, "provision-store", delays=(2, 5, 10))
