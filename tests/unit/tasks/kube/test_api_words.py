"""How API answers are worded and judged, without a server: 403 by cause, ReplicaFailure, Secret ownership."""

from __future__ import annotations

import pytest

from runner_cache.errors import RolloutFailed
from runner_cache.tasks.kube.api import credentials_version, forbidden, foreign_owner, rollout_state


@pytest.mark.parametrize(
    ("message", "causes", "cause", "words"),
    [
        ('secrets "s" is forbidden: User "u" cannot create resource "secrets"', [], "rbac", "(HTTP 403, RBAC)"),
        ('secrets "s" is forbidden: exceeded quota: q, requested: count/secrets=1', [], "quota", "ResourceQuota"),
        ("unable to create new content in namespace ns", ["NamespaceTerminating"], "terminating", "being deleted"),
        (
            'roles "r" is forbidden: user "u" is attempting to grant RBAC permissions not currently held',
            [],
            "escalation",
            "grants permissions",
        ),
    ],
)
def test_each_403_is_worded_by_its_cause(message: str, causes: list[str], cause: str, words: str) -> None:
    error = forbidden("create", "Secret", "ns", "s", message, causes)
    assert error.cause == cause and words in str(error)
    assert error.transient is (cause == "terminating")
    assert ("RBAC" in str(error)) is (cause in {"rbac", "escalation"})


def test_replica_failure_ends_the_wait_with_its_message() -> None:
    condition = {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": 'pods "x" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true',
    }
    deployment = {
        "metadata": {"name": "minio", "namespace": "rc", "generation": 2},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 2, "replicas": 0, "conditions": [condition]},
    }
    with pytest.raises(
        RolloutFailed, match="cannot create its pods \\(FailedCreate\\): pods .* violates PodSecurity"
    ) as caught:
        rollout_state(deployment)
    assert "Pod Security Standard" in str(caught.value)


def test_owners() -> None:
    assert foreign_owner({"metadata": {}}) is None, "a Secret made by hand is ours to update"
    assert foreign_owner({"metadata": {"labels": {"app.kubernetes.io/managed-by": "runner-cache"}}}) is None
    assert (
        foreign_owner({"metadata": {"ownerReferences": [{"kind": "ExternalSecret", "name": "s3"}]}})
        == "ExternalSecret s3"
    )
    assert credentials_version(None) == ""
    meta = {
        "uid": "0123456789ab",
        "resourceVersion": "77",
        "annotations": {"runner-cache.io/credentials-generation": "3"},
    }
    assert credentials_version({"metadata": meta}) == "01234567.3"
