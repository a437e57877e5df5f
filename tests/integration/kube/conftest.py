"""Fixtures for the Kubernetes side: a fake API server reached through a real kubeconfig, and a fake helm on PATH."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.tasks.chart.helm_cli import helm_binary
from runner_cache.tasks.chart.patch import InstallableChart
from runner_cache.tasks.chart.source import read_chart_yaml
from runner_cache.tasks.chart.values import load_values_file
from tests.fakes import fake_helm
from tests.fakes.kube_api import FakeKubeApi, KubeApiServer
from tests.fakes.rbac import Rbac

ACCESS = "SENTINELKUBEACCESS"
SECRET = "SENTINEL-KUBE-SECRET-0042"
NEW_SECRET = "SENTINEL-KUBE-SECRET-0043"
SENTINELS = (ACCESS, SECRET, NEW_SECRET)
# What the fakes grant by default: exactly docs/deployments.md's Roles (not chart-rbac: the test charts make none).
DOCUMENTED = ("release", "store", "namespaces")


def assert_clean(text: str, where: str) -> None:
    for sentinel in SENTINELS:
        assert sentinel not in text, f"a secret leaked into {where}"


@dataclass
class Cluster:
    api: FakeKubeApi
    server: KubeApiServer
    kubeconfig: Path


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    api = FakeKubeApi(rbac=Rbac.documented(*DOCUMENTED))
    with KubeApiServer(api) as server:
        yield Cluster(api, server, server.kubeconfig(tmp_path / "kubeconfig"))


@pytest.fixture
def release(cluster: Cluster) -> ReleaseSettings:
    return ReleaseSettings(chart="unused", kubeconfig=cluster.kubeconfig, timeout_seconds=30)


def store_with(secret: str = SECRET, **fields: object) -> StoreSettings:
    return StoreSettings(
        backend="external",
        endpoint="http://minio.example:9000",
        access_key=SecretStr(ACCESS),
        secret_key=SecretStr(secret),
        **fields,
    )


@dataclass
class FakeHelm:
    """The fake helm's state and records (see tests/fakes/fake_helm.py)."""

    state_file: Path
    log_file: Path

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def set_state(self, **changes: object) -> None:
        self.state_file.write_text(json.dumps({**self.state(), **changes}))

    def records(self) -> list[dict]:
        if not self.log_file.is_file():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def commands(self) -> list[str]:
        """The sub-command of each call, e.g. ``["status", "history", "get", "upgrade"]``."""
        return [record["argv"][0] for record in self.records()]

    def revisions(self, key: str = "gitlab-runner/gitlab-runner") -> list[dict]:
        return self.state()["releases"].get(key, [])


@pytest.fixture
def helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHelm:
    """The fake helm first on PATH (and RUNNER_CACHE_HELM unset, so nothing picks the real binary). It renders the
    release's objects with the real helm and authorises the requests they imply against the documented RBAC."""
    fake = FakeHelm(tmp_path / "helm-state.json", tmp_path / "helm-calls.jsonl")
    bin_dir = tmp_path / "fake-bin"
    fake_helm.install(bin_dir, fake.state_file, fake.log_file, {"version": "v4.1.4", "releases": {}})
    monkeypatch.delenv("RUNNER_CACHE_HELM", raising=False)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_HELM_STATE", str(fake.state_file))
    monkeypatch.setenv("FAKE_HELM_LOG", str(fake.log_file))
    monkeypatch.setenv("FAKE_HELM_REAL", str(REAL_HELM))
    monkeypatch.setenv("FAKE_HELM_RBAC", ",".join(DOCUMENTED))
    return fake


NS, NAME = "gitlab-runner", "gitlab-runner"
REAL_HELM = helm_binary()  # resolved before the `helm` fixture puts the fake first on PATH
MODERN_CHART = Path(__file__).parents[2] / "charts" / "modern"


def runner_deployment(replicas: int = 2) -> dict:
    labels = {"app": NAME}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": NAME, "image": "gitlab/gitlab-runner:v18.5.0"}]},
            },
        },
    }


@pytest.fixture
def configured(
    cluster: Cluster, helm: FakeHelm, moto_store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> StoreSettings:
    """A release on the fake cluster, the store on moto (it refuses writes to a missing bucket), real rendering."""
    monkeypatch.setenv("FAKE_HELM_REAL", str(REAL_HELM))
    env = {
        "RUNNER_CACHE_STORE__BACKEND": "external",
        "RUNNER_CACHE_STORE__ENDPOINT": moto_store.endpoint,
        "RUNNER_CACHE_STORE__ACCESS_KEY": moto_store.access_key.get_secret_value(),
        "RUNNER_CACHE_STORE__SECRET_KEY": moto_store.secret_key.get_secret_value(),
        "RUNNER_CACHE_STORE__BUCKET": moto_store.bucket,
        "RUNNER_CACHE_STORE__IDENTITIES__VERIFY": "false",  # moto's S3 ignores IAM policies (issue 16)
        "RUNNER_CACHE_RELEASE__CHART": str(MODERN_CHART),
        "RUNNER_CACHE_STORE__RUNNER_URL": "http://minio.runner-cache.svc:9000",  # the pods cannot use 127.0.0.1
        "RUNNER_CACHE_RELEASE__KUBECONFIG": str(cluster.kubeconfig),
        "RUNNER_CACHE_RELEASE__TIMEOUT_SECONDS": "20",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cluster.api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gitlab-runner"}})
    cluster.api.put(runner_deployment())
    return moto_store


def installable(chart: Path, *, patched: bool = False, values_file: Path | None = None) -> InstallableChart:
    """A fixture chart as ``ChartPlan.installable`` would give it, for tests of the upgrade alone."""
    name, version = read_chart_yaml(chart)
    return InstallableChart(chart, name, version, patched, load_values_file(values_file))
