"""The cache bucket: present, deletable, and expiring exactly where the runner writes."""

from __future__ import annotations

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error, ServerError
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import BucketError, StoreUnreachable, innermost_cause
from runner_cache.tasks.keys.layout import layout_prefix
from runner_cache.tasks.policy import external_task
from runner_cache.tasks.results import StepResult, timed

RULE_ID = "runner-cache-expire"


def _ensure_exists(client: Minio, store: StoreSettings, apply: bool) -> str | None:
    """Create the bucket when missing; return what was (or would be) done, None when it was there."""
    if client.bucket_exists(store.bucket):
        return None
    if not apply:
        return f"would create bucket {store.bucket!r} in {store.region}"
    try:
        client.make_bucket(store.bucket, location=store.region)
    except S3Error as error:
        if error.code == "BucketAlreadyOwnedByYou":
            return None
        if error.code == "BucketAlreadyExists":
            raise BucketError(
                f"bucket {store.bucket!r} exists but belongs to another account: choose another name"
            ) from None
        raise
    return f"created bucket {store.bucket!r} in {store.region}"


def _deletion_warnings(client: Minio, bucket: str) -> list[str]:
    """Versioning or object lock keep deleted objects around, so pruning and expiry would free no space."""
    warnings = []
    versioning = client.get_bucket_versioning(bucket).status
    if versioning == "Enabled":
        warnings.append(
            "versioning is Enabled: deleted cache objects stay as noncurrent versions and free no space; "
            f"suspend it (mc version suspend ALIAS/{bucket}) or add a NoncurrentVersionExpiration rule"
        )
    try:
        lock = client.get_object_lock_config(bucket)
    except S3Error as error:
        if error.code not in {
            "ObjectLockConfigurationNotFoundError",
            "NoSuchObjectLockConfiguration",
            "NotImplemented",
        }:
            raise
    else:
        retention = f"default retention {lock.mode} {lock.duration}" if lock.mode else "no default retention"
        warnings.append(
            f"object lock is enabled ({retention}): locked cache objects cannot be deleted until their retention "
            "ends; use a bucket without object lock for the runner cache"
        )
    return warnings


def expiration_rule(cache: CacheSettings) -> Rule:
    """Our lifecycle rule: expire objects under the runner's layout prefix after ``expire_days``."""
    return Rule(
        ENABLED,
        rule_filter=Filter(prefix=layout_prefix(cache.path, cache.shared)),
        rule_id=RULE_ID,
        expiration=Expiration(days=cache.expire_days),
    )


def _rule_summary(rule: Rule | None) -> tuple[str | None, int | None, str | None]:
    if rule is None:
        return None, None, None
    prefix = rule.rule_filter.prefix if rule.rule_filter else None
    days = rule.expiration.days if rule.expiration else None
    return prefix, days, rule.status


def _ensure_lifecycle(
    client: Minio, store: StoreSettings, cache: CacheSettings, apply: bool, exists: bool
) -> str | None:
    """Put our rule in place, keeping every other rule of the bucket; None when it is already right."""
    wanted = expiration_rule(cache)
    current = client.get_bucket_lifecycle(store.bucket) if exists else None
    rules = list(current.rules) if current else []
    ours = next((rule for rule in rules if rule.rule_id == RULE_ID), None)
    want = _rule_summary(wanted)
    if _rule_summary(ours) == want:
        return None
    prefix, days, _ = want
    if ours is None:
        what = f"lifecycle rule {RULE_ID!r}: expire objects under {prefix!r} after {days} days"
        verb, done = "add", "added"
    else:
        old_prefix, old_days, old_status = _rule_summary(ours)
        what = (
            f"lifecycle rule {RULE_ID!r} (was prefix {old_prefix!r}, {old_days} days, {old_status}; "
            f"now {prefix!r}, {days} days, so it covers exactly where the runner writes)"
        )
        verb, done = "update", "updated"
        if old_prefix and old_prefix != prefix:
            what += f"; objects still under {old_prefix!r} from the old layout no longer expire: prune them (runner-cache prune)"
    if not apply:
        return f"would {verb} {what}"
    others = [rule for rule in rules if rule.rule_id != RULE_ID]
    client.set_bucket_lifecycle(store.bucket, LifecycleConfig([*others, wanted]))
    return f"{done} {what}"


def ensure_bucket(store: StoreSettings, cache: CacheSettings, apply: bool = True) -> StepResult:
    """Make the bucket ready for the runner; with ``apply=False`` only report what would change."""
    with timed() as timer:
        client = store.client()
        try:
            created = _ensure_exists(client, store, apply)
            exists = created is None or apply
            lifecycle = _ensure_lifecycle(client, store, cache, apply, exists)
            warnings = _deletion_warnings(client, store.bucket) if exists else []
        except (ServerError, urllib3.exceptions.HTTPError, OSError) as error:  # in words, without the URL
            raise StoreUnreachable(
                f"{store.endpoint} did not answer the bucket step: {innermost_cause(error)}",
                hint="check that the store is up; setup retries this step",
            ) from error
    changes = [change for change in (created, lifecycle) if change]
    if changes:
        status = "changed" if apply else "planned"
        detail = "; ".join(changes)
    else:
        status = "unchanged"
        detail = f"bucket {store.bucket!r} exists with lifecycle rule {RULE_ID!r} on {layout_prefix(cache.path, cache.shared)!r}"
    if warnings:
        detail += "; WARNING: " + "; ".join(warnings)
    return StepResult(
        step="bucket",
        status=status,
        detail=detail,
        seconds=timer.seconds,
        data={
            "bucket": store.bucket,
            "lifecycle_prefix": layout_prefix(cache.path, cache.shared),
            "expire_days": cache.expire_days,
            "warnings": warnings,
        },
    )


ensure_bucket_task = external_task(ensure_bucket, "ensure-bucket", delays=(2, 5, 10))
