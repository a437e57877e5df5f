"""What the daemons runner-cache starts on this machine (the local store, the local Prefect server, the warm
process) need alike: loopback ports, the tail of their log, and reaping them when they are our own children."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def port_free(port: int) -> bool:
    """True when nothing holds ``port`` on 127.0.0.1 (a port in TIME_WAIT counts as free, as for the daemons)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port on 127.0.0.1 that the system says is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(log_file: Path, lines: int = 5) -> str:
    """The last ``lines`` of a daemon's log, for an error that says why it did not come up."""
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def reap(pid: int) -> None:
    """Collect the exit status when the daemon is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
