"""What points a ``runner-cache`` process at a store: the RUNNER_CACHE_* variables (secrets by environment, never
arguments), shared by the fault and end-to-end tests that run the CLI as a subprocess."""

from __future__ import annotations

from runner_cache.blocks.store import StoreSettings


def store_env(store: StoreSettings) -> dict[str, str]:
    return {
        "RUNNER_CACHE_STORE__BACKEND": "external",
        "RUNNER_CACHE_STORE__ENDPOINT": store.endpoint,
        "RUNNER_CACHE_STORE__ACCESS_KEY": store.access_key.get_secret_value(),
        "RUNNER_CACHE_STORE__SECRET_KEY": store.secret_key.get_secret_value(),
        "RUNNER_CACHE_STORE__BUCKET": store.bucket,
    }
