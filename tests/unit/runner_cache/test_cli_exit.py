"""The console script (``cli.run``) ends the process itself once the exit handlers ran: what a command printed
reaches the pipe in full and its exit status is the one it returned (0, 1, 2), also for argparse's own exits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner_cache import cli

CONSOLE_SCRIPT = "import sys\nfrom runner_cache.cli import run\nsys.argv[0] = 'runner-cache'\nrun()\n"


def _console(*argv: str, home: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "XDG_DATA_HOME": str(home), "HOME": str(home), **extra}
    return subprocess.run(
        [sys.executable, "-c", CONSOLE_SCRIPT, *argv], capture_output=True, text=True, timeout=120, env=env
    )


def test_help_exits_0_with_all_of_its_text(tmp_path: Path) -> None:
    done = _console("--help", home=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: runner-cache")
    listed = done.stdout.split("COMMAND", 2)[-1]
    assert all(f"    {name} " in listed or f"    {name}\n" in listed for name in cli.COMMAND_TABLE)


def test_a_large_json_answer_reaches_the_pipe_in_full(tmp_path: Path) -> None:
    names = [f"project/{n}/main-{n}-protected" for n in range(1, 1501)]  # well over a 64 KiB pipe buffer
    done = _console("key", "explain", *names, "--path", "", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) > 65536
    explained = json.loads(done.stdout)
    assert len(explained) == len(names)


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (["prune"], 2, "choose at least one rule"),  # our usage error
        (["no-such-command"], 2, "invalid choice"),  # argparse's
        (["history"], 1, "did not answer"),  # Prefect imported, its API down: exit handlers ran, status kept
    ],
)
def test_the_status_is_the_one_the_command_returned(argv: list[str], status: int, says: str, tmp_path: Path) -> None:
    done = _console(*argv, home=tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api")
    assert done.returncode == status, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr
