"""The warm process: one resident interpreter with Prefect and the flows imported, forking a child per command.

Every command that runs a flow spent ~2.5 s before its first request: ``import prefect`` 1.2 s, our modules and
their clients 0.5-0.8 s, Prefect's lazy imports 0.3 s (docs/benchmarks.md). The warm process pays that once. The
command line sends it the command's words, environment, working directory and umask, and passes its own stdin,
stdout and stderr along (``SCM_RIGHTS``) over a unix socket only this user can open. The warm process forks; the
child takes all of that over, so the command reads and writes the caller's terminal or pipes directly, and runs the
command exactly as the command line would. It is the design of pants' ``pantsd`` and nailgun, and of Python's own
``multiprocessing`` forkserver (``Lib/multiprocessing/forkserver.py``@3.11, which also passes fds with
``SCM_RIGHTS`` and forks from a process that imported the modules in advance).

Rules that keep a forked child the same as a fresh process:

* The warm process only imports: no thread, event loop, socket or client exists when it forks (checked after
  warming; it refuses to serve otherwise). ``gc.freeze`` keeps the imported heap shared between children.
* The child replaces its environment, directory, umask, argv, stdio and time zone with the caller's; the CLI then
  makes Prefect read its settings and logging configuration again (``prefect.context.refresh_global_settings_context``
  and ``prefect.logging.configuration.setup_logging``@3.9.1).
* A warm process started by another install, another interpreter or another ``PYTHON*`` environment is not used:
  the request carries a fingerprint (interpreter and its flags, ``sys.path`` and the modification times of the
  directories on it, our source files); a mismatch makes the warm process leave and a new one start.
* The child reports its own exit status; when it dies from a signal, the warm process reports ``128 + signal``.
  Signals the command line receives (Ctrl-C, ``kill``) are passed on to the child; when the command line dies,
  the child gets SIGINT, as if the user had pressed Ctrl-C.

Its files are in ``$XDG_RUNTIME_DIR/runner-cache`` (else ``~/.cache/runner-cache``), mode 0700: ``warm-<id>.sock``,
``.pid``, ``.log`` and ``.lock``, where ``<id>`` names the interpreter. It leaves after IDLE_SECONDS without a
command (``RUNNER_CACHE_WARM=<seconds>``); ``runner-cache server stop`` stops it too. ``RUNNER_CACHE_WARM=off`` runs
every command in its own process.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import io
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runner_cache.errors import ConfigError
from runner_cache.tasks.local_process import reap

IDLE_SECONDS = 900.0  # a quarter of an hour without a command: the ~150 MB it holds go back to the machine
START_TIMEOUT = 60.0  # the first import of Prefect: ~2.5 s on an idle machine, much more under load
STOP_TIMEOUT = 5.0
VARIABLE = "RUNNER_CACHE_WARM"
SUN_PATH_MAX = 107  # sockaddr_un.sun_path minus its terminating NUL (unix(7))
# Environment kept by the warm process itself: what imports may read. Everything else (credentials above all)
# reaches only the child that runs the command, and is gone with it.
_START_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PREFECT_HOME")
_START_PREFIXES = ("LC_", "XDG_", "PYTHON")
_FLAGS = ("optimize", "dev_mode", "utf8_mode", "bytes_warning", "hash_randomization", "isolated", "no_user_site")
_SOURCE_PACKAGES = (
    "runner_cache",
    "runner_cache.blocks",
    "runner_cache.deployments",
    "runner_cache.flows",
    "runner_cache.tasks",
)


@dataclass(frozen=True)
class WarmFiles:
    """Where the warm process of one interpreter keeps its socket, pid, log and start lock."""

    root: Path
    name: str

    @property
    def socket(self) -> Path:
        return self.root / f"{self.name}.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def lock_file(self) -> Path:
        return self.root / f"{self.name}.lock"


@dataclass
class Request:
    """One command, as the command line sends it; in the child, also the connection to answer on."""

    argv: list[str]
    environ: dict[str, str]
    cwd: str
    umask: int
    fingerprint: str
    streams: list[tuple[str, str]]  # (encoding, errors) of the caller's stdin, stdout, stderr
    connection: socket.socket | None = field(default=None, repr=False)

    def encode(self) -> bytes:
        document = {name: value for name, value in vars(self).items() if name != "connection"}
        return json.dumps(document).encode()

    @classmethod
    def decode(cls, data: bytes) -> Request:
        document = json.loads(data)
        return cls(**{**document, "streams": [tuple(stream) for stream in document["streams"]]})

    def __repr__(self) -> str:  # the environment holds credentials: never shown
        return f"Request(argv=<{len(self.argv)} words>, cwd={self.cwd!r})"

    def report(self, status: int) -> None:
        """Tell the command line the command's exit status (the child does this just before it exits)."""
        if self.connection is not None:
            # The command line leaves on this line and the warm process then interrupts whoever still holds the
            # connection: a Ctrl-C now must not print a traceback on the caller's terminal.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            with contextlib.suppress(OSError):
                self.connection.sendall(f"X {status}\n".encode())


def idle_seconds() -> float:
    """``RUNNER_CACHE_WARM``: ``off`` (or 0), ``on`` (the default), or the seconds it waits for a command."""
    value = os.environ.get(VARIABLE, "").strip().lower()
    if value in ("", "on", "true", "yes"):
        return IDLE_SECONDS
    if value in ("off", "false", "no"):
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 7 * 86400:
        raise ConfigError(f"{VARIABLE} must be 'off' or the seconds the warm process waits for a command (0 is off)")
    return seconds


def enabled() -> bool:
    return idle_seconds() > 0


def files() -> WarmFiles:
    """This interpreter's warm-process files: one warm process per interpreter (virtualenv) and user."""
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    identity = hashlib.sha256(f"{os.path.realpath(sys.executable)}\0{sys.prefix}".encode()).hexdigest()[:12]
    return WarmFiles(Path(base) / "runner-cache", f"warm-{identity}")


def fingerprint() -> str:
    """What a warm process must share with the command line to run its command the same way (see module doc).

    ``sys.path[0]`` is left out: it is the script's directory for the console script and absent for the warm
    process (``python -P``); neither holds our modules. Of the interpreter's flags, those that change how code
    runs count (``-O``, ``-X dev``, ``-X utf8``, ``-W``, the hash seed), not those that only affect its start.
    """
    from importlib.util import find_spec

    flags = [getattr(sys.flags, name) for name in _FLAGS]
    parts = [
        os.path.realpath(sys.executable),
        sys.prefix,
        sys.version,
        repr(flags),
        repr(sys.warnoptions),
        repr(sys._xoptions),
    ]
    for entry in sys.path[1:]:
        with contextlib.suppress(OSError):
            parts.append(f"{entry}={os.stat(entry).st_mtime_ns}")
    for package in _SOURCE_PACKAGES:
        spec = find_spec(package)
        for directory in (spec.submodule_search_locations or []) if spec else []:
            for root, dirs, names in os.walk(directory):
                dirs[:] = sorted(name for name in dirs if name != "__pycache__")
                for name in sorted(names):
                    if name.endswith(".py"):
                        parts.append(f"{root}/{name}={os.stat(os.path.join(root, name)).st_mtime_ns}")
    parts.append(os.environ.get("PYTHONHASHSEED", ""))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# The command line's side


def send(argv: list[str], *, start: Callable[[WarmFiles], subprocess.Popen]) -> int | None:
    """Run ``argv`` in the warm process and return its exit status; None: run it in this process instead.

    ``start`` launches a warm process when none answers (the CLI knows how). None comes back when the warm process
    is turned off, cannot be started, or went away before taking the command; the reason is in its log.
    """
    if not enabled() or not _stdio_open():
        return None
    where = files()
    if len(os.fsencode(where.socket)) > SUN_PATH_MAX:
        return None
    request = Request(
        argv=argv,
        environ=dict(os.environ),
        cwd=os.getcwd(),
        umask=_umask(),
        fingerprint=fingerprint(),
        streams=[(stream.encoding, stream.errors or "strict") for stream in (sys.stdin, sys.stdout, sys.stderr)],
    )
    for _attempt in range(2):  # a warm process of another install leaves, and a new one is started once
        connection = _connect(where) or _start_and_connect(where, start)
        if connection is None:
            return None
        with connection:
            answer = _submit(connection, request)
        if answer is not None:
            return answer
    return None


def _stdio_open() -> bool:
    """All of stdin, stdout and stderr are open (a caller may close one): only then can they be passed on."""
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return False
    return all(stream is not None for stream in (sys.stdin, sys.stdout, sys.stderr))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _connect(where: WarmFiles) -> socket.socket | None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(where.socket))
    except OSError:
        connection.close()
        return None
    return connection


def _start_and_connect(where: WarmFiles, start: Callable[[WarmFiles], subprocess.Popen]) -> socket.socket | None:
    """Start a warm process (one at a time: concurrent first commands share it) and connect to it."""
    try:
        where.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(where):
            connection = _connect(where)
            if connection is not None:
                return connection
            process = start(where)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                connection = _connect(where)
                if connection is not None:
                    return connection
                if process.poll() is not None:  # it exited: its log says why
                    return None
                time.sleep(0.05)
    except OSError:
        return None
    return None


@contextlib.contextmanager
def _locked(where: WarmFiles) -> Iterator[None]:
    with open(where.lock_file, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _submit(connection: socket.socket, request: Request) -> int | None:
    """Hand the command over and wait for its status; Ctrl-C and other signals go on to the child."""
    reader = connection.makefile("rb")
    try:
        socket.send_fds(connection, [b"R"], [0, 1, 2])
        payload = request.encode()
        connection.sendall(struct.pack("!I", len(payload)) + payload)
        first = reader.readline().decode().split()
    except OSError:  # the warm process went away before it took the command: nothing ran
        return None
    if len(first) != 2 or first[0] != "P":  # "E stale": another install's warm process, now leaving
        return None
    child = int(first[1])

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    try:
        last = reader.readline().decode().split()
    except OSError:
        last = []
    if len(last) == 2 and last[0] == "X":
        return int(last[1])
    print("runner-cache: the command's process ended without a status (killed?)", file=sys.stderr)
    return 1


def _spawn_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name in _START_ENVIRONMENT or name.startswith(_START_PREFIXES)
    }


def spawn(where: WarmFiles, code: str) -> subprocess.Popen:
    """Start ``python -c code`` detached as the warm process, its output going to its log."""
    with open(where.log_file, "ab") as log:
        os.chmod(where.log_file, 0o600)
        return subprocess.Popen(
            [sys.executable, "-P", "-c", code, str(where.root)],  # the dir names it in `ps` and for state()
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=_spawn_environment(),
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )


# ---------------------------------------------------------------------------------------------------------------
# The warm process's side


def _pid_is_warm_process(pid: int, where: WarmFiles) -> bool:
    """Guard against pid reuse: the process must be this interpreter running the warm process of this dir."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        len(cmdline) >= 5
        and os.path.realpath(cmdline[0]) == os.fsencode(os.path.realpath(sys.executable))
        and b"serve_warm" in cmdline[3]
        and cmdline[4] == os.fsencode(str(where.root))
    )


def running_pid(where: WarmFiles) -> int | None:
    """The warm process's pid when it runs, else None."""
    try:
        pid = int(where.pid_file.read_text())
    except (OSError, ValueError):
        return None
    return pid if _pid_is_warm_process(pid, where) else None


def stop(where: WarmFiles, *, apply: bool = True) -> str:
    """Stop the warm process (commands it is running finish on their own); say what was done."""
    pid = running_pid(where)
    if pid is None:
        return "the warm process is not running: nothing to stop"
    if not apply:
        return f"would stop the warm process (pid {pid})"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _pid_is_warm_process(pid, where) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.05)
    if _pid_is_warm_process(pid, where):
        os.kill(pid, signal.SIGKILL)
    return f"stopped the warm process (pid {pid}); the next command starts it again"


def serve(warm: Callable[[], None], *, idle_seconds: float) -> Request:
    """Run the warm process; returns only in a forked child, with the caller's request applied to it.

    ``warm`` imports what commands need. The warm process itself never returns: it exits when idle, stopped, or
    replaced by another install's.
    """
    where = files()
    own = fingerprint()
    warm()
    if threading.active_count() != 1:
        names = ", ".join(thread.name for thread in threading.enumerate())
        print(f"warm process: importing started threads ({names}); forking would be unsafe, leaving", flush=True)
        os._exit(1)
    gc.collect()
    gc.freeze()  # imported objects stay in pages shared with the children (gc.freeze, Python docs)
    server = _WarmServer(where, own, idle_seconds)
    return server.run()


class _WarmServer:
    """The accept / fork / reap loop, single-threaded so that forking stays safe."""

    def __init__(self, where: WarmFiles, fingerprint: str, idle_seconds: float) -> None:
        self.where = where
        self.fingerprint = fingerprint
        self.idle_seconds = idle_seconds
        self.children: dict[int, socket.socket] = {}
        self.leaving = False
        self.selector = selectors.DefaultSelector()
        self.wakeup_read, self.wakeup_write = os.pipe()
        os.set_blocking(self.wakeup_write, False)
        os.set_blocking(self.wakeup_read, False)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def run(self) -> Request:
        self.where.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.where.socket.unlink(missing_ok=True)
        old_mask = os.umask(0o177)  # the socket is created 0600
        try:
            self.listener.bind(str(self.where.socket))
        finally:
            os.umask(old_mask)
        self.listener.listen(16)
        self.where.pid_file.write_text(str(os.getpid()))
        signal.set_wakeup_fd(self.wakeup_write)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wakeup_read, selectors.EVENT_READ, "signal")
        print(f"warm process {os.getpid()} serving on {self.where.socket}", flush=True)
        last_active = time.monotonic()
        while not self.leaving:
            timeout = None if self.children else max(0.0, last_active + self.idle_seconds - time.monotonic())
            events = self.selector.select(timeout)
            if not events and not self.children:
                print("warm process: idle, leaving", flush=True)
                self._leave()
            for key, _mask in events:
                if self.leaving:
                    break
                if key.data == "accept":
                    request = self._accept()
                    if request is not None:
                        return request
                elif key.data == "signal":
                    self._drain_signals()
                else:
                    self._client_gone(key.data)
            if self.children:
                last_active = time.monotonic()
        os._exit(0)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum != signal.SIGCHLD:
            self.leaving = True

    def _drain_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.wakeup_read, 512)
        if self.leaving:
            self._leave()
        self._reap()

    def _leave(self) -> None:
        """Stop taking commands: the socket and pid file go (if still ours). Running children finish on their own
        and report their status themselves; only a signal's death would go unreported once we are gone."""
        self.leaving = True
        if self.listener.fileno() != -1:
            self.selector.unregister(self.listener)
            self.listener.close()
            with contextlib.suppress(OSError):
                if self.where.pid_file.read_text() == str(os.getpid()):
                    self.where.pid_file.unlink()
                    self.where.socket.unlink(missing_ok=True)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            connection = self.children.pop(pid, None)
            if connection is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code < 0:  # killed by a signal: it could not say so itself
                with contextlib.suppress(OSError):
                    connection.sendall(f"X {128 - code}\n".encode())
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(connection)
            connection.close()

    def _client_gone(self, connection: socket.socket) -> None:
        """The command line closed its end (it died): interrupt its command, as Ctrl-C would."""
        with contextlib.suppress(OSError):
            if connection.recv(1, socket.MSG_PEEK):
                return
        self.selector.unregister(connection)
        for pid, held in self.children.items():
            if held is connection:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)

    def _accept(self) -> Request | None:
        connection, _ = self.listener.accept()
        try:
            uid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
            if uid != os.getuid():
                connection.close()
                return None
            connection.settimeout(10)
            _, fds, _, _ = socket.recv_fds(connection, 1, 3)
            (length,) = struct.unpack("!I", _read_exactly(connection, 4))
            request = Request.decode(_read_exactly(connection, length))
            connection.settimeout(None)
        except (OSError, ValueError, TypeError, struct.error):
            connection.close()
            return None
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            connection.close()
            return None
        if request.fingerprint != self.fingerprint:
            print("warm process: a command from another install or environment; leaving for a new one", flush=True)
            self._leave()  # first: the command line's next connect must find no socket, and start a new one
            with contextlib.suppress(OSError):
                connection.sendall(b"E stale\n")
            for fd in fds:
                os.close(fd)
            connection.close()
            return None
        pid = os.fork()
        if pid == 0:
            return self._become_child(request, connection, fds)
        for fd in fds:
            os.close(fd)
        self.children[pid] = connection
        self.selector.register(connection, selectors.EVENT_READ, connection)
        with contextlib.suppress(OSError):
            connection.sendall(f"P {pid}\n".encode())
        return None

    def _become_child(self, request: Request, connection: socket.socket, fds: list[int]) -> Request:
        """In the forked child: drop the warm process's state and take the caller's over."""
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        self.listener.close()
        os.close(self.wakeup_read)
        os.close(self.wakeup_write)
        for held in self.children.values():
            held.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request.cwd)
        os.umask(request.umask)
        os.environ.clear()
        os.environ.update(request.environ)
        time.tzset()
        import tempfile

        tempfile.tempdir = None  # gettempdir() is cached: read TMPDIR again
        sys.argv = ["runner-cache", *request.argv]
        sys.stdin, sys.stdout, sys.stderr = (_text_stream(fd, *request.streams[fd]) for fd in (0, 1, 2))
        request.connection = connection
        return request


def _text_stream(fd: int, encoding: str, errors: str) -> io.TextIOWrapper:
    """The stream Python would have made for ``fd`` in the caller: line-buffered on a terminal and for stderr,
    written through with ``PYTHONUNBUFFERED`` (Python's ``-u``)."""
    if fd == 0:
        return open(fd, encoding=encoding, errors=errors, closefd=False)  # noqa: SIM115 - lives as long as the child
    stream = open(fd, "w", encoding=encoding, errors=errors, closefd=False)  # noqa: SIM115
    stream.reconfigure(line_buffering=fd == 2 or os.isatty(fd), write_through=bool(os.environ.get("PYTHONUNBUFFERED")))
    return stream


def _read_exactly(connection: socket.socket, length: int) -> bytes:
    data = b""
    while len(data) < length:
        chunk = connection.recv(length - len(data))
        if not chunk:
            raise ValueError("connection closed mid-request")
        data += chunk
    return data
