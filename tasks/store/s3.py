"""S3 helpers shared by every backend: one signed request that tells unreachable from refused, and readiness."""

from __future__ import annotations

import time

import urllib3
from minio import Minio
from minio.error import S3Error, ServerError

from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import StoreAuthError, StoreTLSError, StoreUnreachable, innermost_cause


def check_access(client: Minio, endpoint: str) -> None:
    """One cheap signed request; raise :class:`StoreUnreachable` or :class:`StoreAuthError` with a plain reason."""
    try:
        client.list_buckets()
    except S3Error as error:
        raise StoreAuthError(
            f"{endpoint} rejected the credentials ({error.code}): check RUNNER_CACHE_STORE__ACCESS_KEY/SECRET_KEY"
        ) from None
    except ServerError as error:
        raise StoreUnreachable(f"{endpoint} answered HTTP {error.status_code}") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        if isinstance(getattr(error, "reason", error), urllib3.exceptions.SSLError):
            raise StoreTLSError(
                f"TLS with {endpoint} failed ({innermost_cause(error)}): trust its certificate (SSL_CERT_FILE) or use http:// if it serves plain HTTP"
            ) from None
        raise StoreUnreachable(f"{endpoint} is not reachable: {innermost_cause(error)}") from None


def wait_until_ready(store: StoreSettings, timeout: float | None = None, interval: float = 0.2) -> float:
    """Poll until the store accepts a signed request; return the seconds waited.

    Auth errors end the wait at once (the store is up, the credentials are wrong); connection errors are
    retried with a growing interval until ``timeout`` (default ``store.ready_timeout``).
    """
    deadline = time.monotonic() + (store.ready_timeout if timeout is None else timeout)
    started = time.monotonic()
    client = store.client(connect_timeout=2.0, read_timeout=5.0, retries=0)
    while True:
        try:
            check_access(client, store.endpoint)
            return round(time.monotonic() - started, 3)
        except StoreUnreachable:
            if time.monotonic() >= deadline:
                raise StoreUnreachable(
                    f"{store.endpoint} did not become ready within {store.ready_timeout if timeout is None else timeout:.0f} s"
                ) from None
            time.sleep(interval)
            interval = min(interval * 1.5, 2.0)
