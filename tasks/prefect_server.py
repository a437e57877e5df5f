"""A local Prefect server, run the way the local store runs: started on first use, detached, on 127.0.0.1.

Commands that talk to Prefect's API and find no ``PREFECT_API_URL`` (environment, ``.env`` or Prefect profile) use
this server instead of the temporary one Prefect would start for each command (5-12 s every time, and gone with
its run history when the command ends). Its state sits next to the local store's, in
``RUNNER_CACHE_STORE__STATE_DIR/prefect-server/``: ``home/`` (its ``PREFECT_HOME``, with the SQLite database),
``server.pid``, ``server.log`` and ``port`` (4200 unless that port was taken at the first start; then another
free port, kept for the next starts so that a bookmarked UI address stays valid).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from runner_cache.errors import PrefectApiError
from runner_cache.tasks.local_process import free_port, log_tail, port_free, reap
from runner_cache.tasks.results import StepResult, timed

DEFAULT_PORT = 4200
READY_TIMEOUT = 180.0  # the first start creates the database: 13-18 s on an idle machine, much more under load
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class ServerFiles:
    """Where one local Prefect server keeps its state."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def pid_file(self) -> Path:
        return self.root / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"


@dataclass(frozen=True)
class ServerState:
    """What is on disk and in the process table for one state dir."""

    pid: int | None
    running: bool
    port: int


def files(state_dir: Path) -> ServerFiles:
    return ServerFiles(state_dir / "prefect-server")


def api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api"


def ui_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def configured_state_dir() -> Path:
    """The local store's state dir from the settings (environment, ``.env``, TOML), the server's home too."""
    from runner_cache.blocks.settings import load_settings

    return load_settings().store.state_dir


def _remembered_port(server: ServerFiles) -> int:
    try:
        return int(server.port_file.read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_PORT


def _pid_is_our_server(pid: int, server: ServerFiles) -> bool:
    """Guard against pid reuse: the process must be a ``prefect server start`` whose PREFECT_HOME is ours."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        b"prefect" in cmdline
        and b"server" in cmdline
        and b"start" in cmdline
        and f"PREFECT_HOME={server.home}".encode() in environ
    )


def state(state_dir: Path) -> ServerState:
    server = files(state_dir)
    try:
        pid: int | None = int(server.pid_file.read_text())
    except (OSError, ValueError):
        pid = None
    running = pid is not None and _pid_is_our_server(pid, server)
    return ServerState(pid, running, _remembered_port(server))


def _healthy(port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url(port)}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def _locked(server: ServerFiles) -> Iterator[None]:
    """One command at a time decides whether to start the server, so two first commands do not start two."""
    server.root.mkdir(parents=True, exist_ok=True)
    with open(server.lock_file, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _start(server: ServerFiles, port: int) -> subprocess.Popen:
    server.home.mkdir(parents=True, exist_ok=True)
    env = {name: value for name, value in os.environ.items() if name not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    env.update(
        PREFECT_HOME=str(server.home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",  # no telemetry, and no ERROR line about it
        PREFECT_UI_API_URL=api_url(port),  # else the UI calls 127.0.0.1:4200 whatever port it is served on
    )
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(server.log_file, "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True, close_fds=True
        )
    server.pid_file.write_text(str(process.pid))
    server.port_file.write_text(str(port))
    return process


def _wait_ready(server: ServerFiles, process: subprocess.Popen, port: int, timeout: float) -> bool:
    """True once /api/health answers; False when the process exited first (e.g. it lost its port)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _healthy(port):
            return True
        time.sleep(0.25)
    _terminate(server)
    raise PrefectApiError(
        f"the local Prefect server on port {port} did not answer within {timeout:.0f} s; "
        f"last lines of {server.log_file}:\n{log_tail(server.log_file)}",
        hint="see its log, or set PREFECT_API_URL to a Prefect server of your own",
    )


def _choose_port(server: ServerFiles) -> int:
    """The remembered port (4200 at first) when free, else any free port (remembered from then on)."""
    port = _remembered_port(server)
    return port if port_free(port) else free_port()


def ensure(state_dir: Path, *, apply: bool = True, timeout: float = READY_TIMEOUT) -> StepResult:
    """Reuse the running server, restart a dead or hung one, or start one; wait until its API answers.

    ``apply=False`` starts and stops nothing and says what it would do.
    """
    server = files(state_dir)
    with timed() as timer, _locked(server):
        status, action, port = _converge(server, state(state_dir), apply, timeout)
    return StepResult(
        step="prefect-server",
        status=status,
        detail=f"{action} at {ui_url(port)}",
        seconds=timer.seconds,
        data={"api_url": api_url(port), "ui_url": ui_url(port), "port": port},
    )


def _converge(server: ServerFiles, current: ServerState, apply: bool, timeout: float) -> tuple[str, str, int]:
    """(status, what was done, port) for :func:`ensure`, under its lock."""
    if current.running and _healthy(current.port):
        return "unchanged", f"reused the local Prefect server (pid {current.pid})", current.port
    if not apply:
        verb = (
            "restart the local Prefect server (it does not answer)"
            if current.running
            else "start a local Prefect server"
        )
        return "planned", f"would {verb}", current.port if current.running else _choose_port(server)
    if current.running:  # alive but silent: give a loaded machine a moment before restarting it
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if _healthy(current.port):
                return "unchanged", f"reused the local Prefect server (pid {current.pid})", current.port
            time.sleep(0.5)
        _terminate(server)
    verb = "restarted the local Prefect server" if server.home.is_dir() else "started a local Prefect server"
    for _attempt in range(3):  # the chosen port can be taken between the check and the server's bind
        port = _choose_port(server)
        print(
            f"runner-cache: starting a local Prefect server at {ui_url(port)} (state in {server.root}); "
            "the first start takes 15-30 s",
            file=sys.stderr,
            flush=True,
        )
        process = _start(server, port)
        if _wait_ready(server, process, port, timeout):
            return "changed", f"{verb} (pid {process.pid})", port
        server.pid_file.unlink(missing_ok=True)
        server.port_file.write_text(str(free_port()))  # it lost its port: the next attempt takes another
    raise PrefectApiError(
        f"the local Prefect server exited while starting; last lines of {server.log_file}:\n"
        f"{log_tail(server.log_file)}",
        hint="see its log, or set PREFECT_API_URL to a Prefect server of your own",
    )


def stop(state_dir: Path, *, apply: bool = True) -> StepResult:
    """Stop the local server of this state dir, keeping its database; ``apply=False`` only says what it would stop."""
    current = state(state_dir)
    data = {"api_url": api_url(current.port), "ui_url": ui_url(current.port), "port": current.port}
    if not current.running:
        return StepResult(
            step="prefect-server",
            status="unchanged",
            detail="the local Prefect server is not running: nothing to stop",
            data=data,
        )
    if not apply:
        return StepResult(
            step="prefect-server",
            status="planned",
            detail=f"would stop the local Prefect server at {ui_url(current.port)} (pid {current.pid}; its runs are kept)",
            data=data,
        )
    with timed() as timer:
        _terminate(files(state_dir))
    return StepResult(
        step="prefect-server",
        status="changed",
        detail=f"stopped the local Prefect server at {ui_url(current.port)} (its runs are kept)",
        seconds=timer.seconds,
        data=data,
    )


def status(state_dir: Path) -> dict:
    """The server as ``runner-cache server status`` shows it."""
    server = files(state_dir)
    current = state(state_dir)
    return {
        "running": current.running,
        "healthy": current.running and _healthy(current.port),
        "pid": current.pid if current.running else None,
        "api_url": api_url(current.port),
        "ui_url": ui_url(current.port),
        "home": str(server.home),
        "log_file": str(server.log_file),
    }


def _terminate(server: ServerFiles) -> None:
    """SIGTERM to the server's process group, SIGKILL after STOP_TIMEOUT; then wait for its port to be free."""
    try:
        pid = int(server.pid_file.read_text())
    except (OSError, ValueError):
        return
    if _pid_is_our_server(pid, server):
        port = _remembered_port(server)
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _pid_is_our_server(pid, server) and time.monotonic() < deadline:
            reap(pid)
            time.sleep(0.1)
        if _pid_is_our_server(pid, server):
            os.killpg(pid, signal.SIGKILL)
            reap(pid)
        while not port_free(port) and time.monotonic() < deadline + 5:
            time.sleep(0.1)
    server.pid_file.unlink(missing_ok=True)


def explicit_api_url() -> str | None:
    """The Prefect API the user configured (environment, ``.env``, profile), if any: it always wins.

    The environment is read first: Prefect reads it only once, when it is imported.
    """
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def connect_api() -> str:
    """The Prefect API this process uses: the configured one, else the local server (started if needed)."""
    explicit = explicit_api_url()
    if explicit:
        return explicit
    result = ensure(configured_state_dir())
    url = result.data["api_url"]
    os.environ["PREFECT_API_URL"] = url
    os.environ["PREFECT_UI_URL"] = result.data["ui_url"]
    # Prefect read its settings when it was imported; make it read them again, with the URL just set.
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()
    return url
