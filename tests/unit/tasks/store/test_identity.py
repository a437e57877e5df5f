"""ensure_identity / revoke_pending bookkeeping against an in-memory admin API (no server, no Prefect)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.settings import RunnerCacheSections
from runner_cache.blocks.store import IdentitySettings, StoreSettings
from runner_cache.errors import ConfigError
from runner_cache.tasks.store.identity import (
    Credentials,
    IdentityRecord,
    PrincipalState,
    ensure_identity,
    identity_credentials,
    prune_store,
    revoke_pending,
)
from runner_cache.tasks.store.policy import Role, identity_name, same_policy

STORE = StoreSettings(
    backend="external",
    endpoint="http://store.example:9000",
    access_key=SecretStr("admin"),
    secret_key=SecretStr("admin-secret"),
    bucket="cache",
)
CACHE = CacheSettings()
RUNNER = identity_name("runner", "cache")


class MemoryVault:
    def __init__(self) -> None:
        self.records: dict[str, IdentityRecord] = {}

    def load(self, store: StoreSettings, role: Role) -> IdentityRecord | None:
        record = self.records.get(role)
        return record.model_copy(deep=True) if record else None

    def save(self, store: StoreSettings, record: IdentityRecord) -> None:
        self.records[record.role] = record.model_copy(deep=True)


class MemoryAdmin:
    kind, dialect, max_keys = "memory", "aws", 2

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.counter = 0

    def state(self, name: str, document: dict[str, Any]) -> PrincipalState:
        user = self.users.get(name)
        if user is None:
            return PrincipalState(False, False)
        return PrincipalState(True, same_policy(user["policy"], document), list(user["keys"]))

    def ensure_principal(self, name: str, document: dict[str, Any]) -> list[str]:
        self.users.setdefault(name, {"keys": {}})["policy"] = document
        return ["ensured"]

    def create_key(self, name: str) -> Credentials:
        assert len(self.users[name]["keys"]) < self.max_keys, "LimitExceeded"
        self.counter += 1
        access, secret = f"KEY{self.counter}", f"secret-{self.counter}-xxxxxxxx"
        self.users[name]["keys"][access] = secret
        return Credentials(access, SecretStr(secret))

    def delete_key(self, name: str, access_key: str) -> None:
        self.users[name]["keys"].pop(access_key, None)


@pytest.fixture
def world() -> tuple[MemoryAdmin, MemoryVault]:
    return MemoryAdmin(), MemoryVault()


def test_first_run_creates_user_policy_and_one_key_then_nothing(world: tuple[MemoryAdmin, MemoryVault]) -> None:
    admin, vault = world
    planned = ensure_identity(STORE, CACHE, apply=False, vault=vault, admin=admin)
    assert planned.status == "planned" and "create identity rc-runner-cache" in planned.detail and admin.users == {}
    first = ensure_identity(STORE, CACHE, vault=vault, admin=admin)
    assert first.status == "changed"
    assert list(admin.users[RUNNER]["keys"]) == ["KEY1"] and vault.records["runner"].access_key == "KEY1"
    again = ensure_identity(STORE, CACHE, vault=vault, admin=admin)
    assert again.status == "unchanged" and list(admin.users[RUNNER]["keys"]) == ["KEY1"]
    assert "secret-1" not in first.detail + again.detail + str(first.data) + str(again.data)


def test_a_changed_layout_corrects_the_policy_and_keeps_the_key(world: tuple[MemoryAdmin, MemoryVault]) -> None:
    admin, vault = world
    ensure_identity(STORE, CACHE, vault=vault, admin=admin)
    shared = ensure_identity(STORE, CacheSettings(shared=True), vault=vault, admin=admin)
    assert shared.status == "changed" and "KEY1" in admin.users[RUNNER]["keys"] and admin.counter == 1
    assert admin.users[RUNNER]["policy"]["Statement"][0]["Resource"] == ["arn:aws:s3:::cache/project/*"]


def test_rotation_keeps_the_old_key_until_revoke(world: tuple[MemoryAdmin, MemoryVault]) -> None:
    admin, vault = world
    ensure_identity(STORE, CACHE, vault=vault, admin=admin)
    rotated = ensure_identity(STORE, CACHE, rotate=True, vault=vault, admin=admin)
    assert rotated.status == "changed" and rotated.data["pending_revocations"] == 1
    assert set(admin.users[RUNNER]["keys"]) == {"KEY1", "KEY2"}  # both work until the new one is verified
    assert vault.records["runner"].access_key == "KEY2" and vault.records["runner"].revoke == ["KEY1"]
    # a failure here (Secret, rollout, verification) leaves KEY1 valid; a later run finishes the job
    assert ensure_identity(STORE, CACHE, vault=vault, admin=admin).status == "unchanged"
    done = revoke_pending(STORE, vault=vault, admin=admin)
    assert (
        done.status == "changed"
        and set(admin.users[RUNNER]["keys"]) == {"KEY2"}
        and vault.records["runner"].revoke == []
    )
    assert revoke_pending(STORE, vault=vault, admin=admin).status == "unchanged"


def test_keys_we_did_not_make_are_queued_for_revocation(world: tuple[MemoryAdmin, MemoryVault]) -> None:
    admin, vault = world
    ensure_identity(STORE, CACHE, vault=vault, admin=admin)
    admin.users[RUNNER]["keys"]["MINTED"] = "by-a-stolen-key"  # SeaweedFS lets a user create keys for itself
    found = ensure_identity(STORE, CACHE, vault=vault, admin=admin)
    assert found.status == "changed" and "1 key(s) this tool did not make" in found.detail
    revoke_pending(STORE, vault=vault, admin=admin)
    assert set(admin.users[RUNNER]["keys"]) == {"KEY1"}


def test_a_lost_record_gets_a_new_key_and_the_orphan_is_revoked_later(world: tuple[MemoryAdmin, MemoryVault]) -> None:
    admin, vault = world
    ensure_identity(STORE, CACHE, vault=vault, admin=admin)
    vault.records.clear()
    ensure_identity(STORE, CACHE, vault=vault, admin=admin)
    assert vault.records["runner"].access_key == "KEY2" and vault.records["runner"].revoke == ["KEY1"]
    assert set(admin.users[RUNNER]["keys"]) == {"KEY1", "KEY2"}


def test_keys_set_by_hand_are_used_and_never_replaced(world: tuple[MemoryAdmin, MemoryVault]) -> None:
    admin, vault = world
    by_hand = STORE.model_copy(
        update={
            "identities": IdentitySettings(
                runner_access_key=SecretStr("HANDKEY"), runner_secret_key=SecretStr("hand-secret-123")
            )
        }
    )
    result = ensure_identity(by_hand, CACHE, vault=vault, admin=admin)
    assert result.status == "unchanged" and "set by hand" in result.detail and admin.users == {}
    assert identity_credentials(by_hand, vault=vault).access_key == "HANDKEY"


def test_no_identity_yet_is_a_configuration_error_not_the_admin_key(world: tuple[MemoryAdmin, MemoryVault]) -> None:
    _, vault = world
    with pytest.raises(ConfigError, match="run `runner-cache setup` first"):
        identity_credentials(STORE, vault=vault)


def test_identity_settings_need_both_halves() -> None:
    with pytest.raises(ValueError, match="both"):
        IdentitySettings(runner_access_key=SecretStr("only-half"))


def test_prune_and_verify_get_the_prune_key_unless_told_to_use_the_admin_one(
    world: tuple[MemoryAdmin, MemoryVault],
) -> None:
    admin, vault = world
    ensure_identity(STORE, CACHE, "prune", vault=vault, admin=admin)
    sections = RunnerCacheSections(store=STORE, cache=CACHE)
    pruning = prune_store(sections, vault=vault)
    assert (
        pruning.access_key.get_secret_value()
        == vault.records["prune"].access_key
        != STORE.access_key.get_secret_value()
    )
    admin_says = STORE.model_copy(update={"identities": IdentitySettings(prune_uses_admin=True)})
    assert prune_store(RunnerCacheSections(store=admin_says, cache=CACHE), vault=vault) is admin_says


def test_two_keys_per_user_the_oldest_queued_key_makes_room(world: tuple[MemoryAdmin, MemoryVault]) -> None:
    admin, vault = world
    ensure_identity(STORE, CACHE, vault=vault, admin=admin)
    ensure_identity(STORE, CACHE, rotate=True, vault=vault, admin=admin)  # KEY1 queued, KEY2 current
    again = ensure_identity(STORE, CACHE, rotate=True, vault=vault, admin=admin)  # no room for a third key
    assert "revoked a queued key first" in again.detail
    assert set(admin.users[RUNNER]["keys"]) == {"KEY2", "KEY3"} and vault.records["runner"].revoke == ["KEY2"]


def test_two_buckets_on_one_store_get_separate_identities(world: tuple[MemoryAdmin, MemoryVault]) -> None:
    admin, vault = world
    other = STORE.model_copy(update={"bucket": "other-cache"})
    ensure_identity(STORE, CACHE, vault=vault, admin=admin)
    ensure_identity(other, CACHE, vault=MemoryVault(), admin=admin)
    assert set(admin.users) == {"rc-runner-cache", "rc-runner-other-cache"}
    assert ensure_identity(STORE, CACHE, vault=vault, admin=admin).status == "unchanged"


def test_before_the_first_setup_prune_uses_the_admin_key_and_says_so(
    world: tuple[MemoryAdmin, MemoryVault], caplog: pytest.LogCaptureFixture
) -> None:
    _, vault = world
    assert prune_store(RunnerCacheSections(store=STORE, cache=CACHE), vault=vault) is STORE
    assert any("no prune identity for bucket" in record.getMessage() for record in caplog.records)
