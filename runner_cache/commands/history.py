"""``runner-cache history``: recent runs of the runner-cache flows from Prefect's API."""

from __future__ import annotations

import argparse
import re

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowFilter, FlowFilterName, FlowRunFilter
from prefect.client.schemas.sorting import FlowRunSort

from runner_cache.output import emit
from tasks.report import markdown_table

FLOWS = ("setup-runner-cache", "prune-runner-cache", "verify-runner-cache", "rebuild-runner")
_SECRET_NAME = re.compile(r"secret|token|password|key", re.IGNORECASE)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("history", help="list recent runs of the runner-cache flows")
    parser.add_argument("--flow", choices=FLOWS, help="only runs of this flow")
    parser.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.set_defaults(func=run_history)


def mask(parameters: dict) -> dict:
    """Hide any parameter whose name suggests a secret; flows take block names, but be safe."""
    return {name: "***" if _SECRET_NAME.search(name) and value else value for name, value in parameters.items()}


def _summary(markdown: str | None) -> str:
    """The verdict line of a flow's summary artifact (``No changes.``, ``Changes made.``, ``Failed: …``)."""
    for line in (markdown or "").splitlines():
        if line.startswith("**"):
            return line.replace("**", "").strip()
    return ""


def recent_runs(flow: str | None, limit: int) -> list[dict]:
    with get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow] if flow else list(FLOWS))))}
        if not flows:
            return []
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(flows.values()))),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
        )
        rows = []
        for run in runs:
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
            markdown = next((a.data for a in artifacts if a.type == "markdown" and isinstance(a.data, str)), None)
            rows.append(
                {
                    "id": str(run.id),
                    "flow": flows.get(run.flow_id, "?"),
                    "name": run.name,
                    "deployment_id": str(run.deployment_id) if run.deployment_id else None,
                    "state": run.state.name if run.state else None,
                    "start_time": run.start_time.isoformat() if run.start_time else None,
                    "duration_seconds": round(run.total_run_time.total_seconds(), 2),
                    "parameters": mask(run.parameters),
                    "summary": _summary(markdown),
                }
            )
        return rows


def run_history(args: argparse.Namespace) -> int:
    runs = recent_runs(args.flow, args.limit)
    table = markdown_table(
        ["started", "flow", "run", "state", "seconds", "parameters", "result"],
        [[r["start_time"] or "-", r["flow"], r["name"], r["state"], r["duration_seconds"], r["parameters"], r["summary"]] for r in runs],
    )
    emit({"runs": runs}, as_json=args.json, text=table if runs else "no runs yet")
    return 0
