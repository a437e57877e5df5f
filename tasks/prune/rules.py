"""Which cache objects a prune removes, and why: pure decisions on parsed object names, no I/O.

Memory is the design constraint: a bucket can hold millions of objects, so nothing here keeps one entry per
object. Per-object rules (``--max-age-days``, ``--keep``, ``--deleted-refs``) decide from the object alone.
The two rules that need global knowledge keep bounded summaries gathered in planning passes over the listing:

- ``--superseded`` keeps, per project, the first/last write time of each cache index, and per
  (runner scope, project, key base, protection) group the highest index seen: memory grows with groups only.
- ``--max-total-size`` finds the "oldest first" cut-off with :class:`SizeHistogram`, a histogram of bytes by
  sort key with at most ``max_bins`` bins that coarsens itself; a further pass refines the one bin the cut-off
  falls in, until the cut-off is exact. Memory is constant; the number of passes grows with log(objects).

docs/prune.md states every rule exactly.
"""

from __future__ import annotations

import fnmatch
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field, field_validator, model_validator

from runner_cache.tasks.keys.layout import CacheObject

_SIZE = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[KMGTP]i?)?B?\s*$", re.IGNORECASE)
_UNITS = (
    {"": 1}
    | {p: 1000 ** (n + 1) for n, p in enumerate("KMGTP")}
    | {f"{p}I": 1024 ** (n + 1) for n, p in enumerate("KMGTP")}
)
# What CI_COMMIT_REF_SLUG can look like: lowercase a-z, 0-9 and '-', at most 63 characters, no '-' at the ends.
_REF_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# GitLab's cache key when a job sets none: never the slug of a branch.
DEFAULT_CACHE_KEY = "default"
# ``cache:key:files`` keys end in the SHA-1 of the files (after an optional prefix): not a branch either.
_FILES_KEY = re.compile(r"(?:^|-)[0-9a-f]{40}$")
# What ``git check-ref-format`` refuses in a branch or tag name (``CI_COMMIT_REF_NAME``, which may hold '/').
_NOT_A_REF_NAME = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(?:/|$)|^[./]|[./]$|^@$")


def parse_size(text: str) -> int:
    """Bytes from ``500M``, ``1.5G``, ``10Gi``, ``2TB`` or ``1048576``: K/M/G/T/P are powers of 1000, Ki/Mi/… of 1024."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError("not a size: use e.g. 500M, 10G, 10Gi or a number of bytes")
    return int(float(match.group("number")) * _UNITS[(match.group("unit") or "").upper()])


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


class PruneOptions(BaseModel):
    """The rules of one prune run; the CLI flags and the flow parameters map onto these fields one to one."""

    dry_run: bool = Field(False, description="Name what would be deleted; delete nothing.")
    max_age_days: float | None = Field(
        None, gt=0, description="Delete cache objects last written more than this many days ago."
    )
    superseded: bool = Field(
        False, description="Delete objects of an older cache index once the same key has a newer one."
    )
    deleted_refs: bool = Field(
        False, description="Delete keys that are the slug of no existing branch or tag (needs GitLab)."
    )
    max_total_size: str | None = Field(
        None, description="Budget for all cache objects, e.g. 50G or 40Gi; above it the oldest go first."
    )
    keep: list[str] = Field(
        default_factory=list, description="Globs (on the cache key or the object name) that are never deleted."
    )
    max_deletions: int | None = Field(None, ge=1, description="Stop deleting after this many objects, and say so.")

    @field_validator("max_total_size")
    @classmethod
    def _size_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value

    @field_validator("keep")
    @classmethod
    def _globs_not_empty(cls, value: list[str]) -> list[str]:
        if any(not glob.strip() for glob in value):
            raise ValueError("a --keep glob must not be empty")
        return value

    @model_validator(mode="after")
    def _some_rule(self) -> PruneOptions:
        if not (self.max_age_days or self.superseded or self.deleted_refs or self.max_total_size is not None):
            raise ValueError(
                "choose at least one rule: --max-age-days, --superseded, --deleted-refs or --max-total-size"
            )
        return self

    @property
    def max_total_bytes(self) -> int | None:
        return None if self.max_total_size is None else parse_size(self.max_total_size)


@dataclass(frozen=True, slots=True)
class Listed:
    """One entry of the listing: the name, size and last write of an object."""

    name: str
    size: int
    last_modified: datetime


def sort_key(item: Listed) -> int:
    """Oldest first, as one integer: milliseconds of the last write, ties broken by a hash of the name."""
    millis = int(item.last_modified.timestamp() * 1000)
    return (millis << 32) | zlib.crc32(item.name.encode())


def ref_slug(ref: str) -> str:
    """``CI_COMMIT_REF_SLUG`` of a branch or tag: lowercased, non-alphanumerics to '-', 63 characters, no '-' at the ends."""
    return re.sub(r"[^a-z0-9]", "-", ref.lower())[:63].strip("-")


@dataclass(frozen=True)
class LiveRefs:
    """A project's live branches and tags: their names (``CI_COMMIT_REF_NAME``) and slugs (``CI_COMMIT_REF_SLUG``)."""

    names: frozenset[str]
    slugs: frozenset[str]

    @classmethod
    def of(cls, names: Iterable[str]) -> LiveRefs:
        names = frozenset(names)
        return cls(names, frozenset(ref_slug(name) for name in names))

    def __contains__(self, text: object) -> bool:
        return text in self.names or text in self.slugs


def could_be_ref_name(text: str) -> bool:
    """Whether git accepts ``text`` as a branch or tag name (``git check-ref-format``), e.g. ``feature/login``."""
    return not _NOT_A_REF_NAME.search(text)


def kept_by(globs: list[str], obj: CacheObject, name: str) -> str | None:
    """The first ``--keep`` glob matching the cache key or the full object name."""
    return next((glob for glob in globs if fnmatch.fnmatchcase(obj.key, glob) or fnmatch.fnmatchcase(name, glob)), None)


def age_reason(item: Listed, now: datetime, max_age_days: float) -> str:
    age = (now - item.last_modified).total_seconds() / 86400
    return f"max-age: last written {age:.1f} days ago (limit {max_age_days:g})"


def deleted_ref_reason(obj: CacheObject, refs: LiveRefs) -> str | None:
    """Why ``obj`` belongs to a deleted branch, or None when any reading of its key is a live branch or tag.

    Conservative by construction: the key, the key without its protection suffix and the base without index and
    suffix are compared with the live refs' names and slugs, and so is every part of each before or after a '/'
    (``build/main`` is also read as ``main``: the runner's own ``<job>/<ref>`` default; ``main/linux`` as ``main``:
    ``key: $CI_COMMIT_REF_NAME/$OS``); ``release-1-protected`` survives while a branch ``release-1`` exists. A key without '/' is judged only when it could be a slug (``$CI_COMMIT_REF_SLUG``),
    a key with '/' only when it could be a ref name (``$CI_COMMIT_REF_NAME`` on ``feature/login``). Hashed keys,
    ``cache:key:files`` keys and GitLab's ``default`` key are never judged.
    """
    if obj.hashed:
        return None
    parts = obj.parts
    readings = {obj.key, parts.base}
    if parts.protection is not None:
        readings.add(obj.key.removesuffix(f"-{parts.protection}"))
    for reading in list(readings):
        segments = reading.split("/")
        readings.update("/".join(segments[cut:]) for cut in range(1, len(segments)))
        readings.update("/".join(segments[:cut]) for cut in range(1, len(segments)))
    base = parts.base
    if any(reading in refs for reading in readings) or base == DEFAULT_CACHE_KEY or _FILES_KEY.search(base):
        return None
    if "/" in base:
        if could_be_ref_name(base):
            return f"deleted-refs: no branch or tag of project {obj.project_id} has the name {base!r}"
        return None
    if _REF_SLUG.match(base):
        return f"deleted-refs: no branch or tag of project {obj.project_id} has the slug {base!r}"
    return None


GroupKey = tuple[str | None, int, str, str | None]


class SupersededIndex:
    """What ``--superseded`` needs to know, gathered over one listing pass; memory grows with groups, not objects.

    GitLab's "Clear runner caches" bumps a project-wide index, so after a clear to index ``j`` every new object
    of the project carries ``-j`` and no object of a lower index is written again. An index is *established*
    when every object of the project with a lower index was last written strictly before the first write of
    any object with index ``j`` or higher. An object is superseded when an established index ``j`` lies above
    its own and its group (same runner scope, project, key base and protection) has an object with index ≥ ``j``.
    A branch that merely ends in a number (``release-2``) cannot meet both conditions unless its cache is
    newer than every other cache of the project, which docs/prune.md names as the remaining risk.
    """

    def __init__(self) -> None:
        self._spans: dict[int, dict[int, list[float]]] = {}
        self._highest: dict[GroupKey, int] = {}
        self._established: dict[int, list[int]] = {}

    @staticmethod
    def _group(obj: CacheObject) -> tuple[GroupKey, int]:
        parts = obj.parts
        return (obj.short_token, obj.project_id, parts.base, parts.protection), parts.index or 0

    def observe(self, obj: CacheObject, last_modified: datetime) -> None:
        if obj.hashed:
            return
        group, index = self._group(obj)
        written = last_modified.timestamp()
        span = self._spans.setdefault(obj.project_id, {}).setdefault(index, [written, written])
        span[0], span[1] = min(span[0], written), max(span[1], written)
        if index > self._highest.get(group, -1):
            self._highest[group] = index

    def freeze(self) -> None:
        """Compute each project's established indices once the pass is complete."""
        for project, spans in self._spans.items():
            indices = sorted(spans)
            established = []
            for position, index in enumerate(indices[1:], start=1):
                last_before = max(spans[i][1] for i in indices[:position])
                first_from = min(spans[i][0] for i in indices[position:])
                if last_before < first_from:
                    established.append(index)
            self._established[project] = established

    @property
    def groups(self) -> int:
        return len(self._highest)

    def reason(self, obj: CacheObject) -> str | None:
        if obj.hashed:
            return None
        group, index = self._group(obj)
        highest = self._highest.get(group, index)
        newer = next((j for j in self._established.get(obj.project_id, []) if index < j <= highest), None)
        if newer is None:
            return None
        return (
            f"superseded: project {obj.project_id} was cleared to cache index {newer} and this key has a newer object"
        )


class SizeHistogram:
    """Bytes per sort-key bin over ``[low, high)`` with at most ``max_bins`` bins; it coarsens (doubles the bin width) when full."""

    def __init__(self, low: int = 0, high: int | None = None, max_bins: int = 16384) -> None:
        self.low, self.high, self.max_bins = low, high, max_bins
        self.shift = 0
        self.bins: dict[int, int] = {}

    def add(self, key: int, size: int) -> None:
        if key < self.low or (self.high is not None and key >= self.high):
            return
        position = (key - self.low) >> self.shift
        self.bins[position] = self.bins.get(position, 0) + size
        while len(self.bins) > self.max_bins:
            self.shift += 1
            merged: dict[int, int] = {}
            for old, total in self.bins.items():
                merged[old >> 1] = merged.get(old >> 1, 0) + total
            self.bins = merged

    def boundary(self, need: int) -> tuple[int, int, int] | None:
        """The bin ``[start, end)`` in which the cumulative bytes reach ``need``, and the bytes before it; None if never."""
        before = 0
        for position in sorted(self.bins):
            if before + self.bins[position] >= need:
                start = self.low + (position << self.shift)
                return start, start + (1 << self.shift), before
            before += self.bins[position]
        return None


class SizeCutoff:
    """Drives the planning passes of ``--max-total-size``: feed each pass, then :meth:`settle` until it is exact.

    The cut-off is a sort key: every size candidate whose :func:`sort_key` is below it goes, which deletes the
    oldest objects first and stops as soon as the rest fits the budget.
    """

    def __init__(self, budget: int, max_bins: int = 16384) -> None:
        self.budget = budget
        self.max_bins = max_bins
        self.total = 0
        self.need: int | None = None
        self.cutoff: int | None = None
        self.done = False
        self._histogram = SizeHistogram(max_bins=max_bins)

    def count(self, size: int) -> None:
        """Every cache object that stays after the other rules (kept ones included) counts against the budget."""
        if self.need is None:
            self.total += size

    def add(self, key: int, size: int) -> None:
        """A size candidate: a cache object the other rules leave and ``--keep`` does not protect."""
        self._histogram.add(key, size)

    def settle(self) -> None:
        """After a pass: finish, or narrow the histogram to the bin where the cut-off lies for one more pass."""
        if self.need is None:
            self.need = self.total - self.budget
            if self.need <= 0:
                self.done = True
                return
        found = self._histogram.boundary(self.need)
        if found is None:  # the candidates are not enough (kept objects, or objects vanished between passes)
            self.cutoff, self.done = self._histogram.high, True
            return
        start, end, before = found
        if end - start == 1:
            self.cutoff, self.done = end, True
            return
        self.need -= before
        self._histogram = SizeHistogram(start, end, self.max_bins)

    def reason(self, key: int) -> str | None:
        if self.need is None or self.need <= 0 or (self.cutoff is not None and key >= self.cutoff):
            return None
        return f"max-total-size: cache is {human_size(self.total)}, over the {human_size(self.budget)} budget; oldest go first"


@dataclass
class Decider:
    """Applies the rules in a fixed order: ``--keep`` protects, then max-age, superseded, deleted-refs, size.

    ``live_refs`` returns a project's live branches and tags (names and slugs), or None when they are unknown
    (the project's caches are then kept).
    """

    options: PruneOptions
    now: datetime
    superseded: SupersededIndex | None = None
    live_refs: Callable[[int], LiveRefs | None] | None = None

    def __post_init__(self) -> None:
        days = self.options.max_age_days
        self._oldest_kept = self.now - timedelta(days=days) if days else None

    def before_size(self, item: Listed, obj: CacheObject) -> tuple[str | None, str | None]:
        """``(reason, None)`` when a rule other than the size budget removes it, ``(None, glob)`` when kept by a glob."""
        if self.options.keep and (glob := kept_by(self.options.keep, obj, item.name)) is not None:
            return None, glob
        if self._oldest_kept is not None and item.last_modified < self._oldest_kept:
            return age_reason(item, self.now, self.options.max_age_days), None
        if self.superseded is not None and (reason := self.superseded.reason(obj)):
            return reason, None
        if self.live_refs is not None:
            refs = self.live_refs(obj.project_id)
            if refs is not None and (reason := deleted_ref_reason(obj, refs)):
                return reason, None
        return None, None
