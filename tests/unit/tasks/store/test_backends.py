"""Every store backend implements the same small protocol, and the dispatcher is the only place that picks one."""

from __future__ import annotations

import inspect
from typing import get_args

import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.tasks import store as store_package

BACKENDS = get_args(StoreSettings.model_fields["backend"].annotation)


@pytest.mark.parametrize("name", BACKENDS)
def test_each_backend_module_has_ensure_status_stop(name: str) -> None:
    module = store_package.backend(StoreSettings.model_construct(backend=name))
    assert module.__name__ == f"runner_cache.tasks.store.{name}_backend"
    for function in ("ensure", "stop"):
        parameters = inspect.signature(getattr(module, function)).parameters
        assert list(parameters) == ["store", "apply"], (name, function)
        assert parameters["apply"].kind is inspect.Parameter.KEYWORD_ONLY and parameters["apply"].default is True
    assert list(inspect.signature(module.status).parameters) == ["store"]


def test_the_four_backends_are_the_configurable_ones() -> None:
    assert set(BACKENDS) == {"local", "docker", "kubernetes", "external"}
