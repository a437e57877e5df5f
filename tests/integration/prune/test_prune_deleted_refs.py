"""``--deleted-refs`` against the GitLab fake, through python-gitlab, on a real SeaweedFS store."""

from __future__ import annotations

import json
import time

import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.cli import main
from tests.fakes.gitlab import GitLabFake
from tests.integration.prune.conftest import names_in, seed

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_caches_of_deleted_branches_go(
    seaweed_store: StoreSettings, configure, gitlab_fake: GitLabFake, capsys: pytest.CaptureFixture
) -> None:
    project = gitlab_fake.add_project("group/app")
    for n in range(30):  # more than one page of branches
        gitlab_fake.add_branch(project, f"topic/{n}")
    gitlab_fake.add_branch(project, "feature/Login")
    gitlab_fake.add_branch(project, "release-1")
    gitlab_fake.add_branch(project, "feature/old")
    gitlab_fake.delete_branch(project, "feature/old")
    runner = f"runner/abcdef123/project/{project}"
    live = [
        f"{runner}/main-protected",
        f"{runner}/main-2-protected",
        f"{runner}/feature-login-non_protected",
        f"{runner}/topic-29-non_protected",
        f"{runner}/release-1-protected",  # a branch that ends in a number: its slug is live
        f"{runner}/default-protected",  # GitLab's default key
        f"{runner}/deps-" + "0123456789" * 4,  # cache:key:files
        "project/999/gone-protected",  # a project GitLab does not know: kept
    ]
    gone = [
        f"{runner}/feature-old-non_protected",
        f"{runner}/feature-old-3-non_protected",
        f"project/{project}/feature-old",
    ]
    seed(seaweed_store, live + gone)
    configure(seaweed_store)

    assert main(["prune", "--json", "--deleted-refs", "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert sorted(entry["key"] for entry in dry["deleted"]) == sorted(gone)
    assert names_in(seaweed_store) == set(live + gone)

    mark = len(gitlab_fake.calls)
    assert main(["prune", "--deleted-refs"]) == 0
    out = capsys.readouterr().out
    assert "deleted 3 cache objects" in out and "kept 8" in out
    assert "deleted-refs: no branch or tag of project 1 has the slug 'feature-old'" in out
    assert "project 999: not found in GitLab (HTTP 404); its caches were kept by --deleted-refs" in out
    assert gitlab_fake.token not in out
    assert names_in(seaweed_store) == set(live)
    branch_pages = [path for method, path in gitlab_fake.calls[mark:] if "/repository/branches" in path]
    # each project's branches are read once per run (python-gitlab follows the pages; 100 per page)
    assert sorted(branch_pages) == sorted(
        [f"/api/v4/projects/{project}/repository/branches", "/api/v4/projects/999/repository/branches"]
    )


def test_wrong_token_stops_before_anything_is_deleted(
    seaweed_store: StoreSettings,
    configure,
    gitlab_fake: GitLabFake,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    seed(seaweed_store, ["project/1/old-branch"])
    configure(seaweed_store)
    monkeypatch.setenv("RUNNER_CACHE_GITLAB__TOKEN", "glpat-wrong-token-value")
    time.sleep(0.2)
    assert main(["prune", "--json", "--deleted-refs", "--max-age-days", "1e-6"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["deleted"] == []
    error = document["errors"][0]["error"]
    assert "GitLab: " in error and "rejected the token (401)" in error and "RUNNER_CACHE_GITLAB__TOKEN" in error
    assert "glpat-wrong-token-value" not in json.dumps(document)
    assert names_in(seaweed_store) == {"project/1/old-branch"}
