"""The verification finds the build job's object whatever FF_HASH_CACHE_KEYS did to its name (real S3: moto).

The job log names the readable key (``Creating cache <key>...``: ``shells/abstract.go@v18.4.0`` logs ``HumanKey``);
with hashing on the object is its sha256 (18.4.0 – 18.11.x) or ``<hash[:2]>/<hash>`` (``cache/cache.go@v19.0.0``).
"""

from __future__ import annotations

from io import BytesIO

import pytest

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.tasks.verify.pipeline import check_cache_object

KEY = "runner-cache-verify-abcd1234-non_protected"
# sha256 of KEY, computed independently (`printf %s runner-cache-verify-abcd1234-non_protected | sha256sum`)
DIGEST = "bb20980c648f95e8efa8440c0589c07c28c8cdee35f2f760928c2854d6cbc59f"
BASE = "ci/runner/AbCdEfGhI/project/42"


@pytest.mark.parametrize(
    "name",
    [
        f"{BASE}/{KEY}",  # hashing off
        f"{BASE}/{DIGEST}",  # FF_HASH_CACHE_KEYS, 18.4.0 – 18.11.x
        f"{BASE}/bb/{DIGEST}",  # FF_HASH_CACHE_KEYS, >= 19.0.0
    ],
)
def test_object_is_found_under_each_runner_form(moto_store: StoreSettings, name: str) -> None:
    client = moto_store.client()
    client.make_bucket(moto_store.bucket)
    client.put_object(moto_store.bucket, name, BytesIO(b"zip"), 3)
    check = check_cache_object(moto_store, CacheSettings(path="ci", shared=False), 42, "AbCdEfGhI", KEY)
    assert check.found and check.expected == name and check.size == 3
    assert check.deleted == [name]
    assert not list(client.list_objects(moto_store.bucket, recursive=True))


def test_hashed_object_under_other_settings_is_found_elsewhere(moto_store: StoreSettings) -> None:
    client = moto_store.client()
    client.make_bucket(moto_store.bucket)
    elsewhere = f"other/project/42/bb/{DIGEST}"  # Shared and another Path than runner-cache is configured with
    client.put_object(moto_store.bucket, elsewhere, BytesIO(b"zip"), 3)
    check = check_cache_object(moto_store, CacheSettings(path="ci", shared=False), 42, "AbCdEfGhI", KEY)
    assert not check.found and check.expected == f"{BASE}/{KEY}"
    assert check.elsewhere == [elsewhere] and check.deleted == [elsewhere]
