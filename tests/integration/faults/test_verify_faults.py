"""GitLab failing during verify-runner-cache (the public flow, python-gitlab against the GitLab fake with its
fault switch ``fail_after``): 5xx that pass are retried; a GitLab that stays down leaves the run failed in plain
words, with whatever it could not clean up named."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.fakes.gitlab import FakeRunner, GitLabFake
from tests.integration.verify.conftest import gitlab_fake, runner_for, store, verify_env  # noqa: F401 - fixtures
from tests.integration.verify.test_verify_flow import assert_cleaned_up, pipeline_step, run_flow

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_gitlab_5xx_at_the_start_is_retried(
    gitlab_fake: GitLabFake,  # noqa: F811
    runner_for: Callable[..., FakeRunner],  # noqa: F811
    verify_env: Callable[..., None],  # noqa: F811
) -> None:
    gitlab_fake.add_runner(runner_for())
    gitlab_fake.fail_after(None, status=502, requests=3)
    result, _ = run_flow()
    assert result["passed"] is True, pipeline_step(result)["detail"]
    assert_cleaned_up(gitlab_fake)


def test_gitlab_down_after_the_branch_is_created_fails_and_names_what_is_left(
    gitlab_fake: GitLabFake,  # noqa: F811
    runner_for: Callable[..., FakeRunner],  # noqa: F811
    verify_env: Callable[..., None],  # noqa: F811
) -> None:
    gitlab_fake.add_runner(runner_for())
    verify_env(GITLAB__TIMEOUT_SECONDS="10")
    gitlab_fake.fail_after("/repository/commits", status=502)  # the commit creates the branch
    result, _ = run_flow()
    step = pipeline_step(result)
    assert result["passed"] is False and step["status"] == "failed"
    assert "GitLab" in step["detail"], step["detail"]
    assert "Traceback" not in json.dumps(result)
    gitlab_fake.fail_after(None, requests=0)  # GitLab is back
    left = [name for name in gitlab_fake.branch_names(42) if name != "main"]
    text = json.dumps(result)
    assert all(name in text for name in left), f"branches left and not named: {left}\n{step['detail']}"
