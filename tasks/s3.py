"""S3 helpers shared by every backend: readiness, and telling transient failures from permanent ones."""

from __future__ import annotations

import time
from typing import Any

import urllib3
from minio import Minio
from minio.error import S3Error, ServerError
from requests.exceptions import ConnectionError as RequestsConnectionError

from blocks.store import StoreSettings

# S3 error codes that a retry can never fix: wrong credentials, wrong signature, no permission.
PERMANENT_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidBucketName", "AllAccessDisabled"}


class StoreUnreachable(ConnectionError):
    """The store did not answer (refused, timed out, reset); retrying later may help."""


class StoreTLSError(ConnectionError):
    """TLS failed (untrusted certificate, or https to a plain-HTTP port): no retry fixes it."""


class StoreAuthError(PermissionError):
    """The store answered but rejected the credentials or the request; retrying will not help."""


def reason(error: BaseException) -> str:
    """The innermost cause of a connection error, in words (``MaxRetryError`` says nothing by itself)."""
    inner = getattr(error, "reason", None)
    return f"{type(inner).__name__}: {inner}" if isinstance(inner, BaseException) else type(error).__name__


def is_transient(error: BaseException) -> bool:
    """True for connection problems and 5xx answers, False for bad credentials, TLS and validation errors."""
    if isinstance(error, StoreTLSError):
        return False
    if isinstance(error, (StoreUnreachable, ServerError, urllib3.exceptions.HTTPError, RequestsConnectionError)):
        return True
    if isinstance(error, S3Error):
        return error.code not in PERMANENT_CODES and error.code in {"SlowDown", "InternalError", "ServiceUnavailable"}
    return isinstance(error, (ConnectionError, TimeoutError))


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only what :func:`is_transient` accepts."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and is_transient(error)


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
                f"TLS with {endpoint} failed ({reason(error)}): trust its certificate (SSL_CERT_FILE) or use http:// if it serves plain HTTP"
            ) from None
        raise StoreUnreachable(f"{endpoint} is not reachable: {reason(error)}") from None


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
