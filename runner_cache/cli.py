"""The ``runner-cache`` command: local runs of the flows, the local store, blocks and run history."""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from runner_cache.errors import PrefectApiError, RunnerCacheError, UsageError

if TYPE_CHECKING:
    import subprocess

    from runner_cache.tasks.warm_process import WarmFiles


class Command(NamedTuple):
    module: str  # under runner_cache.commands; it registers the command (and may register others)
    summary: str  # its line in `runner-cache --help`, which imports no command module
    prefect_api: bool = False  # talks to Prefect's API: without PREFECT_API_URL, the local Prefect server


# Every sub-command, one line each. Only the module of the command being run is imported (pip's commands_dict
# does the same): the others import Prefect, minio, kubernetes or docker, which take seconds. A command with
# `--config BLOCK` given needs Prefect's API too (the block is read from it).
COMMAND_TABLE: dict[str, Command] = {
    "plan": Command("setup", "show what setup would do; touches nothing", prefect_api=True),
    "setup": Command("setup", "run the setup-runner-cache flow", prefect_api=True),
    "verify": Command("verify", "prove with a two-job pipeline that the runner cache is shared", prefect_api=True),
    "diagnose": Command("diagnose", "name why two jobs did (not) share the cache, from their raw logs"),
    "prune": Command("prune", "delete stale cache objects (run the prune-runner-cache flow)", prefect_api=True),
    "rebuild": Command(
        "rebuild",
        "run the rebuild-runner flow (upgrade the release, verify, roll back on failure)",
        prefect_api=True,
    ),
    "render-chart": Command(
        "render_chart",
        "render the runner chart with the cache values and check what the runner gets; needs no cluster",
    ),
    "store": Command("store", "show or stop the store managed by the local or docker backend"),
    "blocks": Command("blocks", "save the configuration as a Prefect block", prefect_api=True),
    "history": Command("history", "list recent runs of the runner-cache flows", prefect_api=True),
    "serve": Command(
        "serve", "serve setup, nightly prune, verify and rebuild as Prefect deployments", prefect_api=True
    ),
    "server": Command("server", "show or stop the local Prefect server (its UI shows every run)"),
    "runner-credentials": Command(
        "credentials", "print the runner identity's key and the [runners.cache] settings", prefect_api=True
    ),
    "rotate-runner-credentials": Command(
        "credentials",
        "new runner key: update the Secret, roll the pods, verify, then revoke the old key",
        prefect_api=True,
    ),
    "key": Command("key", "where a runner writes a cache key, and what an object name is (no store needed)"),
}
COMMAND_MODULES = tuple(dict.fromkeys(command.module for command in COMMAND_TABLE.values()))


def __getattr__(name: str) -> tuple[ModuleType, ...]:
    """``COMMANDS``: every command module, imported on first use."""
    if name == "COMMANDS":
        return tuple(importlib.import_module(f"runner_cache.commands.{module}") for module in COMMAND_MODULES)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Parser(argparse.ArgumentParser):
    """argparse, whose errors are one line naming the flag as typed and never the value given to it."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {_without_values(message)} (see {self.prog} --help)")


def _without_values(message: str) -> str:
    """argparse's message minus what the user typed: a value may be a secret pasted in the wrong place."""
    if message.startswith("unrecognized arguments:"):
        words = message.removeprefix("unrecognized arguments:").split()
        flags = [word.split("=", 1)[0] for word in words if re.fullmatch(r"--?[A-Za-z][\w-]{0,60}(=.*)?", word, re.S)]
        return "unrecognized arguments" + (f": {' '.join(flags)}" if flags else "")
    message = re.sub(r"invalid choice: '.*?' \(choose from", "invalid choice (choose from", message, flags=re.S)
    return re.sub(r" value: '.*'$", " value", message, flags=re.S)


class _NoTraceback(logging.Formatter):
    """The console shows each log line without its traceback: those stay in the flow run's log (Prefect API)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _console_without_tracebacks() -> None:
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, _NoTraceback):
            handler.setFormatter(_NoTraceback(handler.formatter))


def _prefect_unreachable(error: BaseException) -> PrefectApiError | None:
    """Prefect's client failing to connect (it raises RuntimeError or httpx errors) as our PrefectApiError."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    transport = [cause for cause in chain if isinstance(cause, httpx.TransportError)]
    if not transport and not any(str(cause).startswith("Failed to reach API") for cause in chain):
        return None
    what = type(transport[-1]).__name__ if transport else "no answer"
    url = PREFECT_API_URL.value() or "(unset: a temporary local server)"
    return PrefectApiError(
        f"PREFECT_API_URL {url} did not answer ({what}); nothing was started",
        hint="check PREFECT_API_URL and that the Prefect server is up",
    )


def build_parser(commands: Sequence[ModuleType] | None = None) -> argparse.ArgumentParser:
    """The parser with ``commands`` (default: every command module) in full, any other command as its summary."""
    parser = Parser(
        prog="runner-cache",
        description="Set up, verify and prune GitLab Runner's S3 distributed cache.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in sys.modules[__name__].COMMANDS if commands is None else commands:
        command.register(subparsers)
    for name, command in COMMAND_TABLE.items():
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=command.summary)
    return parser


def _named(argv: Sequence[str]) -> tuple[str, Command | None]:
    """The command ``argv`` names (its first word that is not a flag), and its table entry if there is one."""
    name = next((word for word in argv if not word.startswith("-")), "")
    return name, COMMAND_TABLE.get(name)


def _parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser with only the named command's module imported (none for ``--help`` or a wrong name)."""
    _, command = _named(argv)
    return build_parser(
        () if command is None else (importlib.import_module(f"runner_cache.commands.{command.module}"),)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit codes: 0 ok, 1 the work or an outside system failed, 2 bad usage or configuration."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser_for(argv).parse_args(argv)
    except UsageError as error:
        print(f"runner-cache: {error}", file=sys.stderr)
        return error.exit_code
    if getattr(args, "json", False):
        # Prefect's console logging goes to stderr; make sure nothing else reaches stdout either.
        logging.getLogger().handlers = [logging.StreamHandler(sys.stderr)]
    _console_without_tracebacks()
    try:
        with ExitStack() as stack:
            if COMMAND_TABLE[args.command].prefect_api or getattr(args, "config", None):
                from runner_cache.tasks.prefect_server import connect_api

                connect_api()
                if args.command != "serve":  # served runs run in their own processes, with heartbeats
                    stack.enter_context(_without_heartbeats())
            return int(args.func(args) or 0)
    except RunnerCacheError as error:
        print(f"runner-cache: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as error:
        translated = _prefect_unreachable(error)
        if translated is None:
            raise
        print(f"runner-cache: {translated}", file=sys.stderr)
        return translated.exit_code


@contextmanager
def _without_heartbeats() -> Iterator[None]:
    """Flow runs started by this command send no heartbeats.

    Prefect's heartbeat thread sleeps in 1 s steps and every flow run joins it on exit, which added up to 1 s to
    each command (prefect/flow_engine.py ``_send_heartbeats``@3.9.1). A command's run ends with the command (a
    killed one is seen at once); the nightly runs of ``runner-cache serve`` keep them (docs/decisions.md).
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


class _QuickExit:
    """The end of a command: an exit that skips tearing the interpreter down.

    Freeing the heap Prefect builds took ~0.5 s per command (docs/benchmarks.md). The exit handler is registered
    before Prefect is imported, so it runs last: after the interpreter has joined the remaining threads and
    Prefect's own exit handlers have sent the last logs and events. In the warm process's child, it also tells
    the waiting command line the status.
    """

    def __init__(self) -> None:
        self.status = 1  # an uncaught exception: Python's own status for it
        self.report: Callable[[int], None] | None = None
        atexit.register(self._leave)

    def _leave(self) -> None:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        if self.report is not None:
            self.report(self.status)
        os._exit(self.status)

    def run(self, argv: list[str]) -> NoReturn:
        try:
            self.status = main(argv)
        except SystemExit as stop:  # argparse's --help
            self.status = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
            raise
        except KeyboardInterrupt:
            self.status = 130
            raise
        sys.exit(self.status)


def _runs_in_warm_process(argv: Sequence[str]) -> bool:
    """Commands that run flows or talk to Prefect, but not ``serve`` (a long-lived process of its own)."""
    name, command = _named(argv)
    return command is not None and command.prefect_api and name != "serve"


def run() -> NoReturn:
    """The console script: the command in the warm process when it may run there (tasks/warm_process.py), else here."""
    argv = sys.argv[1:]
    if _runs_in_warm_process(argv):
        from runner_cache.tasks import warm_process

        try:
            status = warm_process.send(argv, start=_start_warm_process)
        except RunnerCacheError as error:
            print(f"runner-cache: {error}", file=sys.stderr)
            sys.exit(error.exit_code)
        if status is not None:
            sys.exit(status)
    _QuickExit().run(argv)


def _start_warm_process(where: WarmFiles) -> subprocess.Popen:
    from runner_cache.tasks import warm_process

    code = f"from runner_cache.cli import serve_warm; serve_warm({warm_process.idle_seconds()!r})"
    return warm_process.spawn(where, code)


def serve_warm(idle_seconds: float) -> NoReturn:
    """The warm process: import what commands need, then fork a child per command; each child runs it here."""
    from runner_cache.tasks import warm_process

    leave = _QuickExit()  # registered before anything is imported, as in run()
    request = warm_process.serve(_warm_up, idle_seconds=idle_seconds)
    leave.report = request.report
    # The child has the caller's environment now: Prefect read its settings and logging at import, in the warm
    # process; make it read them again (prefect/context.py, prefect/logging/configuration.py @3.9.1).
    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging

    refresh_global_settings_context()
    setup_logging(incremental=False)
    leave.run(request.argv)


# What `setup`, `plan`, `prune` and `history` imported beyond the command modules, measured with
# `python -X importtime` (Prefect 3.9.1): Prefect's task engine, its JSON encoder (fastapi's, 0.13 s), the flow
# graph, anyio's backend, and our store backends chosen at run time. A name missing from a later version is logged
# and skipped: it only costs that command the import.
WARM_MODULES = (
    "prefect.task_engine",
    "prefect._internal.states",
    "prefect.utilities.visualization",
    "fastapi.encoders",
    "anyio._backends._asyncio",
    "anyio._core._sockets",
    "anyio._core._streams",
    "opentelemetry.metrics",
    "pydantic.color",
    "rich._emoji_codes",
    "_strptime",
    "runner_cache.tasks.prefect_server",
    "runner_cache.tasks.store.s3",
    "runner_cache.tasks.store.local_backend",
)


def _warm_up() -> None:
    """Import every command and flow, and what a flow run's first steps import."""
    sys.modules[__name__].COMMANDS  # noqa: B018 - imports every command module, and through them every flow
    for module in WARM_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as error:
            print(f"warm process: not imported in advance: {error}", flush=True)


if __name__ == "__main__":
    run()
