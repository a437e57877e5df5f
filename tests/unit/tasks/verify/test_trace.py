"""The trace normaliser on golden traces built from gitlab-runner's source (traces/README.md), and on the edge
cases of GitLab's own parser: ``\\r`` rewrites, CRLF, unfinished escapes, stray section ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner_cache.tasks.verify.trace import normalize

TRACES = Path(__file__).parent / "traces"
VERSIONS = ["v17.0.0", "v18.4.0", "v19.3.0"]


def golden(name: str) -> bytes:
    return (TRACES / name).read_bytes()


@pytest.mark.parametrize("name", sorted(path.name for path in TRACES.glob("*.log")))
def test_every_golden_trace_comes_out_as_plain_lines(name: str) -> None:
    trace = normalize(golden(name))
    assert trace.lines and trace.lines[0].text.startswith("Running with gitlab-runner ")
    for line in trace.lines:
        assert "\x1b" not in line.text and "\r" not in line.text and "section_" not in line.text, line
        assert line.text == line.text.rstrip()
    assert trace.timestamped is ("-ts-" in name)
    assert trace.sections[:2] == ("prepare_executor", "prepare_script")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("job", ["build", "test"])
def test_timestamps_on_and_off_read_the_same(version: str, job: str) -> None:
    """The same job with and without FF_TIMESTAMPS: the same lines in the same sections, bar the flags line."""
    plain = normalize(golden(f"{version}-plain-ok-{job}.log"))
    stamped = normalize(golden(f"{version}-ts-ok-{job}.log"))

    def shape(lines: tuple) -> list[tuple[str, tuple[str, ...]]]:
        return [(line.text, line.sections) for line in lines if not line.text.startswith("  feature flags:")]

    assert shape(stamped.lines) == shape(plain.lines)
    assert all(line.timestamp is None for line in plain.lines)
    assert all(line.timestamp and line.timestamp.endswith("Z") and len(line.timestamp) == 27 for line in stamped.lines)


def test_v17_split_section_markers_are_joined_back() -> None:
    """Up to v19.0 the timestamper cuts ``section_start:…\\r`` from its ``\\x1b[0K``: the ``+`` entry rejoins it."""
    raw = golden("v17.0.0-ts-ok-test.log")
    assert b"restore_cache\r\n" in raw and b" 00O+\x1b[0K" in raw
    trace = normalize(raw)
    assert trace.sections == (
        "prepare_executor", "prepare_script", "get_sources", "restore_cache", "step_script", "cleanup_file_variables",
    )  # fmt: skip
    restoring = [line.text for line in trace.section("restore_cache")]
    assert restoring[0] == "Restoring cache" and restoring[-1] == "Successfully extracted cache"
    assert [line.text for line in trace.lines if not line.sections][-1] == "Job succeeded"


def test_v19_whole_entries_keep_the_marker_and_its_clear_together() -> None:
    raw = golden("v19.3.0-ts-ok-build.log")
    assert b"archive_cache\r\x1b[0K\n" in raw
    saved = [line.text for line in normalize(raw).section("archive_cache")]
    assert saved[:2] == [
        "Saving cache for successful job",
        "Creating cache runner-cache-verify-1a2b3c4d-non_protected...",
    ]
    assert saved[-1] == "Created cache"


def test_helper_lines_lose_their_padding_and_reset() -> None:
    trace = normalize(golden("v19.3.0-ts-access_denied-build.log"))
    texts = [line.text for line in trace.section("archive_cache")]
    assert "Using presigned URL for cache upload" in texts
    assert "FATAL: received: 403 Forbidden. Request failed with code: AccessDenied, message: Access Denied." in texts


def test_a_lone_carriage_return_redraws_the_line() -> None:
    raw = "Downloading cache  10%\rDownloading cache 100%\nDone\r\n"
    assert [line.text for line in normalize(raw).lines] == ["Downloading cache 100%", "Done"]


def test_crlf_and_escapes_of_every_kind() -> None:
    """GitLab's scanner: ESC + indicator 0x40-0x5f + parameters + final byte is dropped whatever it means; an ESC
    before any other byte is dropped alone; an escape without its final byte ends the line."""
    raw = "\x1b[32;1mgreen\x1b[0;m\r\n\x1b[2Kcleared\n\x1b!kept\ncut \x1b[31"
    assert [line.text for line in normalize(raw).lines] == ["green", "cleared", "!kept", "cut"]


def test_sections_nest_and_a_stray_end_is_ignored() -> None:
    raw = (
        "section_start:1:outer\r\x1b[0Kone\n"
        "section_start:2:inner[collapsed=true]\r\x1b[0Ktwo\n"
        "section_end:3:nothing_open\r\x1b[0Kthree\n"
        "section_end:4:outer\r\x1b[0Kfour\n"
    )
    lines = normalize(raw).lines
    assert [(line.text, line.sections) for line in lines] == [
        ("one", ("outer",)), ("two", ("outer", "inner")), ("three", ("outer", "inner")), ("four", ()),
    ]  # fmt: skip


def test_timestamps_are_only_assumed_when_the_first_line_has_one() -> None:
    stamped_later = "plain first\n2025-11-29T14:20:00.137211Z 00O kept as text\n"
    assert normalize(stamped_later).lines[1].text.startswith("2025-11-29T14:20:00.137211Z")
    assert normalize(b"\xff\xfe broken utf-8\n").lines[0].text.endswith("broken utf-8")
