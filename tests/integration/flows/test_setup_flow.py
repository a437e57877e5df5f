import json
from pathlib import Path

import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.cli import main
from runner_cache.flows.setup import setup_runner_cache
from tests.support.prefect_records import events, flow_run_artifacts, flow_run_logs
from tests.support.servers import free_port

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The README's default: the local backend, here on a free port and a private state dir."""
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("RUNNER_CACHE_STORE__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RUNNER_CACHE_STORE__BUCKET", "runner")
    yield
    assert main(["store", "stop"]) == 0


def test_setup_on_the_local_default_then_no_changes(local_env: None, capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["changed"] is True and plan["steps"][0]["status"] == "planned"

    state = setup_runner_cache(return_state=True)
    first = state.result()
    assert first["changed"] is True
    statuses = {step["step"]: step["status"] for step in first["steps"]}
    assert statuses == {
        "store": "changed",
        "bucket": "changed",
        "identity": "changed",
        "identity-check": "unchanged",
        "identity-prune": "changed",
        "roundtrip": "unchanged",
        "revoke": "unchanged",
        "revoke-prune": "unchanged",
        "release": "skipped",
        "pipeline": "skipped",
    }
    artifact = " ".join(flow_run_artifacts(state.state_details.flow_run_id))
    assert (
        "**Changes made.**" in artifact and "created bucket 'runner'" in artifact and "runner-cache-expire" in artifact
    )
    assert "not configured: set RUNNER_CACHE_RELEASE__CHART" in artifact
    logs = " ".join(flow_run_logs(state.state_details.flow_run_id))
    assert "store changed: started a local store" in logs

    assert main(["setup", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["changed"] is False
    assert [step["status"] for step in second["steps"][:3]] == ["unchanged"] * 3
    second_logs = " ".join(flow_run_logs(second["flow_run_id"]))
    assert "no changes" in second_logs

    assert main(["setup"]) == 0
    assert capsys.readouterr().out.startswith("setup: no changes")

    completed = events("runner-cache.setup.completed", expect=3)
    assert {event["payload"]["changed"] for event in completed} >= {True, False}
    assert completed[0]["resource"]["prefect.resource.id"] == "runner-cache.bucket.runner"


def test_setup_against_an_external_store(
    s3_store: StoreSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    for name, value in {
        "BACKEND": "external",
        "ENDPOINT": s3_store.endpoint,
        "ACCESS_KEY": s3_store.access_key.get_secret_value(),
        "SECRET_KEY": s3_store.secret_key.get_secret_value(),
        "BUCKET": s3_store.bucket,
    }.items():
        monkeypatch.setenv(f"RUNNER_CACHE_STORE__{name}", value)
    monkeypatch.setenv("RUNNER_CACHE_CACHE__SHARED", "true")
    if request.node.callspec.params["s3_store"] == "moto":  # moto's S3 ignores IAM policies (issue 16)
        monkeypatch.setenv("RUNNER_CACHE_STORE__IDENTITIES__VERIFY", "false")
    assert main(["setup", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"][0]["detail"].startswith("external store")
    assert result["steps"][1]["data"]["lifecycle_prefix"] == "project/"


def test_failed_step_fails_the_run_and_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__BACKEND", "external")
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("RUNNER_CACHE_STORE__ACCESS_KEY", "nobody")
    monkeypatch.setenv("RUNNER_CACHE_STORE__SECRET_KEY", "nobody-secret")
    monkeypatch.setenv("RUNNER_CACHE_STORE__READY_TIMEOUT", "1")
    assert main(["setup", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    failed = result["steps"][-1]
    assert failed["step"] == "store" and failed["status"] == "failed"
    assert "is not reachable" in failed["detail"]
    assert events("runner-cache.setup.failed")


def test_bad_configuration_exits_2_before_any_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", "no-scheme:9000")
    assert main(["setup", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "RUNNER_CACHE_STORE__ENDPOINT: must be a URL with scheme" in captured.err


def test_history_lists_runs_with_their_result(local_env: None, capsys: pytest.CaptureFixture) -> None:
    assert main(["setup", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["flow_run_id"]
    assert main(["history", "--flow", "setup-runner-cache", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    mine = next(run for run in runs if run["id"] == run_id)
    assert mine["state"] == "Completed" and mine["flow"] == "setup-runner-cache"
    assert mine["summary"] in {"Changes made.", "No changes."}
    assert main(["history", "--limit", "1"]) == 0
    assert "setup-runner-cache" in capsys.readouterr().out
