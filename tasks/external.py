"""One policy for every task that touches an outside system: never cached, no result stored, and retried
(after ``delays`` seconds) only on transient errors — never on bad credentials or settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from tasks.s3 import retry_on_transient


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
