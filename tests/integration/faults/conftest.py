"""Real processes for the fault matrix (docs/reliability.md): a SeaweedFS of each test's own that the test may
kill, a fault-injecting HTTP proxy in front of a store, and ``runner-cache`` run as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner_cache.blocks.store import StoreSettings
from tests.conftest import ACCESS_KEY, SECRET_KEY
from tests.support.fault_proxy import fault_proxy as fault_proxy  # re-exported for the fault tests
from tests.support.servers import free_port
from tests.support.stores import store_env as store_env  # re-exported for the fault tests

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[3]
BODY = b"PK\x05\x06" + b"\0" * 18  # an empty zip archive, like a tiny cache


@dataclass
class Seaweed:
    """A ``weed mini`` of one test (started by the local backend): kill it, start it again with its data."""

    local: StoreSettings  # backend "local": what the backend starts and stops
    store: StoreSettings  # the same server as an "external" store, the way the flows under test see it

    @property
    def pid(self) -> int:
        from runner_cache.tasks.store import local_backend

        pid = local_backend.state(self.local).pid
        assert pid is not None
        return pid

    def start(self) -> None:
        from runner_cache.tasks.store import local_backend

        local_backend.ensure(self.local)


@pytest.fixture
def own_seaweed(tmp_path: Path) -> Iterator[Seaweed]:
    from runner_cache.tasks.store import local_backend

    local = StoreSettings(
        backend="local",
        endpoint=f"http://127.0.0.1:{free_port()}",
        access_key=SecretStr(ACCESS_KEY),
        secret_key=SecretStr(SECRET_KEY),
        state_dir=tmp_path / "seaweed",
        bucket="faults",
    )
    local_backend.ensure(local)
    try:
        yield Seaweed(local, local.model_copy(update={"backend": "external"}))
    finally:
        local_backend.stop(local)


def seed(store: StoreSettings, names: Iterable[str], body: bytes = BODY, threads: int = 16) -> None:
    client = store.client(pool_size=threads)
    if not client.bucket_exists(store.bucket):
        client.make_bucket(store.bucket, location=store.region)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda name: client.put_object(store.bucket, name, BytesIO(body), len(body)), names))


def names_in(store: StoreSettings) -> set[str]:
    return {entry.object_name for entry in store.client().list_objects(store.bucket, recursive=True)}


def cli_env(extra: dict[str, str], api_url: str | None) -> dict[str, str]:
    """A clean environment for a ``runner-cache`` subprocess: no RUNNER_CACHE_* but ``extra``, the given Prefect API."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("RUNNER_CACHE_", "PREFECT_API"))}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1", **extra)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def harness_api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the prefect_api fixture sets PREFECT_API_URL"
    return url


def start_cli(args: list[str], env: dict[str, str], log_dir: Path) -> tuple[subprocess.Popen, Path, Path]:
    """``runner-cache ARGS`` in the background: (process, stdout file, stderr file)."""
    out, err = log_dir / "stdout.json", log_dir / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen([str(BIN / "runner-cache"), *args], env=env, cwd=REPO, stdout=stdout, stderr=stderr)
    return process, out, err


def run_cli(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "runner-cache"), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def problem_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("runner-cache: ")]


def assert_clean_stderr(stderr: str, *secrets: str) -> None:
    """No traceback, no raw library error, no continuation token or signature, no secret."""
    for bad in ("Traceback", "MaxRetryError", "continuation-token", "X-Amz-Signature", *secrets):
        assert bad not in stderr, f"{bad!r} on stderr:\n{stderr[-3000:]}"


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(interval)


def read_json(path: Path) -> dict:
    text = path.read_text()
    assert text.strip(), "nothing on stdout"
    return json.loads(text)
