"""The ``kubernetes`` store backend (MinIO in the cluster) against the fake API server, through the real client."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from runner_cache.blocks.store import DEFAULT_MINIO_IMAGE, KubeStoreSettings, StoreSettings
from runner_cache.errors import RolloutTimeout
from runner_cache.tasks.store import ensure_store, kubernetes_backend
from runner_cache.tasks.store.kubernetes_backend import KubeStoreError
from tests.integration.kube.conftest import ACCESS, NEW_SECRET, SECRET, Cluster, assert_clean

NS, NAME = "runner-cache", "runner-cache-minio"
ENDPOINT = "http://runner-cache-minio.runner-cache.svc.cluster.local:9000"
NEW_IMAGE = "quay.io/minio/minio:RELEASE.2025-10-15T17-29-55Z"


def kube_store(cluster: Cluster, secret: str = SECRET, **kube_fields: object) -> StoreSettings:
    return StoreSettings(
        backend="kubernetes",
        endpoint=ENDPOINT,
        access_key=SecretStr(ACCESS),
        secret_key=SecretStr(secret),
        kubernetes=KubeStoreSettings(kubeconfig=cluster.kubeconfig, rollout_timeout=3.0, **kube_fields),
    )


def _container(cluster: Cluster) -> dict:
    return cluster.api.get("Deployment", NS, NAME)["spec"]["template"]["spec"]["containers"][0]


def test_first_run_creates_everything_second_changes_nothing(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = ensure_store(kube_store(cluster))  # through the backend switch the setup flow uses
    assert first.status == "changed"
    assert first.data["endpoint"] == ENDPOINT
    assert first.data["writes"] == [
        "created Namespace runner-cache",
        f"created Secret {NS}/{NAME}-credentials",
        f"created PersistentVolumeClaim {NS}/{NAME}-data",
        f"created Deployment {NS}/{NAME}",
        f"created Service {NS}/{NAME}",
    ]
    assert f"ready at {ENDPOINT}" in first.detail

    assert cluster.api.secret_data(NS, f"{NAME}-credentials") == {
        "MINIO_ROOT_USER": ACCESS,
        "MINIO_ROOT_PASSWORD": SECRET,
    }
    pvc = cluster.api.get("PersistentVolumeClaim", NS, f"{NAME}-data")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi" and pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    deployment = cluster.api.get("Deployment", NS, NAME)
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = _container(cluster)
    assert container["image"] == DEFAULT_MINIO_IMAGE
    assert container["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"
    assert {env["name"]: env.get("valueFrom", {}).get("secretKeyRef", {}).get("name") for env in container["env"]} == {
        "MINIO_ROOT_USER": f"{NAME}-credentials",
        "MINIO_ROOT_PASSWORD": f"{NAME}-credentials",
        "MINIO_SITE_REGION": None,
    }
    service = cluster.api.get("Service", NS, NAME)
    assert service["spec"]["ports"][0]["port"] == 9000
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items(), (
        "the Service must select MinIO's pod"
    )

    writes = len(cluster.api.writes())
    second = kubernetes_backend.ensure(kube_store(cluster))
    assert second.status == "unchanged" and second.data["actions"] == []
    assert len(cluster.api.writes()) == writes, (
        "the second run must not write (the API server's defaults are not drift)"
    )

    for result in (first, second):
        assert_clean(result.model_dump_json(), "a StepResult")
    assert_clean(caplog.text, "the logs")


def test_image_drift_patches_only_the_deployment(cluster: Cluster) -> None:
    kubernetes_backend.ensure(kube_store(cluster))
    generation = cluster.api.get("Deployment", NS, NAME)["metadata"]["generation"]
    writes = len(cluster.api.writes())

    result = kubernetes_backend.ensure(kube_store(cluster, image=NEW_IMAGE))
    assert result.status == "changed"
    assert result.data["actions"] == [
        f"patched Deployment {NAME} (spec.template.spec.containers[minio].image differed)"
    ]
    new_writes = cluster.api.writes()[writes:]
    assert [(call.method, call.path) for call in new_writes] == [
        ("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}")
    ]
    assert _container(cluster)["image"] == NEW_IMAGE
    assert cluster.api.get("Deployment", NS, NAME)["metadata"]["generation"] == generation + 1


def test_drift_made_by_someone_else_is_repaired(cluster: Cluster) -> None:
    kubernetes_backend.ensure(kube_store(cluster))
    cluster.api.edit(
        "Deployment",
        NS,
        NAME,
        {"spec": {"template": {"spec": {"containers": [{"name": "minio", "image": "minio/minio:latest"}]}}}},
    )
    cluster.api.edit("Service", NS, NAME, {"spec": {"type": "NodePort"}})
    result = kubernetes_backend.ensure(kube_store(cluster))
    assert "patched Deployment" in result.detail and "patched Service" in result.detail and "spec.type" in result.detail
    assert _container(cluster)["image"] == DEFAULT_MINIO_IMAGE
    assert cluster.api.get("Service", NS, NAME)["spec"]["type"] == "ClusterIP"


def test_new_credentials_update_the_secret_and_restart_minio(cluster: Cluster) -> None:
    kubernetes_backend.ensure(kube_store(cluster))
    before = cluster.api.get("Deployment", NS, NAME)["spec"]["template"]["metadata"]["annotations"]
    result = kubernetes_backend.ensure(kube_store(cluster, NEW_SECRET))
    assert result.data["actions"][0] == f"patched Secret {NAME}-credentials (data.MINIO_ROOT_PASSWORD differed)"
    assert cluster.api.secret_data(NS, f"{NAME}-credentials")["MINIO_ROOT_PASSWORD"] == NEW_SECRET
    after = cluster.api.get("Deployment", NS, NAME)["spec"]["template"]["metadata"]["annotations"]
    assert after != before, "the pod template must change so that MinIO restarts with the new credentials"
    assert_clean(result.model_dump_json(), "a StepResult")


def test_volume_grows_but_never_shrinks(cluster: Cluster) -> None:
    kubernetes_backend.ensure(kube_store(cluster))
    grown = kubernetes_backend.ensure(kube_store(cluster, storage_size="20Gi"))
    assert grown.data["actions"] == [f"patched PersistentVolumeClaim {NAME}-data (storage size differed)"]
    assert (
        cluster.api.get("PersistentVolumeClaim", NS, f"{NAME}-data")["spec"]["resources"]["requests"]["storage"]
        == "20Gi"
    )
    # the same size written another way is no drift
    assert kubernetes_backend.ensure(kube_store(cluster, storage_size="20480Mi")).status == "unchanged"
    writes = len(cluster.api.writes())
    with pytest.raises(
        KubeStoreError,
        match=r"has 20Gi; volumes cannot shrink to 5Gi: set RUNNER_CACHE_STORE__KUBERNETES__STORAGE_SIZE",
    ):
        kubernetes_backend.ensure(kube_store(cluster, storage_size="5Gi"))
    with pytest.raises(KubeStoreError, match="storage class 'standard', not 'fast'"):
        kubernetes_backend.ensure(kube_store(cluster, storage_size="20Gi", storage_class="fast"))
    assert len(cluster.api.writes()) == writes


def test_dry_run_reports_and_writes_nothing(cluster: Cluster) -> None:
    planned = kubernetes_backend.ensure(kube_store(cluster), apply=False)
    assert planned.status == "planned"
    assert planned.data["actions"] == [  # the namespace is not read (that needs a permission nothing else does)
        f"create Secret {NAME}-credentials",
        f"create PersistentVolumeClaim {NAME}-data",
        f"create Deployment {NAME}",
        f"create Service {NAME}",
    ]
    assert cluster.api.writes() == []
    kubernetes_backend.ensure(kube_store(cluster))
    planned = kubernetes_backend.ensure(kube_store(cluster, image=NEW_IMAGE), apply=False)
    assert planned.data["actions"] == [f"patch Deployment {NAME} (spec.template.spec.containers[minio].image differed)"]
    assert _container(cluster)["image"] == DEFAULT_MINIO_IMAGE


def test_a_pod_that_never_gets_ready_times_out_clearly(cluster: Cluster) -> None:
    cluster.api.rollout = "stuck"
    with pytest.raises(RolloutTimeout) as caught:
        kubernetes_backend.ensure(kube_store(cluster))
    message = str(caught.value)
    assert (
        f"deployment {NS}/{NAME} did not finish its rollout within 3 s: 0 of 1 updated replicas are available"
        in message
    )
    assert f"kubectl -n {NS} describe deployment {NAME}" in message


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("name", "MinIO", "starting with a letter"),
        ("namespace", "runner_cache", "DNS label"),
        ("storage_size", "10 GB", "Kubernetes quantity"),
        ("image", "minio/minio latest", "without spaces"),
        ("cluster_domain", "cluster..local", "DNS domain"),
    ],
)
def test_bad_settings_are_rejected(field: str, value: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        KubeStoreSettings(**{field: value})
