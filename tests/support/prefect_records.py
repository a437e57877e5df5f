"""Read back what a flow run left in Prefect: logs, artifacts, events, and the raw database bytes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME


def flow_run_logs(flow_run_id: UUID) -> list[str]:
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        return [
            log.message
            for log in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        ]


def flow_run_artifacts(flow_run_id: UUID) -> list[str]:
    """Every artifact's data (markdown, tables, progress) as text."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        return [f"{artifact.key} {artifact.description} {artifact.data}" for artifact in artifacts]


def events(
    prefix: str, expect: int = 1, timeout: float = 15.0, where: Callable[[dict], bool] | None = None
) -> list[dict]:
    """Events whose name starts with ``prefix`` (and that ``where`` accepts); waits for ``expect`` of them, since
    events reach the API a moment after the run that emitted them (another test's older event must not count)."""
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(filter=EventFilter(event=EventNameFilter(prefix=[prefix])), limit=50)
        found = [event.model_dump(mode="json") for event in page.events]
        found = [event for event in found if where is None or where(event)]
        if len(found) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def database_bytes() -> bytes:
    """The raw bytes of Prefect's SQLite database files (main file and WAL), to grep for leaked values."""
    url = PREFECT_API_DATABASE_CONNECTION_URL.value() or ""
    path = (
        Path(url.split("///", 1)[1]) if "sqlite" in url and "///" in url else Path(PREFECT_HOME.value()) / "prefect.db"
    )
    return b"".join(candidate.read_bytes() for candidate in path.parent.glob(path.name + "*") if candidate.is_file())
