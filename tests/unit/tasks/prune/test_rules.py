"""The pure rule logic: sizes, globs, slugs, the superseded index and the size cut-off."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from runner_cache.errors import ConfigError
from runner_cache.flows.prune import prune_options
from runner_cache.tasks.keys.layout import cache_object, parse_object_name
from runner_cache.tasks.prune.rules import (
    Decider,
    Listed,
    LiveRefs,
    PruneOptions,
    SizeCutoff,
    SizeHistogram,
    SupersededIndex,
    deleted_ref_reason,
    kept_by,
    parse_size,
    ref_slug,
    sort_key,
)

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


def obj(key: str, project: int = 7, token: str | None = "abcdef123"):
    return cache_object(path="", shared=token is None, short_token=token, project_id=project, key=key)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("500M", 500_000_000),
        ("10G", 10**10),
        ("10Gi", 10 * 2**30),
        ("1.5k", 1500),
        ("2TB", 2 * 10**12),
        ("3 MiB", 3 * 2**20),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "10X", "-5G", "1e3", "10 GG"])
def test_parse_size_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_options_need_a_rule_and_valid_values() -> None:
    with pytest.raises(ConfigError, match="choose at least one rule"):
        prune_options(dry_run=True)
    with pytest.raises(ConfigError, match="max_age_days: Input should be greater than 0"):
        prune_options(max_age_days=0)
    with pytest.raises(ConfigError, match="max_deletions: Input should be greater than or equal to 1"):
        prune_options(max_age_days=1, max_deletions=0)
    with pytest.raises(ConfigError, match="max_total_size: not a size") as error:
        prune_options(max_total_size="lots-of-secret-bytes")
    assert "lots-of-secret-bytes" not in str(error.value)
    with pytest.raises(ConfigError, match="keep: .*must not be empty"):
        prune_options(max_age_days=1, keep=[" "])
    assert prune_options(max_total_size="1Gi", keep=None).max_total_bytes == 2**30


def test_ref_slug_matches_gitlab() -> None:
    assert ref_slug("feature/Add_Thing") == "feature-add-thing"
    assert ref_slug("-release/1.2-") == "release-1-2"
    assert ref_slug("x" * 70) == "x" * 63


def test_keep_globs_match_the_key_or_the_object_name() -> None:
    main = obj("main-protected", project=42)
    assert kept_by(["main-*"], main, main.object_name) == "main-*"
    assert kept_by(["runner/*/project/42/*"], main, main.object_name) == "runner/*/project/42/*"
    assert kept_by(["release-*", "*/project/43/*"], main, main.object_name) is None


def test_deleted_refs_is_conservative() -> None:
    live = LiveRefs.of({"main", "release-1", "feature-x"})
    assert deleted_ref_reason(obj("gone-branch-non_protected"), live) == (
        "deleted-refs: no branch or tag of project 7 has the slug 'gone-branch'"
    )
    assert deleted_ref_reason(obj("gone-3-protected"), live) is not None  # index and suffix stripped
    for key in (
        "main-protected",
        "main-2-protected",
        "main",
        "release-1-protected",
        "release-1-4-non_protected",
        "feature-x-1",
    ):
        assert deleted_ref_reason(obj(key), live) is None, key
    # never judged: GitLab's default key, cache:key:files hashes, keys no slug can produce, hashed keys
    for key in (
        "default-protected",
        "default-3-non_protected",
        "a" * 40,
        "deps-" + "0123456789" * 4,
        "Build_Cache",
        "node_modules-protected",
        "f" * 64,
    ):
        assert deleted_ref_reason(obj(key), live) is None, key


def _listed(o, days: float, size: int = 10) -> Listed:
    return Listed(o.object_name, size, NOW - timedelta(days=days))


def test_superseded_needs_an_established_newer_index_and_the_same_key() -> None:
    index = SupersededIndex()
    seen = {
        obj("main-protected"): 20,  # written before the clear
        obj("dev-non_protected"): 19,  # before the clear; no newer object of its key
        obj("main-1-protected"): 5,  # after the clear to index 1
        obj("feature-1-non_protected"): 4,  # after the clear
        obj("main-protected", token="other1234"): 30,  # another runner, no newer object there
    }
    for o, days in seen.items():
        index.observe(o, NOW - timedelta(days=days))
    index.freeze()
    assert index.reason(obj("main-protected")) == (
        "superseded: project 7 was cleared to cache index 1 and this key has a newer object"
    )
    assert index.reason(obj("main-1-protected")) is None
    assert index.reason(obj("dev-non_protected")) is None
    assert index.reason(obj("main-protected", token="other1234")) is None
    assert index.groups == 4  # main and main-1 are one group


def test_superseded_leaves_branches_that_end_in_numbers() -> None:
    """release-1 and release-2 are branches, written in turns: no index is established, nothing goes."""
    index = SupersededIndex()
    for key, days in {"release-1-protected": 1, "release-2-protected": 3, "main-protected": 2}.items():
        index.observe(obj(key), NOW - timedelta(days=days))
    index.freeze()
    assert [index.reason(obj(key)) for key in ("release-1-protected", "release-2-protected", "main-protected")] == [
        None
    ] * 3


def test_superseded_ignores_hashed_keys_and_other_projects() -> None:
    index = SupersededIndex()
    index.observe(obj("main"), NOW - timedelta(days=9))
    index.observe(obj("main-1"), NOW - timedelta(days=1))
    index.observe(obj("main", project=8), NOW - timedelta(days=9))
    index.observe(obj("e" * 64), NOW - timedelta(days=9))
    index.freeze()
    assert index.reason(obj("main")) is not None
    assert index.reason(obj("main", project=8)) is None
    assert index.reason(obj("e" * 64)) is None


def test_size_histogram_coarsens_and_finds_the_boundary() -> None:
    histogram = SizeHistogram(max_bins=4)
    for key in range(100):
        histogram.add(key, 1)
    assert len(histogram.bins) <= 4 and histogram.shift >= 5
    start, end, before = histogram.boundary(50)
    assert start <= 49 < end and before <= 49
    assert histogram.boundary(101) is None


def _exact_oldest_first(items: list[Listed], budget: int) -> set[str]:
    total = sum(item.size for item in items)
    gone = set()
    for item in sorted(items, key=sort_key):
        if total <= budget:
            break
        gone.add(item.name)
        total -= item.size
    return gone


@pytest.mark.parametrize("max_bins", [4, 64, 16384])
def test_size_cutoff_is_exact_with_any_histogram_size(max_bins: int) -> None:
    rng = random.Random(max_bins)
    items = [
        Listed(f"project/{i}/k", rng.randint(1, 1000), NOW - timedelta(seconds=rng.randint(0, 50))) for i in range(500)
    ]
    budget = sum(item.size for item in items) // 3
    cutoff = SizeCutoff(budget, max_bins=max_bins)
    passes = 0
    while not cutoff.done:
        for item in items:
            cutoff.count(item.size)
            cutoff.add(sort_key(item), item.size)
        cutoff.settle()
        passes += 1
    gone = {item.name for item in items if cutoff.reason(sort_key(item))}
    assert gone == _exact_oldest_first(items, budget)
    assert sum(item.size for item in items if item.name not in gone) <= budget
    assert (passes == 1) == (max_bins >= 500)


def test_size_cutoff_within_budget_deletes_nothing() -> None:
    cutoff = SizeCutoff(10_000)
    cutoff.count(10)
    cutoff.add(1, 10)
    cutoff.settle()
    assert cutoff.done and cutoff.reason(0) is None


def test_decider_order_keep_first_then_age() -> None:
    options = PruneOptions(max_age_days=10, keep=["keep-*"])
    decider = Decider(options, NOW)
    old, kept = obj("old-protected"), obj("keep-me")
    assert decider.before_size(_listed(old, 11), old) == ("max-age: last written 11.0 days ago (limit 10)", None)
    assert decider.before_size(_listed(old, 9), old) == (None, None)
    assert decider.before_size(_listed(kept, 99), kept) == (None, "keep-*")


def test_decider_keeps_projects_with_unknown_refs() -> None:
    decider = Decider(
        PruneOptions(deleted_refs=True), NOW, live_refs=lambda project: None if project == 1 else LiveRefs.of({"main"})
    )
    assert decider.before_size(_listed(obj("gone", project=1), 1), obj("gone", project=1)) == (None, None)
    assert decider.before_size(_listed(obj("gone", project=2), 1), obj("gone", project=2))[0].startswith("deleted-refs")


def test_parsed_names_round_trip_for_both_layouts() -> None:
    for o in (obj("main-protected"), obj("main-protected", token=None)):
        assert parse_object_name(o.object_name) == o
