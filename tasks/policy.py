"""One policy for every task that touches an outside system: never cached, no result stored, and retried
(after ``delays`` seconds) only on transient errors — never on bad credentials, refusals or settings.

Whether an error is transient is decided here and nowhere else: our own errors say so themselves
(:attr:`runner_cache.errors.RunnerCacheError.transient`); a library error that reached a task untranslated is
transient only when it is a connection problem or a server-side (5xx / throttling) answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import urllib3
from minio.error import S3Error, ServerError
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from requests.exceptions import ConnectionError as RequestsConnectionError

from runner_cache.errors import RunnerCacheError

# S3 error codes a store sends when it is overloaded or failing inside: a later try may succeed.
TRANSIENT_S3_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}


def is_transient(error: BaseException) -> bool:
    """True when retrying later may help: connection problems and server-side failures."""
    if isinstance(error, RunnerCacheError):
        return error.transient
    if isinstance(error, S3Error):
        return error.code in TRANSIENT_S3_CODES
    return isinstance(
        error, (ServerError, urllib3.exceptions.HTTPError, RequestsConnectionError, ConnectionError, TimeoutError)
    )


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only what :func:`is_transient` accepts."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and is_transient(error)


def external_task(fn: Callable[..., Any], name: str, delays: Sequence[float] = ()) -> Task:
    """``fn`` as such a Prefect task; no ``delays`` means no retry (e.g. a step whose retry would lose state)."""
    return task(
        fn,
        name=name,
        retries=len(delays),
        retry_delay_seconds=list(delays),
        retry_condition_fn=retry_on_transient if delays else None,
        cache_policy=NO_CACHE,
        persist_result=False,
    )
