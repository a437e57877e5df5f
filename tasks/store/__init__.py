"""The S3 store, behind one small protocol that each backend module implements:

    ensure(store, *, apply=True) -> StepResult   bring the store up (``apply=False``: only say what would change)
    status(store) -> dict                        what runs now, for ``runner-cache store status``
    stop(store, *, apply=True) -> StepResult      stop it, keeping the data (``apply=False``: only say what would stop)

Backends: ``local_backend`` (SeaweedFS on 127.0.0.1), ``docker_backend`` (MinIO through the Docker Engine),
``kubernetes_backend`` (MinIO in the cluster), ``external_backend`` (a store someone else runs).
"""

from __future__ import annotations

import importlib
from typing import Protocol, cast

from runner_cache.blocks.store import StoreSettings
from runner_cache.tasks.policy import external_task
from runner_cache.tasks.results import StepResult


class StoreBackend(Protocol):
    def ensure(self, store: StoreSettings, *, apply: bool = True) -> StepResult: ...

    def status(self, store: StoreSettings) -> dict: ...

    def stop(self, store: StoreSettings, *, apply: bool = True) -> StepResult: ...


def backend(store: StoreSettings) -> StoreBackend:
    """The module for ``store.backend``, imported only when used (the docker and kubernetes clients are slow to import)."""
    return cast(StoreBackend, importlib.import_module(f"{__name__}.{store.backend}_backend"))


def ensure_store(store: StoreSettings, *, apply: bool = True) -> StepResult:
    """Bring the store up (or check it, for ``external``) and wait until it answers signed requests."""
    return backend(store).ensure(store, apply=apply)


ensure_store_task = external_task(ensure_store, "ensure-store", delays=(2, 5, 10))
