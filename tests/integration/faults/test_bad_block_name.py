"""The integration part of the bad-input matrix (tests/unit/test_bad_input.py): block names need the Prefect API."""

from __future__ import annotations

import pytest

from runner_cache.cli import main

pytestmark = pytest.mark.usefixtures("prefect_api")

NAMES = {
    "unknown": "no-such-block-anywhere",
    "unicode": "blöck-☃-ünknown",
    "shell metacharacters": "x$(touch /tmp/pwned)`id`",
    "very long": "b" * 500,
}


@pytest.mark.parametrize("command", [["prune", "--max-age-days", "1"], ["setup"], ["verify"]])
@pytest.mark.parametrize("kind", list(NAMES))
def test_a_block_name_that_does_not_exist(command: list[str], kind: str, capsys: pytest.CaptureFixture) -> None:
    name = NAMES[kind]
    code = main([command[0], "--json", "--config", name, *command[1:]])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "", captured.err
    lines = [line for line in captured.err.splitlines() if line.startswith("runner-cache:")]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert "--config" in lines[0] and name not in lines[0], lines[0]
