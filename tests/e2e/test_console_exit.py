"""The console script ends the process itself after its exit handlers (``cli.run``, no interpreter teardown):
the last log line, the event and the artifacts of its flow run must still reach the Prefect server."""

from __future__ import annotations

import json
from uuid import UUID

import pytest

from runner_cache.blocks.store import StoreSettings
from tests.e2e.conftest import PrefectServer, store_env
from tests.support.prefect_records import events, flow_run_artifacts, flow_run_logs

pytestmark = pytest.mark.e2e


def test_a_setup_run_from_the_console_script_leaves_its_last_log_line_event_and_summary(
    prefect_server: PrefectServer, seaweed_server: StoreSettings
) -> None:
    env = {**store_env(seaweed_server), "RUNNER_CACHE_STORE__BUCKET": "console-exit"}
    done = prefect_server.run("runner-cache", "setup", "--json", extra_env=env)
    assert done.returncode == 0, done.stderr
    flow_run_id = UUID(json.loads(done.stdout)["flow_run_id"])  # the whole document reached the pipe
    with prefect_server.client_settings():
        logs = flow_run_logs(flow_run_id)
        assert any("Finished in state Completed()" in line for line in logs)  # the run's very last line
        assert any(
            line.startswith("setup-runner-cache setup-runner-cache summary") for line in flow_run_artifacts(flow_run_id)
        )
        emitted = events("runner-cache.setup", where=lambda event: _about(event, flow_run_id))
        assert emitted, "the run's runner-cache.setup event did not reach the server"
        # a command's runs send no heartbeat (docs/decisions.md); Prefect sends the first one as a run starts
        assert events("prefect.flow-run.heartbeat", expect=0, timeout=0, where=lambda e: _about(e, flow_run_id)) == []


def _about(event: dict, flow_run_id: UUID) -> bool:
    resources = [event["resource"], *event["related"]]
    return any(resource["prefect.resource.id"] == f"prefect.flow-run.{flow_run_id}" for resource in resources)
