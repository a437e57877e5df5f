"""rebuild-runner with the pipeline check: a runner broken by the upgrade fails the pipeline, and the release is
rolled back; the fake cluster and helm are the Kubernetes tests' (tests/kube), GitLab is the fake, S3 is moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.flows.rebuild import RebuildParameters, rebuild_runner
from tests.fakes.gitlab import FakeRunner, GitLabFake
from tests.integration.kube.conftest import FakeHelm, cluster, configured, helm  # noqa: F401  (fixtures)
from tests.integration.verify.conftest import PROJECT

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def verification(configured: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GitLabFake, FakeRunner]]:  # noqa: F811
    configured.client().make_bucket(configured.bucket)
    with GitLabFake() as fake:
        fake.add_project(PROJECT, project_id=42)
        runner = fake.add_runner(FakeRunner.for_store(configured, tags=["k8s"]))
        for name, value in {
            "URL": fake.url,
            "TOKEN": fake.token,
            "PROJECT": PROJECT,
            "RUNNER_TAGS": "k8s",
            "POLL_SECONDS": "0.1",
        }.items():
            monkeypatch.setenv(f"RUNNER_CACHE_GITLAB__{name}", value)
        yield fake, runner


def test_failed_pipeline_after_upgrade_rolls_back(verification: tuple[GitLabFake, FakeRunner], helm: FakeHelm) -> None:  # noqa: F811
    fake, runner = verification
    first = rebuild_runner(return_state=True)
    assert first.is_completed()
    assert {s["step"]: s["status"] for s in first.result()["steps"]}["pipeline"] == "unchanged"

    runner.insecure = False  # the upgraded runner talks https to the http store
    state = rebuild_runner(parameters=RebuildParameters(runner_image_tag="alpine-v18.7.0"), return_state=True)
    assert state.is_failed()
    steps = {s["step"]: s for s in state.result(raise_on_failure=False)["steps"]}
    assert steps["release"]["status"] == "changed" and steps["roundtrip"]["status"] == "unchanged"
    assert steps["pipeline"]["status"] == "failed" and steps["pipeline"]["data"]["cause"] == "https_to_http"
    assert "server gave HTTP response to HTTPS client" in " ".join(steps["pipeline"]["data"]["evidence"])
    assert steps["rollback"]["status"] == "changed"
    rollback = next(record for record in helm.records() if record["argv"][0] == "rollback")
    assert rollback["argv"][1:3] == ["gitlab-runner", "1"]
    assert fake.branch_names(42) == ["main"]


def test_gitlab_refusing_the_check_keeps_the_upgraded_release(
    verification: tuple[GitLabFake, FakeRunner],
    helm: FakeHelm,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A check GitLab refuses to run (here: a revoked token) says nothing of the release: no rollback."""
    monkeypatch.setenv("RUNNER_CACHE_GITLAB__TOKEN", "glpat-revoked-token-0000")
    state = rebuild_runner(parameters=RebuildParameters(runner_image_tag="alpine-v18.7.0"), return_state=True)
    assert state.is_failed()
    steps = {s["step"]: s for s in state.result(raise_on_failure=False)["steps"]}
    assert steps["release"]["status"] == "changed"
    assert steps["pipeline"]["status"] == "failed" and steps["pipeline"]["data"]["cause"] == "gitlab_refused"
    assert "rollback" not in steps
    assert not [record for record in helm.records() if record["argv"][0] == "rollback"]
