"""``runner-cache diagnose``: name the cache's true cause from two job logs saved from GitLab.

The same diagnosis the verification pipeline uses, on raw logs as GitLab serves them (ANSI colours, section
markers and ``FF_TIMESTAMPS`` headers included): no GitLab, store or Prefect needed. Exit 0 when the test job
restored the build job's cache from the store, 1 when not, 2 when a file cannot be read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from runner_cache.errors import UsageError
from runner_cache.output import emit
from runner_cache.redaction import redact
from runner_cache.tasks.verify.diagnosis import Diagnosis, diagnose
from runner_cache.tasks.verify.trace import Trace, normalize


def register(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser(
        "diagnose",
        help="name why two jobs did (not) share the cache, from their raw logs",
        description="Read two raw job logs downloaded from GitLab (the job that saves the cache and the job that "
        "restores it) and print whether the cache was shared through the store, or the cause and the fix.",
    )
    command.add_argument(
        "--build-trace", required=True, type=Path, metavar="FILE", help="raw log of the job that saves the cache"
    )
    command.add_argument(
        "--test-trace", required=True, type=Path, metavar="FILE", help="raw log of the job that restores it"
    )
    command.add_argument("--json", action="store_true", help="print one JSON document on stdout and nothing else there")
    command.set_defaults(func=run_diagnose)


def _read(path: Path, flag: str) -> Trace:
    try:
        return normalize(path.read_bytes())
    except OSError as error:
        raise UsageError(f"cannot read {flag} {path}: {error.strerror or error}") from None


def document(verdict: Diagnosis) -> dict:
    """The JSON answer: ``passed``, ``cause``, ``message``, ``evidence`` (trace lines), plus ``fix`` and ``warnings``."""
    return {
        "passed": verdict.passed,
        "cause": verdict.cause,
        "message": redact(verdict.message),
        "fix": verdict.fix,
        "evidence": [redact(line) for line in verdict.evidence],
        "warnings": [redact(warning) for warning in verdict.warnings],
    }


def _text(answer: dict) -> str:
    lines = [f"{'passed' if answer['passed'] else 'FAILED'}: {answer['cause']}", "", answer["message"]]
    if answer["fix"]:
        lines += ["", f"fix: {answer['fix']}"]
    if answer["evidence"]:
        lines += ["", "evidence (from the traces):"] + [f"  {line}" for line in answer["evidence"]]
    lines += [f"warning: {warning}" for warning in answer["warnings"]]
    return "\n".join(lines)


def run_diagnose(args: argparse.Namespace) -> int:
    verdict = diagnose(_read(args.build_trace, "--build-trace"), _read(args.test_trace, "--test-trace"))
    answer = document(verdict)
    emit(answer, as_json=args.json, text=_text(answer))
    return 0 if verdict.passed else 1
