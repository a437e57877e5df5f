"""Cache object names per runner release. Every expected value is worked out by hand from the runner's (or GitLab's)
source at the cited ``file@tag`` (GitHub mirror gitlabhq/gitlab-runner), not from the module under test."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runner_cache.tasks.keys.layout import (
    NEWEST,
    RULES,
    Version,
    cache_object,
    explain_object_name,
    go_clean,
    go_join,
    layout_prefix,
    locate,
    name_prefixes,
    normalize_path,
    parse_object_name,
    rules_range,
    sanitize_key,
    short_token,
    split_key,
)

V = Version.parse
TOKEN = "AbCdEfGhI"
# sha256("main-protected"), computed independently with `printf %s main-protected | sha256sum`
MAIN_HASH = "466a3df3e57a1b08df962a07ed964c83df72766aa83f2983c073ea49bd666866"
# sha256 of `feature\login-protected` (one backslash)
BACKSLASH_HASH = "1c33f552bf2d4008aa1b2080cbf2edba6296690cbc197557a2e8cda8285076ca"


# --- versions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "triple", "shown"),
    [
        ("18.4.0", (18, 4, 0), "18.4.0"),
        ("v18.4.0", (18, 4, 0), "18.4.0"),
        (" 17.11.2\n", (17, 11, 2), "17.11.2"),
        ("18.4.0~beta.123.gabcdef12", (18, 4, 0), "18.4.0~beta.123.gabcdef12"),
        ("19.0.0-rc1", (19, 0, 0), "19.0.0-rc1"),
    ],
)
def test_version_parses_patch_level_and_keeps_suffix(text: str, triple: tuple[int, int, int], shown: str) -> None:
    version = V(text)
    assert (version.major, version.minor, version.patch) == triple
    assert str(version) == shown


@pytest.mark.parametrize("text", ["", "latest", "18.4", "v18", "18.4.x", "18.4.0.1"])
def test_version_needs_the_patch_level(text: str) -> None:
    with pytest.raises(ValueError, match="not a runner version"):
        V(text)


def test_version_order_is_numeric_and_ignores_the_suffix() -> None:
    assert V("18.10.0") > V("18.9.0") > V("18.1.3") > V("18.1.2")
    assert V("18.4.0~beta.1") == V("18.4.0")
    assert V("17.11.2") < V("18.0.0")


# --- Go's path.Join ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "joined"),
    [
        (("cache/", "runner", "tok", "project", "1", "k"), "cache/runner/tok/project/1/k"),
        (("a//b", "project", "1", "k"), "a/b/project/1/k"),
        (("", "", "project", "1", "k"), "project/1/k"),
        (("/cache", "project", "1", "k"), "/cache/project/1/k"),
        (("./cache/.", "project", "1", "x/../k"), "cache/project/1/k"),
        (("project/1", "../../x"), "x"),
        (("project/1", "../../../x"), "../x"),
        (("", ""), ""),
    ],
)
def test_go_join_matches_path_join(parts: tuple[str, ...], joined: str) -> None:
    # path.Join / path.Clean semantics (Go standard library), which cache/cache.go uses for the whole name
    assert go_join(*parts) == joined


def test_go_clean_never_climbs_above_root() -> None:
    assert go_clean("/../a") == "/a" and go_clean("") == "." and go_clean("a/..") == "."


# --- short tokens, every era and patch boundary -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "version", "expected"),
    [
        # helpers/shorten_token.go@v1.1.0 … @v14.9.2: token[:8]
        ("0123456789abcdefghij", "1.1.0", "01234567"),
        ("GR1348941AbCdEfGhIjKlMn", "14.9.2", "GR134894"),
        ("short", "14.9.2", "short"),
        # @v14.10.0: GR + 7 hex, len >= 17 → token[:17]
        ("GR1348941AbCdEfGhIjKlMn", "14.10.0", "GR1348941AbCdEfGh"),
        ("GR134894xAbCdEfGhIjKlMn", "14.10.0", "GR134894"),  # 'x' is not hex: default token[:8]
        ("GR1348941AbCdEf", "17.0.0", "GR134894"),  # only 15 characters: default
        # @v15.9.0: glrt- → token[5:14]; before that token[:8]
        ("glrt-AbCdEfGhIjKl", "15.8.3", "glrt-AbC"),
        ("glrt-AbCdEfGhIjKl", "15.9.0", "AbCdEfGhI"),
        ("glrt-t1_AbCdEfGhIjKl", "18.1.3", "t1_AbCdEf"),
        # @v17.9.0: glcbt- → token[6:15]
        ("glcbt-AbCdEfGhIjKl", "17.8.5", "glcbt-Ab"),
        ("glcbt-AbCdEfGhIjKl", "17.9.0", "AbCdEfGhI"),
        # glrtr- → token[6:15] only from 17.11.2, 18.0.2 and 18.1.0 (@v18.0.0 and @v18.0.1 still lack it)
        ("glrtr-AbCdEfGhIjKl", "17.10.2", "glrtr-Ab"),
        ("glrtr-AbCdEfGhIjKl", "17.11.1", "glrtr-Ab"),
        ("glrtr-AbCdEfGhIjKl", "17.11.2", "AbCdEfGhI"),
        ("glrtr-AbCdEfGhIjKl", "18.0.1", "glrtr-Ab"),
        ("glrtr-AbCdEfGhIjKl", "18.0.2", "AbCdEfGhI"),
        ("glrtr-AbCdEfGhIjKl", "18.1.0", "AbCdEfGhI"),
        # @v18.2.0: strip glrt-(t[123]_)?, t[123]_, glrtr-, then glcbt-, then GR+7 hex; 9 characters
        ("glrt-t1_AbCdEfGhIjKl", "18.2.0", "AbCdEfGhI"),
        ("t3_AbCdEfGhIjKl", "18.2.0", "AbCdEfGhI"),
        ("glrtr-AbCdEfGhIjKl", "19.3.0", "AbCdEfGhI"),
        ("glcbt-AbCdEfGhIjKl", "18.2.0", "AbCdEfGhI"),
        ("GR1348941AbCdEfGhIjKlMn", "18.2.0", "AbCdEfGhI"),
        ("GR1348941Ab", "18.2.0", "Ab"),  # no length condition any more
        ("glrt-GR1348941AbCdEfGhIj", "18.2.0", "AbCdEfGhI"),  # the strips apply in sequence
        ("0123456789abcdefghij", "18.2.0", "012345678"),
        ("short", "18.2.0", "short"),
    ],
)
def test_short_token_follows_each_runner_release(token: str, version: str, expected: str) -> None:
    assert short_token(token, V(version)) == expected


# --- the key: sanitizing and hashing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "sanitized"),
    [
        # cache/cachekey/cachekey.go@v18.10.0 Sanitize (same names as shells/abstract.go@v18.0.5 sanitizeCacheKey)
        ("feature/login-protected", "feature/login-protected"),
        ("win\\path-protected", "win/path-protected"),
        ("a%2Fb-non_protected", "a/b-non_protected"),
        ("a%2fb", "a/b"),
        ("a%2F%2E%2E%2Fb", "b"),  # a/../b, resolved inside a virtual root
        ("a%2E%2E%2Fb", "a../b"),  # the dots stick to 'a': no '..' segment
        ("../../etc", "etc"),
        ("main ", "main"),
        ("main/ \t/", "main"),
        ("a /b", "a /b"),  # whitespace is trimmed from the last segment(s) only
        ("%5C", "%5C"),
        ("..", ""),
        (" ", ""),
        ("\\", ""),
    ],
)
def test_sanitize_key(raw: str, sanitized: str) -> None:
    assert sanitize_key(raw) == sanitized


def test_sanitize_trims_go_whitespace_only() -> None:
    # unicode.IsSpace (Go) has NBSP and NEL but not the ASCII separators U+001C–U+001F that Python's isspace has
    assert sanitize_key("k\u00a0\u0085") == "k"
    assert sanitize_key("k\x1f") == "k\x1f"


# --- locate: key → object name, per release line --------------------------------------------------------------


def where(key: str, version: str, **kwargs: object):
    kwargs.setdefault("short", TOKEN)
    return locate(key, project_id=42, version=V(version), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "version", "kwargs", "name"),
    [
        # a nested key from `key: $CI_COMMIT_REF_NAME` on branch feature/login: cache/cache.go@v13.9.0 path.Join
        ("feature/login-protected", "16.0.0", {}, f"runner/{TOKEN}/project/42/feature/login-protected"),
        ("feature/login-2-protected", "19.3.0", {}, f"runner/{TOKEN}/project/42/feature/login-2-protected"),
        # before 1.9.0 there is no Path/Shared: shells/cache.go@v1.1.0 (added in shells/cache.go@v1.9.0)
        ("main", "1.8.0", {"path": "cache", "shared": True}, f"runner/{TOKEN}/project/42/main"),
        ("main", "1.9.0", {"path": "cache", "shared": True}, "cache/project/42/main"),
        # `\` and `%2F` stay literal until the upload sanitizer: shells/abstract.go@v18.0.4 (download only) vs @v18.0.5
        ("win\\path-protected", "18.0.4", {}, f"runner/{TOKEN}/project/42/win\\path-protected"),
        ("win\\path-protected", "18.0.5", {}, f"runner/{TOKEN}/project/42/win/path-protected"),
        ("win\\path-protected", "18.1.2", {}, f"runner/{TOKEN}/project/42/win\\path-protected"),
        ("win\\path-protected", "18.1.3", {}, f"runner/{TOKEN}/project/42/win/path-protected"),
        ("a%2Fb-non_protected", "18.2.0", {}, f"runner/{TOKEN}/project/42/a%2Fb-non_protected"),
        ("a%2Fb-non_protected", "18.2.1", {}, f"runner/{TOKEN}/project/42/a/b-non_protected"),
        ("main ", "17.11.4", {}, f"runner/{TOKEN}/project/42/main "),
        ("main ", "18.3.1", {}, f"runner/{TOKEN}/project/42/main"),
        # FF_HASH_CACHE_KEYS: shells/abstract.go@v18.4.0 (sha256 of the unsanitized key), cache/cache.go@v19.0.0 (shard)
        ("main-protected", "18.4.0", {"hash_keys": True}, f"runner/{TOKEN}/project/42/{MAIN_HASH}"),
        ("main-protected", "18.11.4", {"hash_keys": True}, f"runner/{TOKEN}/project/42/{MAIN_HASH}"),
        ("main-protected", "19.0.0", {"hash_keys": True}, f"runner/{TOKEN}/project/42/46/{MAIN_HASH}"),
        ("feature\\login-protected", "19.3.0", {"hash_keys": True, "shared": True}, f"project/42/1c/{BACKSLASH_HASH}"),
        (
            "main-protected",
            "18.3.1",
            {"hash_keys": True},
            f"runner/{TOKEN}/project/42/main-protected",
        ),  # no such flag yet
        # Path through path.Join: cache/cache.go; the s3v2 adapter drops a leading '/': cache/s3v2/adapter.go@v17.5.0
        ("main", "18.0.0", {"path": "cache/", "shared": True}, "cache/project/42/main"),
        ("main", "18.0.0", {"path": "a//b/", "shared": True}, "a/b/project/42/main"),
        ("main", "17.4.2", {"path": "/cache", "shared": True}, "/cache/project/42/main"),
        ("main", "17.5.0", {"path": "/cache", "shared": True}, "cache/project/42/main"),
        ("main", "17.5.0", {"path": "/cache", "shared": True, "legacy_s3_adapter": True}, "/cache/project/42/main"),
        # no traversal guard before cache/cache.go@v11.3.1; filepath.Rel guard lets '.' and '..' pass until @v13.9.0
        ("../x", "11.3.0", {}, f"runner/{TOKEN}/project/x"),
        ("..", "12.0.0", {}, f"runner/{TOKEN}/project"),
    ],
)
def test_locate_per_release(key: str, version: str, kwargs: dict[str, object], name: str) -> None:
    assert where(key, version, **kwargs).object_name == name


@pytest.mark.parametrize(
    ("key", "version", "reason"),
    [
        ("../x", "11.3.1", "cache/cache.go@v11.3.1"),  # '../' after filepath.Rel
        ("..", "13.9.0", "cache/cache.go@v13.9.0"),  # must lie strictly inside project/<id>/
        ("a/..", "18.0.4", "cache/cache.go@v13.9.0"),
        ("..", "18.0.5", "sanitizes to nothing"),
        (" ", "19.3.0", "sanitizes to nothing"),
        ("", "19.3.0", "<job>/<ref>"),
        ("main", "1.0.0", "no distributed cache"),
    ],
)
def test_locate_names_keys_the_runner_refuses(key: str, version: str, reason: str) -> None:
    located = where(key, version)
    assert located.object_name is None and reason in (located.reason or "")


def test_locate_reports_metadata_rules_and_notes() -> None:
    hashed = where("main-protected", "19.0.0", hash_keys=True)
    assert hashed.hashed and hashed.stored_key == MAIN_HASH
    assert hashed.metadata_cachekey == "main-protected"  # x-amz-meta-cachekey: shells/abstract.go@v18.4.0
    assert hashed.rules == "version ≥ 19.0.0 (read up to 19.3.0)"
    sanitized = where("win\\path", "18.4.0")
    assert sanitized.metadata_cachekey == "win/path"  # the sanitized human key when hashing is off
    assert any("sanitizes the key" in note for note in sanitized.notes)
    assert where("main", "18.3.1").metadata_cachekey is None  # no metadata before 18.4.0
    assert any("used as 'cache'" in note for note in where("main", "18.0.0", path="cache/").notes)
    assert any("assumed" in note for note in where("main", "25.0.0").notes)
    assert where("main", "18.4.0~beta.5.gabc").object_name == f"runner/{TOKEN}/project/42/main"


def test_locate_needs_a_token_unless_shared() -> None:
    with pytest.raises(ValueError, match="short token"):
        locate("main", project_id=1, version=NEWEST)
    assert locate("main", project_id=1, shared=True).object_name == "project/1/main"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.5.0", "1.1.0 ≤ version < 1.9.0"),
        ("17.11.1", "17.9.0 ≤ version < 17.11.2"),
        ("17.11.3", "17.11.2 ≤ version < 18.0.0"),
        ("18.0.1", "18.0.0 ≤ version < 18.0.2"),
        ("18.0.4", "18.0.2 ≤ version < 18.0.5"),
        ("18.1.3", "18.1.3 ≤ version < 18.2.0"),
        ("18.3.1", "18.2.1 ≤ version < 18.4.0"),
        ("18.11.4", "18.4.0 ≤ version < 19.0.0"),
    ],
)
def test_rules_range_names_the_releases_with_the_same_rules(version: str, expected: str) -> None:
    assert rules_range(V(version)) == expected


def test_every_rule_cites_a_tagged_source_that_the_docs_table_shows() -> None:
    table = (Path(__file__).parents[4] / "docs" / "cache-keys.md").read_text(encoding="utf-8")
    for rule in RULES:
        first = rule.source.split(",")[0].split(" (")[0]
        assert "@v" in first and f"`{first}`" in table, rule.name


# --- parse / explain: object name → cache object ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "path", "token", "project", "key", "shard"),
    [
        (f"runner/{TOKEN}/project/42/feature/login-protected", "", TOKEN, 42, "feature/login-protected", None),
        ("project/42/build/main", "", None, 42, "build/main", None),  # pre-GitLab-9.0 default <job>/<ref>
        ("cache/runner/GR1348941AbCdEfGh/project/1/win\\x", "cache", "GR1348941AbCdEfGh", 1, "win\\x", None),
        (f"project/42/{MAIN_HASH}", "", None, 42, MAIN_HASH, None),
        (f"project/42/46/{MAIN_HASH}", "", None, 42, MAIN_HASH, "46"),
        ("project/42/ab/cd", "", None, 42, "ab/cd", None),  # a nested readable key, not a shard
        ("/cache/project/1/k", "/cache", None, 1, "k", None),  # legacy adapter
        ("cache/project/1/k", "/cache", None, 1, "k", None),  # s3v2 dropped the '/'
        ("cache/project/1/k", "cache/", None, 1, "k", None),
    ],
)
def test_parse_accepts_every_name_a_runner_writes(
    name: str, path: str, token: str | None, project: int, key: str, shard: str | None
) -> None:
    obj = parse_object_name(name, path)
    assert obj is not None
    assert (obj.short_token, obj.project_id, obj.key, obj.shard) == (token, project, key, shard)


@pytest.mark.parametrize(
    ("name", "path", "why"),
    [
        (f"project/42/47/{MAIN_HASH}", "", "not the first two hex digits"),  # cache/cache.go@v19.0.0
        ("runner/abc/project/1/", "", "folder marker"),
        ("project/1/main/", "", "folder marker"),
        ("project/1//main", "", "empty segment"),
        ("/project/1/main", "", "empty segment"),
        ("project/1/./main", "", "'.' or '..'"),
        ("project/1/../main", "", "'.' or '..'"),
        ("runner/abc/project/1", "", "not <Path>"),
        ("projects/1/main", "", "not <Path>"),
        ("runners/abc/project/1/main", "", "not <Path>"),
        ("runner/abcdefghijk/project/1/main", "", "short token"),  # 11 characters: no release makes that
        ("runner/XX1348941AbCdEfGh/project/1/main", "", "short token"),  # 17 but not GR+hex
        ("runner/ab.cd/project/1/main", "", "short token"),
        ("project/01/main", "", "project id"),
        ("project/0/main", "", "project id"),
        ("project/x/main", "", "project id"),
        ("README.md", "", "not <Path>"),
        ("cachex/project/1/main", "cache", "not under the configured Path"),
        ("project/1/main", "cache", "not under the configured Path"),
    ],
)
def test_parse_refuses_names_no_runner_writes(name: str, path: str, why: str) -> None:
    assert parse_object_name(name, path) is None
    explained = explain_object_name(name, path)
    assert explained.cache_object is None and why in (explained.reason or "")


def test_explain_reports_parts_and_writers() -> None:
    facts = explain_object_name(f"cache/runner/{TOKEN}/project/42/feature/login-2-protected", "cache").as_json()
    assert facts["layout"] == "runner" and facts["short_token"] == TOKEN and facts["project_id"] == 42
    assert (facts["key_base"], facts["index"], facts["protection"]) == ("feature/login", 2, "protected")
    assert facts["hashed"] is False
    hashed = explain_object_name(f"project/42/46/{MAIN_HASH}").as_json()
    assert hashed["hashed"] is True and hashed["index"] is None and hashed["layout"] == "shared"
    assert any("19.0.0" in who for who in hashed["written_by"])
    old = explain_object_name("project/42/win\\x-protected").as_json()
    assert any("before 18.0.5" in who for who in old["written_by"])


def test_locate_and_parse_agree() -> None:
    for version in ("1.9.0", "14.10.0", "18.0.4", "18.2.1", "18.4.0", "19.0.0"):
        for hash_keys in (False, True):
            located = where("feature/login-3-non_protected", version, hash_keys=hash_keys, path="ci")
            assert located.object_name is not None
            obj = parse_object_name(located.object_name, "ci")
            assert obj is not None and obj.short_token == TOKEN and obj.project_id == 42
            assert obj.hashed == located.hashed


# --- building objects (verification, round trip) --------------------------------------------------------------


def test_cache_object_builds_nested_and_sharded_names() -> None:
    nested = cache_object(path="a/", shared=False, short_token=TOKEN, project_id=7, key="feature/login-protected")
    assert nested.object_name == f"a/runner/{TOKEN}/project/7/feature/login-protected"
    sharded = cache_object(path="", shared=True, short_token=None, project_id=7, key=MAIN_HASH, shard=True)
    assert sharded.object_name == f"project/7/46/{MAIN_HASH}"
    assert parse_object_name(sharded.object_name) == sharded


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(path="", shared=False, short_token=None, project_id=1, key="main"),
        dict(path="", shared=True, short_token=None, project_id=1, key="a//b"),
        dict(path="", shared=True, short_token=None, project_id=1, key="a/"),
        dict(path="", shared=True, short_token=None, project_id=1, key=".."),
        dict(path="", shared=True, short_token=None, project_id=1, key="../x"),
        dict(path="", shared=True, short_token=None, project_id=1, key=""),
        dict(path="", shared=True, short_token=None, project_id=1, key="main", shard=True),
    ],
)
def test_cache_object_rejects_names_path_join_would_change(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        cache_object(**kwargs)


@pytest.mark.parametrize(
    ("path", "shared", "prefix"),
    [
        ("", False, "runner/"),
        ("", True, "project/"),
        ("ci/cache/", False, "ci/cache/runner/"),
        ("ci", True, "ci/project/"),
    ],
)
def test_layout_prefix_is_where_the_runner_writes(path: str, shared: bool, prefix: str) -> None:
    assert layout_prefix(path, shared) == prefix
    assert locate("k", project_id=1, path=path, shared=shared, short=TOKEN).object_name.startswith(prefix)  # type: ignore[union-attr]


def test_path_normalisation_is_reported() -> None:
    assert normalize_path("cache") == ("cache", None)
    cleaned, note = normalize_path("/cache//x/")
    assert cleaned == "/cache/x" and note is not None and "path.Join" in note
    assert name_prefixes("/cache") == ("/cache/", "cache/")
    assert name_prefixes("") == ("",)


def test_split_key_reads_suffixes_of_nested_keys() -> None:
    parts = split_key("feature/release-1-2-non_protected")
    assert (parts.base, parts.index, parts.protection) == ("feature/release-1", 2, "non_protected")
    with pytest.raises(ValueError):
        split_key("")


def test_hash_is_sha256_of_the_key_as_received() -> None:
    assert hashlib.sha256(b"main-protected").hexdigest() == MAIN_HASH  # guards the constants above
