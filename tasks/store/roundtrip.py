"""The cheap end-to-end check: write a cache archive where the runner would, read it back, delete it.

Like the runner it uses presigned PUT and GET URLs, so signature, scheme and path-style problems show up here
before any pipeline runs.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import zipfile
from datetime import timedelta

import urllib3
from minio.error import S3Error

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.store import StoreSettings, http_pool
from runner_cache.errors import RoundTripFailed, StoreUnreachable, innermost_cause
from runner_cache.tasks.keys.layout import cache_object
from runner_cache.tasks.policy import external_task
from runner_cache.tasks.results import StepResult, timed

# A short token and project id no real runner produces together with this key; the object lives for seconds.
CHECK_SHORT_TOKEN = "rccheck00"
CHECK_PROJECT_ID = 1


def _request(http: urllib3.PoolManager, method: str, url: str, **kwargs: object) -> urllib3.BaseHTTPResponse:
    """One presigned request; connection errors are re-raised without the URL, which carries the access key."""
    try:
        response = http.request(method, url, **kwargs)
    except urllib3.exceptions.HTTPError as error:
        raise StoreUnreachable(f"{method} of the test object failed: {innermost_cause(error)}") from None
    if response.status >= 500:  # the store is there but struggling: worth a retry
        raise StoreUnreachable(f"{method} of the test object answered HTTP {response.status}{_s3_code(response.data)}")
    return response


def _s3_code(body: bytes) -> str:
    """The ``<Code>`` of an S3 error document, for a reason people can act on."""
    match = re.search(rb"<Code>([A-Za-z]+)</Code>", body)
    return f" ({match.group(1).decode()})" if match else ""


def _archive(nonce: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("vendor/hello.txt", f"runner-cache round trip {nonce}\n")
    return buffer.getvalue()


def check_roundtrip(store: StoreSettings, cache: CacheSettings) -> StepResult:
    """Put, get, compare and delete one archive at the runner's key layout; raise when any part fails."""
    nonce = secrets.token_hex(8)
    target = cache_object(
        path=cache.path,
        shared=cache.shared,
        short_token=CHECK_SHORT_TOKEN,
        project_id=CHECK_PROJECT_ID,
        key=f"runner-cache-roundtrip-{nonce}-non_protected",
    )
    body = _archive(nonce)
    client = store.client()
    http = http_pool()
    with timed() as timer:
        put_url = client.presigned_put_object(store.bucket, target.object_name, expires=timedelta(minutes=5))
        response = _request(http, "PUT", put_url, body=body, headers={"Content-Type": "application/zip"})
        if response.status != 200:
            raise RoundTripFailed(
                f"upload to the presigned URL answered HTTP {response.status}{_s3_code(response.data)}"
            )
        try:
            get_url = client.presigned_get_object(store.bucket, target.object_name, expires=timedelta(minutes=5))
            response = _request(http, "GET", get_url)
            if response.status != 200:
                raise RoundTripFailed(
                    f"download from the presigned URL answered HTTP {response.status}{_s3_code(response.data)}"
                )
            if hashlib.sha256(response.data).digest() != hashlib.sha256(body).digest():
                raise RoundTripFailed(f"read back {len(response.data)} bytes that differ from the {len(body)} written")
            with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
                if nonce not in archive.read("vendor/hello.txt").decode():
                    raise RoundTripFailed("the archive read back does not hold the nonce written")
        finally:
            client.remove_object(store.bucket, target.object_name)
        try:
            client.stat_object(store.bucket, target.object_name)
        except S3Error as error:
            if error.code not in {"NoSuchKey", "NoSuchObject"}:
                raise
        else:
            raise RoundTripFailed("the test object is still there after deleting it")
    return StepResult(
        step="roundtrip",
        status="unchanged",
        detail=f"wrote, read back and deleted a {len(body)}-byte cache archive at {target.object_name!r}",
        seconds=timer.seconds,
        data={"object": target.object_name, "bytes": len(body)},
    )


check_roundtrip_task = external_task(check_roundtrip, "roundtrip-check", delays=(2, 5))
