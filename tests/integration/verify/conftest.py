"""Fixtures for the verification tests: a GitLab fake with a verification project, a store with its bucket, and
the RUNNER_CACHE_* environment that points the flow at both."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runner_cache.blocks.store import StoreSettings
from tests.fakes.gitlab import FakeRunner, GitLabFake

PROJECT = "qa/runner-cache-verify"
TAGS = ["k8s", "runner-cache"]


@pytest.fixture
def gitlab_fake(tmp_path: Path) -> Iterator[GitLabFake]:
    with GitLabFake(work_dir=tmp_path / "pods") as fake:
        fake.add_project(PROJECT, project_id=42)
        yield fake


@pytest.fixture
def store(seaweed_store: StoreSettings) -> StoreSettings:
    """A fresh bucket on SeaweedFS (signatures enforced, so wrong credentials really get 403)."""
    seaweed_store.client().make_bucket(seaweed_store.bucket)
    return seaweed_store


@pytest.fixture
def runner_for(store: StoreSettings) -> Callable[..., FakeRunner]:
    """A fake runner configured the way runner-cache configures it for ``store``; keyword overrides break it."""

    def make(**overrides: object) -> FakeRunner:
        return FakeRunner.for_store(store, **{"tags": list(TAGS), **overrides})

    return make


@pytest.fixture
def verify_env(store: StoreSettings, gitlab_fake: GitLabFake, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point RUNNER_CACHE_* at the store and the fake; call it with ``NAME=value`` overrides (section__field)."""

    def apply(**overrides: str) -> None:
        values = {
            "STORE__BACKEND": "external",
            "STORE__ENDPOINT": store.endpoint,
            "STORE__ACCESS_KEY": store.access_key.get_secret_value(),
            "STORE__SECRET_KEY": store.secret_key.get_secret_value(),
            "STORE__BUCKET": store.bucket,
            "GITLAB__URL": gitlab_fake.url,
            "GITLAB__TOKEN": gitlab_fake.token,
            "GITLAB__PROJECT": PROJECT,
            "GITLAB__RUNNER_TAGS": ",".join(TAGS),
            "GITLAB__TIMEOUT_SECONDS": "30",
            "GITLAB__POLL_SECONDS": "0.1",
            **overrides,
        }
        for name, value in values.items():
            monkeypatch.setenv(f"RUNNER_CACHE_{name}", value)

    apply()
    return apply
