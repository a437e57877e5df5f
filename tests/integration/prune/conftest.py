"""Helpers for the prune tests: seeding real S3 servers, backdating on moto, a proxy that fails DeleteObjects."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from urllib.parse import urlsplit

import pytest

from runner_cache.blocks.store import StoreSettings

BODY = b"PK\x05\x06" + b"\0" * 18  # an empty zip archive, like a tiny cache


def seed(store: StoreSettings, names: Iterable[str], body: bytes = BODY) -> None:
    """Create the bucket and put every object (concurrently)."""
    client = store.client()
    if not client.bucket_exists(store.bucket):
        client.make_bucket(store.bucket, location=store.region)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: client.put_object(store.bucket, name, BytesIO(body), len(body)), names))


def seed_backdated(store: StoreSettings, objects: dict[str, float], size: int = len(BODY)) -> None:
    """On the in-process moto server: put each object with its LastModified ``days`` ago (moto's backend, same process)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    client = store.client()
    if not client.bucket_exists(store.bucket):
        client.make_bucket(store.bucket, location=store.region)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    now = datetime.now(UTC).replace(tzinfo=None)
    for name, days in objects.items():
        key = backend.put_object(store.bucket, name, b"x" * size)
        key.last_modified = now - timedelta(days=days)


def names_in(store: StoreSettings) -> set[str]:
    return {entry.object_name for entry in store.client().list_objects(store.bucket, recursive=True)}


class _FailingDeleteProxy(BaseHTTPRequestHandler):
    """Forwards every request unchanged (Host included, so signatures stay valid), except that a
    DeleteObjects request naming a poisoned key gets S3's 403 AccessDenied, like a bucket policy denying it."""

    upstream: tuple[str, int]
    poison: bytes

    def log_message(self, *args: object) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.command == "POST" and "delete" in urlsplit(self.path).query and self.poison in body:
            error = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>'
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in {"connection", "transfer-encoding"}
        }
        connection.request(self.command, self.path, body=body or None, headers=headers)
        response = connection.getresponse()
        data = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in {"transfer-encoding", "connection", "content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        connection.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


@pytest.fixture
def failing_delete_proxy(seaweed_store: StoreSettings) -> Iterator[tuple[StoreSettings, StoreSettings, str]]:
    """(direct store, store seen through the proxy, poisoned key marker) on 127.0.0.1."""
    upstream = urlsplit(seaweed_store.endpoint)
    marker = "poisoned-key"
    handler = type(
        "Handler", (_FailingDeleteProxy,), {"upstream": (upstream.hostname, upstream.port), "poison": marker.encode()}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        proxied = seaweed_store.model_copy(update={"endpoint": f"http://127.0.0.1:{server.server_address[1]}"})
        yield seaweed_store, proxied, marker
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch):
    """Point the RUNNER_CACHE_* environment at a store, with the runner's Path and Shared."""

    def apply(store: StoreSettings, path: str = "", shared: bool = False) -> None:
        for name, value in {
            "STORE__BACKEND": "external",
            "STORE__ENDPOINT": store.endpoint,
            "STORE__ACCESS_KEY": store.access_key.get_secret_value(),
            "STORE__SECRET_KEY": store.secret_key.get_secret_value(),
            "STORE__BUCKET": store.bucket,
            "CACHE__PATH": path,
            "CACHE__SHARED": str(shared).lower(),
        }.items():
            monkeypatch.setenv(f"RUNNER_CACHE_{name}", value)

    return apply
