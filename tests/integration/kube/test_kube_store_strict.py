"""MinIO in the cluster where the cluster is strict: the `restricted` Pod Security Standard enforced on the
namespace, a ResourceQuota that needs requests and limits, only the documented `store` Role, pods that cannot be
created (ReplicaFailure), and a Secret label someone else adds."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from runner_cache.blocks.store import KubeStoreSettings, StoreSettings
from runner_cache.errors import RolloutFailed
from runner_cache.tasks.store import kubernetes_backend
from tests.fakes.kube_api import restricted_violations
from tests.fakes.rbac import Rbac
from tests.integration.kube.conftest import ACCESS, SECRET, Cluster

NS, NAME = "runner-cache", "runner-cache-minio"
ENDPOINT = "http://runner-cache-minio.runner-cache.svc.cluster.local:9000"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def kube_store(cluster: Cluster, timeout: float = 3.0) -> StoreSettings:
    return StoreSettings(
        backend="kubernetes",
        endpoint=ENDPOINT,
        access_key=SecretStr(ACCESS),
        secret_key=SecretStr(SECRET),
        kubernetes=KubeStoreSettings(kubeconfig=cluster.kubeconfig, rollout_timeout=timeout),
    )


def test_minio_runs_under_restricted_pss_a_quota_and_the_documented_role(cluster: Cluster) -> None:
    cluster.api.rbac = Rbac.documented("store")  # no cluster role: the namespace exists already
    cluster.api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": RESTRICTED}})
    cluster.api.quota_requires = ["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"]
    result = kubernetes_backend.ensure(kube_store(cluster))
    assert result.status == "changed" and "1 of 1 replicas updated and available" in result.detail
    pod = cluster.api.get("Deployment", NS, NAME)["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    [container] = pod["containers"]
    assert container["readinessProbe"]["timeoutSeconds"] >= 5 and container["livenessProbe"]["timeoutSeconds"] >= 5
    assert not [call for call in cluster.api.calls if call.path == f"/api/v1/namespaces/{NS}"], "never read"
    assert kubernetes_backend.ensure(kube_store(cluster)).status == "unchanged"


def test_the_fake_refuses_a_pod_template_without_security_context() -> None:
    """The check the test above relies on, on the pod template runner-cache used to write."""
    bare = {"containers": [{"name": "minio", "image": "minio/minio"}], "volumes": [{"name": "d", "hostPath": {}}]}
    problems = " ".join(restricted_violations(bare))
    for words in ("allowPrivilegeEscalation", "capabilities.drop", "runAsNonRoot", "seccompProfile", "hostPath"):
        assert words in problems


def test_pods_that_cannot_be_created_fail_at_once(cluster: Cluster) -> None:
    cluster.api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": RESTRICTED}})
    cluster.api.rollout = "replica-failure"
    cluster.api.replica_failure = 'pods "runner-cache-minio-x" is forbidden: error looking up service account'
    started = time.monotonic()
    with pytest.raises(RolloutFailed, match=f"deployment {NS}/{NAME} cannot create its pods \\(FailedCreate\\)"):
        kubernetes_backend.ensure(kube_store(cluster, timeout=60))
    assert time.monotonic() - started < 10, "it must not wait out the 60 s"


def test_a_label_on_the_credentials_secret_does_not_restart_minio(cluster: Cluster) -> None:
    kubernetes_backend.ensure(kube_store(cluster))
    template = cluster.api.get("Deployment", NS, NAME)["spec"]["template"]["metadata"]["annotations"]
    cluster.api.edit("Secret", NS, f"{NAME}-credentials", {"metadata": {"labels": {"backup": "daily"}}})
    assert kubernetes_backend.ensure(kube_store(cluster)).status == "unchanged"
    assert cluster.api.get("Deployment", NS, NAME)["spec"]["template"]["metadata"]["annotations"] == template
