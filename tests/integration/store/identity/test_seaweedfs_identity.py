"""On a real SeaweedFS (the local backend's ``weed mini``): what the runner and prune identities may and may not do.

Every denial the issue lists is tried for real with the identity's own key, the way the runner signs (presigned
URLs) and the way a thief with the key would (the S3 API, the IAM API).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from pydantic import SecretStr

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import StoreAuthError, WorkFailed
from runner_cache.tasks.store import local_backend
from runner_cache.tasks.store.identity import (
    Credentials,
    IamApiAdmin,
    as_store,
    ensure_identity,
    identity_credentials,
    prove_identity,
    revoke_pending,
)
from runner_cache.tasks.store.policy import identity_name
from tests.support.servers import free_port
from tests.unit.tasks.store.test_identity import MemoryVault

CACHE = CacheSettings(path="ci")
HTTP = urllib3.PoolManager(retries=False)
EXPIRES = timedelta(minutes=5)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreSettings]:
    """A store of its own: identities are per store, and other tests' setups would change the same user's policy."""
    settings = StoreSettings(
        backend="local",
        endpoint=f"http://127.0.0.1:{free_port()}",
        access_key=SecretStr("rc-identity-admin"),
        secret_key=SecretStr("rc-identity-admin-secret"),
        state_dir=Path(tmp_path_factory.mktemp("identity-store")),
        bucket="rc-identity",
    )
    local_backend.ensure(settings)
    admin = settings.client()
    for bucket in ("rc-identity", "rc-identity-other"):
        admin.make_bucket(bucket)
    try:
        yield settings
    finally:
        local_backend.stop(settings)


def _client(store: StoreSettings, key: Credentials) -> Minio:
    return as_store(store, key).client(retries=0)


def _code(call) -> str | None:
    """None when ``call`` succeeded, else the S3 error code it got."""
    try:
        call()
    except S3Error as error:
        return error.code
    return None


def _put(store: StoreSettings, name: str, body: bytes = b"x", bucket: str | None = None) -> None:
    store.client().put_object(bucket or store.bucket, name, io.BytesIO(body), len(body))


def _exists(store: StoreSettings, name: str, bucket: str | None = None) -> bool:
    return _code(lambda: store.client().stat_object(bucket or store.bucket, name)) is None


@pytest.fixture(scope="module")
def runner(store: StoreSettings) -> tuple[Credentials, MemoryVault]:
    vault = MemoryVault()
    assert ensure_identity(store, CACHE, vault=vault).status == "changed"
    return identity_credentials(store, vault=vault), vault


def test_runner_key_puts_and_gets_under_its_prefix_by_presigned_urls(
    store: StoreSettings, runner: tuple[Credentials, MemoryVault]
) -> None:
    key, _ = runner
    client = _client(store, key)
    name = "ci/runner/abc123/project/7/build-non_protected"
    put = HTTP.request(
        "PUT",
        client.presigned_put_object(store.bucket, name, expires=EXPIRES),
        body=b"archive",
        headers={"Content-Type": "application/zip"},
    )
    head = HTTP.request("HEAD", client.get_presigned_url("HEAD", store.bucket, name, expires=EXPIRES))
    got = HTTP.request("GET", client.presigned_get_object(store.bucket, name, expires=EXPIRES))
    assert (put.status, head.status, got.status, got.data) == (200, 200, 200, b"archive")
    assert prove_identity(store, CACHE, key).status == "unchanged"


def test_runner_key_cannot_delete_in_any_way(store: StoreSettings, runner: tuple[Credentials, MemoryVault]) -> None:
    key, _ = runner
    client = _client(store, key)
    name = "ci/runner/abc123/project/7/keep-me"
    _put(store, name)
    deleted = HTTP.request("DELETE", client.get_presigned_url("DELETE", store.bucket, name, expires=EXPIRES))
    assert deleted.status == 403
    assert _code(lambda: client.remove_object(store.bucket, name)) == "AccessDenied"
    errors = list(client.remove_objects(store.bucket, [DeleteObject(name)]))
    assert [error.code for error in errors] == ["AccessDenied"]
    assert _exists(store, name)


def test_runner_key_lists_nothing_and_reaches_no_other_prefix_or_bucket(
    store: StoreSettings, runner: tuple[Credentials, MemoryVault]
) -> None:
    key, _ = runner
    client = _client(store, key)
    _put(store, "elsewhere/secret.txt", b"not for runners")
    _put(store, "ci/runner/x/project/1/other", bucket="rc-identity-other")
    for prefix in ("ci/runner/", "elsewhere/", None):
        assert _code(lambda prefix=prefix: list(client.list_objects(store.bucket, prefix=prefix))) == "AccessDenied", (
            prefix
        )
    assert (
        HTTP.request("GET", client.presigned_get_object(store.bucket, "elsewhere/secret.txt", expires=EXPIRES)).status
        == 403
    )
    assert (
        HTTP.request(
            "PUT", client.presigned_put_object(store.bucket, "ci/project/1/shared-layout", expires=EXPIRES), body=b"x"
        ).status
        == 403
    )
    other = "rc-identity-other"
    assert (
        HTTP.request("GET", client.presigned_get_object(other, "ci/runner/x/project/1/other", expires=EXPIRES)).status
        == 403
    )
    assert (
        HTTP.request(
            "PUT", client.presigned_put_object(other, "ci/runner/x/project/1/new", expires=EXPIRES), body=b"x"
        ).status
        == 403
    )
    assert _code(lambda: client.make_bucket("rc-identity-new")) == "AccessDenied"
    assert _code(lambda: client.remove_bucket(other)) == "AccessDenied"


def test_runner_key_cannot_change_policies(store: StoreSettings, runner: tuple[Credentials, MemoryVault]) -> None:
    key, _ = runner
    client = _client(store, key)
    everything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::*"]}],
    }
    public = {**everything, "Statement": [{**everything["Statement"][0], "Principal": "*"}]}
    assert _code(lambda: client.set_bucket_policy(store.bucket, json.dumps(public))) == "AccessDenied"
    assert _code(lambda: client.delete_bucket_lifecycle(store.bucket)) == "AccessDenied"
    as_runner = IamApiAdmin(as_store(store, key))
    name = identity_name("runner", store.bucket)
    for action, params in [
        ("PutUserPolicy", {"UserName": name, "PolicyName": "more", "PolicyDocument": json.dumps(everything)}),
        ("CreateUser", {"UserName": "runner-cache-evil"}),
        ("AttachUserPolicy", {"UserName": name, "PolicyArn": "arn:aws:iam:::policy/admin"}),
    ]:
        with pytest.raises(StoreAuthError):
            as_runner.call(action, **params)
    # and the policy on the store is still exactly ours
    assert ensure_identity(store, CACHE, vault=runner[1]).status == "unchanged"


def test_prove_identity_refuses_a_key_that_can_delete(store: StoreSettings) -> None:
    access, secret = store.credentials()
    with pytest.raises(WorkFailed, match="can delete objects"):
        prove_identity(store, CACHE, Credentials(access.get_secret_value(), secret))


def test_prune_key_lists_gets_and_deletes_under_path_only(store: StoreSettings) -> None:
    vault = MemoryVault()
    ensure_identity(store, CACHE, "prune", vault=vault)
    client = _client(store, identity_credentials(store, "prune", vault=vault))
    _put(store, "ci/runner/t/project/2/old")
    _put(store, "ci/project/2/old-shared")
    _put(store, "elsewhere/keep")
    assert "ci/runner/t/project/2/old" in [
        o.object_name for o in client.list_objects(store.bucket, prefix="ci/", recursive=True)
    ]
    assert _code(lambda: list(client.list_objects(store.bucket, prefix="elsewhere/"))) == "AccessDenied"
    assert _code(lambda: client.stat_object(store.bucket, "ci/runner/t/project/2/old")) is None
    errors = list(
        client.remove_objects(store.bucket, [DeleteObject("ci/runner/t/project/2/old"), DeleteObject("elsewhere/keep")])
    )
    assert [(error.name, error.code) for error in errors] == [("elsewhere/keep", "AccessDenied")]
    assert _code(lambda: client.remove_object(store.bucket, "ci/project/2/old-shared")) is None
    assert (
        not _exists(store, "ci/runner/t/project/2/old")
        and not _exists(store, "ci/project/2/old-shared")
        and _exists(store, "elsewhere/keep")
    )
    assert (
        _code(lambda: client.put_object(store.bucket, "ci/runner/t/project/2/new", io.BytesIO(b"x"), 1))
        == "AccessDenied"
    )
    assert _code(lambda: list(client.list_objects("rc-identity-other", prefix="ci/"))) == "AccessDenied"


def test_rotation_failing_before_revoke_keeps_the_old_key_working(store: StoreSettings) -> None:
    vault = MemoryVault()
    ensure_identity(store, CACHE, vault=vault)
    old = identity_credentials(store, vault=vault)
    ensure_identity(store, CACHE, rotate=True, vault=vault)
    new = identity_credentials(store, vault=vault)
    assert new.access_key != old.access_key

    class Broken(Exception):
        pass

    def rotate_with_failing_rollout() -> None:
        prove_identity(store, CACHE, new)  # the new key works...
        raise Broken("the runner pods did not roll out")  # ...and the rollout fails before revoke_pending runs

    with pytest.raises(Broken):
        rotate_with_failing_rollout()
    assert prove_identity(store, CACHE, old).status == "unchanged"  # the runner still on the old key is fine
    assert old.access_key in vault.records["runner"].revoke  # (with the keys earlier tests left on the shared user)

    assert revoke_pending(store, vault=vault).status == "changed"
    assert (
        _code(lambda: _client(store, old).put_object(store.bucket, "ci/runner/a/project/1/k", io.BytesIO(b"x"), 1))
        == "InvalidAccessKeyId"
    )
    assert prove_identity(store, CACHE, new).status == "unchanged"


def test_a_key_minted_with_the_runner_key_is_found_and_revoked(store: StoreSettings) -> None:
    vault = MemoryVault()
    ensure_identity(store, CACHE, vault=vault)
    key = identity_credentials(store, vault=vault)
    minted = IamApiAdmin(as_store(store, key)).call("CreateAccessKey")  # SeaweedFS's self-service: no grant needed
    minted_id = next(element.text for element in minted.iter() if element.tag.endswith("AccessKeyId"))
    found = ensure_identity(store, CACHE, vault=vault)
    assert found.status == "changed" and minted_id in vault.records["runner"].revoke
    revoke_pending(store, vault=vault)
    keys = IamApiAdmin(store).state(identity_name("runner", store.bucket), {"Statement": []}).keys
    assert minted_id not in keys and key.access_key in keys
