"""Raw GitLab job logs → plain lines, read the way GitLab's own log viewer reads them.

A raw trace (``GET /projects/:id/jobs/:id/trace``, or "Show complete raw" in the UI) is what gitlab-runner wrote:
ANSI colour codes around most lines, ``section_start:<unix>:<name>\\r\\x1b[0K`` / ``section_end:…`` markers around
every build stage, ``\\r`` rewrites, and with ``FF_TIMESTAMPS`` (a CI variable from 17.0, on by default from 19.0)
a 32-byte header on every entry, ``2025-11-29T14:20:00.137211Z 00O `` whose last byte is ``+`` when the entry
continues the previous line. This module follows GitLab's parser
(``lib/gitlab/ci/ansi2json/v2/converter.rb`` and ``lib/gitlab/ci/trace/stream.rb`` in gitlab-org/gitlab):

1. timestamps are assumed when the first line starts with a header; an entry whose *next* entry is marked ``+``
   loses its newline and the next entry (minus its header) is appended to it;
2. per line, a header at the start is dropped (its time kept), a section marker opens or closes a section (an
   end for a section that is not open is ignored), escape sequences are dropped, ``\\r`` before the newline ends
   the line, any other ``\\r`` clears what the line held so far (progress bars), the rest is text.

Where the runner writes these: ``common/buildlogger/internal/timestamper/timestamper.go`` (header, ``+``),
``helpers/build_section.go`` (markers), ``common/buildlogger/internal/tee.go`` and ``helpers/ansi_colors.go``
(colours) in gitlab-runner v17.0.0–v19.3.0. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# lib/gitlab/ci/trace/stream.rb: TIMESTAMP_HEADER_REGEX, _LENGTH = 32, _DATETIME_LENGTH = 27.
_HEADER = re.compile(r"\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-5]\d\.\d{6}Z [0-9a-f]{2}[EO][+ ]")
HEADER_LENGTH = 32
_DATETIME_LENGTH = 27
# lib/gitlab/regex.rb build_trace_section_regex
_SECTION = re.compile(
    r"section_(?P<action>start|end):(?P<time>\d+):(?P<name>[a-zA-Z0-9_.-]+)"
    r"(?P<options>\[(?:\w+=\w+)(?:, ?(?:\w+=\w+))*\])?\r\x1b\[0K"
)
# An escape sequence as the v2 converter scans it: ESC, indicator 0x40-0x5f, parameters 0x30-0x3f,
# intermediates 0x20-0x2f, final byte 0x40-0x7e. Without a final byte the rest of the line is dropped.
_ESCAPE = re.compile(r"\x1b[@-_][0-?]*[ -/]*(?P<final>[@-~])?")
_TEXT = re.compile(r"[^\x1b\rs]+|s")


@dataclass(frozen=True)
class TraceLine:
    """One line as the log viewer shows it: plain ``text``, the sections it is in (outermost first), its time."""

    number: int
    text: str
    sections: tuple[str, ...] = ()
    timestamp: str | None = None

    def inside(self, *names: str) -> bool:
        return any(name in self.sections for name in names)


@dataclass(frozen=True)
class Trace:
    """A normalised trace: its lines, whether it carried timestamps, and the sections it opened, in order."""

    lines: tuple[TraceLine, ...]
    timestamped: bool = False
    sections: tuple[str, ...] = field(default=())

    def section(self, *names: str) -> list[TraceLine]:
        """The lines inside any of the sections ``names`` (e.g. ``restore_cache``), in order."""
        return [line for line in self.lines if line.inside(*names)]

    def has_section(self, name: str) -> bool:
        return name in self.sections

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


def _logical_lines(raw: str) -> tuple[list[tuple[str, list[str]]], bool]:
    """Raw entries joined into logical lines (GitLab's 1-line look-ahead on ``+`` headers), with their times."""
    entries = raw.split("\n")
    if entries and entries[-1] == "":
        entries.pop()
    timestamped = bool(entries) and _HEADER.match(entries[0]) is not None
    lines: list[tuple[str, list[str]]] = []
    current: str | None = None
    times: list[str] = []
    for index, entry in enumerate(entries):
        stamped = timestamped and _HEADER.match(entry) is not None
        if current is None:
            current, times = entry, []
            if stamped:
                times.append(entry[:_DATETIME_LENGTH])
                current = entry[HEADER_LENGTH:]
        else:  # a continuation: its header goes, its text joins the line
            if stamped:
                times.append(entry[:_DATETIME_LENGTH])
                entry = entry[HEADER_LENGTH:]
            current += entry
        following = entries[index + 1] if index + 1 < len(entries) else None
        continued = (
            timestamped
            and following is not None
            and len(following) >= HEADER_LENGTH
            and following[HEADER_LENGTH - 1] == "+"
            and _HEADER.match(following) is not None
        )
        if not continued:
            lines.append((current, times))
            current = None
    return lines, timestamped


def normalize(raw: bytes | str) -> Trace:
    """Read a raw job log like GitLab's log viewer; bytes are decoded as UTF-8 with replacement characters."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    logical, timestamped = _logical_lines(text)
    open_sections: list[str] = []
    seen: list[str] = []
    out: list[TraceLine] = []

    def emit(buffer: list[str], when: str | None) -> None:
        content = "".join(buffer).rstrip()
        if content:
            out.append(TraceLine(len(out) + 1, content, tuple(open_sections), when))
        buffer.clear()

    for line, times in logical:
        when = times[0] if times else None
        line = line.rstrip("\r")  # CRLF_REGEX /\r*\n/: carriage returns before the newline end the line
        buffer: list[str] = []
        position = 0
        while position < len(line):
            char = line[position]
            if char == "s" and (match := _SECTION.match(line, position)):
                emit(buffer, when)
                name = match.group("name")
                if match.group("action") == "start":
                    open_sections.append(name)
                    seen.append(name)
                elif name in open_sections:
                    del open_sections[open_sections.index(name) :]
                position = match.end()
            elif char == "\x1b":
                match = _ESCAPE.match(line, position)
                if match is None:  # ESC and a byte that is no indicator: only the ESC is skipped
                    position += 1
                else:
                    position = match.end() if match.group("final") else len(line)
            elif char == "\r":
                buffer.clear()  # a lone carriage return: the line is drawn again from its start
                position += 1
            else:
                match = _TEXT.match(line, position)
                assert match is not None
                buffer.append(match.group())
                position = match.end()
        emit(buffer, when)
    return Trace(tuple(out), timestamped, tuple(seen))
