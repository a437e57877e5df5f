"""The MinIO path through the real ``minio.MinioAdmin`` client, against a fake that decrypts what it sends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import StoreAuthError
from runner_cache.tasks.store.identity import MinioIdentityAdmin, ensure_identity, identity_credentials, revoke_pending
from runner_cache.tasks.store.policy import grant, policy_document
from tests.fakes.minio_admin import AdminError, FakeMinioAdmin, decrypt, encrypt
from tests.unit.tasks.store.test_identity import MemoryVault

ROOT, ROOT_SECRET = "minio-root", "minio-root-secret-0042"
CACHE = CacheSettings(path="ci")


@pytest.fixture
def fake() -> Iterator[FakeMinioAdmin]:
    server = FakeMinioAdmin(ROOT, ROOT_SECRET).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def store(fake: FakeMinioAdmin) -> StoreSettings:
    return StoreSettings(
        backend="docker",
        endpoint=fake.endpoint,
        access_key=SecretStr(ROOT),
        secret_key=SecretStr(ROOT_SECRET),
        bucket="cache",
    )


def test_the_fakes_cipher_reads_what_minio_py_writes_and_the_reverse() -> None:
    from minio import crypto

    sealed = crypto.encrypt(b'{"secretKey": "x"}' * 2000, ROOT_SECRET)  # > one 16 KiB chunk
    assert decrypt(sealed, ROOT_SECRET) == b'{"secretKey": "x"}' * 2000
    with pytest.raises(ValueError):
        decrypt(sealed, "another-secret")

    class Body:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self, size: int = -1) -> bytes:
            chunk, self.data = (self.data, b"") if size < 0 else (self.data[:size], self.data[size:])
            return chunk

        def close(self) -> None:
            pass

        def release_conn(self) -> None:
            pass

    assert crypto.decrypt(Body(encrypt(b"hello", ROOT_SECRET)), ROOT_SECRET) == b"hello"


def test_ensure_creates_policy_user_and_attachment_with_encrypted_secrets(
    fake: FakeMinioAdmin, store: StoreSettings
) -> None:
    vault = MemoryVault()
    admin = MinioIdentityAdmin(store)
    assert admin.speaks()
    result = ensure_identity(store, CACHE, vault=vault, admin=admin)
    assert result.status == "changed"
    key = identity_credentials(store, vault=vault)
    policy = {call.command: call for call in fake.calls}["add-canned-policy"]
    assert policy.query == {"name": "rc-runner-cache"}
    assert policy.body == policy_document(grant("runner", "cache", "ci", False), "minio")
    add_user = next(call for call in fake.calls if call.command == "add-user")
    assert add_user.encrypted and add_user.query == {"accessKey": key.access_key}
    assert add_user.body == {"status": "enabled", "secretKey": key.secret_key.get_secret_value()}
    attach = next(call for call in fake.calls if call.command == "idp/builtin/policy/attach")
    assert attach.encrypted and attach.body == {"policies": ["rc-runner-cache"], "user": key.access_key}
    assert key.access_key.startswith("rc-") and len(key.access_key) <= 20
    assert fake.users[key.access_key]["policies"] == ["rc-runner-cache"]
    assert ensure_identity(store, CACHE, vault=vault, admin=admin).status == "unchanged"


def test_rotation_with_a_failure_before_revoke_keeps_the_old_user(fake: FakeMinioAdmin, store: StoreSettings) -> None:
    vault = MemoryVault()
    admin = MinioIdentityAdmin(store)
    ensure_identity(store, CACHE, vault=vault, admin=admin)
    old = identity_credentials(store, vault=vault).access_key
    ensure_identity(store, CACHE, rotate=True, vault=vault, admin=admin)
    new = identity_credentials(store, vault=vault).access_key
    fake.fail["remove-user"] = AdminError(403, "AccessDenied")  # the step between "new key verified" and "old key gone"
    with pytest.raises(StoreAuthError):
        revoke_pending(store, vault=vault, admin=admin)
    assert {old, new} <= set(fake.users) and vault.records["runner"].revoke == [old]
    revoke_pending(store, vault=vault, admin=admin)
    assert set(fake.users) == {new}


def test_a_wrong_root_secret_is_an_auth_error(fake: FakeMinioAdmin, store: StoreSettings) -> None:
    wrong = store.model_copy(update={"secret_key": SecretStr("not-the-root-secret")})
    with pytest.raises(StoreAuthError):
        ensure_identity(wrong, CACHE, vault=MemoryVault(), admin=MinioIdentityAdmin(wrong))
    assert fake.calls == []  # refused before anything was read or changed


def test_a_drifted_policy_is_rewritten_and_reattached(fake: FakeMinioAdmin, store: StoreSettings) -> None:
    vault = MemoryVault()
    admin = MinioIdentityAdmin(store)
    ensure_identity(store, CACHE, vault=vault, admin=admin)
    fake.policies["rc-runner-cache"] = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::*"]}],
    }
    assert ensure_identity(store, CACHE, vault=vault, admin=admin).status == "changed"
    assert fake.policies["rc-runner-cache"] == policy_document(grant("runner", "cache", "ci", False), "minio")
