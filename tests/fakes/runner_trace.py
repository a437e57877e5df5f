"""The bytes gitlab-runner writes into a job's trace, for the GitLab fake's jobs.

Written from the runner's source (GitHub mirror ``gitlabhq/gitlab-runner``), not from our parser, so the parser
is tested against the format rather than against itself:

- ``common/buildlogger/internal/tee.go@v17.0.0``: ``Println`` = ``\\x1b[0K`` + text + ``\\x1b[0;m``, ``Infoln`` green,
  ``Warningln`` ``\\x1b[0;33mWARNING: ``, ``SoftErrorln`` ``\\x1b[31;1mERROR: ``;
- ``helpers/build_section.go@v17.0.0``: ``section_start:<unix>:<name>\\r\\x1b[0K`` through the same logger, then the
  stage's description in bold cyan (``common/build.go@v17.0.0:354`` ``executeStage``);
- ``common/buildlogger/internal/timestamper/timestamper.go``: with ``FF_TIMESTAMPS`` each entry starts with
  ``<RFC3339>.<6 digits>Z <stream 2 hex><O|E><' '|'+'>``; a write with ``\\r`` and no ``\\n`` is cut after the last
  ``\\r`` up to v19.0 and kept whole from v19.1, the next entry then being marked ``+``;
- ``shells/bash.go@v17.0.0:282``: ``Noticef`` = echo of ``\\x1b[32;1m…\\x1b[0;m``, ``Warningf`` of ``\\x1b[0;33m…``;
- ``log/runner_formatter.go@v17.0.0``: the cache helpers' lines: level colour and prefix, the message padded to
  50 columns, ``\\x1b[0;m``, a space, then `` key=value`` fields;
- ``commands/helpers/retry_helper.go``: ``received: <status>``, plus ``. Request failed with code: <Code>,
  message: <Message>`` from v18.0.0 when the body is an S3 XML error.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime

CLEAR = "\x1b[0K"
RESET = "\x1b[0;m"
GREEN = "\x1b[32;1m"
CYAN = "\x1b[36;1m"
YELLOW = "\x1b[0;33m"
RED = "\x1b[31;1m"

STAGES = {
    "prepare_executor": 'Preparing the "kubernetes" executor',
    "prepare_script": "Preparing environment",
    "get_sources": "Getting source from Git repository",
    "restore_cache": "Restoring cache",
    "step_script": 'Executing "step_script" stage of the job script',
    "archive_cache": "Saving cache for successful job",
    "cleanup_file_variables": "Cleaning up project directory and file based variables",
}


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


class _Stamper:
    """One ``timestamper.Logger``: the runner keeps one per writer (the job logger, each output stream)."""

    def __init__(self, sink: TraceWriter, stream: int, kind: str) -> None:
        self.sink, self.stream, self.kind = sink, stream, kind
        self.buffer = ""
        self.flag = " "

    def _header(self) -> str:
        now = datetime.now(UTC)
        header = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}Z {self.stream:02x}{self.kind}{self.flag}"
        self.flag = " "
        return header

    def write(self, data: str) -> None:
        if self.sink.stamp_mode is None:
            self.sink.append(data)
            return
        done = 0
        if (index := data.find("\n")) != -1:
            if self.buffer:
                self.sink.append(self.buffer + data[: index + 1])
                self.buffer, done = "", index + 1
            while (index := data.find("\n", done)) != -1:
                self.sink.append(self._header() + data[done : index + 1])
                done = index + 1
        rest = data[done:]
        if "\r" in rest:
            cut = rest.rfind("\r") + 1 if self.sink.stamp_mode == "split" else len(rest)
            head = self.buffer or self._header()
            self.buffer = ""
            self.sink.append(head + rest[:cut] + "\n")
            self.flag = "+"
            rest = rest[cut:]
        if rest:
            self.buffer = (self.buffer or self._header()) + rest

    def close(self) -> None:
        if self.buffer:
            self.sink.append(self.buffer + "\n")
            self.buffer = ""


class TraceWriter:
    """A job's trace as a kubernetes-executor runner of ``version`` writes it (``timestamps``: FF_TIMESTAMPS)."""

    def __init__(self, version: str, *, timestamps: bool | None = None) -> None:
        self.version = version
        on = timestamps if timestamps is not None else version_tuple(version) >= (19, 0)
        self.timestamps = on
        self.stamp_mode = None if not on else ("whole" if version_tuple(version) >= (19, 1) else "split")
        self._chunks: list[str] = []
        self._lock = threading.Lock()
        self.logger = _Stamper(self, 0, "O")  # b.logger: stage names, section markers
        self.output = _Stamper(self, 0, "O")  # the job container's output (kubernetes: StreamExecutorLevel)
        self.open: list[str] = []
        self.finished = False

    def append(self, data: str) -> None:
        with self._lock:
            if not self.finished:
                self._chunks.append(data)

    def raw(self) -> bytes:
        with self._lock:
            return "".join(self._chunks).encode()

    # ---- runner-level lines (tee.go)

    def header(self, name: str, short_token: str, system_id: str, revision: str, flags: dict[str, bool]) -> None:
        """``printRunningWithHeader``: its own logger, only flags that differ from their default."""
        own = _Stamper(self, 0, "O")
        own.write(f"{CLEAR}Running with gitlab-runner {self.version} ({revision}){RESET}\n")
        own.write(f"{CLEAR}  on {name} {short_token}, system ID: {system_id}{RESET}\n")
        defaults = {"FF_TIMESTAMPS": version_tuple(self.version) >= (19, 0)}
        changed = {"FF_TIMESTAMPS": self.timestamps, **flags}
        listed = ", ".join(f"{k}:{str(v).lower()}" for k, v in changed.items() if defaults.get(k, False) != v)
        if listed:
            own.write(f"{CLEAR}  feature flags: {listed}{RESET}\n")
        own.close()

    def println(self, text: str) -> None:
        self.logger.write(f"{CLEAR}{text}{RESET}\n")

    def start(self, stage: str) -> None:
        self.logger.write(f"section_start:{int(time.time())}:{stage}\r{CLEAR}")
        self.open.append(stage)
        self.println(f"{CYAN}{STAGES[stage]}{RESET}")

    def end(self, stage: str) -> None:
        self.logger.write(f"section_end:{int(time.time())}:{stage}\r{CLEAR}")
        self.open.remove(stage)

    def finish(self, error: str | None = None) -> None:
        """``Run``'s deferred calls: the job logger closes, then ``setTraceStatus`` writes through a new one.

        Only the first call counts (a cancel from the API and the job's own end can race).
        """
        if self.finished:
            return
        for stage in reversed(self.open[:]):
            self.end(stage)
        self.output.close()
        self.logger.close()
        final = _Stamper(self, 0, "O")
        if error is None:
            final.write(f"{GREEN}Job succeeded{RESET}\n")
        else:
            newline = "\n" if version_tuple(self.version) < (19, 0) else ""  # fmt.Sprintln up to 18.x
            final.write(f"{RED}ERROR: Job failed: {error}{newline}{RESET}\n")
        final.close()
        with self._lock:
            self.finished = True

    # ---- the job's own output (bash.go echo lines, the script, the cache helpers)

    def notice(self, text: str) -> None:
        self.output.write(f"{GREEN}{text}{RESET}\n")

    def warning(self, text: str) -> None:
        self.output.write(f"{YELLOW}{text}{RESET}\n")

    def echo(self, text: str) -> None:
        self.output.write(text + "\n")

    def helper(self, level: str, message: str, **fields: str) -> None:
        """A line of ``gitlab-runner-helper cache-archiver|cache-extractor`` (runner_formatter.go)."""
        colour, prefix = {"info": ("", ""), "warning": (YELLOW, "WARNING: "), "fatal": (RED, "FATAL: ")}[level]
        line = f"{colour}{prefix}{message:<{50 - len(prefix)}}{RESET} "
        line += "".join(f" {colour}{key}{RESET}={fields[key]}" for key in sorted(fields))
        self.output.write(line + "\n")

    def received(self, status: int, reason: str, body: bytes) -> str:
        """``retryOnServerError``'s error text for an S3 answer, as this runner version words it."""
        text = f"received: {status} {reason}"
        code = re.search(rb"<Code>([^<]*)</Code>", body or b"")
        message = re.search(rb"<Message>([^<]*)</Message>", body or b"")
        detail = ""
        if code and code.group(1):
            detail = "code: " + code.group(1).decode()
        if message and message.group(1):
            detail += ", message: " + message.group(1).decode()
        if version_tuple(self.version) >= (18, 0) and detail:
            text += ". Request failed with " + detail
        return text
