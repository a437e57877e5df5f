"""A real ``prefect server start`` and a real ``runner-cache serve`` for the session, both on 127.0.0.1.

The server takes 15-20 s to start here, so one serves every end-to-end test; the serve process runs the four
deployments against the session's SeaweedFS. Every process started here runs in its own process group and is
stopped (the whole group, by its id) at the end of the session.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings

from runner_cache.blocks.store import StoreSettings
from runner_cache.tasks.chart.helm_cli import helm_binary
from tests.fakes import fake_helm
from tests.fakes.kube_api import FakeKubeApi, KubeApiServer
from tests.integration.kube.conftest import runner_deployment
from tests.support.servers import free_port
from tests.support.stores import store_env as store_env  # re-exported for the e2e tests

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = (
    "setup-runner-cache/default",
    "prune-runner-cache/nightly",
    "verify-runner-cache/on-demand",
    "rebuild-runner/after-upgrade",
)
E2E_TIMEZONE = "Europe/Berlin"
CHART = REPO / "tests" / "charts" / "modern"  # gitlab-runner 0.60.0, as in the kube tests


@dataclass
class Process:
    """A started process, its log file, and how to stop it (its whole process group)."""

    popen: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def start(args: list[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> Process:
    with log.open("ab") as handle:
        popen = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Process(popen, log)


@dataclass
class PrefectServer:
    """A ``prefect server start`` of this session: its URLs and the environment a client process needs."""

    process: Process
    port: int
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextmanager
    def client_settings(self) -> Iterator[None]:
        """Point this process's Prefect client at the server (instead of the test harness)."""
        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            yield

    def runs_of(self, deployment_id: UUID) -> list[FlowRun]:
        with self.client_settings(), get_client(sync_client=True) as client:
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )

    def wait_for_new_final_run(self, deployment_id: UUID, known: set[UUID], timeout: float = 90) -> FlowRun:
        """The first run of the deployment that is not in ``known`` and has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = [
                run for run in self.runs_of(deployment_id) if run.id not in known and run.state and run.state.is_final()
            ]
            if runs:
                return runs[0]
            time.sleep(1)
        raise TimeoutError(f"no new finished run of deployment {deployment_id} after {timeout} s")

    def run(
        self, *args: str, timeout: float = 180, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """A CLI (``prefect …``, ``runner-cache …``) from this venv, talking to the server."""
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            env={**self.env, **(extra_env or {})},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _client_env(home: Path, api_url: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("RUNNER_CACHE_", "PREFECT_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_ENABLED="false",
        PREFECT_LOGGING_TO_API_BATCH_INTERVAL="0.3",
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait_healthy(server: PrefectServer, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.popen.poll() is not None:
            raise RuntimeError(
                f"prefect server exited with {server.process.popen.returncode}:\n{server.process.output()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{server.api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prefect server not healthy after {timeout} s:\n{server.process.output()[-3000:]}")


@contextmanager
def running_prefect_server(home: Path, server_env: dict[str, str] | None = None) -> Iterator[PrefectServer]:
    """``prefect server start`` on a free loopback port, with its own PREFECT_HOME and the UI pointed at it;
    ``server_env`` adds to the server's environment only (e.g. its database URL). Stopped on exit."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = _client_env(home, api_url)
    own_env = {
        **env,
        "PREFECT_UI_API_URL": api_url,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        **(server_env or {}),
    }
    own_env.pop("PREFECT_API_URL")
    process = start(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        own_env,
        home / "server.log",
    )
    server = PrefectServer(process, port, home, env)
    try:
        _wait_healthy(server)
        yield server
    finally:
        process.stop()


@pytest.fixture(scope="session")
def prefect_server(session_dir: Path) -> Iterator[PrefectServer]:
    """The end-to-end tests' ``prefect server`` (SQLite), shared by the session."""
    with running_prefect_server(session_dir / "e2e-prefect") as server:
        yield server


@dataclass
class Cluster:
    """What the rebuild flow's release targets: the Kubernetes API fake and helm (fake for the cluster, real for rendering)."""

    api: FakeKubeApi
    helm_state: Path
    env: dict[str, str]

    def revisions(self, key: str = "gitlab-runner/gitlab-runner") -> list[dict]:
        return json.loads(self.helm_state.read_text())["releases"].get(key, [])


@pytest.fixture(scope="session")
def cluster(session_dir: Path) -> Iterator[Cluster]:
    """The Kubernetes API fake (with the runner's Deployment, which the fake helm cannot create) and the recording
    fake helm (tests/fakes/fake_helm.py), which hands rendering to the real binary.
    """
    work = session_dir / "e2e-cluster"
    bin_dir = work / "bin"
    state, log = work / "helm-state.json", work / "helm-calls.jsonl"
    helm = fake_helm.install(bin_dir, state, log, {"version": "v4.1.4", "releases": {}})
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    api = FakeKubeApi()
    api.put(runner_deployment())
    with KubeApiServer(api) as server:
        env = {
            "RUNNER_CACHE_HELM": str(helm),
            "FAKE_HELM_REAL": str(helm_binary()),  # the fake hands `helm template` to the real binary
            "FAKE_HELM_STATE": str(state),
            "FAKE_HELM_LOG": str(log),
            "HELM_CACHE_HOME": str(work / "helm-cache"),
            "HELM_CONFIG_HOME": str(work / "helm-config"),
            "HELM_DATA_HOME": str(work / "helm-data"),
            "RUNNER_CACHE_RELEASE__CHART": str(CHART),
            "RUNNER_CACHE_STORE__RUNNER_URL": "http://minio.runner-cache.svc:9000",  # what the pods would use
            "RUNNER_CACHE_RELEASE__KUBECONFIG": str(server.kubeconfig(work / "kubeconfig")),
            "RUNNER_CACHE_RELEASE__TIMEOUT_SECONDS": "30",
        }
        yield Cluster(api, state, env)


@dataclass
class Served:
    """The ``runner-cache serve`` process, the store its flows use, and what it printed when it started."""

    process: Process
    store: StoreSettings
    env: dict[str, str]
    started: dict


def wait_for_deployments(server: PrefectServer, names: tuple[str, ...], process: Process, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    with server.client_settings(), get_client(sync_client=True) as client:
        for name in names:
            while True:
                try:
                    client.read_deployment_by_name(name)
                    break
                except ObjectNotFound:
                    if process.popen.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{name} was not served:\n{process.output()[-4000:]}") from None
                    time.sleep(0.5)


@pytest.fixture(scope="session")
def served(prefect_server: PrefectServer, seaweed_server: StoreSettings, cluster: Cluster) -> Iterator[Served]:
    """``runner-cache serve --json`` for the session: its flows use SeaweedFS and the release fakes, by RUNNER_CACHE_* variables."""
    store = seaweed_server.model_copy(update={"bucket": f"e2e-{uuid.uuid4().hex[:10]}"})
    store.client().make_bucket(store.bucket, location=store.region)
    env = {
        **prefect_server.env,
        **store_env(store),
        **cluster.env,
        "RUNNER_CACHE_SCHEDULE__TIMEZONE": E2E_TIMEZONE,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    log = prefect_server.home / "serve.log"
    stdout = prefect_server.home / "serve.json"
    with stdout.open("wb") as out, log.open("ab") as err:
        popen = subprocess.Popen(
            [str(BIN / "runner-cache"), "serve", "--json"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    process = Process(popen, log)
    try:
        wait_for_deployments(prefect_server, DEPLOYMENTS, process)
        yield Served(process, store, env, json.loads(stdout.read_text()))
    finally:
        process.stop()
    # `--json`: one document on stdout, still nothing else after a whole session of flow runs
    json.loads(stdout.read_text())
