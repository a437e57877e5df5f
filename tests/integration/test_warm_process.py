"""The warm process (tasks/warm_process.py), driven through the real console script: it starts on the first
command, is reused, runs each command with the caller's environment, directory and streams, passes signals on,
is replaced when dead or of another install, and keeps no secret."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.tasks import warm_process
from tests.integration.faults.conftest import BIN, REPO, cli_env, harness_api_url, wait_until
from tests.support.stores import store_env
from tests.support.warm import stop_warm_processes

pytestmark = pytest.mark.usefixtures("prefect_api")
SECRET = "warm-secret-0123456789-abcdef"


@dataclass
class Warm:
    """A runtime dir of our own (short: a socket path holds at most 107 bytes) and the environment using it."""

    runtime: Path
    env: dict[str, str]

    def run(self, *args: str, cwd: Path = REPO, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "runner-cache"), *args],
            env={**self.env, **extra},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(BIN / "runner-cache"), *args],
            env={**self.env, **extra},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def files(self) -> warm_process.WarmFiles:
        (lock_file,) = (self.runtime / "runner-cache").glob("warm-*.lock")  # made by the first command, kept
        return warm_process.WarmFiles(lock_file.parent, lock_file.stem)

    def pid(self) -> int | None:
        return warm_process.running_pid(self.files()) if (self.runtime / "runner-cache").is_dir() else None

    def children(self) -> list[int]:
        pid = self.pid()
        assert pid is not None
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(child) for child in text.split()]


@pytest.fixture
def warm(seaweed_store: StoreSettings) -> Iterator[Warm]:
    runtime = Path(tempfile.mkdtemp(prefix="rcw-", dir="/tmp"))
    env = cli_env(store_env(seaweed_store), harness_api_url())
    # AWS_SECRET_ACCESS_KEY: a credential of the caller's that only its command may see
    env.update(XDG_RUNTIME_DIR=str(runtime), RUNNER_CACHE_WARM="120", AWS_SECRET_ACCESS_KEY=SECRET)
    yield Warm(runtime, env)
    stop_warm_processes(runtime)
    shutil.rmtree(runtime, ignore_errors=True)


def _plan(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _without_timings(document: dict) -> dict:
    return {**document, "steps": [{**step, "seconds": None} for step in document["steps"]]}


def test_the_first_command_starts_it_and_later_ones_reuse_it_with_the_same_answer(warm: Warm) -> None:
    assert warm.pid() is None
    first = _plan(warm.run("plan", "--json"))
    pid = warm.pid()
    assert pid is not None, "the first command started no warm process"
    second = _plan(warm.run("plan", "--json"))
    assert warm.pid() == pid, "the second command did not reuse the warm process"
    alone = _plan(warm.run("plan", "--json", RUNNER_CACHE_WARM="off"))
    assert _without_timings(first) == _without_timings(second) == _without_timings(alone)
    assert warm.pid() == pid
    status = json.loads(warm.run("server", "status", "--json").stdout)
    assert status["warm_process"]["pid"] == pid


def test_each_command_gets_the_callers_environment_and_directory(warm: Warm, tmp_path: Path) -> None:
    one = _plan(warm.run("plan", "--json", RUNNER_CACHE_STORE__BUCKET="warm-env-one"))
    two = _plan(warm.run("plan", "--json", RUNNER_CACHE_STORE__BUCKET="warm-env-two"))
    (tmp_path / ".env").write_text("RUNNER_CACHE_CACHE__EXPIRE_DAYS=9\n")
    env_without_bucket = {name: value for name, value in warm.env.items() if name != "RUNNER_CACHE_STORE__BUCKET"}
    here = subprocess.run(
        [str(BIN / "runner-cache"), "plan", "--json"],
        env={**env_without_bucket, "RUNNER_CACHE_STORE__BUCKET": "warm-env-three"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    three = _plan(here)

    def bucket_step(document: dict) -> dict:
        return next(step for step in document["steps"] if step["step"] == "bucket")["data"]

    assert bucket_step(one)["bucket"] == "warm-env-one"
    assert bucket_step(two)["bucket"] == "warm-env-two"
    assert bucket_step(three)["bucket"] == "warm-env-three"
    assert bucket_step(one)["expire_days"] != 9
    assert bucket_step(three)["expire_days"] == 9, "the .env of the caller's directory was not read"


def test_commands_at_the_same_time_each_get_their_own_environment(warm: Warm) -> None:
    _plan(warm.run("plan", "--json"))
    processes = {
        bucket: warm.start("plan", "--json", RUNNER_CACHE_STORE__BUCKET=bucket)
        for bucket in ("warm-together-a", "warm-together-b", "warm-together-c")
    }
    for bucket, process in processes.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]
        steps = json.loads(out)["steps"]
        assert next(step for step in steps if step["step"] == "bucket")["data"]["bucket"] == bucket


def test_exit_statuses_and_streams_are_the_commands(warm: Warm) -> None:
    bad = warm.run("plan", RUNNER_CACHE_STORE__BACKEND="nonsense")
    assert bad.returncode == 2
    assert "RUNNER_CACHE_STORE__BACKEND" in bad.stderr and bad.stdout == ""
    down = warm.run("history", PREFECT_API_URL="http://127.0.0.1:9/api")
    assert down.returncode == 1
    assert "did not answer" in down.stderr
    usage = warm.run("plan", "--no-such-flag")
    assert usage.returncode == 2 and "unrecognized arguments: --no-such-flag" in usage.stderr
    helped = warm.run("prune", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: runner-cache prune")
    assert warm.pid() is not None, "these commands ran without the warm process"


@pytest.fixture
def silent_store() -> Iterator[str]:
    """An endpoint that accepts connections and never answers: a command against it waits."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_command_line_reaches_the_command(
    warm: Warm, silent_store: str, sig: signal.Signals, status: int
) -> None:
    _plan(warm.run("plan", "--json"))  # the warm process is up
    process = warm.start("plan", RUNNER_CACHE_STORE__ENDPOINT=silent_store)
    wait_until(lambda: len(warm.children()) == 1, 30, "the command's child")
    (child,) = warm.children()
    time.sleep(1.0)  # the command is now waiting for the silent store
    process.send_signal(sig)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == status, err[-3000:]
    wait_until(lambda: not Path(f"/proc/{child}").exists() or warm.children() == [], 10, "the child to end")


def test_a_command_line_killed_outright_interrupts_its_command(warm: Warm, silent_store: str) -> None:
    _plan(warm.run("plan", "--json"))
    process = warm.start("plan", RUNNER_CACHE_STORE__ENDPOINT=silent_store)
    wait_until(lambda: len(warm.children()) == 1, 30, "the command's child")
    time.sleep(1.0)
    process.kill()
    process.communicate(timeout=10)
    wait_until(lambda: warm.children() == [], 15, "the orphaned command to be interrupted")


def test_a_dead_warm_process_is_replaced(warm: Warm) -> None:
    _plan(warm.run("plan", "--json"))
    pid = warm.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: warm.pid() is None, 10, "the warm process to die")
    assert warm.files().socket.exists(), "a dead warm process leaves its socket behind"
    _plan(warm.run("plan", "--json"))
    assert warm.pid() not in (None, pid)


def test_a_command_from_another_environment_replaces_it(warm: Warm) -> None:
    _plan(warm.run("plan", "--json"))
    pid = warm.pid()
    _plan(warm.run("plan", "--json", PYTHONHASHSEED="7"))  # a different interpreter setting: not the same process
    new = warm.pid()
    assert new not in (None, pid)
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or b"zombie" in _status(pid), 10, "the old one to leave")
    log = warm.files().log_file.read_text()
    assert "another install or environment" in log


def _status(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"


def test_off_runs_every_command_in_its_own_process(warm: Warm) -> None:
    _plan(warm.run("plan", "--json", RUNNER_CACHE_WARM="off"))
    assert not (warm.runtime / "runner-cache").exists() or warm.pid() is None
    bad = warm.run("plan", RUNNER_CACHE_WARM="soon")
    assert bad.returncode == 2 and "RUNNER_CACHE_WARM must be 'off' or the seconds" in bad.stderr
    assert "soon" not in bad.stderr.replace("RUNNER_CACHE_WARM", "")


def test_a_runtime_dir_that_cannot_hold_it_runs_the_command_in_its_own_process(warm: Warm, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "runtime-is-a-file"
    not_a_dir.write_text("")
    done = warm.run("plan", "--json", XDG_RUNTIME_DIR=str(not_a_dir))
    assert _plan(done)["steps"], "the command did not run in its own process"
    assert "Traceback" not in done.stderr
    assert warm.pid() is None


def test_server_stop_stops_it_and_the_next_command_starts_it_again(warm: Warm) -> None:
    _plan(warm.run("plan", "--json"))
    pid = warm.pid()
    dry = warm.run("server", "stop", "--dry-run")
    assert f"would stop the warm process (pid {pid})" in dry.stdout
    assert warm.pid() == pid
    stopped = warm.run("server", "stop")
    assert f"stopped the warm process (pid {pid})" in stopped.stdout
    assert warm.pid() is None
    assert "warm process not running" in warm.run("server", "status").stdout
    _plan(warm.run("plan", "--json"))
    assert warm.pid() not in (None, pid)


def test_it_leaves_when_idle(warm: Warm) -> None:
    _plan(warm.run("plan", "--json", RUNNER_CACHE_WARM="2"))
    pid = warm.pid()
    assert pid is not None
    wait_until(lambda: warm.pid() is None, 15, "the idle warm process to leave")
    assert not warm.files().socket.exists()
    assert "idle, leaving" in warm.files().log_file.read_text()


def test_no_secret_reaches_the_warm_process_its_files_or_its_log(warm: Warm, seaweed_store: StoreSettings) -> None:
    _plan(warm.run("plan", "--json"))
    pid = warm.pid()
    assert pid is not None
    where = warm.files()
    for leak in (
        Path(f"/proc/{pid}/environ").read_bytes(),
        Path(f"/proc/{pid}/cmdline").read_bytes(),
        where.log_file.read_bytes(),
        where.pid_file.read_bytes(),
    ):
        assert SECRET.encode() not in leak
        assert seaweed_store.secret_key.get_secret_value().encode() not in leak
    assert stat.S_IMODE(where.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(where.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(where.log_file.stat().st_mode) == 0o600
    assert SECRET not in repr(warm_process.Request([], {"X": SECRET}, "/", 0o22, "f", []))
