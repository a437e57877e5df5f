"""Session fixtures: an isolated Prefect home and API, and real S3 servers (SeaweedFS and moto) on 127.0.0.1."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

# Isolate everything a test run could touch before Prefect reads its settings.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="runner-cache-tests-"))
for _name in [
    name for name in os.environ if name.startswith("RUNNER_CACHE_") and not name.startswith("RUNNER_CACHE_ACCEPTANCE_")
]:
    del os.environ[_name]
os.environ.update(
    PREFECT_HOME=str(_SESSION_DIR / "prefect"),
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
    PREFECT_LOGGING_TO_API_BATCH_INTERVAL="0.3",
    XDG_DATA_HOME=str(_SESSION_DIR / "xdg-data"),
)

import logging  # noqa: E402

import pytest  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from runner_cache.blocks.store import StoreSettings  # noqa: E402
from tests.support.servers import free_port  # noqa: E402

ACCESS_KEY = "rc-test-access"
SECRET_KEY = "rc-test-secret-key-0123"


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session", autouse=True)
def _stop_local_prefect_server() -> Iterator[None]:
    """A command run in-process without a Prefect API starts the local Prefect server in this session's state dir."""
    yield
    from runner_cache.tasks import prefect_server

    prefect_server.stop(_SESSION_DIR / "xdg-data" / "runner-cache")


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One Prefect test server for the whole session (it takes 15-20 s to start here)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def seaweed_server(session_dir: Path) -> Iterator[StoreSettings]:
    """SeaweedFS ``weed mini`` started by the local backend itself, with fixed test credentials."""
    from runner_cache.tasks.store import local_backend

    store = StoreSettings(
        backend="local",
        endpoint=f"http://127.0.0.1:{free_port()}",
        access_key=SecretStr(ACCESS_KEY),
        secret_key=SecretStr(SECRET_KEY),
        state_dir=session_dir / "seaweed",
    )
    local_backend.ensure(store)
    try:
        yield store.model_copy(update={"backend": "external"})
    finally:
        local_backend.stop(store)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[StoreSettings]:
    """moto's threaded S3 server on 127.0.0.1 (accepts any secret; lets tests backdate LastModified)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield StoreSettings(
            backend="external",
            endpoint=f"http://{host}:{port}",
            access_key=SecretStr(ACCESS_KEY),
            secret_key=SecretStr(SECRET_KEY),
        )
    finally:
        server.stop()


def _unique_bucket() -> str:
    return f"rc-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["seaweedfs", "moto"])
def s3_store(request: pytest.FixtureRequest) -> StoreSettings:
    """A fresh bucket name on each real S3 server in turn (the bucket itself is not created)."""
    server: StoreSettings = request.getfixturevalue("seaweed_server" if request.param == "seaweedfs" else "moto_server")
    return server.model_copy(update={"bucket": _unique_bucket()})


@pytest.fixture
def seaweed_store(seaweed_server: StoreSettings) -> StoreSettings:
    return seaweed_server.model_copy(update={"bucket": _unique_bucket()})


@pytest.fixture
def moto_store(moto_server: StoreSettings) -> StoreSettings:
    return moto_server.model_copy(update={"bucket": _unique_bucket()})


@pytest.fixture(autouse=True)
def _forget_registered_secrets() -> Iterator[None]:
    """Each test starts with no registered secrets, as a fresh process would (one test's key cannot mask another's text)."""
    yield
    from runner_cache import redaction

    redaction.forget()
