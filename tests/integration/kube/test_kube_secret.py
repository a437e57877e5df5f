"""The runner's cache Secret and the API connection, against the fake API server through the real kubernetes client."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.errors import ConfigError, KubernetesError, KubernetesUnreachable
from runner_cache.tasks.kube.api import ensure_cache_secret
from runner_cache.tasks.policy import is_transient
from tests.integration.kube.conftest import ACCESS, NEW_SECRET, SECRET, Cluster, assert_clean, store_with
from tests.support.servers import free_port

NS, NAME = "gitlab-runner", "runner-cache-s3"


def test_secret_created_then_unchanged_then_updated(
    cluster: Cluster, release: ReleaseSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = ensure_cache_secret(release, store_with())
    assert first.status == "changed"
    assert first.data["writes"] == ["created Namespace gitlab-runner", f"created Secret {NS}/{NAME}"]
    assert cluster.api.secret_data(NS, NAME) == {"accesskey": ACCESS, "secretkey": SECRET}
    assert cluster.api.get("Secret", NS, NAME)["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "runner-cache"}

    writes_before = len(cluster.api.writes())
    second = ensure_cache_secret(release, store_with())
    assert second.status == "unchanged" and "already holds" in second.detail
    assert len(cluster.api.writes()) == writes_before, "an unchanged Secret must not be written"

    third = ensure_cache_secret(release, store_with(NEW_SECRET))
    assert third.status == "changed"
    assert third.data["changed_keys"] == ["secretkey"]
    assert "updated secretkey in Secret gitlab-runner/runner-cache-s3" in third.detail
    patch = cluster.api.writes()[-1]
    assert patch.method == "PATCH" and patch.content_type.startswith("application/strategic-merge-patch+json")
    assert cluster.api.secret_data(NS, NAME) == {"accesskey": ACCESS, "secretkey": NEW_SECRET}

    for result in (first, second, third):
        assert_clean(result.model_dump_json(), "a StepResult")
    assert_clean(caplog.text, "the logs")


def test_secret_update_keeps_other_keys(cluster: Cluster, release: ReleaseSettings) -> None:
    """A Secret made by hand (the by-hand procedure's `kubectl create secret`) keeps keys we do not manage."""
    cluster.api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": NAME, "namespace": NS},
            "data": {"accesskey": "b2xk", "secretkey": "b2xkLXNlY3JldA==", "note": "a2VlcA=="},
        }
    )
    result = ensure_cache_secret(release, store_with())
    assert result.data["changed_keys"] == ["accesskey", "secretkey"]
    assert cluster.api.secret_data(NS, NAME) == {"accesskey": ACCESS, "secretkey": SECRET, "note": "keep"}


def test_dry_run_writes_nothing(cluster: Cluster, release: ReleaseSettings) -> None:
    planned = ensure_cache_secret(release, store_with(), apply=False)
    assert planned.status == "planned" and planned.detail == f"would create Secret {NS}/{NAME}"
    assert cluster.api.writes() == []
    ensure_cache_secret(release, store_with())
    planned = ensure_cache_secret(release, store_with(NEW_SECRET), apply=False)
    assert planned.detail == f"would update secretkey in Secret {NS}/{NAME}"
    assert cluster.api.secret_data(NS, NAME)["secretkey"] == SECRET


def test_forbidden_write_names_the_object_not_the_values(cluster: Cluster, release: ReleaseSettings) -> None:
    cluster.api.fail[("POST", "Secret")] = 403
    with pytest.raises(KubernetesError) as caught:
        ensure_cache_secret(release, store_with())
    message = str(caught.value)
    assert "not allowed to create Secret gitlab-runner/runner-cache-s3 (HTTP 403, RBAC)" in message
    assert not is_transient(caught.value)
    assert_clean(message + repr(caught.value), "the exception")


def test_wrong_token_is_a_clear_config_error(cluster: Cluster, tmp_path: Path) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "not-the-token"
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(KubernetesError, match=r"rejected the credentials \(HTTP 401\)"):
        ensure_cache_secret(ReleaseSettings(kubeconfig=bad), store_with())


def test_unreachable_api_is_transient(tmp_path: Path, cluster: Cluster) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{free_port()}"
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    with pytest.raises(KubernetesUnreachable, match="is not reachable") as caught:
        ensure_cache_secret(ReleaseSettings(kubeconfig=dead), store_with())
    assert is_transient(caught.value)


def test_server_error_is_transient(cluster: Cluster, release: ReleaseSettings) -> None:
    cluster.api.fail[("GET", "Secret")] = 503
    with pytest.raises(KubernetesUnreachable, match="answered HTTP 503") as caught:
        ensure_cache_secret(release, store_with())
    assert is_transient(caught.value)


def test_default_kubeconfig_comes_from_the_environment(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    assert ensure_cache_secret(ReleaseSettings(), store_with()).status == "changed"
    assert cluster.api.secret_data(NS, NAME)["accesskey"] == ACCESS


def test_missing_kubeconfig_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the kubeconfig .*nowhere does not exist"):
        ensure_cache_secret(ReleaseSettings(kubeconfig=tmp_path / "nowhere"), store_with())


def test_unknown_context(cluster: Cluster) -> None:
    with pytest.raises(ConfigError, match=r"cannot use kubeconfig .*, context staging"):
        ensure_cache_secret(ReleaseSettings(kubeconfig=cluster.kubeconfig, context="staging"), store_with())


def test_garbage_kubeconfig(tmp_path: Path) -> None:
    garbage = tmp_path / "kubeconfig"
    garbage.write_text("just: [a, list]\n")
    with pytest.raises(ConfigError, match="cannot use kubeconfig"):
        ensure_cache_secret(ReleaseSettings(kubeconfig=garbage), store_with())


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("namespace", "Gitlab_Runner", "DNS label"),
        ("secret_name", "S3 access", "Kubernetes object name"),
        ("release", "x" * 54, "Helm release name"),
    ],
)
def test_bad_release_names_are_rejected(field: str, value: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ReleaseSettings(**{field: value})
