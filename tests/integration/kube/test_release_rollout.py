"""A rollout that fails after helm said the upgrade worked (helm 3's --wait is satisfied once replicas minus
maxUnavailable new pods are ready: pkg/kube/ready.go@v3.16.4) is rolled back to the revision recorded before the
upgrade, and the step says which revision runs now. Real rendering, fake cluster and helm, real S3 (moto)."""

from __future__ import annotations

import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.flows.rebuild import RebuildParameters, rebuild_runner
from tests.fakes.fake_helm import installed_by_hand
from tests.integration.kube.conftest import Cluster, FakeHelm

pytestmark = pytest.mark.usefixtures("prefect_api")


def _release_step(state: object) -> dict:
    result = state.result(raise_on_failure=False)  # type: ignore[attr-defined]
    return next(step for step in result["steps"] if step["step"] == "release")


@pytest.mark.parametrize("rollout", ["replica-failure", "deadline"])
def test_a_failed_rollout_after_a_good_helm_upgrade_is_rolled_back(
    configured: StoreSettings, helm: FakeHelm, cluster: Cluster, rollout: str
) -> None:
    configured.client().make_bucket(configured.bucket)
    assert rebuild_runner(return_state=True).is_completed()  # revision 1
    helm.set_state(version="v3.16.4")
    cluster.api.rollout = rollout  # type: ignore[assignment]
    state = rebuild_runner(parameters=RebuildParameters(runner_image_tag="alpine-v18.7.0"), return_state=True)
    assert state.is_failed()
    step = _release_step(state)
    assert step["status"] == "failed"
    assert "rolled back release gitlab-runner/gitlab-runner to revision 1" in step["detail"]
    assert "revision 3 of release gitlab-runner/gitlab-runner is deployed now" in step["detail"], "what runs now"
    assert [r["status"] for r in helm.revisions()] == ["superseded", "superseded", "deployed"]
    assert helm.revisions()[-1]["description"] == "Rollback to 1"


def test_no_rollback_of_a_failed_rollout_when_turned_off(
    configured: StoreSettings, helm: FakeHelm, cluster: Cluster
) -> None:
    configured.client().make_bucket(configured.bucket)
    rebuild_runner()
    cluster.api.rollout = "replica-failure"
    parameters = RebuildParameters(runner_image_tag="alpine-v18.7.0", rollback_on_failure=False)
    state = rebuild_runner(parameters=parameters, return_state=True)
    assert state.is_failed()
    assert "not rolled back (rollback_on_failure is off): revision 2 stays deployed" in _release_step(state)["detail"]
    assert "rollback" not in helm.commands()


def test_a_release_with_its_own_name_registry_and_config_keeps_them(
    configured: StoreSettings, helm: FakeHelm, cluster: Cluster
) -> None:
    """A release installed by hand with fullnameOverride, a private image.registry and its own runners.config: the
    rollout is awaited on *its* Deployment and those values stay (helm reuses them; we only add ours)."""
    configured.client().make_bucket(configured.bucket)
    own = {
        "fullnameOverride": "ci-runner",
        "image": {"registry": "registry.example.com/mirror", "image": "gitlab-org/gitlab-runner"},
        "runners": {"config": '[[runners]]\n  [runners.kubernetes]\n    image = "{{ printf "%s" "alpine" }}"\n'},
        "gitlabUrl": "https://gitlab.example.com/",
    }
    helm.set_state(releases={"gitlab-runner/gitlab-runner": [installed_by_hand(own)]})
    deployment = cluster.api.get("Deployment", "gitlab-runner", "gitlab-runner")
    deployment["metadata"]["name"] = "ci-runner"
    for key in ("uid", "resourceVersion", "generation", "creationTimestamp"):
        deployment["metadata"].pop(key, None)
    cluster.api.put(deployment)
    state = rebuild_runner(parameters=RebuildParameters(runner_image_tag="alpine-v18.7.0"), return_state=True)
    assert state.is_completed(), state.message
    step = _release_step(state)
    assert "deployment gitlab-runner/ci-runner is rolled out" in step["detail"]
    values = helm.revisions()[-1]["values"]
    assert values["fullnameOverride"] == "ci-runner" and values["gitlabUrl"] == "https://gitlab.example.com/"
    assert values["image"]["registry"] == "registry.example.com/mirror" and values["image"]["tag"] == "alpine-v18.7.0"
    assert '{{ printf "%s" "alpine" }}' in values["runners"]["config"], "the release's own runners.config is the base"
