"""Cache object names exactly as GitLab Runner writes them, release by release (patch level). PURE: no I/O.

    path.Join(<Path>, [runner/<short token>], project/<project id>, [<hash[:2]>], <key>)

Every rule is read from the runner's source at its release tags (GitHub mirror ``gitlabhq/gitlab-runner``) or from
GitLab's (``gitlabhq/gitlabhq``) and cited as ``file@tag``; :data:`RULES` is the table docs/cache-keys.md shows.
Whatever deletes objects acts only on names :func:`explain_object_name` accepts as a runner's cache object.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache, total_ordering
from typing import Literal

Protection = Literal["protected", "non_protected"]

# The newest release whose source these rules were read from; newer runners are assumed to write the same names.
CHECKED_UP_TO = "19.3.0"


# --- Go's path package -------------------------------------------------------------------------------------------


def go_clean(name: str) -> str:
    """Go's ``path.Clean``: drop empty and ``.`` segments, resolve ``..`` lexically (never above a root ``/``)."""
    if not name:
        return "."
    rooted = name.startswith("/")
    segments: list[str] = []
    for segment in name.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments and segments[-1] != "..":
                segments.pop()
            elif not rooted:
                segments.append("..")
            continue
        segments.append(segment)
    cleaned = "/".join(segments)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def go_join(*parts: str) -> str:
    """Go's ``path.Join``: empty parts are skipped, the rest joined with ``/`` and cleaned; ``""`` when all are empty."""
    kept = [part for part in parts if part]
    return go_clean("/".join(kept)) if kept else ""


# --- Runner versions ---------------------------------------------------------------------------------------------

_VERSION = re.compile(r"^v?(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)(?P<suffix>[~+-].*)?$")


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A runner release, ``major.minor.patch``: rules start at patch releases (18.0.5, 18.1.3, 18.2.1 …).

    A suffix (``~beta.123.gabcdef``, ``-rc1``) is kept for display; a pre-release is given the rules of its release.
    """

    major: int
    minor: int
    patch: int
    suffix: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION.match(text.strip())
        if match is None:
            raise ValueError(
                f"not a runner version: {text!r} (give major.minor.patch, e.g. 18.4.0: rules change between patch releases)"
            )
        return cls(int(match["major"]), int(match["minor"]), int(match["patch"]), match["suffix"] or "")

    @property
    def _triple(self) -> tuple[int, int, int]:
        return self.major, self.minor, self.patch

    def __lt__(self, other: Version) -> bool:
        return self._triple < other._triple

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._triple == other._triple

    def __hash__(self) -> int:
        return hash(self._triple)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}{self.suffix}"

    @property
    def line(self) -> tuple[int, int]:
        return self.major, self.minor


NEWEST = Version.parse(CHECKED_UP_TO)


@dataclass(frozen=True)
class Rule:
    """One behaviour of the runner and the releases that have it.

    ``since`` names the first release of each release line that has it (backports make this a list: 18.0.5,
    18.1.3, 18.2.1); the last entry holds for every later release. ``until`` is the first release without it.
    """

    name: str
    since: tuple[Version, ...]
    what: str
    source: str
    until: Version | None = None

    def applies(self, version: Version) -> bool:
        if self.until is not None and version >= self.until:
            return False
        *backports, first_for_all = self.since
        if version >= first_for_all:
            return True
        return any(version.line == start.line and version >= start for start in backports)

    @property
    def versions(self) -> str:
        """The releases that have the rule, in words: ``17.11.2–17.11.x, 18.0.2–18.0.x, ≥ 18.1.0 (< 18.2.0)``."""
        *backports, first_for_all = self.since
        words = [f"{start}–{start.major}.{start.minor}.x" for start in backports]
        words.append(f"{first_for_all} – {self.until} (excl.)" if self.until else f"≥ {first_for_all}")
        return ", ".join(words)


def _v(text: str) -> Version:
    return Version.parse(text)


RULE_S3_CACHE = Rule(
    "s3-cache",
    (_v("1.1.0"),),
    "distributed S3 cache: runner/<short token>/project/<id>/<key>",
    "shells/cache.go@v1.1.0",
)
RULE_PATH_SHARED = Rule(
    "path-shared",
    (_v("1.9.0"),),
    "[runners.cache] Path prefix and Shared (no runner/<short token>/)",
    "shells/cache.go@v1.9.0",
)
RULE_GUARD_REL = Rule(
    "guard-rel",
    (_v("11.3.1"),),
    "a key whose path leaves the project folder ('../' after filepath.Rel) writes nothing",
    "cache/cache.go@v11.3.1",
    until=_v("13.9.0"),
)
RULE_GUARD_PREFIX = Rule(
    "guard-prefix",
    (_v("13.9.0"),),
    "the name must lie strictly inside project/<id>/ (keys '.', '..', 'a/..' write nothing)",
    "cache/cache.go@v13.9.0",
)
RULE_TOKEN_GR = Rule(
    "token-gr",
    (_v("14.10.0"),),
    "short token keeps 17 characters of a GR+7-hex rotation token",
    "helpers/shorten_token.go@v14.10.0",
    until=_v("18.2.0"),
)
RULE_TOKEN_GLRT = Rule(
    "token-glrt", (_v("15.9.0"),), "glrt- tokens: token[5:14]", "helpers/shorten_token.go@v15.9.0", until=_v("18.2.0")
)
RULE_TOKEN_GLCBT = Rule(
    "token-glcbt", (_v("17.9.0"),), "glcbt- tokens: token[6:15]", "helpers/shorten_token.go@v17.9.0", until=_v("18.2.0")
)
RULE_TOKEN_GLRTR = Rule(
    "token-glrtr",
    (_v("17.11.2"), _v("18.0.2"), _v("18.1.0")),
    "glrtr- tokens: token[6:15]",
    "helpers/shorten_token.go@v17.11.2, @v18.0.2, @v18.1.0 (not in @v18.0.0)",
    until=_v("18.2.0"),
)
RULE_TOKEN_STRIP = Rule(
    "token-strip",
    (_v("18.2.0"),),
    "strip glrt-[t1_|t2_|t3_], t1_/t2_/t3_, glrtr-, then glcbt-, then GR+7 hex; keep 9 characters",
    "helpers/shorten_token.go@v18.2.0",
)
RULE_S3V2_TRIM = Rule(
    "s3v2-trim",
    (_v("17.5.0"),),
    "the default s3v2 adapter drops a leading '/' of the name (not with FF_USE_LEGACY_S3_CACHE_ADAPTER)",
    "cache/s3v2/adapter.go@v17.5.0, cache/cache.go@v17.5.0",
)
RULE_SANITIZE = Rule(
    "sanitize",
    (_v("18.0.5"), _v("18.1.3"), _v("18.2.1")),
    "uploads sanitize the key: %2F→/, %2E→., \\→/, rooted clean, trailing whitespace of the last segment(s) dropped",
    "shells/abstract.go@v18.0.5 (archiveCache), @v18.4.0; cache/cachekey/cachekey.go@v18.10.0",
)
RULE_HASH = Rule(
    "hash",
    (_v("18.4.0"),),
    "FF_HASH_CACHE_KEYS (default off): key = sha256 hex of the expanded key, unsanitized; x-amz-meta-cachekey",
    "shells/abstract.go@v18.4.0 (newCacheConfig, addCacheUploadCommand), helpers/featureflags/flags.go@v18.4.0",
)
RULE_SHARD = Rule(
    "shard",
    (_v("19.0.0"),),
    "hashed keys are sharded: project/<id>/<hash[:2]>/<hash>",
    "cache/cache.go@v19.0.0 (GetAdapter sharded), shells/abstract.go@v19.0.0",
)

RULES: tuple[Rule, ...] = (
    RULE_S3_CACHE,
    RULE_PATH_SHARED,
    RULE_GUARD_REL,
    RULE_GUARD_PREFIX,
    RULE_TOKEN_GR,
    RULE_TOKEN_GLRT,
    RULE_TOKEN_GLCBT,
    RULE_TOKEN_GLRTR,
    RULE_TOKEN_STRIP,
    RULE_S3V2_TRIM,
    RULE_SANITIZE,
    RULE_HASH,
    RULE_SHARD,
)


def rules_range(version: Version) -> str:
    """The releases around ``version`` that follow exactly the same rules, e.g. ``18.1.3 ≤ version < 18.2.0``."""

    def ruleset(v: Version) -> frozenset[str]:
        return frozenset(rule.name for rule in RULES if rule.applies(v))

    starts = {start for rule in RULES for start in rule.since}
    # A backport starts mid-line: the line's x.y.0 is a boundary too (18.0.0 lacks what 17.11.2 and 18.0.2 have).
    lines = {Version(start.major, start.minor, 0) for start in starts}
    boundaries = sorted(starts | lines | {rule.until for rule in RULES if rule.until})
    own = ruleset(version)
    below = [b for b in boundaries if b <= version]
    low = below[-1] if below else None
    for earlier in reversed(below[:-1]):
        if ruleset(earlier) != own:
            break
        low = earlier
    high = next((b for b in boundaries if b > version and ruleset(b) != own), None)
    if low is None:
        return f"version < {high}"
    if high is None:
        return f"version ≥ {low} (read up to {CHECKED_UP_TO})"
    return f"{low} ≤ version < {high}"


# --- Short token -------------------------------------------------------------------------------------------------

_GR_ROTATION = re.compile(r"^GR[0-9A-Fa-f]{7}")
_STRIP_18_2 = (re.compile(r"^glrt-(t[123]_)?|^t[123]_|^glrtr-"), re.compile(r"^glcbt-"), _GR_ROTATION)


def short_token(token: str, version: Version) -> str:
    """``helpers.ShortenToken`` of the given release: the ``runner/<short token>/`` segment of non-shared caches."""
    if RULE_TOKEN_STRIP.applies(version):
        for prefix in _STRIP_18_2:  # each applied once, in order (regexp.ReplaceAllString with ^)
            token = prefix.sub("", token, count=1)
        return token[:9]
    if len(token) < 8:
        return token
    # Go slices token[5:14] / token[6:15] and would panic on shorter tokens; Python's slice just stops.
    if RULE_TOKEN_GLRT.applies(version) and token.startswith("glrt-"):
        return token[5:14]
    if RULE_TOKEN_GLRTR.applies(version) and token.startswith("glrtr-"):
        return token[6:15]
    if RULE_TOKEN_GLCBT.applies(version) and token.startswith("glcbt-"):
        return token[6:15]
    if RULE_TOKEN_GR.applies(version) and len(token) >= 17 and _GR_ROTATION.match(token):
        return token[:17]
    return token[:8]


# --- The key -----------------------------------------------------------------------------------------------------

_ENCODED = re.compile(r"%2[fFeE]|\\")


def _go_space(char: str) -> bool:
    """Go's ``unicode.IsSpace``: Python's ``isspace`` minus the ASCII separators U+001C–U+001F."""
    return char.isspace() and char not in "\x1c\x1d\x1e\x1f"


def _trim_right_space(text: str) -> str:
    end = len(text)
    while end and _go_space(text[end - 1]):
        end -= 1
    return text[:end]


def sanitize_key(key: str) -> str:
    """The runner's key sanitizer (FF_HASH_CACHE_KEYS off, from 18.0.5/18.1.3/18.2.1); ``""`` when nothing is left.

    ``cache/cachekey/cachekey.go@v18.10.0`` ``Sanitize``; the ``sanitizeCacheKey`` of ``shells/abstract.go@v18.0.5``
    differs only in how it spells a trailing ``.``/``..`` segment, which the final ``path.Join`` resolves the same way.
    """
    replaced = _ENCODED.sub(lambda match: "." if match.group().lower() == "%2e" else "/", key)
    segments = go_clean("/" + replaced)[1:].split("/")
    while segments:
        segments[-1] = _trim_right_space(segments[-1])
        if segments[-1]:
            break
        segments.pop()
    return "/".join(segments)


def hash_key(key: str) -> str:
    """FF_HASH_CACHE_KEYS: sha256 hex of the expanded key, suffixes included (``shells/abstract.go@v18.4.0``)."""
    return hashlib.sha256(key.encode()).hexdigest()


_SUFFIX = re.compile(
    r"(?P<base>.+?)(?:-(?P<index>0|[1-9][0-9]*))?(?:-(?P<protection>protected|non_protected))?", re.DOTALL
)


@dataclass(frozen=True)
class CacheKeyParts:
    """A key split into GitLab's suffixes (``Ci::Build#cache``: ``-<index>`` then ``-protected``/``-non_protected``).

    Ambiguous by nature: ``release-1`` may be a branch; suffixes are read greedily from the end of the last segment.
    """

    base: str
    index: int | None
    protection: Protection | None


def split_key(key: str) -> CacheKeyParts:
    """``<base>[-<index>][-protected|-non_protected]``, the suffixes read greedily (no index counts as none)."""
    match = _SUFFIX.fullmatch(key)
    if match is None:  # only the empty string
        raise ValueError("empty cache key")
    index = match["index"]
    return CacheKeyParts(match["base"], int(index) if index is not None else None, match["protection"])  # type: ignore[arg-type]


# --- Locate: key → object name -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """Where a runner of ``version`` writes ``key``; ``object_name`` is None when it writes nothing (``reason``)."""

    key: str
    version: Version
    object_name: str | None
    short_token: str | None
    hashed: bool
    stored_key: str | None = None
    metadata_cachekey: str | None = None
    reason: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def rules(self) -> str:
        return rules_range(self.version)

    def as_json(self) -> dict[str, object]:
        return {
            "object_name": self.object_name,
            "short_token": self.short_token,
            "rules": self.rules,
            "runner_version": str(self.version),
            "key": self.key,
            "stored_key": self.stored_key,
            "hashed": self.hashed,
            "x_amz_meta_cachekey": self.metadata_cachekey,
            "reason": self.reason,
            "notes": list(self.notes),
            "applied_rules": [f"{rule.what} ({rule.source})" for rule in RULES if rule.applies(self.version)],
        }


@lru_cache(maxsize=64)
def normalize_path(path: str) -> tuple[str, str | None]:
    """``Path`` as the runner's ``path.Join`` uses it, and a note when that differs from what was given."""
    cleaned = go_join(path)
    if cleaned == path:
        return cleaned, None
    shown = cleaned or "(empty)"
    return (
        cleaned,
        f"Path {path!r} is used as {shown!r}: the runner joins it with path.Join, which cleans it (cache/cache.go)",
    )


def _inside(base: str, full: str, version: Version) -> bool:
    """The runner's check that the name stays in the project folder, as of ``version``."""
    if RULE_GUARD_PREFIX.applies(version):
        return full.startswith(base + "/")
    if RULE_GUARD_REL.applies(version):  # filepath.Rel(base, full) must not start with "../"
        base_parts, full_parts = base.split("/"), full.split("/")
        common = 0
        while common < min(len(base_parts), len(full_parts)) and base_parts[common] == full_parts[common]:
            common += 1
        if ".." in base_parts[common:]:
            return False  # filepath.Rel returns an error: the runner writes nothing
        up = len(base_parts) - common
        return up <= 1 and not (up == 1 and full_parts[common:])
    return True


def locate(
    key: str,
    *,
    project_id: int,
    version: Version = NEWEST,
    path: str = "",
    shared: bool = False,
    short: str | None = None,
    hash_keys: bool = False,
    legacy_s3_adapter: bool = False,
) -> Location:
    """The object a runner of ``version`` writes for ``key`` (the key as it receives it: GitLab's suffixes applied).

    ``short`` is the runner's short token (:func:`short_token`); it is needed unless the cache is shared.
    """
    notes: list[str] = []
    if version > NEWEST:
        notes.append(f"rules were read up to {CHECKED_UP_TO}; {version} is assumed to write the same names")
    if version.suffix:
        notes.append(
            f"{version} is a pre-release: the rules of {version.major}.{version.minor}.{version.patch} are used"
        )

    def nothing(reason: str, token: str | None = None, hashed: bool = False) -> Location:
        return Location(key, version, None, token, hashed, reason=reason, notes=tuple(notes))

    if not RULE_S3_CACHE.applies(version):
        return nothing("runners before 1.1.0 have no distributed cache (shells/cache.go@v1.1.0)")
    if not RULE_PATH_SHARED.applies(version) and (path or shared):
        notes.append("runners before 1.9.0 have no Path or Shared setting: both ignored (shells/cache.go@v1.9.0)")
        path, shared = "", False
    path, note = normalize_path(path)
    if note:
        notes.append(note)
    if not shared and short is None:
        raise ValueError("a cache that is not shared needs the runner's token or short token")
    token = None if shared else short
    if not key:
        return nothing(
            "an empty key: the runner uses <job>/<ref> instead (only GitLab < 9.0 sends no key); give that key", token
        )

    hashed = hash_keys and RULE_HASH.applies(version)
    if hash_keys and not hashed:
        notes.append(f"FF_HASH_CACHE_KEYS exists from 18.4.0 ({RULE_HASH.source.split(' ')[0]}); ignored for {version}")
    if hashed:
        stored, human = hash_key(key), key
    elif RULE_SANITIZE.applies(version):
        stored = human = sanitize_key(key)
        if not stored:
            return nothing(
                f"the key sanitizes to nothing, so the runner writes no cache ({RULE_SANITIZE.source.split(' ')[0]})",
                token,
            )
        if stored != key:
            notes.append(f"the runner sanitizes the key {key!r} to {stored!r} ({RULE_SANITIZE.source.split(' (')[0]})")
    else:
        stored = human = key

    base = go_join(path, go_join("runner", token) if token is not None else "", "project", str(project_id))
    shard = stored[:2] if hashed and RULE_SHARD.applies(version) else ""
    full = go_join(base, shard, stored)
    if not _inside(base, full, version):
        source = (RULE_GUARD_PREFIX if RULE_GUARD_PREFIX.applies(version) else RULE_GUARD_REL).source
        return nothing(
            f"the key leads outside project/{project_id}/: the runner refuses it and writes no cache ({source})",
            token,
            hashed,
        )
    if full.startswith("/"):
        if RULE_S3V2_TRIM.applies(version) and not legacy_s3_adapter:
            full = full.lstrip("/")
            notes.append(f"the s3v2 adapter drops the leading '/' ({RULE_S3V2_TRIM.source.split(',')[0]})")
        else:
            notes.append("the legacy S3 adapter keeps the leading '/' in the object name")
    metadata = human if RULE_HASH.applies(version) else None
    return Location(key, version, full, token, hashed, stored, metadata, notes=tuple(notes))


# --- Explain / parse: object name → what a runner wrote ----------------------------------------------------------

_PROJECT_ID = re.compile(r"^[1-9][0-9]*$")
_SHORT_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,9}$|^GR[0-9A-Fa-f]{7}[A-Za-z0-9_-]{8}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEX2 = re.compile(r"^[0-9a-f]{2}$")
_UNSANITIZED = re.compile(r"%2[fFeE]|\\")

RANGE_UNSANITIZED = "runners before 18.0.5 / 18.1.3 / 18.2.1 with FF_HASH_CACHE_KEYS off (shells/abstract.go@v18.0.5)"


@dataclass(frozen=True)
class CacheObject:
    """One runner cache object, parsed from its name (relative to the runner's configured Path)."""

    path: str
    short_token: str | None
    project_id: int
    key: str
    shard: str | None = None

    @property
    def shared(self) -> bool:
        return self.short_token is None

    @property
    def hashed(self) -> bool:
        """FF_HASH_CACHE_KEYS was on: the readable key is only in ``x-amz-meta-cachekey``."""
        return self.shard is not None or bool(_SHA256.match(self.key))

    @property
    def parts(self) -> CacheKeyParts:
        return split_key(self.key)

    @property
    def object_name(self) -> str:
        namespace = go_join("runner", self.short_token) if self.short_token is not None else ""
        return go_join(self.path, namespace, "project", str(self.project_id), self.shard or "", self.key)


def cache_object(
    *, path: str, shared: bool, short_token: str | None, project_id: int, key: str, shard: bool = False
) -> CacheObject:
    """The object for ``key`` as stored (already sanitized or hashed; :func:`locate` does that from a raw key).

    ``shard`` is for hashed keys of runners ≥ 19.0.0: the shard is the hash's first two hex digits.
    """
    if not shared and not short_token:
        raise ValueError("a non-shared cache needs the runner's short token")
    if not key or go_clean(key) != key or key.startswith(("/", "../")) or key in {".", ".."}:
        raise ValueError(f"invalid cache key {key!r}: not a key as the runner stores it (path.Join would change it)")
    if shard and not _SHA256.match(key):
        raise ValueError("only hashed (sha256) keys are sharded")
    return CacheObject(
        normalize_path(path)[0], None if shared else short_token, project_id, key, key[:2] if shard else None
    )


@dataclass(frozen=True)
class Explanation:
    """What an object name is: a runner's cache object (and which runners write it), or why not."""

    name: str
    cache_object: CacheObject | None
    reason: str | None = None
    written_by: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        obj = self.cache_object
        if obj is None:
            return {"name": self.name, "cache_object": False, "reason": self.reason, "notes": list(self.notes)}
        parts = None if obj.hashed else obj.parts
        return {
            "name": self.name,
            "cache_object": True,
            "layout": "shared" if obj.shared else "runner",
            "path": obj.path,
            "short_token": obj.short_token,
            "project_id": obj.project_id,
            "key": obj.key,
            "hashed": obj.hashed,
            "shard": obj.shard,
            "key_base": parts.base if parts else None,
            "index": parts.index if parts else None,
            "protection": parts.protection if parts else None,
            "written_by": list(self.written_by),
            "notes": list(self.notes),
        }


@lru_cache(maxsize=64)
def name_prefixes(path: str) -> tuple[str, ...]:
    """Where a runner configured with ``path`` writes: the legacy adapter keeps a leading '/', s3v2 drops it."""
    prefix = go_join(normalize_path(path)[0], "x")[:-1]  # "" or "<path>/" ("/" for Path "/")
    return (prefix, prefix.lstrip("/")) if prefix.startswith("/") else (prefix,)


def _parse(name: str, path: str) -> CacheObject | str:
    """The cache object, or why no runner configured with ``path`` writes ``name``. Runs per listed object: keep it lean."""
    prefix = next((p for p in name_prefixes(path) if name.startswith(p)), None)
    if prefix is None:
        return f"not under the configured Path {normalize_path(path)[0]!r}"
    rest = name[len(prefix) :]
    if rest.endswith("/"):
        return "a folder marker (ends in '/'): path.Join never ends a name with '/'"
    segments = rest.split("/")
    if "" in segments:
        return "an empty segment ('//' or a leading '/'): path.Join cleans those away"
    if "." in segments or ".." in segments:
        return "a '.' or '..' segment: path.Join resolves those"
    token = None
    if segments[0] == "runner":
        if len(segments) < 2 or not _SHORT_TOKEN.match(segments[1]):
            return (
                "after 'runner/' comes no short token a runner release makes: 1–9 characters, or 17 for a GR… token "
                "(helpers/shorten_token.go@v14.10.0, @v18.2.0)"
            )
        token = segments[1]
        segments = segments[2:]
    if len(segments) < 3 or segments[0] != "project":
        return "not <Path>/[runner/<short token>/]project/<id>/<key>: not a runner's cache object (cache/cache.go)"
    if not _PROJECT_ID.match(segments[1]):
        return f"{segments[1]!r} is not a project id as the runner writes it (decimal, no leading zero)"
    key_segments = segments[2:]
    if len(key_segments) == 2 and _HEX2.match(key_segments[0]) and _SHA256.match(key_segments[1]):
        if key_segments[1][:2] != key_segments[0]:
            return (
                f"shard {key_segments[0]!r} is not the first two hex digits of the hash: a runner's shard always is "
                f"({RULE_SHARD.source.split(' ')[0]})"
            )
        return CacheObject(normalize_path(path)[0], token, int(segments[1]), key_segments[1], key_segments[0])
    return CacheObject(normalize_path(path)[0], token, int(segments[1]), "/".join(key_segments))


def _token_eras(token: str) -> str:
    if len(token) == 17:
        return f"a GR… rotation token, runners {RULE_TOKEN_GR.versions} ({RULE_TOKEN_GR.source})"
    if len(token) == 9:
        return (
            "a glrt- token from 15.9.0, glcbt- from 17.9.0, glrtr- from 17.11.2/18.0.2/18.1.0, or any token from 18.2.0 "
            "(helpers/shorten_token.go)"
        )
    if len(token) == 8:
        return "token[:8]: runners before 18.2.0, or a token of 8 characters after 18.2.0's prefix stripping"
    return "a token shorter than 8 characters (kept whole by every release)"


def _written_by(obj: CacheObject, legacy_prefix: bool) -> list[str]:
    """The runners (and settings) that write ``obj``'s name, each with its source."""
    written_by = []
    if obj.short_token is not None:
        written_by.append(f"a non-shared runner with short token {obj.short_token!r}: {_token_eras(obj.short_token)}")
    if obj.short_token is None:
        written_by.append(
            f"a runner with Shared = true, runners {RULE_PATH_SHARED.versions} ({RULE_PATH_SHARED.source})"
        )
    elif obj.path:
        written_by.append(f"a runner with Path set, runners {RULE_PATH_SHARED.versions} ({RULE_PATH_SHARED.source})")
    if legacy_prefix:
        written_by.append(
            "the legacy S3 adapter (before 17.5.0, or FF_USE_LEGACY_S3_CACHE_ADAPTER): it keeps a leading '/'"
        )
    elif obj.path.startswith("/"):
        written_by.append(f"the s3v2 adapter, runners {RULE_S3V2_TRIM.versions}: it drops the leading '/' of the Path")
    if obj.shard is not None:
        written_by.append(f"FF_HASH_CACHE_KEYS on, runners {RULE_SHARD.versions} ({RULE_SHARD.source.split(' (')[0]})")
    elif obj.hashed:
        written_by.append(f"FF_HASH_CACHE_KEYS on, runners 18.4.0 – 19.0.0 (excl.) ({RULE_HASH.source.split(' (')[0]})")
    elif _UNSANITIZED.search(obj.key) or _trim_right_space(obj.key) != obj.key:
        written_by.append(f"a key with '\\', '%2F', '%2E' or trailing whitespace: {RANGE_UNSANITIZED}")
    else:
        written_by.append("FF_HASH_CACHE_KEYS off (any release)")
    return written_by


def explain_object_name(name: str, path: str = "") -> Explanation:
    """Whether a runner configured with ``path`` can have written ``name``; if so, its parts and the runners that can."""
    cleaned, note = normalize_path(path)
    notes = [note] if note else []
    parsed = _parse(name, path)
    if isinstance(parsed, str):
        return Explanation(name, None, parsed, notes=tuple(notes))
    if parsed.hashed and parsed.shard is None:
        notes.append("a readable key of 64 hex digits looks the same; it is treated as hashed and never judged by name")
    legacy = name.startswith("/")
    return Explanation(name, parsed, written_by=tuple(_written_by(parsed, legacy)), notes=tuple(notes))


def parse_object_name(name: str, path: str = "") -> CacheObject | None:
    """The cache object ``name`` is, or None when no runner configured with ``path`` writes such a name."""
    parsed = _parse(name, path)
    return None if isinstance(parsed, str) else parsed


def layout_prefix(path: str, shared: bool) -> str:
    """The prefix under which a runner with these settings (and the s3v2 adapter) writes every cache object."""
    return name_prefixes(path)[-1] + ("project/" if shared else "runner/")


def possible_keys(key: str) -> tuple[str, str, str]:
    """The key segment(s) of a job's cache object when its log says ``Creating cache <key>...`` (the readable key).

    Hashing off: the key itself (already sanitized); FF_HASH_CACHE_KEYS on: its sha256 (18.4.0 – 18.11.x) or the
    sharded sha256 (≥ 19.0.0) — ``shells/abstract.go@v18.4.0`` logs ``HumanKey``, ``cache/cache.go@v19.0.0`` shards.
    """
    digest = hash_key(key)
    return key, digest, f"{digest[:2]}/{digest}"


def possible_names(*, path: str, shared: bool, short_token: str | None, project_id: int, key: str) -> tuple[str, ...]:
    """The object names of :func:`possible_keys` under these settings (s3v2 adapter: no leading '/')."""
    namespace = "" if shared else go_join("runner", short_token or "")
    base = go_join(normalize_path(path)[0], namespace, "project", str(project_id))
    return tuple(go_join(base, tail).lstrip("/") for tail in possible_keys(key))
