"""``runner-cache diagnose`` on golden traces: the JSON contract, the human text, exit codes, and redaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner_cache.cli import main

TRACES = Path(__file__).parent / "traces"


def diagnose(capsys: pytest.CaptureFixture, build: str | Path, test: str | Path, *flags: str) -> tuple[int, str]:
    code = main(["diagnose", "--build-trace", str(TRACES / build), "--test-trace", str(TRACES / test), *flags])
    return code, capsys.readouterr().out


def test_json_for_a_healthy_runner(capsys: pytest.CaptureFixture) -> None:
    code, out = diagnose(capsys, "v19.3.0-ts-ok-build.log", "v19.3.0-ts-ok-other-manager-test.log", "--json")
    answer = json.loads(out)
    assert code == 0 and answer["passed"] is True and answer["cause"] == "ok"
    assert set(answer) >= {"passed", "cause", "message", "evidence"}
    assert "Successfully extracted cache" in answer["evidence"]


def test_json_names_the_cause_and_quotes_the_runner(capsys: pytest.CaptureFixture) -> None:
    code, out = diagnose(capsys, "v17.0.0-plain-ok-build.log", "v19.3.0-ts-other-runner-missing-test.log", "--json")
    answer = json.loads(out)
    assert code == 1 and answer["passed"] is False and answer["cause"] == "different_runners_not_shared"
    assert "WARNING: file does not exist" in answer["evidence"] and "Shared = true" in answer["fix"]


def test_text_for_people(capsys: pytest.CaptureFixture) -> None:
    code, out = diagnose(capsys, "v19.3.0-ts-signature_mismatch-build.log", "v19.3.0-ts-missing-test.log")
    assert code == 1
    assert out.startswith("FAILED: signature_mismatch\n")
    assert "fix: The secret key in the runner's cache Secret does not belong to its access key" in out
    assert "  FATAL: received: 403 Forbidden. Request failed with code: SignatureDoesNotMatch" in out


def test_an_unreadable_file_is_a_usage_error(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = main(["diagnose", "--build-trace", str(tmp_path / "nope.log"), "--test-trace", str(tmp_path / "nope.log")])
    assert code == 2 and "cannot read --build-trace" in capsys.readouterr().err


def test_credentials_in_a_users_log_do_not_reach_the_output(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """An unmasked presigned URL (an old runner, or a log edited by hand) loses its query in the answer."""
    build = (
        (TRACES / "v19.3.0-ts-refused-build.log")
        .read_bytes()
        .replace(b"X-Amz-Credential=[MASKED]", b"X-Amz-Credential=AKIASECRETKEYID%2F20251129")
        .replace(b"X-Amz-Signature=[MASKED]", b"X-Amz-Signature=0badc0ffee")
    )
    (tmp_path / "build.log").write_bytes(build)
    code, out = diagnose(capsys, tmp_path / "build.log", TRACES / "v19.3.0-ts-missing-test.log", "--json")
    answer = json.loads(out)
    assert code == 1 and answer["cause"] == "store_unreachable"
    assert "AKIASECRETKEYID" not in out and "0badc0ffee" not in out
