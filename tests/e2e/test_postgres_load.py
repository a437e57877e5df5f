"""Prefect on PostgreSQL 15, under load: a real `prefect server` on a PostgreSQL started here, `runner-cache
serve`, and 20 prune runs submitted at once across 5 buckets (one saved config block each). The bucket locks
serialise the runs of each bucket, every run completes, and `runner-cache history` shows each one.

Needs root (PostgreSQL runs as the `postgres` user) and PostgreSQL's binaries; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.config_block import RunnerCacheConfig
from runner_cache.blocks.store import StoreSettings
from tests.e2e.conftest import (
    BIN,
    REPO,
    PrefectServer,
    Process,
    running_prefect_server,
    wait_for_deployments,
)
from tests.integration.faults.conftest import names_in, seed
from tests.support.servers import free_port, wait_for_port

# 20 flow runs are 20 Python processes: on 2 busy cores the whole test took minutes, not the 90 s it takes on
# an idle machine (docs/deployments.md).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

BUCKETS = 5
RUNS = 20
DEPLOYMENT = "prune-runner-cache/nightly"
SERVE_LIMIT = 5  # flow runs at once in the serve process (all 20 are submitted at once; the rest wait as Late)


def _as_postgres(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["su", "postgres", "-s", "/bin/bash", "-c", command], capture_output=True, text=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """PostgreSQL 15 on a free loopback port (trust auth, user ``prefect``): its asyncpg URL."""
    if os.geteuid() != 0 or not shutil.which("initdb") or not shutil.which("pg_ctl"):
        pytest.skip("needs root and PostgreSQL's initdb/pg_ctl (see docs/deployments.md)")
    top = Path(tempfile.mkdtemp(prefix="rc-pg-"))  # pytest's own temp dirs are private to root
    top.chmod(0o755)
    data, logs = top / "data", top / "logs"
    for folder in (data, logs):
        folder.mkdir()
        shutil.chown(folder, "postgres")
    port = free_port()
    done = _as_postgres(
        f"initdb -D {data} -A trust -U prefect >{logs}/initdb.log 2>&1 && "
        f"pg_ctl -D {data} -o '-p {port} -k {logs} -c listen_addresses=127.0.0.1 -c max_connections=200' "
        f"-l {logs}/postgres.log -w start"
    )
    assert done.returncode == 0, done.stdout + done.stderr + "".join(p.read_text() for p in logs.glob("*.log"))
    try:
        wait_for_port(port, 30)
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/postgres"
    finally:
        _as_postgres(f"pg_ctl -D {data} -m fast -w stop")
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_server(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    home = tmp_path_factory.mktemp("pg-prefect")
    with running_prefect_server(home, {"PREFECT_API_DATABASE_CONNECTION_URL": postgres}) as server:
        yield server


def _task_span(client, flow_run_id: uuid.UUID) -> tuple[float, float]:
    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return (
        min(run.start_time.timestamp() for run in runs if run.start_time),
        max(run.end_time.timestamp() for run in runs if run.end_time),
    )


def test_twenty_runs_across_five_buckets_on_postgres(pg_server: PrefectServer, seaweed_server: StoreSettings) -> None:
    started = time.monotonic()
    blocks: dict[str, StoreSettings] = {}
    with pg_server.client_settings():
        for n in range(BUCKETS):
            store = seaweed_server.model_copy(update={"bucket": f"pg-load-{n}-{uuid.uuid4().hex[:6]}"})
            seed(store, [f"runner/abcdef123/project/{p}/main-protected" for p in range(1, 6)])
            name = f"pg-load-{n}"
            RunnerCacheConfig(store=store, cache=CacheSettings()).save(name, overwrite=True)
            blocks[name] = store
    serve_log = pg_server.home / "serve.log"
    popen = subprocess.Popen(
        [str(BIN / "runner-cache"), "serve", "--json", "--limit", str(SERVE_LIMIT)],
        env={**pg_server.env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=serve_log.open("ab"),
        start_new_session=True,
    )
    served = Process(popen, serve_log)
    try:
        wait_for_deployments(pg_server, (DEPLOYMENT,), served)
        with pg_server.client_settings():
            submitted = [
                run_deployment(
                    DEPLOYMENT,
                    parameters={"config": f"pg-load-{n % BUCKETS}", "max_age_days": 1e-6},
                    timeout=0,
                )
                for n in range(RUNS)
            ]
            deadline = time.monotonic() + 600
            ids = FlowRunFilter(id=FlowRunFilterId(any_=[run.id for run in submitted]))
            with get_client(sync_client=True) as client:
                while True:
                    runs = client.read_flow_runs(flow_run_filter=ids, limit=RUNS)
                    if all(run.state and run.state.is_final() for run in runs) or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                states = {run.id: run.state.name if run.state else None for run in runs}
                assert all(state == "Completed" for state in states.values()), f"{states}\n{served.output()[-4000:]}"
                spans: dict[str, list[tuple[float, float]]] = {}
                for run in runs:
                    spans.setdefault(run.parameters["config"], []).append(_task_span(client, run.id))
    finally:
        served.stop()
    took = time.monotonic() - started
    for name, bucket_spans in spans.items():
        ordered = sorted(bucket_spans)
        assert len(ordered) == RUNS // BUCKETS
        for (_, end), (start_next, _) in zip(ordered, ordered[1:], strict=False):
            assert start_next >= end, f"runs of {name} overlapped: {ordered}"
        assert names_in(blocks[name]) == set(), f"{name}: the cache objects were pruned"
    every = [span for bucket_spans in spans.values() for span in bucket_spans]
    assert any(a is not b and a[0] < b[1] and b[0] < a[1] for a in every for b in every), (
        "runs of different buckets ran side by side"
    )
    history = pg_server.run("runner-cache", "history", "--flow", "prune-runner-cache", "--limit", "50", "--json")
    assert history.returncode == 0, history.stderr[-3000:]
    listed = {str(entry.get("id") or entry.get("flow_run_id")) for entry in json.loads(history.stdout)["runs"]}
    assert {str(run.id) for run in submitted} <= listed, "history shows every run"
    Path(pg_server.home / "load.json").write_text(json.dumps({"runs": RUNS, "buckets": BUCKETS, "seconds": took}))
    print(f"\n{RUNS} runs across {BUCKETS} buckets on PostgreSQL: {took:.1f} s")
