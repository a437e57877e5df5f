"""setup's release step and rebuild-runner end to end: real rendering, fake cluster (Kubernetes API + helm), real S3."""

from __future__ import annotations

import json

import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.cli import main
from runner_cache.flows.rebuild import RebuildParameters, rebuild_runner
from runner_cache.flows.setup import setup_runner_cache
from runner_cache.tasks.release.step import SECRET_VERSION_ANNOTATION
from runner_cache.tasks.store.identity import BlockVault
from tests.integration.kube.conftest import Cluster, FakeHelm
from tests.support.prefect_records import events, flow_run_artifacts

pytestmark = pytest.mark.usefixtures("prefect_api")


def _steps(result: dict) -> dict[str, str]:
    return {step["step"]: step["status"] for step in result["steps"]}


def test_setup_configures_the_release_then_changes_nothing(
    configured: StoreSettings, helm: FakeHelm, cluster: Cluster
) -> None:
    first = setup_runner_cache(return_state=True).result()
    assert _steps(first)["release"] == "changed"
    assert [r["status"] for r in helm.revisions()] == ["deployed"]
    runner = BlockVault().load(configured, "runner")  # issue 16: the runner identity's key, never the admin key
    assert cluster.api.secret_data("gitlab-runner", "runner-cache-s3") == {
        "accesskey": runner.access_key,
        "secretkey": runner.secret_key.get_secret_value(),
    }
    upgrade = next(record for record in helm.records() if record["argv"][0] == "upgrade")
    assert "--rollback-on-failure" in upgrade["argv"]
    assert configured.secret_key.get_secret_value() not in json.dumps(upgrade)

    second = setup_runner_cache(return_state=True).result()
    assert second["changed"] is False and _steps(second)["release"] == "unchanged"
    assert len(helm.revisions()) == 1, "a second run with the same inputs must not make a new revision"


def test_rebuild_upgrades_and_verifies(configured: StoreSettings, helm: FakeHelm) -> None:
    configured.client().make_bucket(configured.bucket)
    state = rebuild_runner(parameters=RebuildParameters(runner_image_tag="alpine-v18.6.0"), return_state=True)
    result = state.result()
    assert _steps(result) == {"release": "changed", "roundtrip": "unchanged", "pipeline": "skipped"}
    deployed = helm.revisions()[-1]
    assert deployed["values"]["image"]["tag"] == "alpine-v18.6.0"
    artifact = " ".join(flow_run_artifacts(state.state_details.flow_run_id))
    assert "**Changes made.**" in artifact
    assert events("runner-cache.release.upgraded")


def test_failed_verification_rolls_the_release_back(configured: StoreSettings, helm: FakeHelm) -> None:
    configured.client().make_bucket(configured.bucket)
    assert rebuild_runner(return_state=True).is_completed()  # revision 1
    configured.client().remove_bucket(configured.bucket)  # the round trip now fails after the upgrade

    state = rebuild_runner(
        parameters=RebuildParameters(chart_version=None, runner_image_tag="alpine-v18.7.0"), return_state=True
    )
    assert state.is_failed()
    result = state.result(raise_on_failure=False)
    steps = _steps(result)
    assert steps["release"] == "changed" and steps["roundtrip"] == "failed" and steps["rollback"] == "changed"
    rollback = next(record for record in helm.records() if record["argv"][0] == "rollback")
    assert rollback["argv"][1:3] == ["gitlab-runner", "1"]
    assert helm.revisions()[-1]["status"] == "deployed" and len(helm.revisions()) == 3


def test_no_rollback_when_turned_off(configured: StoreSettings, helm: FakeHelm) -> None:
    configured.client().make_bucket(configured.bucket)
    rebuild_runner()
    configured.client().remove_bucket(configured.bucket)
    state = rebuild_runner(
        parameters=RebuildParameters(runner_image_tag="alpine-v18.7.0", rollback_on_failure=False), return_state=True
    )
    assert state.is_failed()
    assert "rollback" not in helm.commands()
    assert "rollback" not in _steps(state.result(raise_on_failure=False))


def test_rebuild_without_a_release_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNNER_CACHE_RELEASE__CHART", raising=False)
    state = rebuild_runner(return_state=True)
    assert state.is_failed() and "RUNNER_CACHE_RELEASE__CHART" in state.message


def test_rebuild_command(configured: StoreSettings, helm: FakeHelm, capsys: pytest.CaptureFixture) -> None:
    configured.client().make_bucket(configured.bucket)
    assert main(["rebuild", "--runner-image-tag", "alpine-v18.6.0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert _steps(result)["release"] == "changed" and result["flow_run_id"]
    assert helm.revisions()[-1]["values"]["image"]["tag"] == "alpine-v18.6.0"
    assert main(["rebuild", "--runner-image-tag", "alpine-v18.6.0", "--no-verify"]) == 0
    assert capsys.readouterr().out.startswith("rebuild: no changes")


def test_rebuild_command_without_a_release_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("RUNNER_CACHE_RELEASE__CHART", raising=False)
    assert main(["rebuild", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "RUNNER_CACHE_RELEASE__CHART" in captured.err


def test_new_credentials_restart_the_runner_pods(configured: StoreSettings, helm: FakeHelm, cluster: Cluster) -> None:
    """The runner reads the Secret only when it starts: a changed Secret must change the pod template."""
    setup_runner_cache()
    first = helm.revisions()[-1]["values"]["podAnnotations"][SECRET_VERSION_ANNOTATION]
    result = setup_runner_cache(rotate_runner_credentials=True, return_state=True).result()  # a new runner key
    assert _steps(result)["release"] == "changed"
    rotated = BlockVault().load(configured, "runner").secret_key.get_secret_value()
    assert cluster.api.secret_data("gitlab-runner", "runner-cache-s3")["secretkey"] == rotated
    second = helm.revisions()[-1]["values"]["podAnnotations"][SECRET_VERSION_ANNOTATION]
    assert second != first and len(helm.revisions()) == 2
    assert rotated not in json.dumps(helm.records())


def test_plan_reads_the_release_without_changing_it(
    configured: StoreSettings, helm: FakeHelm, cluster: Cluster, capsys: pytest.CaptureFixture
) -> None:
    assert main(["plan", "--json"]) == 0
    planned = {step["step"]: step for step in json.loads(capsys.readouterr().out)["steps"]}
    assert planned["release"]["status"] == "planned" and "would create Secret" in planned["release"]["detail"]
    assert "upgrade" not in helm.commands() and cluster.api.writes() == []
    setup_runner_cache()
    assert main(["plan", "--json"]) == 0
    planned = {step["step"]: step for step in json.loads(capsys.readouterr().out)["steps"]}
    assert planned["release"]["status"] == "unchanged"


def test_plan_reports_an_unreachable_store_as_a_failed_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__BACKEND", "external")
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("RUNNER_CACHE_STORE__ACCESS_KEY", "abc")
    monkeypatch.setenv("RUNNER_CACHE_STORE__SECRET_KEY", "abcdefgh")
    assert main(["plan", "--json"]) == 1
    planned = {step["step"]: step for step in json.loads(capsys.readouterr().out)["steps"]}
    assert planned["store"]["status"] == "failed" and "not reachable" in planned["store"]["detail"]
