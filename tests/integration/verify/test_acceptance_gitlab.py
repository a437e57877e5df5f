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


def test_two_jobs_share_the_cache_and_nothing_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_CONFIG_FILE", str(Path(CONFIG or "").resolve()))
    settings = load_settings()
    state = verify_runner_cache(return_state=True)
    result = state.result(raise_on_failure=False)
    pipeline = next(step for step in result["steps"] if step["step"] == "pipeline")
    assert result["passed"] is True, pipeline["detail"]
    assert pipeline["data"]["cause"] == "ok" and pipeline["data"]["object"], pipeline["data"]
    # With one runner manager the proof is partial, and the warning says so; with several it must not.
    partial = any("partial proof" in warning for warning in pipeline["data"]["warnings"])
    assert partial is not result["proven_across_managers"]
    project = gitlab_client(settings.gitlab).projects.get(settings.gitlab.project)
    leftovers = project.branches.list(search=settings.gitlab.branch_prefix, get_all=True)
    assert [branch.name for branch in leftovers] == []
    running = project.pipelines.list(ref=pipeline["data"]["facts"]["branch"], scope="running", get_all=True)
    assert running == [], "a verification pipeline is still running"
    objects = settings.store.client().list_objects(
        settings.store.bucket, prefix=settings.cache.path or None, recursive=True
    )
    assert not [
        o.object_name for o in objects if o.object_name.endswith(pipeline["data"]["facts"]["build"]["created_key"])
    ]
