"""Run the flows with sentinel secrets and prove the values reach no log, artifact, event, error or database row."""

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from runner_cache.blocks.config_block import RunnerCacheConfig
from runner_cache.blocks.settings import load_settings
from runner_cache.blocks.store import StoreSettings
from runner_cache.cli import main
from runner_cache.tasks.store.identity import BlockVault
from tests.support.prefect_records import database_bytes, events, flow_run_artifacts, flow_run_logs
from tests.support.servers import free_port

ACCESS = "SENTINELACCESSKEY"
SECRET = "SENTINEL-SECRET-VALUE-0042"
WRONG = "SENTINEL-WRONG-SECRET-0043"
SENTINELS = (ACCESS, SECRET, WRONG)
GENERATED: list[str] = []  # the runner and prune identities' secrets, made by setup on the store (issue 16)

pytestmark = pytest.mark.usefixtures("prefect_api")


def _assert_clean(text: str, where: str) -> None:
    for sentinel in (*SENTINELS, *GENERATED):
        assert sentinel not in text, f"a secret leaked into {where}"


def _run_cli(args: list[str], capsys: pytest.CaptureFixture) -> dict:
    code = main(args)
    captured = capsys.readouterr()
    _assert_clean(captured.out + captured.err, "CLI output")
    document = json.loads(captured.out)
    document["exit_code"] = code
    return document


def test_sentinel_secrets_never_leak(
    tmp_path: Path,
    seaweed_server: StoreSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_ids = []
    # 1. the local backend started with sentinel credentials, from the environment
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("RUNNER_CACHE_STORE__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RUNNER_CACHE_STORE__ACCESS_KEY", ACCESS)
    monkeypatch.setenv("RUNNER_CACHE_STORE__SECRET_KEY", SECRET)
    try:
        first = _run_cli(["setup", "--json"], capsys)
        assert first["exit_code"] == 0
        records = [BlockVault().load(load_settings().store, role) for role in ("runner", "prune")]
        GENERATED.extend(record.secret_key.get_secret_value() for record in records if record is not None)
        assert len(GENERATED) == 2
        _assert_clean(json.dumps(first), "setup's JSON report")
        run_ids.append(first["flow_run_id"])

        # 2. the same configuration saved as a block and used by name
        assert main(["blocks", "save", "sentinel", "--overwrite"]) == 0
        capsys.readouterr()
        by_block = _run_cli(["setup", "--config", "sentinel", "--json"], capsys)
        assert by_block["exit_code"] == 0 and by_block["changed"] is False
        run_ids.append(by_block["flow_run_id"])
        with get_client(sync_client=True) as client:
            document = client.read_block_document_by_name("sentinel", "runner-cache-config", include_secrets=False)
            _assert_clean(json.dumps(document.data, default=str), "the block document as the API returns it")
    finally:
        main(["store", "stop"])
        capsys.readouterr()
    _assert_clean((tmp_path / "state" / "weed.log").read_text(), "the local store's log")

    # 3. a wrong secret against a real store: the failure text names the problem, not the value
    monkeypatch.setenv("RUNNER_CACHE_STORE__BACKEND", "external")
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", seaweed_server.endpoint)
    monkeypatch.setenv("RUNNER_CACHE_STORE__SECRET_KEY", WRONG)
    failed = _run_cli(["setup", "--json"], capsys)
    assert failed["exit_code"] == 1
    assert "rejected the credentials" in failed["steps"][-1]["detail"]
    run_ids.append(failed["flow_run_id"])

    for run_id in run_ids:
        _assert_clean(" ".join(flow_run_logs(run_id)), "the flow run's logs")
        _assert_clean(" ".join(flow_run_artifacts(run_id)), "the flow run's artifacts")
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
            _assert_clean(run.model_dump_json(), "the flow run record (state message, parameters)")
            for task_run in client.read_task_runs():
                _assert_clean(task_run.model_dump_json(), "a task run record")
    _assert_clean(json.dumps(events("runner-cache.", expect=3)), "events")
    _assert_clean(json.dumps(events("prefect.", expect=1)), "Prefect's own events")
    _assert_clean(caplog.text, "Python logging")
    database = database_bytes()
    assert database, "the Prefect database was not found"
    for sentinel in (*SENTINELS, *GENERATED):
        assert sentinel.encode() not in database, "a secret is stored in clear in Prefect's database"
    assert RunnerCacheConfig.load("sentinel").store.secret_key.get_secret_value() == SECRET
