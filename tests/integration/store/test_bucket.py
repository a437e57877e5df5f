import pytest
from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from minio.versioningconfig import VersioningConfig

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.tasks.store.bucket import RULE_ID, ensure_bucket


def _rules(store: StoreSettings) -> dict[str, tuple[str, int]]:
    config = store.client().get_bucket_lifecycle(store.bucket)
    return {rule.rule_id: (rule.rule_filter.prefix, rule.expiration.days) for rule in config.rules}


@pytest.mark.parametrize(
    ("cache", "prefix"),
    [
        (CacheSettings(), "runner/"),
        (CacheSettings(shared=True), "project/"),
        (CacheSettings(path="ci/cache", shared=False, expire_days=7), "ci/cache/runner/"),
        (CacheSettings(path="ci", shared=True, expire_days=14), "ci/project/"),
    ],
)
def test_bucket_created_with_a_rule_on_the_runner_layout(
    s3_store: StoreSettings, cache: CacheSettings, prefix: str
) -> None:
    first = ensure_bucket(s3_store, cache)
    assert first.status == "changed"
    assert "created bucket" in first.detail and prefix in first.detail
    assert s3_store.client().bucket_exists(s3_store.bucket)
    assert _rules(s3_store) == {RULE_ID: (prefix, cache.expire_days)}

    second = ensure_bucket(s3_store, cache)
    assert second.status == "unchanged"
    assert not second.changed


def test_plan_touches_nothing(s3_store: StoreSettings) -> None:
    planned = ensure_bucket(s3_store, CacheSettings(), apply=False)
    assert planned.status == "planned"
    assert "would create bucket" in planned.detail and "would add lifecycle rule" in planned.detail
    assert not s3_store.client().bucket_exists(s3_store.bucket)


def test_existing_bucket_counts_as_present_and_other_rules_are_kept(s3_store: StoreSettings) -> None:
    client = s3_store.client()
    client.make_bucket(s3_store.bucket)
    users_rule = Rule(ENABLED, rule_filter=Filter(prefix="logs/"), rule_id="users-own", expiration=Expiration(days=3))
    client.set_bucket_lifecycle(s3_store.bucket, LifecycleConfig([users_rule]))
    result = ensure_bucket(s3_store, CacheSettings())
    assert result.status == "changed" and "created" not in result.detail
    assert _rules(s3_store) == {"users-own": ("logs/", 3), RULE_ID: ("runner/", 30)}


def test_changing_the_layout_moves_the_rule(s3_store: StoreSettings) -> None:
    ensure_bucket(s3_store, CacheSettings(shared=False))
    moved = ensure_bucket(s3_store, CacheSettings(shared=True))
    assert moved.status == "changed"
    assert "was prefix 'runner/'" in moved.detail and "now 'project/'" in moved.detail
    assert "under 'runner/' from the old layout no longer expire" in moved.detail
    assert _rules(s3_store) == {RULE_ID: ("project/", 30)}


def test_versioning_warns_with_the_fix(s3_store: StoreSettings) -> None:
    client = s3_store.client()
    client.make_bucket(s3_store.bucket)
    client.set_bucket_versioning(s3_store.bucket, VersioningConfig(ENABLED))
    result = ensure_bucket(s3_store, CacheSettings())
    assert "versioning is Enabled" in result.detail and "mc version suspend" in result.detail
    assert result.data["warnings"]


def test_object_lock_warns(moto_store: StoreSettings) -> None:
    moto_store.client().make_bucket(moto_store.bucket, object_lock=True)
    result = ensure_bucket(moto_store, CacheSettings())
    assert any("object lock is enabled" in warning for warning in result.data["warnings"])


def test_bucket_without_versioning_or_lock_has_no_warning(seaweed_store: StoreSettings) -> None:
    result = ensure_bucket(seaweed_store, CacheSettings())
    assert result.data["warnings"] == [] and "WARNING" not in result.detail
