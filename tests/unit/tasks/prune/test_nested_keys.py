"""Prune rules on keys as the runner really writes them: nested (``key: $CI_COMMIT_REF_NAME`` on ``feature/login``),
hashed and sharded, and names no runner writes (which no rule may ever delete)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runner_cache.tasks.keys.layout import parse_object_name
from runner_cache.tasks.prune.rules import (
    Decider,
    Listed,
    LiveRefs,
    PruneOptions,
    SupersededIndex,
    could_be_ref_name,
    deleted_ref_reason,
    kept_by,
)

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
RUNNER = "runner/AbCdEfGhI/project/7"
# sha256("main-protected"); a runner >= 19.0.0 with FF_HASH_CACHE_KEYS shards it under its first two digits
HASH = "466a3df3e57a1b08df962a07ed964c83df72766aa83f2983c073ea49bd666866"
LIVE = LiveRefs.of({"main", "feature/login", "Release/2.0", "release-1"})


def cache(name: str):
    obj = parse_object_name(name)
    assert obj is not None, name
    return obj


def test_live_refs_hold_names_and_gitlab_slugs() -> None:
    assert "feature/login" in LIVE and "feature-login" in LIVE  # CI_COMMIT_REF_NAME and CI_COMMIT_REF_SLUG
    assert "release-2-0" in LIVE and "Release/2.0" in LIVE
    assert "feature/old" not in LIVE


@pytest.mark.parametrize(
    ("name", "ref"),
    [
        ("feature/login", True),
        ("Release/2.0", True),
        ("build/main", True),
        ("a/.hidden", False),
        ("a..b", False),
        ("a/b.lock", False),
        ("a b", False),
        ("a\\b", False),
        ("a//b", False),
        ("a/", False),
        ("@", False),
        ("x@{1}", False),
    ],
)
def test_ref_names_follow_git_check_ref_format(name: str, ref: bool) -> None:
    assert could_be_ref_name(name) is ref


@pytest.mark.parametrize(
    "key",
    [
        "feature/login-protected",  # key: $CI_COMMIT_REF_NAME, live branch
        "feature/login-3-non_protected",  # after a "Clear runner caches"
        "feature-login-protected",  # key: $CI_COMMIT_REF_SLUG of the same branch
        "Release/2.0-protected",
        "build/main",  # the runner's own <job>/<ref> default (GitLab < 9.0)
        "build/release-1-protected",  # <job>/<ref> of a branch that ends in a number
        "deps/feature/login-non_protected",  # any tail after a '/' that is a live ref keeps it
        "main/linux-protected",  # and any head: key: $CI_COMMIT_REF_NAME/$OS
    ],
)
def test_nested_keys_of_live_refs_stay(key: str) -> None:
    assert deleted_ref_reason(cache(f"{RUNNER}/{key}"), LIVE) is None


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("feature/old-protected", "has the name 'feature/old'"),
        ("feature/old-2-non_protected", "has the name 'feature/old'"),
        ("feature-old-protected", "has the slug 'feature-old'"),
        ("feature/old/linux-protected", "has the name 'feature/old/linux'"),
    ],
)
def test_nested_keys_of_deleted_refs_go(key: str, reason: str) -> None:
    assert reason in (deleted_ref_reason(cache(f"{RUNNER}/{key}"), LIVE) or "")


@pytest.mark.parametrize(
    "key",
    [
        "default-protected",
        "vendor/deps-" + "0123456789" * 4,  # cache:key:files with a prefix holding a '/'
        "win\\old-protected",  # not a ref name (a runner < 18.0.5 wrote the backslash)
        "a/.cache-protected",
        HASH,
        f"46/{HASH}",
    ],
)
def test_keys_that_are_no_ref_are_never_judged(key: str) -> None:
    assert deleted_ref_reason(cache(f"{RUNNER}/{key}"), LIVE) is None


def test_superseded_groups_nested_keys_by_their_base() -> None:
    index = SupersededIndex()
    old = cache(f"{RUNNER}/feature/login-protected")
    new = cache(f"{RUNNER}/feature/login-1-protected")
    other = cache(f"{RUNNER}/feature/other-protected")  # never written after the clear
    index.observe(old, NOW - timedelta(days=5))
    index.observe(other, NOW - timedelta(days=4))
    index.observe(new, NOW - timedelta(days=1))
    index.freeze()
    assert "cleared to cache index 1" in (index.reason(old) or "")
    assert index.reason(other) is None and index.reason(new) is None


def test_keep_globs_reach_nested_keys() -> None:
    obj = cache(f"{RUNNER}/feature/login-protected")
    assert kept_by(["feature/*"], obj, f"{RUNNER}/feature/login-protected") == "feature/*"
    assert kept_by(["release/*"], obj, f"{RUNNER}/feature/login-protected") is None


def test_decider_applies_age_to_nested_and_hashed_keys() -> None:
    decider = Decider(PruneOptions(max_age_days=10), NOW)
    for name in (f"{RUNNER}/feature/login-protected", f"project/7/46/{HASH}"):
        listed = Listed(name, 10, NOW - timedelta(days=11))
        assert (decider.before_size(listed, cache(name))[0] or "").startswith("max-age"), name


@pytest.mark.parametrize(
    "name",
    [
        f"project/7/47/{HASH}",  # wrong shard: cache/cache.go@v19.0.0 always uses hash[:2]
        f"{RUNNER}/",  # folder marker
        f"{RUNNER}/feature//login",  # empty segment
        f"{RUNNER}/feature/../login",  # '..' segment
        "runners/AbCdEfGhI/project/7/main",  # look-alike prefix
        "projects/7/main",
        "project/07/main",
        "runner/AbCdEfGhIjK/project/7/main",  # 11-character short token: no release makes one
        "README.md",
        "runner/AbCdEfGhI/notes.txt",
    ],
)
def test_names_no_runner_writes_are_not_cache_objects(name: str) -> None:
    assert parse_object_name(name) is None
