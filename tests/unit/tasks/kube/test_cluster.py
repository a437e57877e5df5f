"""One rule picks the cluster for the Kubernetes client and for helm: client-go's (merged_client_builder.go)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner_cache.errors import ConfigError
from runner_cache.tasks.kube import cluster
from runner_cache.tasks.kube.cluster import select_cluster


@pytest.fixture
def in_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A pod's environment: the service account token exists, KUBERNETES_SERVICE_* are set, no ~/.kube/config."""
    token = tmp_path / "token"
    token.write_text("t")
    monkeypatch.setattr(cluster, "TOKEN_FILE", token)
    return {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "HOME": str(tmp_path / "home")}


def kubeconfig(directory: Path, name: str = "config") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("apiVersion: v1\nkind: Config\n")
    return path


def test_kubeconfig_wins_over_the_service_account_like_helm(tmp_path: Path, in_pod: dict[str, str]) -> None:
    """The defect: in a pod with KUBECONFIG set, helm used KUBECONFIG and the client the service account."""
    path = kubeconfig(tmp_path)
    target = select_cluster(None, None, {**in_pod, "KUBECONFIG": str(path)})
    assert target.source == "kubeconfig" and target.kubeconfig == (path,)
    assert target.helm_args() == ["--kubeconfig", str(path)]


def test_the_service_account_only_without_any_kubeconfig(in_pod: dict[str, str]) -> None:
    target = select_cluster(None, None, in_pod)
    assert target.source == "in-cluster" and target.helm_args() == []
    assert "KUBECONFIG" not in target.helm_env({**in_pod, "KUBECONFIG": "/nonexistent"})


def test_missing_files_in_kubeconfig_are_skipped_as_client_go_does(tmp_path: Path, in_pod: dict[str, str]) -> None:
    first, second = kubeconfig(tmp_path, "a"), kubeconfig(tmp_path, "b")
    listed = f"{tmp_path / 'gone'}:{first}:{second}"
    target = select_cluster(None, "staging", {**in_pod, "KUBECONFIG": listed})
    assert target.kubeconfig == (first, second)
    assert target.helm_args() == ["--kube-context", "staging"], "a list goes to helm as KUBECONFIG, not a flag"
    assert target.helm_env({})["KUBECONFIG"] == f"{first}:{second}"


def test_home_kubeconfig_before_the_service_account(tmp_path: Path, in_pod: dict[str, str]) -> None:
    home = tmp_path / "home"
    path = kubeconfig(home / ".kube")
    target = select_cluster(None, None, in_pod)
    assert target.kubeconfig == (path,) and target.reason == "~/.kube/config"


def test_the_configured_kubeconfig_first_and_it_must_exist(tmp_path: Path, in_pod: dict[str, str]) -> None:
    mine, env = kubeconfig(tmp_path, "mine"), kubeconfig(tmp_path, "env")
    assert select_cluster(mine, None, {**in_pod, "KUBECONFIG": str(env)}).kubeconfig == (mine,)
    with pytest.raises(ConfigError, match="the kubeconfig .*nowhere does not exist"):
        select_cluster(tmp_path / "nowhere", None, in_pod)


def test_no_cluster_at_all(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no Kubernetes cluster configured"):
        select_cluster(None, None, {"HOME": str(tmp_path)})


def test_a_context_without_a_kubeconfig_is_an_error(in_pod: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="only the pod's service account"):
        select_cluster(None, "staging", in_pod)
