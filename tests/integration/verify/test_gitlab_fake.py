"""The GitLab fake, through the real python-gitlab client: REST shapes, pagination, errors, what GitLab refuses
(existing files, missing scopes, rate limits, pipeline deletion), and a job executor whose traces carry the real
runner's bytes (ANSI, section markers, timestamps by version)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import gitlab
import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.tasks.verify.trace import normalize
from tests.fakes.gitlab import FakeRunner, GitLabFake, ref_slug
from tests.integration.verify.conftest import PROJECT, TAGS

CI = """
stages: [build, test]
build:
  stage: build
  tags: [k8s, runner-cache]
  variables: {SECRET_WORD: swordfish}
  cache: {key: "$CI_COMMIT_REF_SLUG", paths: [vendor/], policy: push}
  script:
    - mkdir -p vendor
    - echo "word=$SECRET_WORD" > vendor/hello.txt
    - echo "build on $HOSTNAME"
test:
  stage: test
  tags: [k8s, runner-cache]
  cache: {key: "$CI_COMMIT_REF_SLUG", paths: [vendor/], policy: pull}
  script:
    - cat vendor/hello.txt
    - echo "test on $HOSTNAME"
"""


def client(fake: GitLabFake, token: str | None = None) -> gitlab.Gitlab:
    return gitlab.Gitlab(fake.url, private_token=token or fake.token, retry_transient_errors=False)


def wait_done(pipeline, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while pipeline.status not in {"success", "failed", "canceled", "skipped"}:
        assert time.monotonic() < deadline, f"pipeline still {pipeline.status}"
        time.sleep(0.05)
        pipeline.refresh()
    return pipeline


def commit_ci(project, branch: str, message: str = "add ci [skip ci]", content: str = CI):
    return project.commits.create(
        {"branch": branch, "start_branch": "main", "commit_message": message,
         "actions": [{"action": "create", "file_path": ".gitlab-ci.yml", "content": content}]}
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------- REST


def test_project_by_encoded_path_and_by_id(gitlab_fake: GitLabFake) -> None:
    gl = client(gitlab_fake)
    by_path = gl.projects.get(PROJECT)
    assert (by_path.id, by_path.path_with_namespace, by_path.default_branch) == (42, PROJECT, "main")
    assert gl.projects.get(42).path_with_namespace == PROJECT
    assert ("GET", "/api/v4/projects/qa%2Frunner-cache-verify") in gitlab_fake.calls
    with pytest.raises(gitlab.GitlabGetError) as missing:
        gl.projects.get("qa/nope")
    assert missing.value.response_code == 404 and "Project Not Found" in str(missing.value)


def test_wrong_token_is_401(gitlab_fake: GitLabFake) -> None:
    with pytest.raises(gitlab.GitlabAuthenticationError):
        client(gitlab_fake, token="glpat-wrong").projects.get(PROJECT)


def test_branches_paginate_like_gitlab(gitlab_fake: GitLabFake) -> None:
    for number in range(45):
        gitlab_fake.add_branch(42, f"feature/{number:02d}")
    project = client(gitlab_fake).projects.get(42, lazy=True)
    names = [branch.name for branch in project.branches.list(get_all=True, per_page=20)]
    assert len(names) == 46 and names == sorted(names) and "feature/07" in names
    page = project.branches.list(page=3, per_page=20)
    assert [branch.name for branch in page] == names[40:]
    listing = project.branches.list(iterator=True, per_page=10)
    assert listing.total == 46 and listing.total_pages == 5 and listing.next_page == 2
    assert [branch.name for branch in project.branches.list(search="feature/0", get_all=True)] == names[:10]


def test_branch_get_create_delete_and_errors(gitlab_fake: GitLabFake) -> None:
    project = client(gitlab_fake).projects.get(42, lazy=True)
    created = project.branches.create({"branch": "release/1.0", "ref": "main"})
    assert created.name == "release/1.0" and len(created.commit["id"]) == 40 and created.protected is False
    assert project.branches.get("release/1.0").commit["id"] == created.commit["id"]
    assert ("GET", "/api/v4/projects/42/repository/branches/release%2F1.0") in gitlab_fake.calls
    with pytest.raises(gitlab.GitlabCreateError, match="Branch already exists"):
        project.branches.create({"branch": "release/1.0", "ref": "main"})
    with pytest.raises(gitlab.GitlabCreateError, match="Invalid reference name"):
        project.branches.create({"branch": "x", "ref": "nope"})
    project.branches.delete("release/1.0")
    assert gitlab_fake.branch_names(42) == ["main"]
    with pytest.raises(gitlab.GitlabDeleteError) as gone:
        project.branches.delete("release/1.0")
    assert gone.value.response_code == 404
    with pytest.raises(gitlab.GitlabDeleteError) as default:
        project.branches.delete("main")
    assert default.value.response_code == 405


def test_helpers_change_what_the_api_shows(gitlab_fake: GitLabFake) -> None:
    gitlab_fake.add_branch(42, "stale")
    project = client(gitlab_fake).projects.get(42, lazy=True)
    assert {b.name for b in project.branches.list(get_all=True)} == {"main", "stale"}
    gitlab_fake.delete_branch(42, "stale")
    assert [b.name for b in project.branches.list(get_all=True)] == ["main"]
    assert gitlab_fake.add_project("other/one") != 42


def test_files_and_commits(gitlab_fake: GitLabFake) -> None:
    project = client(gitlab_fake).projects.get(42, lazy=True)
    project.files.create({"file_path": "docs/a.txt", "branch": "main", "content": "hello", "commit_message": "add a"})
    assert project.files.get("docs/a.txt", ref="main").decode() == b"hello"
    assert ("GET", "/api/v4/projects/42/repository/files/docs%2Fa.txt") in gitlab_fake.calls
    with pytest.raises(gitlab.GitlabGetError):
        project.files.get("docs/missing.txt", ref="main")
    commit = commit_ci(project, "verify-1", message="ci (no skip)")
    assert commit.title == "ci (no skip)" and "verify-1" in gitlab_fake.branch_names(42)


def test_skip_ci_commit_records_a_skipped_push_pipeline(gitlab_fake: GitLabFake) -> None:
    project = client(gitlab_fake).projects.get(42, lazy=True)
    commit = commit_ci(project, "verify-2")
    pipelines = project.pipelines.list(sha=commit.id)
    assert [(p.status, p.source) for p in pipelines] == [("skipped", "push")]
    assert project.pipelines.get(pipelines[0].id).jobs.list() == []


def test_pipeline_create_errors(gitlab_fake: GitLabFake) -> None:
    project = client(gitlab_fake).projects.get(42, lazy=True)
    with pytest.raises(gitlab.GitlabCreateError, match="Reference not found"):
        project.pipelines.create({"ref": "nope"})
    with pytest.raises(gitlab.GitlabCreateError, match="Missing CI config file"):
        project.pipelines.create({"ref": "main"})
    commit_ci(project, "bad", content="stages: [build]\njob:\n  stage: deploy\n  script: [true]\n")
    with pytest.raises(gitlab.GitlabCreateError, match="chosen stage deploy does not exist"):
        project.pipelines.create({"ref": "bad"})
    gitlab_fake.projects[42].ci_enabled = False
    with pytest.raises(gitlab.GitlabCreateError) as disabled:
        project.pipelines.create({"ref": "bad"})
    assert disabled.value.response_code == 403


# --------------------------------------------------------------------------------------------------- executor


def test_jobs_run_in_separate_pods_and_share_the_cache_through_s3(
    gitlab_fake: GitLabFake, store: StoreSettings, runner_for: Callable[..., FakeRunner]
) -> None:
    runner = gitlab_fake.add_runner(runner_for(version="19.3.0"))
    project = client(gitlab_fake).projects.get(42, lazy=True)
    commit_ci(project, "feature/Share-It")
    pipeline = project.pipelines.create({"ref": "feature/Share-It"})
    assert pipeline.status in {"created", "pending", "running"} and pipeline.source == "api"
    wait_done(pipeline)
    assert pipeline.status == "success" and pipeline.started_at and pipeline.finished_at
    jobs = {job.name: job for job in pipeline.jobs.list(get_all=True)}
    assert {name: job.status for name, job in jobs.items()} == {"build": "success", "test": "success"}
    assert jobs["build"].finished_at <= jobs["test"].started_at
    assert jobs["test"].runner["description"] == runner.name and jobs["test"].tag_list == sorted(TAGS)
    assert (
        jobs["test"].runner_manager["system_id"] == runner.system_id and "failure_reason" not in jobs["test"].attributes
    )
    build_raw = project.jobs.get(jobs["build"].id, lazy=True).trace()
    test_raw = project.jobs.get(jobs["test"].id, lazy=True).trace()
    # the raw bytes of a 19.x runner: timestamp headers, section markers, colours
    assert re.match(
        rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z 00O \x1b\[0KRunning with gitlab-runner 19\.3\.0 ", build_raw
    )
    assert re.search(rb"Z 00O[ +]section_start:\d+:archive_cache\r\x1b\[0K\n", build_raw)
    assert b"\x1b[32;1mCreated cache\x1b[0;m\n" in build_raw and b"\x1b[32;1mSuccessfully extracted cache" in test_raw
    build, test = normalize(build_raw).text, normalize(test_raw).text

    key = f"{ref_slug('feature/Share-It')}-non_protected"
    expected = f"runner/{runner.short_token}/project/42/{key}"
    assert f"  on {runner.name} {runner.short_token}, system ID: {runner.system_id}" in build
    assert f"Creating cache {key}..." in build and "vendor/: found 2 matching artifact files and directories" in build
    assert f"Uploading cache.zip to {store.endpoint}/{store.bucket}/{expected}\nCreated cache" in build
    assert (
        f"Checking cache for {key}..." in test
        and f"Downloading cache from {store.endpoint}/{store.bucket}/{expected}" in test
    )
    assert "Successfully extracted cache" in test and "$ cat vendor/hello.txt\nword=swordfish" in test
    assert "swordfish" not in test.split("word=swordfish")[0]  # the variable was only the build job's
    build_host = re.search(r"^build on (\S+)$", build, re.MULTILINE).group(1)
    test_host = re.search(r"^test on (\S+)$", test, re.MULTILINE).group(1)
    pod_token = runner.short_token.lower().replace("_", "-")
    assert build_host != test_host and build_host.startswith(f"runner-{pod_token}-project-42-concurrent-0-")
    assert f"Running on {build_host} via" in build
    assert store.client().stat_object(store.bucket, expected).size > 0


def test_cancel_kills_a_running_job(
    gitlab_fake: GitLabFake, store: StoreSettings, runner_for: Callable[..., FakeRunner]
) -> None:
    gitlab_fake.add_runner(runner_for())
    project = client(gitlab_fake).projects.get(42, lazy=True)
    commit_ci(
        project,
        "slow",
        content="build:\n  stage: build\n  tags: [k8s]\n  script:\n    - echo started\n    - sleep 60\n",
    )
    pipeline = project.pipelines.create({"ref": "slow"})
    deadline = time.monotonic() + 10
    while "started" not in project.jobs.get(pipeline.jobs.list()[0].id, lazy=True).trace().decode():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    assert pipeline.cancel()["status"] == "canceled"
    gitlab_fake.wait_idle(timeout=10)
    assert time.monotonic() - started < 5
    job = pipeline.jobs.list()[0]
    assert job.status == "canceled" and job.finished_at is not None
    assert "ERROR: Job failed: canceled" in normalize(project.jobs.get(job.id, lazy=True).trace()).text


def test_without_a_matching_runner_the_job_stays_pending(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], store: StoreSettings
) -> None:
    gitlab_fake.add_runner(runner_for(tags=["other"]))
    gitlab_fake.add_runner(runner_for(online=False))
    project = client(gitlab_fake).projects.get(42, lazy=True)
    commit_ci(project, "pending")
    pipeline = project.pipelines.create({"ref": "pending"})
    time.sleep(0.5)
    pipeline.refresh()
    assert pipeline.status == "pending"
    assert {job.status for job in pipeline.jobs.list()} == {"pending"}
    assert all(job.runner is None and job.started_at is None for job in pipeline.jobs.list())
    pipeline.cancel()
    pipeline.refresh()
    assert pipeline.status == "canceled"


def test_failed_job_skips_the_next_stage(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], store: StoreSettings
) -> None:
    gitlab_fake.add_runner(runner_for())
    project = client(gitlab_fake).projects.get(42, lazy=True)
    commit_ci(project, "broken", content=CI.replace('mkdir -p vendor"', "").replace("- mkdir -p vendor", "- exit 3"))
    pipeline = wait_done(project.pipelines.create({"ref": "broken"}))
    jobs = {job.name: job for job in pipeline.jobs.list()}
    assert pipeline.status == "failed" and jobs["build"].status == "failed" and jobs["test"].status == "skipped"
    trace = normalize(project.jobs.get(jobs["build"].id, lazy=True).trace()).text
    assert "$ exit 3" in trace and "ERROR: Job failed: command terminated with exit code 3" in trace
    assert "Saving cache" not in trace


def test_an_18x_runner_writes_no_timestamps_and_the_17x_error_wording_is_gone(
    gitlab_fake: GitLabFake, store: StoreSettings, runner_for: Callable[..., FakeRunner]
) -> None:
    """18.x: FF_TIMESTAMPS off by default; the S3 code is in the error line (retry_helper.go@v18.0.0)."""
    gitlab_fake.add_runner(runner_for(version="18.5.0", secret_key="not-the-secret"))
    project = client(gitlab_fake).projects.get(42, lazy=True)
    commit_ci(project, "wrong-secret")
    pipeline = wait_done(project.pipelines.create({"ref": "wrong-secret"}))
    jobs = {job.name: job for job in pipeline.jobs.list()}
    raw = project.jobs.get(jobs["build"].id, lazy=True).trace()
    assert raw.startswith(b"\x1b[0KRunning with gitlab-runner 18.5.0 (")
    assert b"section_end:" in raw and b"\r\x1b[0Ksection_start:" in raw  # markers back to back, as 18.x writes them
    text = normalize(raw).text
    assert "FATAL: received: 403 Forbidden. Request failed with code: SignatureDoesNotMatch" in text
    assert "Retrying" not in text and "Failed to create cache" in text  # a 4xx is not retried


def test_image_pull_failure_fails_before_any_cache_step(
    gitlab_fake: GitLabFake, store: StoreSettings, runner_for: Callable[..., FakeRunner]
) -> None:
    gitlab_fake.add_runner(runner_for(image_pull_fails=True))
    project = client(gitlab_fake).projects.get(42, lazy=True)
    commit_ci(project, "no-image")
    pipeline = wait_done(project.pipelines.create({"ref": "no-image"}))
    build = next(job for job in pipeline.jobs.list() if job.name == "build")
    assert (build.status, build.failure_reason) == ("failed", "runner_system_failure")
    trace = normalize(project.jobs.get(build.id, lazy=True).trace())
    assert not trace.has_section("archive_cache") and "image pull failed" in trace.text


def test_commits_refuse_create_of_an_existing_file_and_update_of_a_missing_one(gitlab_fake: GitLabFake) -> None:
    project = client(gitlab_fake).projects.get(42, lazy=True)
    with pytest.raises(gitlab.GitlabCreateError, match="A file with this name already exists") as exists:
        project.commits.create({"branch": "x", "start_branch": "main", "commit_message": "m",
                                "actions": [{"action": "create", "file_path": "README.md", "content": "x"}]})  # fmt: skip
    assert exists.value.response_code == 400 and gitlab_fake.branch_names(42) == ["main"]
    with pytest.raises(gitlab.GitlabCreateError, match="A file with this name doesn't exist"):
        project.commits.create({"branch": "x", "start_branch": "main", "commit_message": "m",
                                "actions": [{"action": "update", "file_path": ".gitlab-ci.yml", "content": "x"}]})  # fmt: skip


def test_project_json_ci_config_path_and_empty_repository(gitlab_fake: GitLabFake) -> None:
    gitlab_fake.add_project("qa/empty", project_id=50, empty=True)
    gitlab_fake.add_project("qa/custom", project_id=51, ci_config_path="ci/main.yml")
    gl = client(gitlab_fake)
    empty = gl.projects.get("qa/empty")
    assert empty.empty_repo is True and empty.default_branch is None and empty.ci_config_path is None
    assert gl.projects.get(42).empty_repo is False
    assert gl.projects.get("qa/custom").ci_config_path == "ci/main.yml"
    # the first commit of an empty repository creates its default branch
    empty.commits.create({"branch": "verify", "commit_message": "m",
                          "actions": [{"action": "create", "file_path": "a", "content": "x"}]})  # fmt: skip
    assert gl.projects.get("qa/empty").default_branch == "verify"


def test_a_token_without_api_scope_reads_but_may_not_write(gitlab_fake: GitLabFake) -> None:
    gitlab_fake.token_scopes = {"read_api"}
    project = client(gitlab_fake).projects.get(42)
    with pytest.raises(gitlab.GitlabCreateError) as refused:
        project.branches.create({"branch": "x", "ref": "main"})
    assert refused.value.response_code == 403 and refused.value.error_message == "insufficient_scope"


def test_rate_limit_answers_429_with_retry_after(gitlab_fake: GitLabFake) -> None:
    gitlab_fake.throttle(1, retry_after=1)
    started = time.monotonic()
    assert client(gitlab_fake).projects.get(42).id == 42  # python-gitlab waits Retry-After, then retries
    assert time.monotonic() - started >= 1
    gitlab_fake.throttle(5)
    with pytest.raises(gitlab.GitlabGetError) as limited:
        client(gitlab_fake).projects.get(42, max_retries=0)
    assert limited.value.response_code == 429


def test_only_an_owner_deletes_pipelines_and_a_maintainer_lists_runners(
    gitlab_fake: GitLabFake, runner_for: Callable[..., FakeRunner], store: StoreSettings
) -> None:
    runner = gitlab_fake.add_runner(runner_for(access_level="ref_protected", paused=True))
    second = gitlab_fake.add_runner(runner_for(token=runner.token))
    project = client(gitlab_fake).projects.get(42, lazy=True)
    commit_ci(project, "deleting")
    pipeline = project.pipelines.create({"ref": "deleting"})
    with pytest.raises(gitlab.GitlabDeleteError) as refused:
        pipeline.delete()
    assert refused.value.response_code == 403
    [listed] = project.runners.list(get_all=True)  # two managers, one registration
    assert (listed.id, second.id, listed.paused) == (runner.id, runner.id, True)
    details = client(gitlab_fake).runners.get(runner.id)
    assert details.access_level == "ref_protected" and details.tag_list == TAGS
    gitlab_fake.role = "developer"
    with pytest.raises(gitlab.GitlabListError):
        project.runners.list()
    gitlab_fake.role = "owner"
    pipeline.delete()
    assert pipeline.id not in gitlab_fake.pipelines
