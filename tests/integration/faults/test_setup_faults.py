"""Faults around setup and at start: a store answering 5xx (a proxy injects them), a Prefect API that does not
answer, a local store whose disk is full. Each runs ``runner-cache`` as a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner_cache.blocks.store import StoreSettings
from tests.conftest import ACCESS_KEY, SECRET_KEY
from tests.integration.faults.conftest import (
    assert_clean_stderr,
    cli_env,
    fault_proxy,
    harness_api_url,
    names_in,
    problem_lines,
    run_cli,
    seed,
    store_env,
)
from tests.support.servers import free_port


def _steps(stdout: str) -> dict[str, dict]:
    return {step["step"]: step for step in json.loads(stdout)["steps"]}


def _bucket_request(method: str, path: str) -> bool:
    """A request on the bucket itself (exists, create, lifecycle), not on the service or an object."""
    name = path.strip("/")
    return bool(name) and "/" not in name and method in ("GET", "HEAD", "PUT")


@pytest.mark.usefixtures("prefect_api")
def test_store_5xx_during_the_bucket_step_is_retried_with_backoff(seaweed_store: StoreSettings) -> None:
    """Six 503s on bucket requests: more than the client's own 3 retries, fewer than the task's retries cover."""
    injected = {"left": 6}

    def five_hundreds(method: str, path: str, query: str, body: bytes) -> int | None:
        if _bucket_request(method, path) and injected["left"] > 0:
            injected["left"] -= 1
            return 503
        return None

    with fault_proxy(seaweed_store) as proxy:
        proxy.rule = five_hundreds
        store = proxy.store(seaweed_store)
        started = time.monotonic()
        result = run_cli(["setup", "--json"], cli_env(store_env(store), harness_api_url()))
        took = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    steps = _steps(result.stdout)
    assert steps["bucket"]["status"] == "changed" and steps["roundtrip"]["status"] in ("changed", "unchanged", "ok")
    assert proxy.count(503) == 6
    assert took > 2, "the task retry waited its backoff (2 s) before trying again"
    assert seaweed_store.client().bucket_exists(seaweed_store.bucket)
    assert_clean_stderr(result.stderr, seaweed_store.secret_key.get_secret_value())


@pytest.mark.usefixtures("prefect_api")
def test_store_5xx_on_the_roundtrip_fails_clearly_then_a_rerun_completes(seaweed_store: StoreSettings) -> None:
    def object_puts_fail(method: str, path: str, query: str, body: bytes) -> int | None:
        return 503 if method == "PUT" and "runner-cache-roundtrip" in path else None

    with fault_proxy(seaweed_store) as proxy:
        proxy.rule = object_puts_fail
        store = proxy.store(seaweed_store)
        env = cli_env(store_env(store), harness_api_url())
        failed = run_cli(["setup", "--json"], env)
        injected = proxy.count(503)
        proxy.rule = None
        rerun = run_cli(["setup", "--json"], env)
    assert failed.returncode == 1, failed.stderr[-3000:]
    roundtrip = _steps(failed.stdout).get("roundtrip", failed.stdout)
    assert isinstance(roundtrip, dict) and roundtrip["status"] == "failed", roundtrip
    assert "HTTP 503" in roundtrip["detail"] and "ServiceUnavailable" in roundtrip["detail"], roundtrip
    assert 3 <= injected <= 12, f"{injected} PUTs: 3 task attempts, each with at most 3 client retries"
    assert_clean_stderr(failed.stderr, seaweed_store.secret_key.get_secret_value())
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _steps(rerun.stdout)["roundtrip"]["status"] != "failed"


@pytest.mark.parametrize("command", [["prune", "--json", "--max-age-days", "1e-6"], ["setup", "--json"]])
def test_prefect_api_unreachable_at_start_touches_nothing(command: list[str], seaweed_store: StoreSettings) -> None:
    seed(seaweed_store, ["runner/abcdef123/project/1/main-protected"])
    before = names_in(seaweed_store)
    dead = f"http://127.0.0.1:{free_port()}/api"
    fresh_bucket = seaweed_store.model_copy(update={"bucket": seaweed_store.bucket + "-new"})
    for store in (seaweed_store, fresh_bucket):
        result = run_cli(command, cli_env(store_env(store), dead), timeout=120)
        assert result.returncode == 1, result.stderr[-3000:]
        lines = problem_lines(result.stderr)
        assert lines == [
            f"runner-cache: Prefect API: PREFECT_API_URL {dead} did not answer (ConnectError); nothing was started "
            "(check PREFECT_API_URL and that the Prefect server is up)"
        ], result.stderr[-3000:]
        assert result.stdout == ""
        assert_clean_stderr(result.stderr, store.secret_key.get_secret_value())
    assert names_in(seaweed_store) == before, "prune deleted nothing"
    assert not seaweed_store.client().bucket_exists(fresh_bucket.bucket), "setup created nothing"


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MB tmpfs (needs root, as on these machines); skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.usefixtures("prefect_api")
def test_disk_full_under_the_local_store_says_so_without_a_retry_storm(full_disk: Path) -> None:
    from runner_cache.tasks.store import local_backend

    local = StoreSettings(
        backend="local",
        endpoint=f"http://127.0.0.1:{free_port()}",
        access_key=SecretStr(ACCESS_KEY),
        secret_key=SecretStr(SECRET_KEY),
        state_dir=full_disk / "seaweed",
        bucket="full",
    )
    local_backend.ensure(local)
    try:
        store = local.model_copy(update={"backend": "external"})
        client = store.client(retries=0)
        client.make_bucket(store.bucket)
        filled = 0
        while filled < 64:  # incompressible data until SeaweedFS has no room for another volume
            try:
                seed(store, [f"filler/{filled}"], body=os.urandom(4 * 1024 * 1024), threads=1)
            except Exception:  # noqa: BLE001 - the disk is full: that is the point
                break
            filled += 1
        assert filled < 64, "the disk never filled up"
        with fault_proxy(store) as proxy:
            result = run_cli(["setup", "--json"], cli_env(store_env(proxy.store(store)), harness_api_url()))
            puts = max(
                Counter(path for method, path, *_ in proxy.seen if method == "PUT" and path.count("/") >= 2).values(),
                default=0,
            )
    finally:
        local_backend.stop(local)
    assert result.returncode == 1, result.stderr[-3000:]
    failed = [step for step in _steps(result.stdout).values() if step["status"] == "failed"]
    assert len(failed) == 1, result.stdout  # the first step that writes an object (identity check or round trip)
    assert 1 <= puts <= 12, f"{puts} PUTs of one object: a retry storm"
    assert_clean_stderr(result.stderr, SECRET_KEY)
    assert "HTTP 500" in failed[0]["detail"] and "InternalError" in failed[0]["detail"], failed
    assert "S3 store" in failed[0]["detail"] and "identity is not what the runner needs" not in failed[0]["detail"]
