"""verify-runner-cache end to end: the real flow, python-gitlab against the GitLab fake, whose jobs really run and
move the cache through a real S3 server. Every failure mode is a broken runner or project, never a mocked function."""

from __future__ import annotations

import argparse
import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

from runner_cache.blocks.store import StoreSettings
from runner_cache.commands import verify as verify_command
from runner_cache.errors import ConfigError
from runner_cache.flows.verify import verify_runner_cache
from tests.fakes.gitlab import FakeRunner, GitLabFake
from tests.integration.verify.conftest import PROJECT
from tests.support.prefect_records import database_bytes, flow_run_artifacts, flow_run_logs
from tests.support.servers import free_port

pytestmark = pytest.mark.usefixtures("prefect_api")


def run_flow(**parameters: Any) -> tuple[dict, uuid.UUID]:
    state = verify_runner_cache(
        roundtrip_first=parameters.pop("roundtrip_first", False), return_state=True, **parameters
    )
    result = state.result(raise_on_failure=False)
    assert isinstance(result, dict), result
    assert state.is_failed() is (not result["passed"])
    return result, state.state_details.flow_run_id


def pipeline_step(result: dict) -> dict:
    return next(step for step in result["steps"] if step["step"] == "pipeline")


def flow_events(flow_run_id: uuid.UUID, prefix: str = "runner-cache.verify.", expect: int = 1) -> list[dict]:
    """Events emitted by one flow run, waiting for ``expect`` of them."""
    deadline = time.monotonic() + 15
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(prefix=[prefix]),
                    related=EventRelatedFilter(resources_in_roles=[(f"prefect.flow-run.{flow_run_id}", "flow-run")]),
                ),
                limit=50,
            )
        found = [event.model_dump(mode="json") for event in page.events]
        if len(found) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def assert_cleaned_up(fake: GitLabFake) -> None:
    fake.wait_idle(timeout=10)
    assert fake.branch_names(42) == ["main"], "the verification branch was not deleted"
    assert all(p.status in {"success", "failed", "canceled", "skipped"} for p in fake.pipelines.values())


# --------------------------------------------------------------------------------------------------- pass


def test_pass_with_round_trip_artifacts_and_event(
    gitlab_fake: GitLabFake,
    store: StoreSettings,
    runner_for: Callable[..., FakeRunner],
    verify_env: Callable[..., None],
) -> None:
    runner = gitlab_fake.add_runner(runner_for())
    result, run_id = run_flow(roundtrip_first=True)
    assert result["passed"] is True and result["proven_across_pods"] is True
    assert [step["status"] for step in result["steps"]] == ["unchanged", "unchanged"]
    step = pipeline_step(result)
    expected = f"runner/{runner.short_token}/project/42/{step['data']['facts']['created_key']}"
    assert step["data"]["object"] == expected and step["data"]["warnings"] == []
    assert step["data"]["facts"]["created_key"].startswith("runner-cache-verify-")
    assert step["data"]["facts"]["created_key"].endswith("-non_protected")
    assert step["data"]["facts"]["build_host"] != step["data"]["facts"]["test_host"]
    # the verification leaves nothing behind: no branch, no object
    assert_cleaned_up(gitlab_fake)
    assert list(store.client().list_objects(store.bucket, recursive=True)) == []
    [pipeline] = [p for p in gitlab_fake.pipelines.values() if p.source == "api"]
    assert pipeline.status == "success" and step["data"]["pipeline_id"] == pipeline.id
    assert [p.status for p in gitlab_fake.pipelines.values() if p.source == "push"] == ["skipped"]

    artifacts = " ".join(flow_run_artifacts(run_id))
    assert "Runner cache verification: PASSED" in artifacts and f"`{expected}`" in artifacts
    assert "Successfully extracted cache" in artifacts and "Uploading cache.zip to" in artifacts
    assert "**No changes.**" in artifacts  # the summary artifact of the steps
    [event] = flow_events(run_id)
    assert event["event"] == "runner-cache.verify.passed"
    assert event["resource"]["prefect.resource.id"] == f"runner-cache.gitlab-project.{PROJECT}"
    assert event["payload"]["pipeline_id"] == pipeline.id and event["payload"]["proven_across_pods"] is True
    logs = " ".join(flow_run_logs(run_id))
    assert "pipeline check passed" in logs and "deleted branch runner-cache-verify-" in logs


def test_same_pod_passes_with_a_warning(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    gitlab_fake.add_runner(runner_for(same_pod=True))
    result, run_id = run_flow()
    step = pipeline_step(result)
    assert result["passed"] is True and result["proven_across_pods"] is False
    assert step["data"]["warnings"] == [
        f"not proven across pods: both jobs ran on {step['data']['facts']['test_host']!r}"
    ]
    assert "not proven across pods" in step["detail"]
    assert flow_events(run_id)[0]["payload"]["proven_across_pods"] is False


def test_shared_cache_across_two_runners_passes(
    gitlab_fake: GitLabFake,
    store: StoreSettings,
    runner_for: Callable[..., FakeRunner],
    verify_env: Callable[..., None],
) -> None:
    first = gitlab_fake.add_runner(runner_for(name="runner-a", shared=True))
    second = gitlab_fake.add_runner(runner_for(name="runner-b", shared=True))
    verify_env(CACHE__SHARED="true", CACHE__PATH="ci/cache")
    first.path = second.path = "ci/cache"
    gitlab_fake.projects[42].cache_index = 3
    result, _ = run_flow()
    step = pipeline_step(result)
    assert result["passed"] is True, step["detail"]
    facts = step["data"]["facts"]
    assert {facts["build_runner"], facts["test_runner"]} == {"runner-a", "runner-b"}
    assert (
        step["data"]["object"] == f"ci/cache/project/42/{facts['created_key']}"
        and "-3-non_protected" in facts["created_key"]
    )


def test_protected_branch_key_is_found_and_undeletable_branch_is_reported(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    gitlab_fake.add_runner(runner_for())
    gitlab_fake.protect_branch(42, "runner-cache-verify-*")
    result, run_id = run_flow()
    step = pipeline_step(result)
    assert result["passed"] is True and step["data"]["facts"]["created_key"].endswith("-protected")
    assert any(
        "cleanup: GitLab: the token may not delete branch runner-cache-verify-" in w and "(403)" in w
        for w in step["data"]["warnings"]
    )
    assert "cleanup: GitLab: the token may not delete branch" in " ".join(flow_run_logs(run_id))


# --------------------------------------------------------------------------------------------------- failures


FAILURES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "secret missing": (
        {"access_key": None, "secret_key": None},
        ['no S3 credentials ("No URL provided"', "the cache Secret is not mounted or misnamed"],
    ),
    "scheme mismatch": (
        {"insecure": False},
        [
            "speaks https to a store that answers http",
            "Insecure setting does not match the endpoint",
            "it must be true here",
        ],
    ),
    "bad credentials": (
        {"secret_key": "not-the-right-secret"},
        [
            "refused the cache requests of the build and test jobs with 403 Forbidden (SignatureDoesNotMatch)",
            "access key or secret key",
        ],
    ),
    "different path": (
        {"path": "elsewhere"},
        [
            "The runner writes cache objects to 'elsewhere/runner/",
            "but runner-cache expects 'runner/",
            "RUNNER_CACHE_CACHE__PATH=''",
        ],
    ),
}


@pytest.mark.parametrize("mode", list(FAILURES))
def test_broken_runner_is_diagnosed(
    mode: str,
    gitlab_fake: GitLabFake,
    store: StoreSettings,
    runner_for: Callable[..., FakeRunner],
    verify_env: Callable[..., None],
) -> None:
    overrides, phrases = FAILURES[mode]
    gitlab_fake.add_runner(runner_for(**overrides))
    result, run_id = run_flow()
    step = pipeline_step(result)
    assert result["passed"] is False and step["status"] == "failed"
    for phrase in phrases:
        assert phrase in step["detail"], (phrase, step["detail"])
    assert_cleaned_up(gitlab_fake)
    artifacts = " ".join(flow_run_artifacts(run_id))
    assert "Runner cache verification: FAILED" in artifacts and phrases[0] in artifacts
    # whatever the runner wrote under this run's key is removed again
    assert [
        o.object_name
        for o in store.client().list_objects(store.bucket, recursive=True)
        if "runner-cache-verify-" in o.object_name
    ] == []


def test_different_bucket_is_diagnosed(
    gitlab_fake: GitLabFake,
    store: StoreSettings,
    runner_for: Callable[..., FakeRunner],
    verify_env: Callable[..., None],
) -> None:
    other = f"rc-other-{secrets.token_hex(4)}"
    store.client().make_bucket(other)
    gitlab_fake.add_runner(runner_for(bucket=other))
    result, _ = run_flow()
    detail = pipeline_step(result)["detail"]
    assert f"uploaded its cache to {store.server_address}/{other}/runner/" in detail
    assert (
        f"bucket {store.bucket!r} at {store.endpoint} has no such object" in detail
        and "different bucket or store" in detail
    )


def test_not_shared_across_runners_is_diagnosed(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    first = gitlab_fake.add_runner(runner_for(name="runner-a"))
    second = gitlab_fake.add_runner(runner_for(name="runner-b"))
    result, _ = run_flow()
    step = pipeline_step(result)
    assert step["status"] == "failed"
    assert step["detail"].startswith("Not shared across runners: the build job ran on runner 'runner-a'")
    assert f"(token {first.short_token})" in step["detail"] and f"(token {second.short_token})" in step["detail"]
    assert "RUNNER_CACHE_CACHE__SHARED=true" in step["detail"]
    assert step["data"]["facts"]["nonce_restored"] is False
    assert_cleaned_up(gitlab_fake)


def test_protected_suffix_mismatch_is_diagnosed(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    gitlab_fake.add_runner(runner_for())
    gitlab_fake.protection_override["test"] = "protected"
    result, _ = run_flow()
    detail = pipeline_step(result)["detail"]
    assert detail.startswith("Protected-branch suffix mismatch: the build job saved the cache as 'runner-cache-verify-")
    assert "-non_protected' but the test job looked for 'runner-cache-verify-" in detail and "-protected'." in detail


def test_no_online_runner_times_out_cancels_and_cleans_up(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    gitlab_fake.add_runner(runner_for(tags=["some-other-tag"]))
    gitlab_fake.add_runner(runner_for(online=False))
    verify_env(GITLAB__TIMEOUT_SECONDS="1.5")
    started = time.monotonic()
    result, run_id = run_flow()
    assert time.monotonic() - started < 20
    step = pipeline_step(result)
    assert step["detail"].startswith(
        "No online runner with the tags [k8s, runner-cache] picked up the build job within 1.5 s"
    )
    [pipeline] = [p for p in gitlab_fake.pipelines.values() if p.source == "api"]
    assert (
        pipeline.status == "canceled"
        and ("POST", f"/api/v4/projects/42/pipelines/{pipeline.id}/cancel") in gitlab_fake.calls
    )
    assert_cleaned_up(gitlab_fake)
    assert "cancelled pipeline" in " ".join(flow_run_logs(run_id))
    [event] = flow_events(run_id)
    assert event["event"] == "runner-cache.verify.failed" and event["payload"]["diagnosis"] == step["data"]["diagnosis"]
    assert event["payload"]["pipeline_id"] == pipeline.id


def test_job_that_never_finishes_is_named_and_cancelled(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    gitlab_fake.add_runner(runner_for())
    gitlab_fake.stall_jobs.add("test")
    verify_env(GITLAB__TIMEOUT_SECONDS="2")
    result, _ = run_flow()
    detail = pipeline_step(result)["detail"]
    assert detail.startswith("The test job was still running after 2 s; the pipeline was cancelled.")
    assert "Its last trace line: 'runner-cache-verify test-host=" in detail
    [pipeline] = [p for p in gitlab_fake.pipelines.values() if p.source == "api"]
    assert {job.name: job.status for job in pipeline.jobs} == {"build": "success", "test": "canceled"}
    assert_cleaned_up(gitlab_fake)


def test_refused_pipeline_still_deletes_the_branch(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    gitlab_fake.add_runner(runner_for())
    gitlab_fake.projects[42].ci_enabled = False
    result, _ = run_flow()
    detail = pipeline_step(result)["detail"]
    assert (
        detail
        == f"GitLab: the token may not create the pipeline in project {PROJECT!r} (403): it needs the Developer role and api scope"
    )
    assert any(
        method == "DELETE" and "/repository/branches/runner-cache-verify-" in path for method, path in gitlab_fake.calls
    )
    assert_cleaned_up(gitlab_fake)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GITLAB__TOKEN": "glpat-not-the-token"}, "rejected the token (401): check RUNNER_CACHE_GITLAB__TOKEN"),
        ({"GITLAB__PROJECT": "qa/missing"}, "GitLab has no project 'qa/missing' visible to this token (404)"),
        (
            {"GITLAB__URL": f"http://127.0.0.1:{free_port()}"},
            "did not answer while trying to read the project (ConnectionError)",
        ),
    ],
)
def test_gitlab_refusals_are_plain_words(
    env: dict[str, str], expected: str, gitlab_fake: GitLabFake, verify_env: Callable[..., None]
) -> None:
    verify_env(**env)
    result, _ = run_flow()
    step = pipeline_step(result)
    assert step["status"] == "failed" and expected in step["detail"]
    assert gitlab_fake.pipelines == {} and gitlab_fake.branch_names(42) == ["main"]
    assert "glpat-not-the-token" not in json.dumps(result) and gitlab_fake.token not in json.dumps(result)


def test_failed_round_trip_skips_the_pipeline(
    gitlab_fake: GitLabFake,
    store: StoreSettings,
    runner_for: Callable[..., FakeRunner],
    verify_env: Callable[..., None],
) -> None:
    gitlab_fake.add_runner(runner_for())
    verify_env(STORE__SECRET_KEY="wrong-secret-key")
    result, run_id = run_flow(roundtrip_first=True)
    assert result["passed"] is False and [step["step"] for step in result["steps"]] == ["roundtrip"]
    assert gitlab_fake.pipelines == {}
    [event] = flow_events(run_id)
    assert event["event"] == "runner-cache.verify.failed" and event["payload"]["pipeline"] == "not run"


def test_without_gitlab_only_the_round_trip_runs(
    store: StoreSettings, verify_env: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNNER_CACHE_GITLAB__URL")
    result, run_id = run_flow(roundtrip_first=True)
    assert result["passed"] is True and result["proven_across_pods"] is False
    assert (
        pipeline_step(result)["status"] == "skipped" and "RUNNER_CACHE_GITLAB__URL" in pipeline_step(result)["detail"]
    )
    [event] = flow_events(run_id)
    assert event["event"] == "runner-cache.verify.passed" and event["payload"]["pipeline"] == "skipped"
    assert "only the round trip was checked" in " ".join(flow_run_logs(run_id))


# --------------------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("runner_mode", ["pass", "scheme mismatch"])
def test_secrets_never_leave_the_process(
    runner_mode: str,
    moto_store: StoreSettings,
    gitlab_fake: GitLabFake,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """Unique secrets (moto accepts any), and a runner whose error lines carry full presigned URLs."""
    from pydantic import SecretStr

    access, secret = f"AK{secrets.token_hex(8)}", f"SK{secrets.token_hex(16)}"
    store = moto_store.model_copy(update={"access_key": SecretStr(access), "secret_key": SecretStr(secret)})
    store.client().make_bucket(store.bucket)
    gitlab_fake.add_runner(FakeRunner.for_store(store, tags=["k8s"], insecure=runner_mode == "pass"))
    for name, value in {
        "STORE__BACKEND": "external", "STORE__ENDPOINT": store.endpoint, "STORE__ACCESS_KEY": access,
        "STORE__SECRET_KEY": secret, "STORE__BUCKET": store.bucket, "GITLAB__URL": gitlab_fake.url,
        "GITLAB__TOKEN": gitlab_fake.token, "GITLAB__PROJECT": PROJECT, "GITLAB__RUNNER_TAGS": "k8s",
        "GITLAB__POLL_SECONDS": "0.1",
    }.items():  # fmt: skip
        monkeypatch.setenv(f"RUNNER_CACHE_{name}", value)
    code = verify_command.run_verify(argparse.Namespace(config=None, json=True, skip_roundtrip=False))
    output = capsys.readouterr()
    document = json.loads(output.out)
    assert code == (0 if runner_mode == "pass" else 1) and document["passed"] is (runner_mode == "pass")
    if runner_mode == "scheme mismatch":
        # the raw trace really carries the access key (X-Amz-Credential), as a real runner's Go error does
        raw = "".join(line for p in gitlab_fake.pipelines.values() for job in p.jobs for line in job.trace)
        assert access in raw, "the scenario must put a secret into the trace for this test to mean anything"
    run_id = uuid.UUID(document["flow_run_id"])
    texts = {
        "stdout": output.out, "stderr": output.err,
        "artifacts": " ".join(flow_run_artifacts(run_id)), "logs": " ".join(flow_run_logs(run_id)),
        "events": json.dumps(flow_events(run_id)),
    }  # fmt: skip
    assert "X-Amz-" not in texts["artifacts"]
    database = database_bytes()
    for value in (access, secret, gitlab_fake.token):
        for where, text in texts.items():
            assert value not in text, f"a secret leaked into {where}"
        assert value.encode() not in database, "a secret leaked into Prefect's database"


# --------------------------------------------------------------------------------------------------- CLI


def test_cli_text_output_and_exit_codes(
    gitlab_fake: GitLabFake,
    runner_for: Callable[..., FakeRunner],
    verify_env: Callable[..., None],
    capsys: pytest.CaptureFixture,
) -> None:
    gitlab_fake.add_runner(runner_for(access_key=None, secret_key=None))
    assert verify_command.run_verify(argparse.Namespace(config=None, json=False, skip_roundtrip=True)) == 1
    out = capsys.readouterr().out
    assert (
        out.startswith("verify: FAILED")
        and "diagnosis: The runner of the build and test jobs has no S3 credentials" in out
    )
    assert f"pipeline: {gitlab_fake.url}/{PROJECT}/-/pipelines/" in out


def test_cli_registers_verify_and_rejects_bad_config(verify_env: Callable[..., None]) -> None:
    parser = argparse.ArgumentParser()
    verify_command.register(parser.add_subparsers())
    args = parser.parse_args(["verify", "--config", "", "--json", "--skip-roundtrip"])
    assert (args.json, args.skip_roundtrip, args.func) == (True, True, verify_command.run_verify)
    verify_env(GITLAB__URL="gitlab.example.com")
    with pytest.raises(ConfigError, match="RUNNER_CACHE_GITLAB__URL: must be a URL with scheme and host"):
        verify_command.run_verify(args)
