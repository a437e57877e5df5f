"""runner-credentials and rotate-runner-credentials on the local backend (real SeaweedFS, runners configured by hand)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from minio.error import S3Error

from runner_cache.blocks.settings import load_settings
from runner_cache.cli import main
from runner_cache.commands.credentials import HIDDEN
from runner_cache.tasks.store.identity import BlockVault, Credentials, as_store
from tests.support.prefect_records import flow_run_logs
from tests.support.servers import free_port

pytestmark = pytest.mark.usefixtures("prefect_api")


def _json(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, dict]:
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _puts(key: Credentials) -> bool | str:
    store = as_store(load_settings().store, key)
    try:
        store.client(retries=0).put_object(store.bucket, "ci/runner/t/project/1/k", io.BytesIO(b"x"), 1)
    except S3Error as error:
        return error.code
    return True


def test_print_then_rotate_for_runners_configured_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("RUNNER_CACHE_STORE__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RUNNER_CACHE_CACHE__PATH", "ci")
    try:
        assert main(["runner-credentials"]) == 2  # no identity before setup: a configuration error, not the admin key
        assert "run `runner-cache setup` first" in capsys.readouterr().err
        assert main(["setup"]) == 0
        capsys.readouterr()
        store = load_settings().store
        old = BlockVault().load(store, "runner")

        code, shown = _json(["runner-credentials"], capsys)
        assert code == 0 and shown["access_key"] == old.access_key and shown["secret_key"] is None
        assert old.secret_key.get_secret_value() not in json.dumps(shown) and HIDDEN in shown["runners_cache_toml"]
        assert store.credentials()[1].get_secret_value() not in json.dumps(shown)
        assert store.credentials()[0].get_secret_value() not in json.dumps(shown)
        code, revealed = _json(["runner-credentials", "--show-secret"], capsys)
        assert revealed["secret_key"] == old.secret_key.get_secret_value()

        code, rotated = _json(["rotate-runner-credentials"], capsys)
        assert code == 0
        steps = {step["step"]: step for step in rotated["steps"]}
        assert steps["identity"]["status"] == "changed" and steps["revoke"]["status"] == "skipped"
        assert "--finish" in steps["revoke"]["detail"]
        new = BlockVault().load(store, "runner")
        assert new.access_key != old.access_key
        assert _puts(Credentials(old.access_key, old.secret_key)) is True  # runners still on the old key keep working
        assert _puts(Credentials(new.access_key, new.secret_key)) is True
        for secret in (old.secret_key, new.secret_key):
            assert secret.get_secret_value() not in json.dumps(rotated) + " ".join(
                flow_run_logs(rotated["flow_run_id"])
            )

        code, finished = _json(["rotate-runner-credentials", "--finish"], capsys)
        assert code == 0 and finished["steps"][0]["status"] == "changed"
        assert _puts(Credentials(old.access_key, old.secret_key)) == "InvalidAccessKeyId"
        assert _puts(Credentials(new.access_key, new.secret_key)) is True
        weed_log = (tmp_path / "state" / "weed.log").read_text()
        assert old.secret_key.get_secret_value() not in weed_log and new.secret_key.get_secret_value() not in weed_log
    finally:
        main(["store", "stop"])
        capsys.readouterr()
