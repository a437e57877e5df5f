"""The cache Secret, namespaces and rollouts against a strict fake API server (tests/fakes/kube_api.py) that
answers as a real one does: RBAC from docs/deployments.md, empty/immutable/foreign-owned Secrets, 409 races,
429 throttling, 403s of every cause, ReplicaFailure."""

from __future__ import annotations

import time

import pytest

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.errors import KubernetesError, KubernetesUnreachable, RolloutFailed
from runner_cache.tasks.kube.api import (
    GENERATION_ANNOTATION,
    ApiRefused,
    connect,
    ensure_cache_secret,
    wait_for_rollout,
)
from runner_cache.tasks.policy import is_transient
from tests.fakes.rbac import Rbac
from tests.integration.kube.conftest import (
    ACCESS,
    NEW_SECRET,
    SECRET,
    Cluster,
    assert_clean,
    runner_deployment,
    store_with,
)

NS, NAME = "gitlab-runner", "runner-cache-s3"


def existing_secret(cluster: Cluster, **fields: object) -> dict:
    return cluster.api.put(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": NAME, "namespace": NS}, **fields}
    )


def namespace_reads(cluster: Cluster) -> list[str]:
    return [
        call.path
        for call in cluster.api.calls
        if call.path.startswith("/api/v1/namespaces/") and call.path.count("/") == 4
    ]


# --- RBAC: the documented Role is enough, and nothing reads a Namespace ---------------------------------------------


def test_the_documented_role_is_enough_and_the_namespace_is_never_read(
    cluster: Cluster, release: ReleaseSettings
) -> None:
    cluster.api.rbac = Rbac.documented("release")  # the namespaced Role alone
    cluster.api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    assert ensure_cache_secret(release, store_with()).status == "changed"
    assert ensure_cache_secret(release, store_with(NEW_SECRET)).status == "changed"
    assert namespace_reads(cluster) == [], "reading the Namespace needs a permission the Role does not give"


def test_a_missing_namespace_without_the_cluster_role_says_what_to_do(
    cluster: Cluster, release: ReleaseSettings
) -> None:
    cluster.api.rbac = Rbac.documented("release")
    with pytest.raises(KubernetesError) as caught:
        ensure_cache_secret(release, store_with())
    message = str(caught.value)
    assert f"namespace {NS} does not exist, and runner-cache may not create it (HTTP 403)" in message
    assert f"`kubectl create namespace {NS}`" in message and "'namespaces' ClusterRole" in message


def test_a_missing_namespace_is_created_with_the_cluster_role(cluster: Cluster, release: ReleaseSettings) -> None:
    cluster.api.rbac = Rbac.documented("release", "namespaces")
    result = ensure_cache_secret(release, store_with())
    assert result.data["writes"] == [f"created Namespace {NS}", f"created Secret {NS}/{NAME}"]
    assert namespace_reads(cluster) == []


# --- Secrets that are not simply ours -------------------------------------------------------------------------------


def test_a_secret_without_data_is_filled_in(cluster: Cluster, release: ReleaseSettings) -> None:
    existing_secret(cluster)  # `kubectl create secret generic runner-cache-s3`: no data field at all
    result = ensure_cache_secret(release, store_with())
    assert result.status == "changed" and result.data["changed_keys"] == ["accesskey", "secretkey"]
    assert cluster.api.secret_data(NS, NAME) == {"accesskey": ACCESS, "secretkey": SECRET}


def test_an_immutable_secret_is_refused_unless_adopted(cluster: Cluster, release: ReleaseSettings) -> None:
    existing_secret(cluster, immutable=True, data={"accesskey": "b2xk", "secretkey": "b2xk", "note": "a2VlcA=="})
    writes = len(cluster.api.writes())
    with pytest.raises(
        KubernetesError, match=f"Secret {NS}/{NAME} is immutable: runner-cache will not overwrite"
    ) as caught:
        ensure_cache_secret(release, store_with())
    assert "RUNNER_CACHE_RELEASE__ADOPT_SECRET=true" in str(caught.value)
    assert len(cluster.api.writes()) == writes, "nothing was written (a patch would get 422)"
    adopted = ensure_cache_secret(release.model_copy(update={"adopt_secret": True}), store_with())
    assert (
        adopted.detail == f"replaced the immutable Secret {NS}/{NAME} to update its accesskey and secretkey (adopted)"
    )
    assert cluster.api.secret_data(NS, NAME) == {"accesskey": ACCESS, "secretkey": SECRET, "note": "keep"}
    assert [call.method for call in cluster.api.writes()[writes:]] == ["DELETE", "POST"]


def test_the_fake_refuses_to_patch_an_immutable_secret_as_the_api_does(cluster: Cluster) -> None:
    existing_secret(cluster, immutable=True, data={"accesskey": "b2xk"})
    with connect(ReleaseSettings(kubeconfig=cluster.kubeconfig)) as kube, pytest.raises(ApiRefused) as caught:
        kube.patch("Secret", NS, NAME, {"data": {"accesskey": "bmV3"}})
    assert caught.value.code == 422 and "field is immutable when `immutable` is set" in str(caught.value)


@pytest.mark.parametrize(
    ("metadata", "owner"),
    [
        (
            {
                "ownerReferences": [
                    {"apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret", "name": "s3", "uid": "u1"}
                ]
            },
            "ExternalSecret s3",
        ),
        (
            {
                "ownerReferences": [
                    {"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "name": "s3", "uid": "u2"}
                ]
            },
            "SealedSecret s3",
        ),
        (
            {"labels": {"app.kubernetes.io/managed-by": "Helm"}, "annotations": {"meta.helm.sh/release-name": "other"}},
            "Helm release other",
        ),
    ],
)
def test_a_secret_someone_else_manages_is_refused_unless_adopted(
    cluster: Cluster, release: ReleaseSettings, metadata: dict, owner: str
) -> None:
    secret = existing_secret(cluster, data={"accesskey": "b2xk", "secretkey": "b2xk"})
    cluster.api.edit("Secret", NS, NAME, {"metadata": metadata})
    with pytest.raises(KubernetesError, match=f"belongs to {owner}, which would put its own values back"):
        ensure_cache_secret(release, store_with())
    assert cluster.api.secret_data(NS, NAME)["accesskey"] == "old"
    ensure_cache_secret(release.model_copy(update={"adopt_secret": True}), store_with())
    live = cluster.api.get("Secret", NS, NAME)
    assert cluster.api.secret_data(NS, NAME)["accesskey"] == ACCESS and "ownerReferences" not in live["metadata"]
    assert live["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "runner-cache"
    assert live["metadata"]["uid"] == secret["metadata"]["uid"]


def test_a_foreign_secret_that_already_holds_our_values_is_fine(cluster: Cluster, release: ReleaseSettings) -> None:
    existing_secret(
        cluster, data={"accesskey": "U0VOVElORUxLVUJFQUNDRVNT", "secretkey": "U0VOVElORUwtS1VCRS1TRUNSRVQtMDA0Mg=="}
    )
    cluster.api.edit(
        "Secret", NS, NAME, {"metadata": {"ownerReferences": [{"kind": "ExternalSecret", "name": "s3", "uid": "u"}]}}
    )
    assert ensure_cache_secret(release, store_with()).status == "unchanged"


# --- races and throttling -----------------------------------------------------------------------------------------


def test_a_secret_created_by_someone_else_meanwhile_is_read_again(cluster: Cluster, release: ReleaseSettings) -> None:
    cluster.api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    theirs = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": NAME}, "data": {"accesskey": "b2xk"}}
    cluster.api.race[("Secret", NS, NAME)] = theirs
    result = ensure_cache_secret(release, store_with())
    assert result.status == "changed" and result.data["changed_keys"] == ["accesskey", "secretkey"]
    assert [call.method for call in cluster.api.writes()] == ["POST", "PATCH"], "409 on create, then a patch"
    assert cluster.api.secret_data(NS, NAME) == {"accesskey": ACCESS, "secretkey": SECRET}


def test_a_write_that_meets_a_newer_version_is_read_again(cluster: Cluster, release: ReleaseSettings) -> None:
    existing_secret(cluster, data={"accesskey": "b2xk", "secretkey": "b2xk"})
    stale = cluster.api.get("Secret", NS, NAME)["metadata"]["resourceVersion"]

    original = cluster.api._read  # someone edits the Secret between our first read and our patch

    def read_then_edit(kind: str, namespace: str, name: str) -> dict:
        found = original(kind, namespace, name)
        if kind == "Secret" and found["metadata"]["resourceVersion"] == stale:
            cluster.api.objects[(kind, namespace, name)]["metadata"]["resourceVersion"] = "9999"
        return found

    cluster.api._read = read_then_edit  # type: ignore[method-assign]
    assert ensure_cache_secret(release, store_with()).status == "changed"
    patches = [call for call in cluster.api.writes() if call.method == "PATCH"]
    assert len(patches) == 2 and patches[0].body["metadata"]["resourceVersion"] == stale


def test_throttling_is_waited_out_as_the_server_asks(cluster: Cluster, release: ReleaseSettings) -> None:
    cluster.api.throttle[("GET", "Secret")] = 2
    started = time.monotonic()
    assert ensure_cache_secret(release, store_with()).status == "changed"
    assert time.monotonic() - started >= 2, "Retry-After: 1, twice"
    assert [call.method for call in cluster.api.calls[:3]] == ["GET", "GET", "GET"]


def test_throttling_that_does_not_end_is_transient(
    cluster: Cluster, release: ReleaseSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("runner_cache.tasks.kube.api.MAX_RETRY_AFTER", 0.01)
    cluster.api.throttle[("GET", "Secret")] = 100  # each answer asks for Retry-After: 1
    started = time.monotonic()
    with pytest.raises(KubernetesUnreachable, match=r"kept throttling read Secret .* \(HTTP 429, 5 tries\)") as caught:
        ensure_cache_secret(release, store_with())
    assert is_transient(caught.value)
    # five requests, each wait cut to MAX_RETRY_AFTER: the client's urllib3 does not retry 429s on its own
    assert len([call for call in cluster.api.calls if call.method == "GET" and "/secrets/" in call.path]) == 5
    assert time.monotonic() - started < 1


# --- 403 by its cause ------------------------------------------------------------------------------------------------


def test_a_full_quota_is_not_blamed_on_rbac(cluster: Cluster, release: ReleaseSettings) -> None:
    cluster.api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    cluster.api.quota_exceeded.add("Secret")
    with pytest.raises(KubernetesError) as caught:
        ensure_cache_secret(release, store_with())
    message = str(caught.value)
    assert (
        f"a ResourceQuota in namespace {NS} refused to create Secret {NS}/{NAME} (HTTP 403, ResourceQuota)" in message
    )
    assert "exceeded quota" in message and "RBAC" not in message and not is_transient(caught.value)


def test_a_terminating_namespace_is_named_and_transient(cluster: Cluster, release: ReleaseSettings) -> None:
    cluster.api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    cluster.api.terminate(NS)
    with pytest.raises(KubernetesError) as caught:
        ensure_cache_secret(release, store_with())
    message = str(caught.value)
    assert f"namespace {NS} is being deleted (HTTP 403, namespace terminating)" in message and "RBAC" not in message
    assert is_transient(caught.value)
    assert_clean(message, "the exception")


# --- the restart trigger ----------------------------------------------------------------------------------------------


def test_the_credentials_version_changes_only_with_the_credentials(cluster: Cluster, release: ReleaseSettings) -> None:
    first = ensure_cache_secret(release, store_with()).data["credentials_version"]
    cluster.api.edit("Secret", NS, NAME, {"metadata": {"labels": {"team": "ci"}, "annotations": {"note": "x"}}})
    again = ensure_cache_secret(release, store_with())
    assert again.status == "unchanged" and again.data["credentials_version"] == first, "a label is no restart"
    rotated = ensure_cache_secret(release, store_with(NEW_SECRET)).data["credentials_version"]
    assert rotated != first
    assert cluster.api.get("Secret", NS, NAME)["metadata"]["annotations"][GENERATION_ANNOTATION] == "2"
    assert SECRET not in rotated and NEW_SECRET not in rotated


# --- rollouts ----------------------------------------------------------------------------------------------------------


def test_replica_failure_fails_at_once_with_the_controllers_message(cluster: Cluster, release: ReleaseSettings) -> None:
    cluster.api.rollout = "replica-failure"
    cluster.api.replica_failure = 'pods "gitlab-runner-5d8f-x" is forbidden: exceeded quota: compute, requested: pods=1'
    cluster.api.put(runner_deployment())
    started = time.monotonic()
    with pytest.raises(RolloutFailed) as caught:
        wait_for_rollout(release, NS, "gitlab-runner", timeout=30, interval=0.1)
    assert time.monotonic() - started < 5, "not the whole timeout"
    message = str(caught.value)
    assert "deployment gitlab-runner/gitlab-runner cannot create its pods (FailedCreate): pods" in message
    assert "a ResourceQuota in namespace gitlab-runner is full" in message
