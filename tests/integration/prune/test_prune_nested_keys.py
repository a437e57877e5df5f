"""Prune on keys as runners really write them (``docs/cache-keys.md``), on a real SeaweedFS store, GitLab fake.

``key: $CI_COMMIT_REF_NAME`` on ``feature/login`` nests (the runner expands variables after GitLab validated the
literal key: ``cache/cache.go@v13.9.0`` path.Join), hashed keys are sharded by their own first two hex digits
(``cache/cache.go@v19.0.0``), and names no runner writes are never deleted by any rule.
"""

from __future__ import annotations

import json
import time

import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.cli import main
from tests.fakes.gitlab import GitLabFake
from tests.integration.prune.conftest import names_in, seed

pytestmark = pytest.mark.usefixtures("prefect_api")

# sha256("main-protected"): the object of a runner >= 19.0.0 with FF_HASH_CACHE_KEYS for key main-protected
HASH = "466a3df3e57a1b08df962a07ed964c83df72766aa83f2983c073ea49bd666866"


def test_nested_keys_are_pruned_by_ref_name_and_non_cache_names_never(
    seaweed_store: StoreSettings, configure, gitlab_fake: GitLabFake, capsys: pytest.CaptureFixture
) -> None:
    project = gitlab_fake.add_project("group/nested")
    for branch in ("feature/login", "Release/2.0", "feature/old"):
        gitlab_fake.add_branch(project, branch)
    gitlab_fake.delete_branch(project, "feature/old")
    runner = f"ci/runner/AbCdEfGhI/project/{project}"
    live = [
        f"{runner}/feature/login-protected",  # $CI_COMMIT_REF_NAME of a live branch
        f"{runner}/feature/login-2-non_protected",  # after "Clear runner caches"
        f"{runner}/feature-login-protected",  # its slug
        f"{runner}/Release/2.0-protected",
        f"{runner}/build/main",  # the runner's <job>/<ref> default; main is the fake's default branch
        f"ci/project/{project}/46/{HASH}",  # hashed keys are never judged by name
    ]
    gone = [
        f"{runner}/feature/old-protected",
        f"{runner}/feature/old-3-non_protected",
        f"ci/project/{project}/feature/old",
    ]
    not_cache = [
        f"ci/project/{project}/47/{HASH}",  # a shard that is not the hash's own first two digits
        f"ci/runners/AbCdEfGhI/project/{project}/feature/old-protected",  # look-alike prefix
        f"ci/runner/AbCdEfGhIjK/project/{project}/feature/old-protected",  # no release makes an 11-character token
        f"ci/project/0{project}/feature/old",  # project ids have no leading zero
        f"ci/runner/AbCdEfGhI/project/{project}.txt",  # a file next to the cache objects
        f"cix/project/{project}/feature/old",  # outside the Path
    ]
    seed(seaweed_store, live + gone + not_cache)
    configure(seaweed_store, path="ci")

    assert main(["prune", "--json", "--deleted-refs"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert sorted(entry["key"] for entry in document["deleted"]) == sorted(gone)
    reasons = {entry["key"]: entry["reason"] for entry in document["deleted"]}
    assert reasons[f"{runner}/feature/old-protected"] == (
        f"deleted-refs: no branch or tag of project {project} has the name 'feature/old'"
    )
    assert names_in(seaweed_store) == set(live + not_cache)

    time.sleep(0.2)
    assert main(["prune", "--json", "--max-age-days", "1e-6"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert sorted(entry["key"] for entry in document["deleted"]) == sorted(live)
    assert names_in(seaweed_store) == set(not_cache)
