"""The CLI imports only the module of the command it runs: `--help`, `server` and `key` never import Prefect."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from runner_cache import cli

HEAVY = ("prefect", "minio", "kubernetes", "docker", "gitlab", "httpx")


def _imported_after(argv: list[str], env: dict[str, str] | None = None) -> dict:
    probe = (
        "import json, sys\n"
        "from runner_cache.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        f"heavy = sorted(name for name in {HEAVY!r} if name in sys.modules)\n"
        "print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["server", "status", "--json"], ["key", "explain", "project/1/main-protected", "--path", ""]],
)
def test_commands_that_need_no_prefect_import_none_of_the_heavy_clients(argv: list[str], tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "XDG_DATA_HOME": str(tmp_path), "HOME": str(tmp_path)}
    result = _imported_after(argv, env)
    assert result["heavy"] == []
    assert result["code"] in (0, None)


def test_help_lists_every_command_from_the_table(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name, command in cli.COMMAND_TABLE.items():
        assert name in out
        assert command.summary.split()[0] in out


def test_each_command_is_registered_by_its_module_with_the_summary_of_the_table() -> None:
    """The table's one-line summaries (shown without importing) stay those the modules register."""
    registered: dict[str, tuple[str, str | None]] = {}
    for module in cli.COMMANDS:
        subparsers = argparse.ArgumentParser().add_subparsers()
        module.register(subparsers)
        helps = {action.dest: action.help for action in subparsers._choices_actions}
        for name in subparsers.choices:
            registered[name] = (module.__name__.rsplit(".", 1)[1], helps.get(name))
    assert registered == {name: (command.module, command.summary) for name, command in cli.COMMAND_TABLE.items()}
