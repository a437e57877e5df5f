import pytest

from runner_cache.tasks.keys.layout import cache_object, layout_prefix, parse_object_name, short_token, split_key

HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize(
    ("token", "version", "expected"),
    [
        # runner >= 18.2: strip every known prefix, then 9 characters
        ("glrt-abcdefghijklmnop", "18.2.0", "abcdefghi"),
        ("glrt-t1_abcdefghijklmnop", "18.5.1", "abcdefghi"),
        ("t2_abcdefghijklmnop", "v19.0.0", "abcdefghi"),
        ("glrtr-abcdefghijklmnop", "18.2", "abcdefghi"),
        ("glcbt-abcdefghijklmnop", "18.2", "abcdefghi"),
        ("GR1348941abcdefghijklmnop", "18.2", "abcdefghi"),
        ("abcdefghijklmnop", "18.2", "abcdefghi"),
        ("abc", "18.2", "abc"),
        # 15.9 - 18.1: glrt- tokens → token[5:14], others token[:8]
        ("glrt-abcdefghijklmnop", "15.9.0", "abcdefghi"),
        ("glrt-t1_abcdefghijklmnop", "18.1.3", "t1_abcdef"),
        ("glrtr-abcdefghijklmnop", "17.0", "abcdefghi"),
        ("abcdefghijklmnop", "16.11", "abcdefgh"),
        ("short", "17.0", "short"),
        # <= 15.8: token[:8] (GR registration tokens keep their 17-char rotation prefix)
        ("glrt-abcdefghijklmnop", "15.8.2", "glrt-abc"),
        ("abcdefghijklmnop", "14.0", "abcdefgh"),
        ("GR1348941abcdefghijklmnop", "15.0", "GR1348941abcdefgh"),
    ],
)
def test_short_token_follows_each_runner_era(token: str, version: str, expected: str) -> None:
    assert short_token(token, version) == expected


@pytest.mark.parametrize("version", ["", "latest", "x.y"])
def test_short_token_rejects_a_non_version(version: str) -> None:
    with pytest.raises(ValueError, match="not a runner version"):
        short_token("glrt-abcdefghijk", version)


@pytest.mark.parametrize(
    ("path", "shared", "expected"),
    [
        ("", False, "runner/"),
        ("", True, "project/"),
        ("ci/cache", False, "ci/cache/runner/"),
        ("ci", True, "ci/project/"),
    ],
)
def test_layout_prefix_covers_where_the_runner_writes(path: str, shared: bool, expected: str) -> None:
    assert layout_prefix(path, shared) == expected
    written = cache_object(path=path, shared=shared, short_token="abcdefghi", project_id=7, key="main-1-protected")
    assert written.object_name.startswith(expected)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (
            dict(path="", shared=False, short_token="abcdefghi", project_id=42, key="main"),
            "runner/abcdefghi/project/42/main",
        ),
        (dict(path="", shared=True, short_token="abcdefghi", project_id=42, key="main"), "project/42/main"),
        (
            dict(path="a/b", shared=False, short_token="xyz12345", project_id=1, key="k-3-non_protected"),
            "a/b/runner/xyz12345/project/1/k-3-non_protected",
        ),
        (
            dict(path="a", shared=True, short_token=None, project_id=9, key=HASH, shard=True),
            f"a/project/9/{HASH[:2]}/{HASH}",
        ),
        (
            dict(path="", shared=False, short_token="abcdefghi", project_id=5, key=HASH),
            f"runner/abcdefghi/project/5/{HASH}",
        ),
    ],
)
def test_build_and_parse_are_inverse(kwargs: dict, name: str) -> None:
    built = cache_object(**kwargs)
    assert built.object_name == name
    assert parse_object_name(name, kwargs["path"]) == built


def test_parsed_object_exposes_layout_facts() -> None:
    parsed = parse_object_name(f"project/3/{HASH[:2]}/{HASH}")
    assert parsed is not None and parsed.shared and parsed.hashed and parsed.shard == HASH[:2]
    parsed = parse_object_name("runner/abc/project/3/main-2-protected")
    assert parsed is not None and not parsed.shared and not parsed.hashed and parsed.short_token == "abc"


@pytest.mark.parametrize(
    ("key", "base", "index", "protection"),
    [
        ("main", "main", None, None),
        ("main-protected", "main", None, "protected"),
        ("main-non_protected", "main", None, "non_protected"),
        ("main-3-protected", "main", 3, "protected"),
        ("main-3", "main", 3, None),
        ("release-1-2-non_protected", "release-1", 2, "non_protected"),
        ("feature-x", "feature-x", None, None),
        ("0", "0", None, None),
    ],
)
def test_split_key_reads_gitlab_suffixes(key: str, base: str, index: int | None, protection: str | None) -> None:
    parts = split_key(key)
    assert (parts.base, parts.index, parts.protection) == (base, index, protection)


def test_split_key_rejects_empty() -> None:
    with pytest.raises(ValueError):
        split_key("")


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("", ""),
        ("runner/", ""),
        ("runner/abc/project/1/", ""),  # a directory marker, no key
        ("runner/abc/project/0/main", ""),  # project ids start at 1
        ("runner/abc/project/01/main", ""),
        ("runner/abc/project/x/main", ""),
        ("runner/abc/projects/1/main", ""),
        ("runner/abc/main", ""),
        ("runner/ab/cd/project/1/main", ""),  # token segment must be one segment
        ("runner/abcdefghijklmnopqrstu/project/1/main", ""),  # no runner era makes an 21-char short token
        ("project/1/a/b", ""),  # an extra segment that is not a hash shard
        ("project/1/zz/" + HASH, ""),  # shard not hex
        ("project/1/ab/notahash", ""),
        ("project/1/..", ""),
        ("project/1/.", ""),
        ("cache/project/1/main", ""),  # under a Path the runner was not configured with
        ("project/1/main", "cache"),  # outside the configured Path
        ("cachex/project/1/main", "cache"),
        ("backup.tar", ""),
        ("project/1/main/", ""),
    ],
)
def test_strings_that_are_not_cache_objects(name: str, path: str) -> None:
    assert parse_object_name(name, path) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(path="", shared=False, short_token=None, project_id=1, key="main"),
        dict(path="", shared=True, short_token=None, project_id=1, key="a/b"),
        dict(path="", shared=True, short_token=None, project_id=1, key=".."),
        dict(path="", shared=True, short_token=None, project_id=1, key=""),
        dict(path="", shared=True, short_token=None, project_id=1, key="main", shard=True),
    ],
)
def test_cache_object_rejects_impossible_objects(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        cache_object(**kwargs)
