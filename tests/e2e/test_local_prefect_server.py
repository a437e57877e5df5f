"""The local Prefect server, with real processes: commands start it on first use, reuse it, restart it when dead,
move off a taken port, stop it on request, and leave it alone when PREFECT_API_URL is set.

Each test has its own state dir; the remembered port is set to a free one first, so no test touches 4200.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner_cache.tasks.local_process import port_free
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
START_TIMEOUT = 400  # a first start migrates a new database: 15-80 s on this shared machine


class Local:
    """One state dir, the environment of a user without PREFECT_API_URL, and the CLI run in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.server_dir = self.state_dir / "prefect-server"
        self.env = {
            name: value for name, value in os.environ.items() if not name.startswith(("RUNNER_CACHE_", "PREFECT_"))
        }
        self.env.update(
            RUNNER_CACHE_STORE__STATE_DIR=str(self.state_dir),
            PREFECT_HOME=str(root / "client-home"),  # the user's own Prefect home: no profile sets an API URL
            PYTHONUNBUFFERED="1",
        )

    def run(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "runner-cache"), *args],
            env={**self.env, **(extra_env or {})},
            cwd=self.root,  # no .env or runner-cache.toml of the repository
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )

    def history(self) -> subprocess.CompletedProcess:
        done = self.run("history", "--json")
        assert done.returncode == 0, done.stderr
        return done

    def status(self) -> dict:
        done = self.run("server", "status", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def remember_port(self, port: int) -> None:
        self.server_dir.mkdir(parents=True, exist_ok=True)
        (self.server_dir / "port").write_text(str(port))

    def stop_by_pid(self) -> None:
        """Teardown: stop whatever server this test's state dir started (its process group, by the recorded id)."""
        pid_file = self.server_dir / "server.pid"
        if pid_file.is_file():
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    user = Local(tmp_path)
    user.remember_port(free_port())
    try:
        yield user
    finally:
        user.run("server", "stop")
        user.stop_by_pid()


def test_first_command_starts_it_later_ones_reuse_it_stop_stops_it_and_a_dead_one_is_restarted(local: Local) -> None:
    port = int((local.server_dir / "port").read_text())
    assert not local.status()["running"]

    first = local.history()
    assert f"starting a local Prefect server at http://127.0.0.1:{port}" in first.stderr
    assert "telemetry" not in first.stderr.lower()  # analytics are off: no ERROR line about them
    status = local.status()
    assert status["running"] and status["healthy"]
    assert status["api_url"] == f"http://127.0.0.1:{port}/api"
    assert (local.server_dir / "home").is_dir()  # its PREFECT_HOME (database) is under the store's state dir
    pid = status["pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"PREFECT_UI_API_URL=http://127.0.0.1:{port}/api".encode() in environ  # the UI calls its own port

    started = time.monotonic()
    second = local.history()
    assert "starting a local Prefect server" not in second.stderr
    assert local.status()["pid"] == pid
    assert time.monotonic() - started < 60  # reused, not a new server (its start alone takes longer here)

    text = local.run("server", "status")
    assert f"Prefect UI: http://127.0.0.1:{port}/runs" in text.stdout

    serve_log = local.root / "serve.log"  # `runner-cache serve` registers its deployments on the same server
    with serve_log.open("wb") as log:
        serve = subprocess.Popen(
            [str(BIN / "runner-cache"), "serve"],
            env=local.env,
            cwd=local.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while f"on http://127.0.0.1:{port}/api" not in serve_log.read_text() and time.monotonic() < deadline:
            assert serve.poll() is None, serve_log.read_text()
            time.sleep(0.5)
        assert f"on http://127.0.0.1:{port}/api" in serve_log.read_text()
        assert "starting a local Prefect server" not in serve_log.read_text()
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(30)

    os.killpg(pid, signal.SIGKILL)  # a crashed server
    deadline = time.monotonic() + 30
    while not port_free(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not local.status()["running"]
    third = local.history()
    assert f"starting a local Prefect server at http://127.0.0.1:{port}" in third.stderr  # same, remembered port
    restarted = local.status()
    assert restarted["running"] and restarted["pid"] != pid

    dry = local.run("server", "stop", "--dry-run")
    assert "would stop the local Prefect server" in dry.stdout
    assert local.status()["running"]
    stopped = local.run("server", "stop", "--json")
    assert json.loads(stopped.stdout)["status"] == "changed"
    assert not local.status()["running"]
    assert port_free(port)
    assert "nothing to stop" in local.run("server", "stop").stdout


def test_a_taken_port_moves_the_server_to_a_free_one_and_it_is_remembered(local: Local) -> None:
    taken = int((local.server_dir / "port").read_text())
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        first = local.history()
        status = local.status()
    moved = int(status["api_url"].rsplit(":", 1)[1].split("/", 1)[0])
    assert moved != taken
    assert f"starting a local Prefect server at http://127.0.0.1:{moved}" in first.stderr
    assert int((local.server_dir / "port").read_text()) == moved
    environ = Path(f"/proc/{status['pid']}/environ").read_bytes().split(b"\0")
    assert f"PREFECT_UI_API_URL=http://127.0.0.1:{moved}/api".encode() in environ
    assert "starting" not in local.history().stderr  # reused on its new port


def test_an_explicit_prefect_api_url_wins_and_starts_nothing(local: Local) -> None:
    elsewhere = f"http://127.0.0.1:{free_port()}/api"
    done = local.run("history", extra_env={"PREFECT_API_URL": elsewhere})
    assert done.returncode == 1
    assert f"PREFECT_API_URL {elsewhere} did not answer" in done.stderr
    assert "starting a local Prefect server" not in done.stderr
    assert not (local.server_dir / "server.pid").exists()
    status = local.run("server", "status", extra_env={"PREFECT_API_URL": elsewhere})
    assert f"PREFECT_API_URL is set: runner-cache uses {elsewhere}" in status.stdout
