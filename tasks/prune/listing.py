"""List every object under the walk's root as several ListObjectsV2 streams at once, each object exactly once.

One stream is bound by its round trips and by parsing (minio's ``list_objects`` parses about 15,000 objects/s
here), which made listing the prune's bottleneck (docs/benchmarks.md). The cache has a shape to split on
(docs/cache-keys.md): ``[Path/]runner/<token>/project/<id>/<key>`` and ``[Path/]project/<id>/<key>``. Delimiter
listings find the runner tokens, the shared layout and each layout's project ids; the walk then lists every other
top-level folder as one shard and each layout's projects as a few contiguous *ranges* of ids, on worker threads.

Exactness does not depend on the layout: a delimiter listing returns a prefix's direct objects (yielded from the
discovery itself) and its sub-folders; each sub-folder is either split further or listed whole, and a range of
sibling folders ``[first, next_first)`` is listed by one stream that keeps only names in those folders. Servers
order names differently (S3 byte by byte, SeaweedFS by entry name), so a range is bounded only at a folder on
which both orders agree (:func:`_safe`). A folder-marker object named exactly like a later range's first folder
(``…/12/``, never a cache object) is not listed.

Pages are parsed here rather than by ``Minio.list_objects`` (which builds a full ``Object`` and parses each date
with ``strptime``): the keys, sizes and dates only, dates parsed once per distinct value. Memory stays flat: a
bounded queue holds at most ``2 × workers`` pages of 1000 names between the streams and the walk.
"""

from __future__ import annotations

import queue
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote_plus

from minio import Minio

from runner_cache.tasks.prune.rules import Listed

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
WORKERS = 6  # concurrent ListObjectsV2 streams
RANGES_PER_LAYOUT = 4  # contiguous ranges of project ids per layout (shared, and each runner token)
_DONE = object()


@dataclass(frozen=True)
class Shard:
    """One ListObjectsV2 stream: names under ``prefix`` in ``[start, end)``; ``nested`` drops direct objects."""

    prefix: str
    start: str | None = None
    end: str | None = None
    nested: bool = False


@dataclass
class Page:
    """What one ListObjectsV2 response held."""

    objects: list[Listed]
    folders: list[str]
    next_token: str | None


class _Dates:
    """``LastModified`` text to datetime, parsed once per distinct value (objects written together share it)."""

    def __init__(self) -> None:
        self._cache: dict[str, datetime] = {}

    def __call__(self, text: str) -> datetime:
        value = self._cache.get(text)
        if value is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            value = self._cache[text] = datetime.fromisoformat(text)
        return value


def list_page(
    client: Minio,
    bucket: str,
    prefix: str,
    *,
    delimiter: str = "",
    start_after: str | None = None,
    token: str | None = None,
    dates: _Dates | None = None,
) -> Page:
    """One ListObjectsV2 request (the query minio's own ``list_objects`` sends), parsed for names, sizes, dates."""
    query = {"list-type": "2", "delimiter": delimiter, "encoding-type": "url", "max-keys": "1000", "prefix": prefix}
    if token:
        query["continuation-token"] = token
    elif start_after:
        query["start-after"] = start_after
    # minio's signed request, retries and S3Error mapping; only the parsing is ours.
    response = client._execute("GET", bucket, query_params=query)
    root = ET.fromstring(response.data)
    dates = dates or _Dates()
    encoded = root.findtext(f"{NS}EncodingType") == "url"
    objects: list[Listed] = []
    folders: list[str] = []
    for element in root:
        tag = element.tag
        if tag == f"{NS}Contents":
            name = size = modified = None
            for field in element:
                if field.tag == f"{NS}Key":
                    name = field.text or ""
                elif field.tag == f"{NS}Size":
                    size = int(field.text or 0)
                elif field.tag == f"{NS}LastModified":
                    modified = field.text
            if name is None or modified is None:
                continue
            if encoded and ("%" in name or "+" in name):
                name = unquote_plus(name)
            objects.append(Listed(name, size or 0, dates(modified)))
        elif tag == f"{NS}CommonPrefixes":
            folder = element.findtext(f"{NS}Prefix") or ""
            folders.append(unquote_plus(folder) if encoded else folder)
    truncated = (root.findtext(f"{NS}IsTruncated") or "").lower() == "true"
    return Page(objects, folders, root.findtext(f"{NS}NextContinuationToken") if truncated else None)


def list_folder(client: Minio, bucket: str, prefix: str) -> tuple[list[Listed], list[str]]:
    """A delimiter listing: the objects directly under ``prefix`` and its sub-folders, every page."""
    objects: list[Listed] = []
    folders: list[str] = []
    token = None
    while True:
        page = list_page(client, bucket, prefix, delimiter="/", token=token)
        objects += page.objects
        folders += page.folders
        if not (token := page.next_token):
            return objects, folders


def plan_shards(client: Minio, bucket: str, root: str) -> tuple[list[Shard], list[Listed]]:
    """Shards that cover every object under ``root`` once, and the direct objects the discovery listings returned.

    Split: the root and ``runner/`` into their folders, each runner token into its folders, and every
    ``project/`` folder of a layout into ``RANGES_PER_LAYOUT`` ranges of project ids; other folders are one shard.
    """
    shards: list[Shard] = []
    direct: list[Listed] = []

    def cover(prefix: str) -> None:
        objects, folders = list_folder(client, bucket, prefix)
        direct.extend(objects)
        for folder in folders:
            relative = folder[len(root) :]
            if relative == "runner/" or (relative.startswith("runner/") and relative.count("/") == 2):
                cover(folder)
            elif relative.endswith("project/") and (relative == "project/" or relative.startswith("runner/")):
                split_projects(folder)
            else:
                shards.append(Shard(folder))

    def split_projects(prefix: str) -> None:
        objects, projects = list_folder(client, bucket, prefix)
        direct.extend(objects)
        starts = [
            folder for folder in projects[:: max(1, -(-len(projects) // RANGES_PER_LAYOUT))] if _safe(folder, projects)
        ]
        for index, start in enumerate(starts):
            end = starts[index + 1] if index + 1 < len(starts) else None
            shards.append(Shard(prefix, start if index else None, end, nested=True))

    cover(root)
    return shards, direct


def _safe(folder: str, siblings: list[str]) -> bool:
    """Whether ``folder`` can bound a range on any server: S3 orders names byte by byte, SeaweedFS by entry name
    (``12-x/`` sorts before ``12/`` in S3 but after it in SeaweedFS). Both agree on what comes before ``folder``
    unless a sibling extends it, or it extends a sibling, with a character below ``/`` (project ids are digits)."""
    stem = folder[:-1]
    return not any(
        (len(other) >= len(folder) and other.startswith(stem) and other[len(stem)] < "/")
        or (len(folder) >= len(other) and folder.startswith(other[:-1]) and folder[len(other) - 1] < "/")
        for other in siblings
        if other != folder
    )


def _stream(client: Minio, bucket: str, shard: Shard, emit: queue.Queue, stop: threading.Event) -> None:
    """List one shard page by page onto ``emit``; stop at the end of its range, or early when the walk went away.

    A range starts after the name of its first folder (``…/12/``: S3 lists what follows it, SeaweedFS enters
    that folder) and keeps the names whose folder lies in ``[start, end)``; the first folder beyond ends it.
    """
    dates = _Dates()
    token = None
    cut = len(shard.prefix)
    while not stop.is_set():
        page = list_page(client, bucket, shard.prefix, start_after=shard.start, token=token, dates=dates)
        objects, finished = page.objects, page.next_token is None
        if shard.nested:
            kept = []
            for item in objects:
                slash = item.name.find("/", cut)
                if slash < 0:
                    continue  # a direct object of the prefix: the discovery listing yielded it
                folder = item.name[: slash + 1]
                if shard.end is not None and folder >= shard.end:
                    finished = True
                    break
                if shard.start is None or folder >= shard.start:
                    kept.append(item)
            objects = kept
        while objects and not stop.is_set():
            try:
                emit.put(objects, timeout=0.5)
                break
            except queue.Full:
                continue
        if finished:
            return
        token = page.next_token


def list_objects(client: Minio, bucket: str, root: str, workers: int = WORKERS) -> Iterator[Listed]:
    """Every object under ``root`` once, from ``workers`` concurrent streams (in no particular order)."""
    shards, direct = plan_shards(client, bucket, root)
    yield from direct
    if not shards:
        return
    pages: queue.Queue = queue.Queue(maxsize=2 * workers)
    stop = threading.Event()
    work: queue.SimpleQueue[Shard] = queue.SimpleQueue()
    for shard in sorted(shards, key=lambda shard: (shard.start is None, shard.prefix)):
        work.put(shard)

    def worker() -> None:
        try:
            while not stop.is_set():
                try:
                    shard = work.get_nowait()
                except queue.Empty:
                    return
                _stream(client, bucket, shard, pages, stop)
        except BaseException as error:  # handed to the walk, which raises it
            pages.put(error)
        finally:
            pages.put(_DONE)

    count = min(workers, len(shards))
    # Daemon threads: a walk abandoned mid-way (its generator never closed) must not keep the process alive.
    threads = [threading.Thread(target=worker, name=f"prune-list-{n}", daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    running = count
    try:
        while running:
            page = pages.get()
            if page is _DONE:
                running -= 1
            elif isinstance(page, BaseException):
                raise page
            else:
                yield from page
    finally:
        stop.set()
        while running:  # let blocked workers finish their put and see the stop
            if pages.get() is _DONE:
                running -= 1
