"""Helpers for the prune tests: seeding real S3 servers, backdating on moto, a proxy that fails DeleteObjects."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from io import BytesIO

import pytest

from runner_cache.blocks.store import StoreSettings
from tests.fakes.gitlab import GitLabFake
from tests.support.fault_proxy import fault_proxy

BODY = b"PK\x05\x06" + b"\0" * 18  # an empty zip archive, like a tiny cache


def seed(store: StoreSettings, names: Iterable[str], body: bytes = BODY) -> None:
    """Create the bucket and put every object (concurrently)."""
    client = store.client()
    if not client.bucket_exists(store.bucket):
        client.make_bucket(store.bucket, location=store.region)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: client.put_object(store.bucket, name, BytesIO(body), len(body)), names))


def seed_backdated(store: StoreSettings, objects: dict[str, float], size: int = len(BODY)) -> None:
    """On the in-process moto server: put each object with its LastModified ``days`` ago (moto's backend, same process)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    client = store.client()
    if not client.bucket_exists(store.bucket):
        client.make_bucket(store.bucket, location=store.region)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    now = datetime.now(UTC).replace(tzinfo=None)
    for name, days in objects.items():
        key = backend.put_object(store.bucket, name, b"x" * size)
        key.last_modified = now - timedelta(days=days)


def names_in(store: StoreSettings) -> set[str]:
    return {entry.object_name for entry in store.client().list_objects(store.bucket, recursive=True)}


@pytest.fixture
def failing_delete_proxy(seaweed_store: StoreSettings) -> Iterator[tuple[StoreSettings, StoreSettings, str]]:
    """(direct store, store seen through the proxy, poisoned key marker) on 127.0.0.1: a DeleteObjects request
    naming a poisoned key gets S3's 403 AccessDenied, like a bucket policy denying it; the rest goes through."""
    marker = "poisoned-key"

    def deny_poisoned(method: str, path: str, query: str, body: bytes) -> tuple[int, str, str] | None:
        if method == "POST" and "delete" in query and marker.encode() in body:
            return 403, "AccessDenied", "Access Denied."
        return None

    with fault_proxy(seaweed_store) as proxy:
        proxy.rule = deny_poisoned
        yield seaweed_store, proxy.store(seaweed_store), marker


@pytest.fixture
def gitlab_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[GitLabFake]:
    """A GitLab fake the RUNNER_CACHE_GITLAB__* environment points at (for --deleted-refs)."""
    fake = GitLabFake().start()
    monkeypatch.setenv("RUNNER_CACHE_GITLAB__URL", fake.url)
    monkeypatch.setenv("RUNNER_CACHE_GITLAB__TOKEN", fake.token)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch):
    """Point the RUNNER_CACHE_* environment at a store, with the runner's Path and Shared."""

    def apply(store: StoreSettings, path: str = "", shared: bool = False) -> None:
        for name, value in {
            "STORE__BACKEND": "external",
            "STORE__ENDPOINT": store.endpoint,
            "STORE__ACCESS_KEY": store.access_key.get_secret_value(),
            "STORE__SECRET_KEY": store.secret_key.get_secret_value(),
            "STORE__BUCKET": store.bucket,
            "CACHE__PATH": path,
            "CACHE__SHARED": str(shared).lower(),
        }.items():
            monkeypatch.setenv(f"RUNNER_CACHE_{name}", value)

    return apply
