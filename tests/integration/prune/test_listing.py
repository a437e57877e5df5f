"""The parallel listing (tasks/prune/listing.py) on real S3 servers: every object once, whatever the names."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.tasks.prune import listing
from tests.integration.prune.conftest import seed

# Names chosen to sit at the edges of the shards: objects directly under each folder the discovery splits, names
# that sort between sibling folders (`12-x/` < `12/` < `120/`, `12.tar` and `12` itself), a token named `project`,
# other top-level folders, a nested `project/` that is not a layout's, and characters S3 URL-encodes.
NAMES = [
    "cache/stray",
    "cache/runner/stray",
    "cache/runner/tok1/stray",
    "cache/runner/tok1/project/stray",
    "cache/runner/project/project/5/main-protected",
    "cache/other/deep/project/1/x",
    "cache/tmp/upload.part",
    "cache/project/12",
    "cache/project/12.tar",
    "cache/project/12-x/main-protected",
    "cache/project/12/main-protected",
    "cache/project/12/feature/with space+plus%percent&amp-protected",
    "cache/project/120/main-protected",
    "cache/project/13/ünïcode-protected",
    "outside/project/1/main-protected",
    "cache-sibling/project/1/main-protected",
]
NAMES += [f"cache/project/{project}/key-{i}-protected" for project in range(1, 40) for i in range(3)]
NAMES += [
    f"cache/runner/{token}/project/{project}/key-{i}-non_protected"
    for token in ("tok1", "tok2", "tok3")
    for project in range(1, 30, 2)
    for i in range(2)
]


@pytest.fixture
def seeded(s3_store: StoreSettings) -> StoreSettings:
    seed(s3_store, NAMES)
    return s3_store


@pytest.mark.parametrize("workers", [1, 3, 8])
def test_every_object_under_the_root_is_listed_exactly_once(
    seeded: StoreSettings, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "RANGES_PER_LAYOUT", 3)
    listed = list(listing.list_objects(seeded.client(), seeded.bucket, "cache/", workers=workers))
    counts = Counter(item.name for item in listed)
    assert max(counts.values()) == 1, [name for name, count in counts.items() if count > 1]
    assert set(counts) == {name for name in NAMES if name.startswith("cache/")}
    assert all(isinstance(item.last_modified, datetime) and item.last_modified.tzinfo for item in listed)
    assert {item.size for item in listed} == {22}  # the seeded body


def test_the_shards_split_runner_tokens_the_shared_layout_and_ranges_of_projects(seeded: StoreSettings) -> None:
    shards, direct = listing.plan_shards(seeded.client(), seeded.bucket, "cache/")
    prefixes = Counter(shard.prefix for shard in shards)
    assert prefixes["cache/project/"] == listing.RANGES_PER_LAYOUT
    for token in ("tok1", "tok2", "tok3"):
        assert prefixes[f"cache/runner/{token}/project/"] == listing.RANGES_PER_LAYOUT
    assert prefixes["cache/other/"] == prefixes["cache/tmp/"] == 1
    assert {item.name for item in direct} == {
        "cache/stray",
        "cache/runner/stray",
        "cache/runner/tok1/stray",
        "cache/runner/tok1/project/stray",
        "cache/project/12",
        "cache/project/12.tar",
    }


def test_the_whole_bucket_when_there_is_no_path(seeded: StoreSettings) -> None:
    names = [item.name for item in listing.list_objects(seeded.client(), seeded.bucket, "")]
    assert sorted(names) == sorted(NAMES)


def test_a_failing_stream_fails_the_listing(seeded: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    real = listing.list_page

    def failing(client, bucket, prefix, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if prefix == "cache/runner/tok2/project/" and not kwargs.get("delimiter"):
            raise RuntimeError("listing broke")
        return real(client, bucket, prefix, **kwargs)

    monkeypatch.setattr(listing, "list_page", failing)
    with pytest.raises(RuntimeError, match="listing broke"):
        list(listing.list_objects(seeded.client(), seeded.bucket, "cache/", workers=4))
