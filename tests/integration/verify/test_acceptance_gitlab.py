"""verify-runner-cache against a real GitLab, a real runner on Kubernetes and its real store.

Skipped unless ``RUNNER_CACHE_ACCEPTANCE_GITLAB_CONFIG`` names a runner-cache TOML file (the same format as
``runner-cache.toml``) with ``[store]`` (the runner's store, ``backend = "external"``), ``[cache]`` (its Path and
Shared) and ``[gitlab]`` (url, token, project, runner_tags). The runner must already use that store.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner_cache.blocks.settings import load_settings
from runner_cache.flows.verify import verify_runner_cache
from runner_cache.tasks.gitlab.client import gitlab_client

CONFIG = os.environ.get("RUNNER_CACHE_ACCEPTANCE_GITLAB_CONFIG")

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.skipif(not CONFIG, reason="set RUNNER_CACHE_ACCEPTANCE_GITLAB_CONFIG to a runner-cache TOML file"),
    pytest.mark.usefixtures("prefect_api"),
    pytest.mark.timeout(1200),
]


def test_two_jobs_on_different_pods_share_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_CONFIG_FILE", str(Path(CONFIG or "").resolve()))
    settings = load_settings()
    state = verify_runner_cache(return_state=True)
    result = state.result(raise_on_failure=False)
    pipeline = next(step for step in result["steps"] if step["step"] == "pipeline")
    assert result["passed"] is True, pipeline["detail"]
    assert result["proven_across_pods"] is True, pipeline["data"]["warnings"]
    project = gitlab_client(settings.gitlab).projects.get(settings.gitlab.project)
    leftovers = project.branches.list(search=settings.gitlab.branch_prefix, get_all=True)
    assert [branch.name for branch in leftovers] == []
