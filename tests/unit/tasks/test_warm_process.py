"""The warm process's settings, fingerprint and request, without starting one (tests/integration/test_warm_process.py
drives the real process)."""

from __future__ import annotations

import os
import socket

import pytest

from runner_cache.errors import ConfigError
from runner_cache.tasks import warm_process


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, warm_process.IDLE_SECONDS), ("", warm_process.IDLE_SECONDS), ("off", 0.0), ("OFF", 0.0), ("0", 0.0)]
    + [("no", 0.0), ("false", 0.0), ("on", warm_process.IDLE_SECONDS), ("120", 120.0), (" 2.5 ", 2.5)],
)
def test_the_setting_is_off_or_the_idle_seconds(
    value: str | None, seconds: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(warm_process.VARIABLE, raising=False)
    else:
        monkeypatch.setenv(warm_process.VARIABLE, value)
    assert warm_process.idle_seconds() == seconds
    assert warm_process.enabled() is (seconds > 0)


@pytest.mark.parametrize("value", ["soon", "-1", "1e9", "nan", "inf", "enabled"])
def test_any_other_setting_is_a_configuration_error_that_does_not_echo_it(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(warm_process.VARIABLE, value)
    with pytest.raises(ConfigError) as raised:
        warm_process.idle_seconds()
    assert raised.value.exit_code == 2
    assert value not in str(raised.value).replace(warm_process.VARIABLE, "")


def test_the_fingerprint_is_stable_and_follows_the_interpreter_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    first = warm_process.fingerprint()
    assert warm_process.fingerprint() == first
    monkeypatch.setenv("PYTHONHASHSEED", "7")
    assert warm_process.fingerprint() != first
    monkeypatch.delenv("PYTHONHASHSEED")
    monkeypatch.setenv("RUNNER_CACHE_STORE__BUCKET", "another")  # the command's settings travel with each request
    assert warm_process.fingerprint() == first


def test_the_fingerprint_follows_our_source_files(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    package = tmp_path / "warm_fingerprint_pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    module = package / "sub" / "module.py"
    module.write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(warm_process, "_SOURCE_PACKAGES", ("warm_fingerprint_pkg",))
    first = warm_process.fingerprint()
    stat = module.stat()
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert warm_process.fingerprint() != first, "an edited source file must make the warm process stale"
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert warm_process.fingerprint() == first
    (package / "sub" / "new.py").write_text("")
    assert warm_process.fingerprint() != first, "a new source file must make the warm process stale"


def test_a_request_travels_whole_and_never_shows_its_environment() -> None:
    request = warm_process.Request(
        argv=["plan", "--json"],
        environ={"RUNNER_CACHE_STORE__SECRET_KEY": "s3cr3t-value"},
        cwd="/srv",
        umask=0o027,
        fingerprint="f",
        streams=[("utf-8", "strict"), ("utf-8", "strict"), ("utf-8", "backslashreplace")],
    )
    again = warm_process.Request.decode(request.encode())
    assert again == request
    assert "s3cr3t" not in repr(request) and "s3cr3t" not in str(request)


def test_the_files_name_the_interpreter_and_live_in_the_runtime_dir(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    where = warm_process.files()
    assert where.root == tmp_path / "runner-cache"
    assert where.socket.name.startswith("warm-") and where.socket.suffix == ".sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert str(warm_process.files().root).endswith(".cache/runner-cache")


def test_a_socket_path_too_long_for_unix_sockets_runs_the_command_here(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / ("x" * 120)))
    started = []
    assert warm_process.send(["history"], start=started.append) is None
    assert started == [], "no warm process is started where its socket cannot be bound"
    with pytest.raises(OSError):  # the limit is the kernel's, not ours
        socket.socket(socket.AF_UNIX).bind(str(warm_process.files().socket))
