"""The Kubernetes side for real, against a kind or k3d cluster (see docs/acceptance.md).

Skipped unless ``RUNNER_CACHE_ACCEPTANCE_KUBECONFIG`` names a kubeconfig (its current context, or
``RUNNER_CACHE_ACCEPTANCE_CONTEXT``). Everything is made in namespaces named ``rc-acc-<random>`` and deleted
afterwards. Needs the real ``helm`` (``scripts/get-helm.sh``) and ``kubectl`` (same script) for the port-forward,
and nodes that can pull the MinIO image (``RUNNER_CACHE_ACCEPTANCE_MINIO_IMAGE`` to use another) and
``registry.k8s.io/pause``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.blocks.store import DEFAULT_MINIO_IMAGE, KubeStoreSettings, StoreSettings
from runner_cache.errors import ConfigError
from runner_cache.tasks.chart.helm_cli import helm_binary
from runner_cache.tasks.kube.api import api_client, ensure_cache_secret, wait_for_rollout
from runner_cache.tasks.release.helm import deployed_release, rollback_release, upgrade_release
from runner_cache.tasks.store import kubernetes_backend
from runner_cache.tasks.store.s3 import wait_until_ready
from tests.integration.kube.conftest import installable
from tests.support.servers import free_port, wait_for_port

KUBECONFIG = os.environ.get("RUNNER_CACHE_ACCEPTANCE_KUBECONFIG")
CONTEXT = os.environ.get("RUNNER_CACHE_ACCEPTANCE_CONTEXT") or None
# scripts/acceptance-rbac.sh: runner-cache runs as its service account (KUBECONFIG) in namespaces the documented
# Roles are bound in; the admin kubeconfig only port-forwards to MinIO (which runner-cache itself never needs).
ADMIN_KUBECONFIG = os.environ.get("RUNNER_CACHE_ACCEPTANCE_ADMIN_KUBECONFIG") or KUBECONFIG
GIVEN_NAMESPACES = os.environ.get("RUNNER_CACHE_ACCEPTANCE_NAMESPACES")

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.skipif(
        not KUBECONFIG, reason="set RUNNER_CACHE_ACCEPTANCE_KUBECONFIG to a kind/k3d cluster's kubeconfig"
    ),
    pytest.mark.timeout(900),
]

# A stand-in for the gitlab-runner chart whose pods get ready without a GitLab: same name, a Deployment, our values.
CHART_YAML = "apiVersion: v2\nname: gitlab-runner\nversion: 0.60.0\nappVersion: 16.7.0\n"
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 1
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
      annotations:
        checksum/values: {{ toJson .Values | sha256sum }}
    spec:
      containers:
      - name: runner
        image: registry.k8s.io/pause:3.10
        env:
        - name: CACHE_S3_ACCESS_KEY
          valueFrom: {secretKeyRef: {name: {{ .Values.runners.cache.secretName }}, key: accesskey}}
"""


def _kubectl() -> str:
    found = shutil.which("kubectl") or (
        str(helm_binary().with_name("kubectl")) if helm_binary().with_name("kubectl").is_file() else None
    )
    if not found:
        pytest.skip("kubectl not found: run scripts/get-helm.sh")
    return found


@pytest.fixture(scope="module")
def namespaces() -> Iterator[tuple[str, str]]:
    """A store namespace and a runner namespace, deleted with everything in them at the end (unless given: then
    whoever made them removes them)."""
    if GIVEN_NAMESPACES:
        store_namespace, runner_namespace = GIVEN_NAMESPACES.split(",")
        yield store_namespace, runner_namespace
        return
    suffix = uuid.uuid4().hex[:8]
    made = (f"rc-acc-store-{suffix}", f"rc-acc-runner-{suffix}")
    yield made
    from kubernetes import client

    cluster = KubeStoreSettings(kubeconfig=Path(KUBECONFIG or ""), context=CONTEXT)
    with api_client(cluster) as api:
        for namespace in made:
            try:
                client.CoreV1Api(api).delete_namespace(namespace)
            except client.ApiException as error:
                if error.status != 404:
                    raise


@pytest.fixture(scope="module")
def store(namespaces: tuple[str, str]) -> StoreSettings:
    kube = KubeStoreSettings(
        namespace=namespaces[0],
        kubeconfig=Path(KUBECONFIG or ""),
        context=CONTEXT,
        image=os.environ.get("RUNNER_CACHE_ACCEPTANCE_MINIO_IMAGE", DEFAULT_MINIO_IMAGE),
        storage_size="1Gi",
        rollout_timeout=300,
    )
    return StoreSettings(
        backend="kubernetes",
        endpoint=kube.service_endpoint(),
        access_key=SecretStr("rc-acceptance"),
        secret_key=SecretStr(uuid.uuid4().hex),
        kubernetes=kube,
    )


def test_minio_in_the_cluster_is_idempotent_and_serves_s3(store: StoreSettings) -> None:
    first = kubernetes_backend.ensure(store)
    assert first.status == "changed"
    second = kubernetes_backend.ensure(store)
    assert second.status == "unchanged", second.detail

    port = free_port()
    service = f"svc/{store.kubernetes.name}"
    command = [
        _kubectl(),
        "--kubeconfig",
        str(ADMIN_KUBECONFIG),
        "-n",
        store.kubernetes.namespace,
        "port-forward",
        service,
        f"{port}:9000",
    ]
    command += ["--context", CONTEXT] if CONTEXT and ADMIN_KUBECONFIG == KUBECONFIG else []
    forward = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=30)
        local = store.model_copy(update={"backend": "external", "endpoint": f"http://127.0.0.1:{port}"})
        wait_until_ready(local, timeout=60)
        client = local.client()
        client.make_bucket("runner")
        assert client.bucket_exists("runner")
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_release_upgrade_no_op_and_rollback(store: StoreSettings, namespaces: tuple[str, str], tmp_path: Path) -> None:
    try:
        helm = str(helm_binary())
    except ConfigError as error:
        pytest.skip(str(error))
    chart = tmp_path / "gitlab-runner"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART_YAML)
    (chart / "templates" / "deployment.yaml").write_text(DEPLOYMENT)
    release = ReleaseSettings(
        chart=str(chart),
        release="acc-runner",
        namespace=namespaces[1],
        kubeconfig=Path(KUBECONFIG or ""),
        context=CONTEXT,
        timeout_seconds=180,
    )
    values = {"runners": {"cache": {"secretName": release.secret_name}, "config": "[[runners]]\n"}}

    assert ensure_cache_secret(release, store).status == "changed"
    assert ensure_cache_secret(release, store).status == "unchanged"

    installed = upgrade_release(release, installable(chart), values, secrets=[store.access_key, store.secret_key])
    assert installed.status == "changed" and installed.data["revision"] == 1
    assert upgrade_release(release, installable(chart), values).status == "unchanged"
    assert deployed_release(release).revision == 1, "a no-op must not make a revision"

    changed = {**values, "concurrent": 4}
    upgraded = upgrade_release(release, installable(chart), changed)
    assert upgraded.data["previous_revision"] == 1 and upgraded.data["revision"] == 2
    wait_for_rollout(release, release.namespace, release.release, timeout=180)

    rollback_release(release, upgraded.data["previous_revision"])
    now = deployed_release(release)
    assert now.revision == 3 and now.status == "deployed" and now.values == values
    uninstall = [helm, "uninstall", release.release, "--namespace", release.namespace, "--kubeconfig", str(KUBECONFIG)]
    subprocess.run(uninstall + (["--kube-context", CONTEXT] if CONTEXT else []), check=True, timeout=300)
