"""A private Docker Engine for the tests: Debian's ``dockerd`` (20.10, API 1.41) started as root in a temp dir.

It shares nothing with a system daemon or another test run: its own ``--data-root``, ``--exec-root``,
``--pidfile``, unix socket (no TCP), containerd namespace and bridge (``rcbr`` + 4 hex digits, made here with
``ip``); it writes no iptables rules, so a port published on 127.0.0.1 is served by ``docker-proxy``.
:meth:`PrivateEngine.stop` sends SIGTERM as ``systemctl stop docker`` does: the engine stops its containers,
then exits. :meth:`PrivateEngine.start` again keeps images, volumes and containers; those with
``restart=always`` come back.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def ping(socket_path: str | Path, timeout: float = 1.0) -> bool:
    """True when an engine answers ``GET /_ping`` with 200 OK on this unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(str(socket_path))
            client.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
            return client.recv(64).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


class PrivateEngine:
    """One ``dockerd`` owned by the test session; ``url`` is what ``store.docker.host`` takes."""

    def __init__(self, dockerd: str) -> None:
        self.dockerd = dockerd
        # Short on purpose: unix socket paths (containerd's is under exec-root) must stay below ~107 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix="rc-dockerd-", dir="/tmp"))
        self.socket = self.directory / "docker.sock"
        self.log = self.directory / "dockerd.log"
        self.bridge = f"rcbr{random.randrange(0x10000):04x}"
        self.process: subprocess.Popen[bytes] | None = None
        self._make_bridge()

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _make_bridge(self) -> None:
        taken = subprocess.run(["ip", "-o", "-4", "addr"], check=True, capture_output=True, text=True).stdout
        third = next(n for n in random.sample(range(1, 255), 254) if f" 10.213.{n}." not in taken)
        for command in (
            ["ip", "link", "add", "name", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", f"10.213.{third}.1/24", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ):
            subprocess.run(command, check=True, capture_output=True)

    def start(self, timeout: float = 30.0) -> float:
        """Start the daemon and wait until ``/_ping`` answers; returns the seconds that took."""
        assert self.process is None or self.process.poll() is not None, "the engine is already running"
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.dockerd,
                    f"--data-root={self.directory / 'data'}",
                    f"--exec-root={self.directory / 'exec'}",
                    f"--pidfile={self.directory / 'docker.pid'}",
                    f"--host={self.url}",
                    f"--bridge={self.bridge}",
                    "--iptables=false",
                    "--ip-masq=false",
                    f"--containerd-namespace=rc-{self.bridge}",
                    f"--containerd-plugins-namespace=rc-{self.bridge}-plugins",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        while not ping(self.socket):
            if self.process.poll() is not None or time.monotonic() - started > timeout:
                raise RuntimeError(f"dockerd did not answer /_ping in {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.05)
        return time.monotonic() - started

    def stop(self, timeout: float = 60.0) -> float:
        """SIGTERM and wait until the daemon has exited (it stops its containers first); returns the seconds."""
        started = time.monotonic()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout)
        return time.monotonic() - started

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def remove(self) -> None:
        """Stop the daemon, delete its bridge and every file it made (images, volumes, containers)."""
        self.stop()
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)
        # overlay2 may leave mounts under data-root when a container was killed: unmount before deleting
        mounts = [
            line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if str(self.directory) in line
        ]
        for mount in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)


def find_dockerd() -> str | None:
    """``dockerd`` on PATH or in /usr/sbin (not on a normal user's PATH)."""
    return shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")


def can_start_engine() -> str | None:
    """Why a private engine cannot be started here, or None when it can."""
    if os.geteuid() != 0:
        return "starting a private dockerd needs root"
    if find_dockerd() is None:
        return "dockerd is not installed (run scripts/get-docker.sh)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    return None
