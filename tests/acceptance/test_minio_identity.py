"""Against a real MinIO (set RUNNER_CACHE_ACCEPTANCE_MINIO_ENDPOINT, _ACCESS_KEY, _SECRET_KEY): the runner identity
setup creates can put and get under its prefix and nothing else, and rotation revokes the old key."""

from __future__ import annotations

import io
import os
import uuid
from datetime import timedelta

import pytest
import urllib3
from minio.error import S3Error
from pydantic import SecretStr

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.tasks.store.identity import (
    MinioIdentityAdmin,
    as_store,
    ensure_identity,
    identity_credentials,
    prove_identity,
    revoke_pending,
)
from runner_cache.tasks.store.policy import identity_name
from tests.unit.tasks.store.test_identity import MemoryVault

_ENV = "RUNNER_CACHE_ACCEPTANCE_MINIO_"
pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.skipif(
        not all(os.environ.get(_ENV + name) for name in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY")),
        reason=f"set {_ENV}ENDPOINT, _ACCESS_KEY and _SECRET_KEY",
    ),
]


def test_runner_identity_on_a_real_minio() -> None:
    store = StoreSettings(
        backend="external",
        endpoint=os.environ[_ENV + "ENDPOINT"],
        access_key=SecretStr(os.environ[_ENV + "ACCESS_KEY"]),
        secret_key=SecretStr(os.environ[_ENV + "SECRET_KEY"]),
        bucket=f"rc-acc-{uuid.uuid4().hex[:10]}",
    )
    cache = CacheSettings(path="acceptance")
    root = store.client()
    root.make_bucket(store.bucket)
    admin, vault = MinioIdentityAdmin(store), MemoryVault()
    assert admin.speaks(), "the endpoint does not answer MinIO's admin API"
    try:
        ensure_identity(store, cache, vault=vault, admin=admin)
        old = identity_credentials(store, vault=vault)
        assert prove_identity(store, cache, old).status == "unchanged"  # put/get work, delete and list refused
        runner = as_store(store, old).client(retries=0)
        url = runner.presigned_put_object(store.bucket, "elsewhere/x", expires=timedelta(minutes=5))
        assert urllib3.PoolManager().request("PUT", url, body=b"x").status == 403
        with pytest.raises(S3Error):
            runner.make_bucket(store.bucket + "-new")

        ensure_identity(store, cache, rotate=True, vault=vault, admin=admin)
        new = identity_credentials(store, vault=vault)
        assert prove_identity(store, cache, old).status == "unchanged"  # both keys valid until revoke
        revoke_pending(store, vault=vault, admin=admin)
        with pytest.raises(S3Error):
            as_store(store, old).client(retries=0).put_object(
                store.bucket, "acceptance/runner/x/project/1/k", io.BytesIO(b"x"), 1
            )
        assert prove_identity(store, cache, new).status == "unchanged"
    finally:
        name = identity_name("runner", store.bucket)
        for access in admin.state(name, {"Statement": []}).keys:
            admin.delete_key(name, access)
        admin.admin.policy_remove(name)
        for item in root.list_objects(store.bucket, recursive=True):
            root.remove_object(store.bucket, item.object_name)
        root.remove_bucket(store.bucket)
