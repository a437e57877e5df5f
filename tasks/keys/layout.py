"""Cache object keys exactly as GitLab Runner writes them.

Layout (gitlab-runner ``cache/cache.go``, GitLab ``Ci::Build``)::

    [<Path>/] [runner/<short-token>/] project/<project-id>/ [<hh>/] <key>[-<index>][-protected|-non_protected]

Everything that deletes objects goes through :func:`parse_object_name`: a name that does not parse is not a
cache object and is never touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Protection = Literal["protected", "non_protected"]

_PREFIXES_18_2 = (
    re.compile(r"^glrt-(t[123]_)?|^t[123]_|^glrtr-"),
    re.compile(r"^glcbt-"),
    re.compile(r"^GR[0-9A-Fa-f]{7}"),
)
_GR_ROTATION = re.compile(r"^GR[0-9A-Fa-f]{7}")
_TOKEN_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,17}$")
_PROJECT_ID = re.compile(r"^[1-9][0-9]*$")
_SHARD = re.compile(r"^[0-9a-f]{2}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SUFFIX = re.compile(r"^(?P<base>.+?)(?:-(?P<index>0|[1-9][0-9]*))?(?:-(?P<protection>protected|non_protected))?$")


def _version(version: str) -> tuple[int, int]:
    match = re.match(r"^v?(\d+)\.(\d+)", version.strip())
    if not match:
        raise ValueError(f"not a runner version: {version!r} (expected e.g. '18.2.0')")
    return int(match.group(1)), int(match.group(2))


def short_token(token: str, runner_version: str) -> str:
    """The token fragment a runner of ``runner_version`` puts into non-shared cache keys.

    Mirrors ``helpers.ShortenToken`` of each runner era, because a bucket often holds objects written by
    several runner versions and the pruner must recognise all of them.
    """
    version = _version(runner_version)
    if version >= (18, 2):
        for prefix in _PREFIXES_18_2:
            token = prefix.sub("", token)
        return token[:9]
    if len(token) < 8:
        return token
    gr_token = token.startswith("GR") and len(token) >= 17 and bool(_GR_ROTATION.match(token))
    if version >= (15, 9):
        if token.startswith("glrt-"):
            return token[5:14]
        if token.startswith(("glrtr-", "glcbt-")):
            return token[6:15]
    return token[:17] if gr_token else token[:8]


def layout_prefix(path: str, shared: bool) -> str:
    """The prefix under which a runner with these settings writes every cache object (ends with ``/``)."""
    root = f"{path}/" if path else ""
    return f"{root}project/" if shared else f"{root}runner/"


@dataclass(frozen=True)
class CacheKeyParts:
    """A cache key split into GitLab's suffixes. Ambiguous by nature: ``release-1`` may be a branch slug."""

    base: str
    index: int | None
    protection: Protection | None


def split_key(key: str) -> CacheKeyParts:
    """Split ``<key>[-<index>][-protected|-non_protected]`` into its parts (suffixes read greedily)."""
    match = _SUFFIX.match(key)
    if match is None:  # only the empty string
        raise ValueError("empty cache key")
    index = match.group("index")
    return CacheKeyParts(match.group("base"), int(index) if index is not None else None, match.group("protection"))


@dataclass(frozen=True)
class CacheObject:
    """Where one cache object lives, as parsed from (or built into) its object name."""

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
        """True when ``FF_HASH_CACHE_KEYS`` was on: the readable key is in ``x-amz-meta-cachekey``."""
        return bool(_SHA256.match(self.key))

    @property
    def parts(self) -> CacheKeyParts:
        return split_key(self.key)

    @property
    def object_name(self) -> str:
        segments = [self.path] if self.path else []
        if self.short_token is not None:
            segments += ["runner", self.short_token]
        segments += ["project", str(self.project_id)]
        if self.shard is not None:
            segments.append(self.shard)
        segments.append(self.key)
        return "/".join(segments)


def cache_object(
    *, path: str, shared: bool, short_token: str | None, project_id: int, key: str, shard: bool = False
) -> CacheObject:
    """The object a runner with these settings writes for ``key``.

    ``shard`` is for runner ≥ 19.0 hashed keys; we take the hash's first two hex digits as the shard (the parser
    accepts any two-hex-digit shard, so a different rule upstream only costs recognition, never a wrong delete).
    """
    if not shared and not short_token:
        raise ValueError("a non-shared cache needs the runner's short token")
    if not key or "/" in key or key in {".", ".."}:
        raise ValueError(f"invalid cache key {key!r}: GitLab cache keys are one path segment")
    if shard and not _SHA256.match(key):
        raise ValueError("only hashed (sha256) keys are sharded")
    return CacheObject(
        path=path,
        short_token=None if shared else short_token,
        project_id=project_id,
        key=key,
        shard=key[:2] if shard else None,
    )


def parse_object_name(name: str, path: str = "") -> CacheObject | None:
    """Parse an object name written by a runner configured with ``path``; ``None`` when it is not a cache object."""
    if path:
        if not name.startswith(f"{path}/"):
            return None
        name = name[len(path) + 1 :]
    segments = name.split("/")
    token = None
    if segments[0] == "runner":
        if len(segments) < 5 or not _TOKEN_SEGMENT.match(segments[1]):
            return None
        token = segments[1]
        segments = segments[2:]
    if len(segments) not in (3, 4) or segments[0] != "project" or not _PROJECT_ID.match(segments[1]):
        return None
    shard = None
    if len(segments) == 4:
        shard, key = segments[2], segments[3]
        if not (_SHARD.match(shard) and _SHA256.match(key)):
            return None
    else:
        key = segments[2]
        if key in {"", ".", ".."}:
            return None
    return CacheObject(path=path, short_token=token, project_id=int(segments[1]), key=key, shard=shard)
