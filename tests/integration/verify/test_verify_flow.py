"""verify-runner-cache end to end: the real flow, python-gitlab against the GitLab fake, whose jobs really run and
move the cache through a real S3 server and write the bytes a real runner writes. Every failure is a broken runner
or project, never a mocked function; each must come out as its true cause, and nothing may stay behind."""

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
from runner_cache.tasks.verify.diagnosis import BUILD_JOB, TEST_JOB
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


def assert_cleaned_up(fake: GitLabFake, store: StoreSettings | None = None) -> None:
    """No verify branch, no running pipeline, and (with ``store``) no object of this run in the bucket."""
    fake.wait_idle(timeout=10)
    assert fake.branch_names(42) == ["main"], "the verification branch was not deleted"
    assert all(p.status in {"success", "failed", "canceled", "skipped"} for p in fake.pipelines.values())
    if store is not None:
        left = [o.object_name for o in store.client().list_objects(store.bucket, recursive=True)]
        assert [name for name in left if "runner-cache-verify-" in name] == []


# --------------------------------------------------------------------------------------------------- pass


@pytest.mark.parametrize(("version", "stamps"), [("18.5.0", False), ("19.3.0", True)])
def test_pass_with_artifacts_event_and_nothing_left(
    version: str,
    stamps: bool,
    gitlab_fake: GitLabFake,
    store: StoreSettings,
    runner_for: Callable[..., FakeRunner],
    verify_env: Callable[..., None],
) -> None:
    runner = gitlab_fake.add_runner(runner_for(version=version))
    gitlab_fake.role = "owner"  # may delete pipelines
    result, run_id = run_flow(roundtrip_first=True)
    assert result["passed"] is True and [step["status"] for step in result["steps"]] == ["unchanged", "unchanged"]
    step = pipeline_step(result)
    data = step["data"]
    assert data["cause"] == "ok" and data["fix"] == ""
    created = data["facts"]["build"]["created_key"]
    assert created.startswith("runner-cache-verify-") and created.endswith("-non_protected")
    assert data["object"] == f"runner/{runner.short_token}/project/42/{created}"
    assert data["facts"]["build"]["runner_version"] == version
    assert (data["facts"]["build"]["feature_flags"] == {}) is (stamps == (version >= "19"))
    # one runner manager ran both jobs: passed, and said to be a partial proof
    assert result["proven_across_managers"] is False
    assert any(f"partial proof: one runner manager (system ID {runner.system_id})" in w for w in data["warnings"])
    # nothing stays: branch, pipelines (the role allows it), object
    assert_cleaned_up(gitlab_fake, store)
    assert gitlab_fake.pipelines == {}
    artifacts = " ".join(flow_run_artifacts(run_id))
    assert "Runner cache verification: PASSED (`ok`)" in artifacts and f"`{data['object']}`" in artifacts
    assert "Successfully extracted cache" in artifacts and "\x1b" not in artifacts
    [event] = flow_events(run_id)
    assert event["event"] == "runner-cache.verify.passed" and event["payload"]["cause"] == "ok"
    assert event["resource"]["prefect.resource.id"] == f"runner-cache.gitlab-project.{PROJECT}"
    logs = " ".join(flow_run_logs(run_id))
    assert "deleted branch runner-cache-verify-" in logs


def test_two_managers_of_one_registration_prove_it_across_managers(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    first = gitlab_fake.add_runner(runner_for())
    second = gitlab_fake.add_runner(runner_for(token=first.token, manager="gitlab-runner-2"))
    result, _ = run_flow()
    data = pipeline_step(result)["data"]
    assert result["passed"] is True and result["proven_across_managers"] is True, data
    assert {data["facts"]["build"]["system_id"], data["facts"]["test"]["system_id"]} == {
        first.system_id,
        second.system_id,
    }
    assert not any("partial proof" in warning for warning in data["warnings"])
    # pipelines stay for a Maintainer, and the verdict says so
    assert any("stay in the project: deleting pipelines needs the Owner role" in w for w in data["warnings"])


def test_hashed_keys_are_found_and_deleted(
    gitlab_fake: GitLabFake,
    store: StoreSettings,
    runner_for: Callable[..., FakeRunner],
    verify_env: Callable[..., None],
) -> None:
    """FF_HASH_CACHE_KEYS (18.4+): the object is sha256(key), sharded by its first two hex digits from 19.0."""
    gitlab_fake.add_runner(runner_for(version="19.3.0", feature_flags={"FF_HASH_CACHE_KEYS": True}))
    result, _ = run_flow()
    data = pipeline_step(result)["data"]
    assert data["facts"]["build"]["feature_flags"] == {"FF_HASH_CACHE_KEYS": True}
    assert result["passed"] is True, data["message"]
    assert_cleaned_up(gitlab_fake, store)
    assert list(store.client().list_objects(store.bucket, recursive=True)) == []


def test_an_instance_runner_that_takes_the_jobs_is_pointed_out(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    """On GitLab.com instance runners with matching tags may take the jobs: it passes, and says whose runner it was."""
    runner = gitlab_fake.add_runner(runner_for(runner_type="instance_type", name="saas-linux-small-amd64"))
    result, _ = run_flow()
    data = pipeline_step(result)["data"]
    assert result["passed"] is True and runner.runner_type == "instance_type"
    assert any(f"ran on an instance runner ({runner.name})" in warning for warning in data["warnings"])


def test_shared_cache_across_two_registrations_with_path_and_index(
    gitlab_fake: GitLabFake,
    store: StoreSettings,
    runner_for: Callable[..., FakeRunner],
    verify_env: Callable[..., None],
) -> None:
    first = gitlab_fake.add_runner(runner_for(name="runner-a", shared=True, path="ci/cache"))
    gitlab_fake.add_runner(runner_for(name="runner-b", shared=True, path="ci/cache"))
    verify_env(CACHE__SHARED="true", CACHE__PATH="ci/cache")
    gitlab_fake.project(42).cache_index = 3
    result, _ = run_flow()
    step = pipeline_step(result)
    assert result["passed"] is True, step["detail"]
    facts = step["data"]["facts"]
    assert {facts["build"]["runner"], facts["test"]["runner"]} == {"runner-a", "runner-b"} and first.shared
    assert step["data"]["object"] == f"ci/cache/project/42/{facts['build']['created_key']}"
    assert "-3-non_protected" in facts["build"]["created_key"]
    assert_cleaned_up(gitlab_fake, store)


def test_existing_ci_file_and_custom_config_path_are_updated_on_the_branch_only(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    gitlab_fake.add_project("qa/with-ci", project_id=43, files={"ci/pipeline.yml": "build:\n  script: [make]\n"},
                            ci_config_path="ci/pipeline.yml")  # fmt: skip
    gitlab_fake.add_runner(runner_for())
    verify_env(GITLAB__PROJECT="qa/with-ci")
    result, _ = run_flow()
    assert result["passed"] is True, pipeline_step(result)["detail"]
    project = gitlab_fake.project(43)
    assert project.commits[project.branches["main"]].files["ci/pipeline.yml"] == "build:\n  script: [make]\n"
    [commit] = [c for c in project.commits.values() if c.message.startswith("runner-cache: verify")]
    assert BUILD_JOB in commit.files["ci/pipeline.yml"] and "GIT_STRATEGY: none" in commit.files["ci/pipeline.yml"]
    assert sorted(project.branches) == ["main"]


def test_rate_limited_gitlab_is_waited_out(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    gitlab_fake.add_runner(runner_for())
    gitlab_fake.throttle(2, retry_after=1)
    result, _ = run_flow()
    assert result["passed"] is True, pipeline_step(result)["detail"]


def test_a_pipeline_create_that_times_out_is_adopted_not_left_running(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    gitlab_fake.add_runner(runner_for())
    gitlab_fake.slow_pipeline_create = 3.0
    verify_env(GITLAB__REQUEST_TIMEOUT="1")
    result, run_id = run_flow()
    api = [p for p in gitlab_fake.pipelines.values() if p.source == "api"]
    assert len(api) == 1, "the pipeline must not be created twice"
    assert result["passed"] is True and pipeline_step(result)["data"]["pipeline_id"] == api[0].id
    assert "adopted pipeline" in " ".join(flow_run_logs(run_id))
    assert_cleaned_up(gitlab_fake)


# --------------------------------------------------------------------------------------------------- failures


FAILURES: dict[str, tuple[dict[str, Any], str, str]] = {
    # runner overrides, cause, a trace line that must be quoted as evidence
    "secret missing": ({"access_key": None, "secret_key": None}, "no_cache_config", "No URL provided"),
    "https to the http store": ({"insecure": False}, "https_to_http", "server gave HTTP response to HTTPS client"),
    "wrong secret key": ({"secret_key": "not-the-right-secret"}, "signature_mismatch", "SignatureDoesNotMatch"),
    "unknown access key": (
        {"access_key": "AKNOBODY", "secret_key": "whatever-secret"},
        "access_denied",
        "InvalidAccessKeyId",
    ),
    "image pull": ({"image_pull_fails": True}, "job_failed_before_cache", "image pull failed"),
}


@pytest.mark.parametrize("mode", list(FAILURES))
def test_broken_runner_gets_its_true_cause(
    mode: str,
    gitlab_fake: GitLabFake,
    store: StoreSettings,
    runner_for: Callable[..., FakeRunner],
    verify_env: Callable[..., None],
) -> None:
    overrides, cause, line = FAILURES[mode]
    gitlab_fake.add_runner(runner_for(**overrides))
    result, run_id = run_flow()
    step = pipeline_step(result)
    assert result["passed"] is False and step["status"] == "failed"
    assert step["data"]["cause"] == cause, step["detail"]
    assert any(line in evidence for evidence in step["data"]["evidence"]), step["data"]["evidence"]
    assert step["detail"].startswith(f"{cause}: ") and "Fix: " in step["detail"]
    assert_cleaned_up(gitlab_fake, store)
    artifacts = " ".join(flow_run_artifacts(run_id))
    assert f"Runner cache verification: FAILED (`{cause}`)" in artifacts


def test_missing_bucket(
    moto_store: StoreSettings, gitlab_fake: GitLabFake, verify_env: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto refuses a PUT into a missing bucket as AWS and MinIO do (SeaweedFS would create the bucket)."""
    gitlab_fake.add_runner(FakeRunner.for_store(moto_store, tags=["k8s", "runner-cache"]))
    for name, value in {"ENDPOINT": moto_store.endpoint, "BUCKET": moto_store.bucket,
                        "ACCESS_KEY": moto_store.access_key.get_secret_value(),
                        "SECRET_KEY": moto_store.secret_key.get_secret_value()}.items():  # fmt: skip
        monkeypatch.setenv(f"RUNNER_CACHE_STORE__{name}", value)
    result, _ = run_flow()
    data = pipeline_step(result)["data"]
    assert data["cause"] == "no_such_bucket", data["message"]
    assert "Request failed with code: NoSuchBucket" in data["evidence"][0]
    assert_cleaned_up(gitlab_fake)


def test_unreachable_store_after_the_runners_retries(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    gitlab_fake.add_runner(runner_for(server_address=f"127.0.0.1:{free_port()}"))
    result, _ = run_flow()
    data = pipeline_step(result)["data"]
    assert data["cause"] == "store_unreachable" and "connect: connection refused" in data["evidence"][0]
    assert "X-Amz-" not in data["evidence"][0]  # the presigned query is dropped, even masked by the runner


def test_different_path_and_different_bucket(
    gitlab_fake: GitLabFake,
    store: StoreSettings,
    runner_for: Callable[..., FakeRunner],
    verify_env: Callable[..., None],
) -> None:
    gitlab_fake.add_runner(runner_for(path="elsewhere"))
    result, _ = run_flow()
    data = pipeline_step(result)["data"]
    assert data["cause"] == "layout_mismatch" and "'elsewhere/runner/" in data["message"]
    assert_cleaned_up(gitlab_fake, store)

    other = f"rc-other-{secrets.token_hex(4)}"
    store.client().make_bucket(other)
    gitlab_fake.runners.clear()
    gitlab_fake.add_runner(runner_for(bucket=other))
    result, _ = run_flow()
    data = pipeline_step(result)["data"]
    assert data["cause"] == "object_not_in_bucket" and f"/{other}/runner/" in data["message"]


def test_not_shared_across_registrations(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    first = gitlab_fake.add_runner(runner_for(name="runner-a"))
    second = gitlab_fake.add_runner(runner_for(name="runner-b"))
    result, _ = run_flow()
    data = pipeline_step(result)["data"]
    assert data["cause"] == "different_runners_not_shared"
    assert f"token {first.short_token}" in data["message"] and f"token {second.short_token}" in data["message"]
    assert "RUNNER_CACHE_CACHE__SHARED=true" in data["fix"]
    assert_cleaned_up(gitlab_fake)


def test_protected_suffix_mismatch(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    gitlab_fake.add_runner(runner_for())
    gitlab_fake.protection_override[TEST_JOB] = "protected"
    result, _ = run_flow()
    data = pipeline_step(result)["data"]
    assert data["cause"] == "key_mismatch" and "protected-branch suffixes" in data["message"]


@pytest.mark.parametrize(
    ("runner", "note"),
    [
        ({"tags": ["some-other-tag"]}, "no runner enabled for this project has all the tags [k8s, runner-cache]"),
        ({"paused": True}, "has the tags but is paused"),
        ({"access_level": "ref_protected"}, "is protected: it runs jobs of protected branches only"),
        ({"projects": [7]}, "no runner enabled for this project has all the tags"),
    ],
)
def test_pending_jobs_time_out_with_the_runners_reason(
    runner: dict[str, Any], note: str, gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner],
    verify_env: Callable[..., None],
) -> None:  # fmt: skip
    gitlab_fake.add_runner(runner_for(**runner))
    verify_env(GITLAB__TIMEOUT_SECONDS="1.5")
    started = time.monotonic()
    result, run_id = run_flow()
    assert time.monotonic() - started < 20
    data = pipeline_step(result)["data"]
    assert data["cause"] == "jobs_pending" and f"No runner took the {BUILD_JOB} job within 1.5 s" in data["message"]
    assert note in data["message"], data["message"]
    [pipeline] = [p for p in gitlab_fake.pipelines.values() if p.source == "api"]
    assert pipeline.status == "canceled"
    assert_cleaned_up(gitlab_fake)
    [event] = flow_events(run_id)
    assert event["event"] == "runner-cache.verify.failed" and event["payload"]["cause"] == "jobs_pending"


def test_a_job_that_never_finishes_is_named_and_cancelled(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    gitlab_fake.add_runner(runner_for())
    gitlab_fake.stall_jobs.add(TEST_JOB)
    verify_env(GITLAB__TIMEOUT_SECONDS="2")
    result, _ = run_flow()
    data = pipeline_step(result)["data"]
    assert data["cause"] == "job_timed_out" and f"The {TEST_JOB} job was still running after 2 s" in data["message"]
    assert "runner-cache-verify test-host=" in data["message"]
    [pipeline] = [p for p in gitlab_fake.pipelines.values() if p.source == "api"]
    assert {job.name: job.status for job in pipeline.jobs} == {BUILD_JOB: "success", TEST_JOB: "canceled"}
    assert_cleaned_up(gitlab_fake)


def test_policy_injected_jobs_do_not_hold_up_the_verdict(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None]
) -> None:
    """A job nobody can run (as a pipeline execution policy may add) stays pending; our two jobs decide."""
    gitlab_fake.add_runner(runner_for())
    gitlab_fake.injected_jobs["policy-scan"] = {"stage": ".post", "tags": ["policy-runner"], "script": ["scan"]}
    verify_env(GITLAB__TIMEOUT_SECONDS="20")
    started = time.monotonic()
    result, _ = run_flow()
    assert result["passed"] is True and time.monotonic() - started < 15
    assert_cleaned_up(gitlab_fake)


# --------------------------------------------------------------------------------------------------- GitLab refuses


@pytest.mark.parametrize(
    ("env", "setup", "expected"),
    [
        ({"GITLAB__TOKEN": "glpat-not-the-token"}, None, "rejected the token (401)"),
        ({"GITLAB__PROJECT": "qa/missing"}, None, "GitLab has no project 'qa/missing' visible to this token (404)"),
        ({"GITLAB__URL": f"http://127.0.0.1:{free_port()}"}, None, "did not answer while trying to read the project"),
        ({}, "scope", "(403, insufficient_scope) (give the token the api scope)"),
        (
            {"GITLAB__PROJECT": "qa/empty"},
            "empty",
            "has an empty repository; runner-cache will not create its first branch",
        ),
        ({"GITLAB__PROJECT": "qa/elsewhere"}, "elsewhere", "takes its CI/CD configuration from 'ci.yml@qa/central'"),
        ({}, "ci disabled", "the token may not create the pipeline"),
    ],
)
def test_gitlab_refusals_are_plain_words_and_leave_nothing(
    env: dict[str, str], setup: str | None, expected: str, gitlab_fake: GitLabFake,
    runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None],
) -> None:  # fmt: skip
    gitlab_fake.add_runner(runner_for())
    gitlab_fake.add_project("qa/empty", project_id=50, empty=True)
    gitlab_fake.add_project("qa/elsewhere", project_id=51, ci_config_path="ci.yml@qa/central")
    if setup == "scope":
        gitlab_fake.token_scopes = {"read_api"}
    if setup == "ci disabled":
        gitlab_fake.project(42).ci_enabled = False
    verify_env(**env)
    result, _ = run_flow()
    step = pipeline_step(result)
    assert step["status"] == "failed" and step["data"]["cause"] == "gitlab_refused"
    assert expected in step["detail"], step["detail"]
    assert [p for p in gitlab_fake.pipelines.values() if p.source == "api"] == []
    assert gitlab_fake.branch_names(42) == ["main"] and gitlab_fake.branch_names(50) == []
    assert "glpat-not-the-token" not in json.dumps(result) and gitlab_fake.token not in json.dumps(result)


def test_missing_runner_tags_are_a_configuration_error(
    gitlab_fake: GitLabFake, verify_env: Callable[..., None], capsys: pytest.CaptureFixture
) -> None:
    verify_env(GITLAB__RUNNER_TAGS="")
    args = argparse.Namespace(config=None, json=False, skip_roundtrip=True)
    with pytest.raises(ConfigError, match="RUNNER_CACHE_GITLAB__RUNNER_TAGS: required once url, token and project"):
        verify_command.run_verify(args)
    state = verify_runner_cache(roundtrip_first=False, return_state=True)  # the flow refuses the same settings
    assert state.is_failed() and "RUNNER_CACHE_GITLAB__RUNNER_TAGS" in str(state.result(raise_on_failure=False))
    assert gitlab_fake.calls == []


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
    assert result["passed"] is True and result["proven_across_managers"] is False
    assert (
        pipeline_step(result)["status"] == "skipped" and "RUNNER_CACHE_GITLAB__URL" in pipeline_step(result)["detail"]
    )
    [event] = flow_events(run_id)
    assert event["event"] == "runner-cache.verify.passed" and event["payload"]["pipeline"] == "skipped"
    assert "only the round trip was checked" in " ".join(flow_run_logs(run_id))


# --------------------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("runner_mode", ["pass", "https to the http store"])
def test_secrets_never_leave_the_process(
    runner_mode: str, moto_store: StoreSettings, gitlab_fake: GitLabFake, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    """Unique secrets (moto accepts any), and a runner whose error lines carry presigned URLs."""
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
    run_id = uuid.UUID(document["flow_run_id"])
    texts = {
        "stdout": output.out, "stderr": output.err,
        "artifacts": " ".join(flow_run_artifacts(run_id)), "logs": " ".join(flow_run_logs(run_id)),
        "events": json.dumps(flow_events(run_id)),
    }  # fmt: skip
    database = database_bytes()
    for value in (access, secret, gitlab_fake.token):
        for where, text in texts.items():
            assert value not in text, f"a secret leaked into {where}"
        assert value.encode() not in database, "a secret leaked into Prefect's database"


# --------------------------------------------------------------------------------------------------- CLI


def test_cli_text_output_and_exit_codes(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], verify_env: Callable[..., None],
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    gitlab_fake.add_runner(runner_for(access_key=None, secret_key=None))
    assert verify_command.run_verify(argparse.Namespace(config=None, json=False, skip_roundtrip=True)) == 1
    out = capsys.readouterr().out
    assert out.startswith("verify: FAILED") and "failed: no_cache_config — The build job's runner has no usable" in out
    assert "fix: The runner got no cache URL" in out and "  No URL provided, cache will not be uploaded" in out
    assert f"pipeline: {gitlab_fake.url}/{PROJECT}/-/pipelines/" in out


def test_cli_registers_verify_and_rejects_bad_config(verify_env: Callable[..., None]) -> None:
    parser = argparse.ArgumentParser()
    verify_command.register(parser.add_subparsers())
    args = parser.parse_args(["verify", "--config", "", "--json", "--skip-roundtrip"])
    assert (args.json, args.skip_roundtrip, args.func) == (True, True, verify_command.run_verify)
    verify_env(GITLAB__URL="gitlab.example.com")
    with pytest.raises(ConfigError, match="RUNNER_CACHE_GITLAB__URL: must be a URL with scheme and host"):
        verify_command.run_verify(args)
