"""Bad input everywhere, as a generated matrix: every RUNNER_CACHE_* setting and every CLI flag, each with
malformed values. A rejected value exits 2 with one line naming the variable or the flag as typed, never the
value, and touches nothing (no Prefect API, no store: none listens here). Counts are in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from runner_cache import cli
from runner_cache.blocks.settings import RunnerCacheSections, load_settings
from runner_cache.errors import ConfigError

# Malformed on purpose; each long enough to be told apart in a message (empty and short ones are checked by kind).
BAD_VALUES: dict[str, str] = {
    "wrong type": "not-a-number-or-bool",
    "out of range": "-99999999999",
    "huge": "1e999",
    "empty": "",
    "unicode": "ünïcødé-☃-värde",
    "very long": "v" * 5000,
    "shell metacharacters": "$(touch /tmp/pwned);`id`|&>x",
    "nonexistent path": "/nonexistent/runner-cache/matrix/file",
    "control characters": "line\nbreak\ttab\x1b[31m",
}
ECHO_MIN = 6  # a value this long that appears in the message was echoed (shorter ones can occur by chance)

# A setting that is always wrong: when a command gets past its own flag checks it stops here, with exit 2 naming
# this variable, before any flow, store or Prefect API is touched.
SENTINEL = ("RUNNER_CACHE_STORE__BUCKET", "Not_A_Valid_Bucket!")


def _leaves(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, object]]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaves(annotation, f"{prefix}{name.upper()}__")
        else:
            yield f"{prefix}{name.upper()}", annotation


SETTINGS = sorted(_leaves(RunnerCacheSections, "RUNNER_CACHE_"))


def _scalar(annotation: object) -> set[type]:
    """The scalar types a setting accepts (int, float, bool …), None excluded."""
    args = typing.get_args(annotation) or (annotation,)
    return {arg for arg in args if isinstance(arg, type) and arg is not type(None)}


def _numeric_or_bool(annotation: object) -> bool:
    types = _scalar(annotation)
    return bool(types) and types <= {int, float, bool}


def _names(message: str, name: str) -> bool:
    """The variable by name, or (a rule across fields) its section's variable prefix and the field's name."""
    section, _, field = name.rpartition("__")
    return name in message or (section in message and field.lower() in message)


def _assert_names_not_echoes(message: str, name: str, value: str) -> None:
    assert _names(message, name), f"{name} not named in: {message!r}"
    if len(value) >= ECHO_MIN:
        assert value not in message and value[:ECHO_MIN] not in message.replace(name, ""), message


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    import os

    for name in [name for name in os.environ if name.startswith("RUNNER_CACHE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env or runner-cache.toml of the repository
    return monkeypatch


TALLY: dict[str, int] = {"settings tried": 0, "settings rejected": 0, "flags tried": 0, "flags rejected": 0}


# The environment cannot hold NUL: those values are tried on flags only.
ENV_VALUES = [kind for kind, value in BAD_VALUES.items() if "\x00" not in value]


@pytest.mark.parametrize(("variable", "annotation"), SETTINGS, ids=[name for name, _ in SETTINGS])
@pytest.mark.parametrize("kind", ENV_VALUES)
def test_every_setting_with_malformed_values(
    variable: str, annotation: object, kind: str, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    value = BAD_VALUES[kind]
    clean_env.setenv(variable, value)
    TALLY["settings tried"] += 1
    try:
        load_settings()
    except ConfigError as error:
        TALLY["settings rejected"] += 1
        _assert_names_not_echoes(str(error), variable, value)
        # and through the command line: exit 2, one line, nothing started (no server answers here)
        assert cli.main(["prune", "--json", "--max-age-days", "1"]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert _names(captured.err, variable) and "Traceback" not in captured.err
        if len(value) >= ECHO_MIN:
            assert value not in captured.err
        return
    # accepted: only values that are valid for a free-text setting (a name, a key, a path to create later)
    assert not (_numeric_or_bool(annotation) and kind in ("wrong type", "empty", "unicode", "very long")), (
        f"{variable} accepted a {kind} value"
    )
    if _scalar(annotation) & {SecretStr}:
        return  # any text can be a secret


def _flag_actions() -> Iterator[tuple[str, str, argparse.Action]]:
    parser = cli.build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    seen: set[int] = set()
    for command, subparser in commands.choices.items():
        if id(subparser) in seen:
            continue
        seen.add(id(subparser))
        for action in subparser._actions:
            if action.option_strings and action.nargs != 0 and not isinstance(action, argparse._HelpAction):
                long = max(action.option_strings, key=len)
                yield command, long, action


FLAGS = sorted(((command, flag, action) for command, flag, action in _flag_actions()), key=lambda row: row[:2])


def _checked_by_argparse(action: argparse.Action, value: str) -> bool:
    """True when argparse itself refuses ``value`` (its type or choices)."""
    if action.choices is not None and value not in action.choices:
        return True
    if action.type not in (None, str, Path) and callable(action.type):
        try:
            action.type(value)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            return True
    return False


def _args(command: str, flag: str, value: str) -> list[str]:
    args = [*command.split(), f"{flag}={value}"]
    if command == "prune" and flag != "--max-age-days":
        args += ["--max-age-days", "1"]  # a rule, so that the flag under test is what fails
    return args


# A block name is looked up in the Prefect API (tests/integration/faults/test_bad_block_name.py); free text that
# argparse accepts is checked by the command after it reads the settings, which only prune does without a flow.
FLAG_CASES = [
    (command, flag, action, kind)
    for command, flag, action in FLAGS
    for kind, value in BAD_VALUES.items()
    if flag != "--config" and (command == "prune" or _checked_by_argparse(action, value))
]


@pytest.mark.parametrize(
    ("command", "flag", "action", "kind"), FLAG_CASES, ids=[f"{c} {f} {k}" for c, f, _, k in FLAG_CASES]
)
def test_every_flag_with_malformed_values(
    command: str,
    flag: str,
    action: argparse.Action,
    kind: str,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    value = BAD_VALUES[kind]
    by_argparse = _checked_by_argparse(action, value)
    clean_env.setenv(*SENTINEL)
    TALLY["flags tried"] += 1
    assert cli.main(_args(command, flag, value)) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert captured.out == "", captured.out
    if SENTINEL[0] in captured.err:  # the value is fine for this flag: the settings stopped the command
        assert not by_argparse and len(lines) == 2, captured.err  # "invalid configuration:" + the variable
        return
    assert len(lines) == 1, captured.err
    TALLY["flags rejected"] += 1
    _assert_names_not_echoes(lines[0], flag, value)
    if "-" in flag[2:]:
        assert flag[2:].replace("-", "_") not in lines[0], "named as typed, not as a field"


def test_the_matrix_covers_every_setting_and_flag(capsys: pytest.CaptureFixture) -> None:
    """The matrix is generated from the code; a refactor that empties it must fail. Prints what docs/reliability.md
    quotes (run with -s)."""
    assert len(SETTINGS) >= 50 and len(FLAGS) >= 20 and len(FLAG_CASES) >= 50
    with capsys.disabled():
        print(f"\nbad-input matrix: {len(SETTINGS)} settings x {len(BAD_VALUES)} values, {len(FLAGS)} flags; {TALLY}")
