"""``runner-cache history``: recent runs of the runner-cache flows from Prefect's API."""

from __future__ import annotations

import argparse
import re

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateName,
)
from prefect.client.schemas.sorting import FlowRunSort

from runner_cache.output import emit
from runner_cache.tasks.results import markdown_table

FLOWS = ("setup-runner-cache", "prune-runner-cache", "verify-runner-cache", "rebuild-runner")
_SECRET_NAME = re.compile(r"secret|token|password|key", re.IGNORECASE)
_CELL_SPLIT = re.compile(r"(?<!\\)\|")  # a markdown table's cell separator (escaped pipes stay in the cell)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("history", help="list recent runs of the runner-cache flows")
    parser.add_argument("--flow", choices=FLOWS, help="only runs of this flow")
    parser.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.set_defaults(func=run_history)


def mask(parameters: dict) -> dict:
    """Hide any parameter whose name suggests a secret, also inside nested models; flows take block names, but be safe."""
    return {
        name: "***" if _SECRET_NAME.search(name) and value else mask(value) if isinstance(value, dict) else value
        for name, value in parameters.items()
    }


def _summary(markdown: str | None) -> str:
    """The verdict line of a flow's summary artifact (``No changes.``, ``Changes made.``, ``Failed: …``)."""
    for line in (markdown or "").splitlines():
        if line.startswith("**"):
            return line.replace("**", "").strip()
    return ""


def _changes(markdown: str | None) -> list[str]:
    """``step: what and why`` for each changed or failed step of a steps table (``runner_cache.tasks.results.steps_markdown``)."""
    changes = []
    for line in (markdown or "").splitlines():
        cells = [cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT.split(line.strip().strip("|"))]
        if line.startswith("| ") and len(cells) == 4 and cells[1] in {"changed", "failed"}:
            changes.append(f"{cells[0]}: {cells[2]}")
    return changes


def recent_runs(flow: str | None, limit: int) -> list[dict]:
    with get_client(sync_client=True) as client:
        flows = {
            f.id: f.name
            for f in client.read_flows(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow] if flow else list(FLOWS)))
            )
        }
        if not flows:
            return []
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(flows.values()))),
            # past and current runs only: the nightly schedule keeps the next runs queued as "Scheduled"
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(not_any_=["Scheduled"]))
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
        )
        rows = []
        for run in runs:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            )
            flow_name = flows.get(run.flow_id, "?")
            # the summary artifact is keyed by the flow's name; a flow may leave other markdown (e.g. evidence)
            summaries = sorted(
                (a for a in artifacts if a.type == "markdown" and isinstance(a.data, str)),
                key=lambda a: a.key != flow_name,
            )
            markdown = summaries[0].data if summaries else None
            rows.append(
                {
                    "id": str(run.id),
                    "flow": flow_name,
                    "name": run.name,
                    "deployment_id": str(run.deployment_id) if run.deployment_id else None,
                    "state": run.state.name if run.state else None,
                    "start_time": run.start_time.isoformat() if run.start_time else None,
                    "duration_seconds": round(run.total_run_time.total_seconds(), 2),
                    "parameters": mask(run.parameters),
                    "summary": _summary(markdown),
                    "changes": _changes(markdown),
                }
            )
        return rows


def run_history(args: argparse.Namespace) -> int:
    runs = recent_runs(args.flow, args.limit)
    table = markdown_table(
        ["started", "flow", "run", "state", "seconds", "parameters", "result"],
        [
            [
                r["start_time"] or "-",
                r["flow"],
                r["name"],
                r["state"],
                r["duration_seconds"],
                r["parameters"],
                f"{r['summary']} {'; '.join(r['changes'])}".strip(),
            ]
            for r in runs
        ],
    )
    emit({"runs": runs}, as_json=args.json, text=table if runs else "no runs yet")
    return 0
