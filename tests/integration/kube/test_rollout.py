"""Waiting for the runner Deployment's rollout, through the real client against the fake API server."""

from __future__ import annotations

import pytest

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.errors import KubernetesError, RolloutFailed, RolloutTimeout
from runner_cache.tasks.kube.api import rollout_state, wait_for_rollout
from tests.integration.kube.conftest import NAME, NS, Cluster, runner_deployment


def test_waits_until_the_controller_reports_the_rollout_complete(cluster: Cluster, release: ReleaseSettings) -> None:
    cluster.api.rollout_after_reads = 3
    cluster.api.put(runner_deployment())
    result = wait_for_rollout(release, NS, NAME, timeout=10, interval=0.05)
    assert result.data["state"] == "2 of 2 replicas updated and available"
    reads = [call for call in cluster.api.calls if call.path == f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"]
    assert len(reads) == 4, "it must poll until observedGeneration, updatedReplicas and availableReplicas catch up"
    assert cluster.api.writes() == []


def test_a_rollout_that_never_completes_times_out_with_how_far_it_got(
    cluster: Cluster, release: ReleaseSettings
) -> None:
    cluster.api.rollout = "stuck"
    cluster.api.put(runner_deployment())
    with pytest.raises(RolloutTimeout) as caught:
        wait_for_rollout(release, NS, NAME, timeout=0.5, interval=0.1)
    assert str(caught.value).startswith(
        f"Kubernetes API: deployment {NS}/{NAME} did not finish its rollout within 0.5 s: 0 of 2 updated replicas are available"
    )


def test_progress_deadline_exceeded_fails_at_once(cluster: Cluster, release: ReleaseSettings) -> None:
    cluster.api.rollout = "deadline"
    cluster.api.put(runner_deployment())
    with pytest.raises(
        RolloutFailed, match=f"deployment {NS}/{NAME} exceeded its progress deadline: .*timed out progressing"
    ):
        wait_for_rollout(release, NS, NAME, timeout=30, interval=0.1)


def test_a_missing_deployment_is_named(cluster: Cluster, release: ReleaseSettings) -> None:
    with pytest.raises(KubernetesError, match=f"deployment {NS}/{NAME} does not exist: nothing to wait for"):
        wait_for_rollout(release, NS, NAME, timeout=5)


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ({"observedGeneration": 1}, "the controller has not yet seen the latest change"),
        (
            {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1},
            "1 of 2 replicas updated",
        ),
        (
            {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2},
            "1 old replicas are pending termination",
        ),
        (
            {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1},
            "1 of 2 updated replicas are available",
        ),
    ],
)
def test_rollout_state_follows_kubectl_rollout_status(status: dict, words: str) -> None:
    deployment = {
        "metadata": {"name": NAME, "namespace": NS, "generation": 2},
        "spec": {"replicas": 2},
        "status": status,
    }
    assert rollout_state(deployment) == (False, words)
