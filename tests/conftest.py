"""Session fixtures: an isolated Prefect home and API, and real S3 servers (SeaweedFS and moto) on 127.0.0.1.

`make test` runs the suite on several pytest-xdist workers (``--dist loadgroup``). Each worker is its own pytest
session: its own session dir (named after the worker), Prefect test server, SeaweedFS and moto, all stopped at its
end. Tests that share something that must exist once per run stay on one worker: ``XDIST_GROUPS`` below.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

# Isolate everything a test run could touch before Prefect reads its settings.
# One per pytest process: under xdist every worker (gw0, gw1, ...) gets its own, so no state dir is shared.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix=f"runner-cache-tests-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-"))
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
    XDG_RUNTIME_DIR=str(_SESSION_DIR / "run"),  # the warm process the commands start: stopped at the end
)

import logging  # noqa: E402

import pytest  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from runner_cache.blocks.store import StoreSettings  # noqa: E402
from tests.support.servers import free_port  # noqa: E402

ACCESS_KEY = "rc-test-access"
SECRET_KEY = "rc-test-secret-key-0123"


# Work units of `make test` (pytest-xdist, `-n 4 --dist loadgroup`). The scheduler sees only test ids, so the
# groups go by file: every test of a file listed here runs on the same worker as the rest of its group, one after
# the other; any other test runs wherever a worker is free. "docker-engine": one private dockerd (bridge, data
# root) and one image build per run; "prefect-server": the end-to-end `prefect server` + `runner-cache serve`;
# "module": the file's own module-scoped server or build, made once. Collection fails when a test needs a group
# its file is not in (see xdist_group_of), so a new test cannot silently start a second engine or server.
XDIST_GROUPS = {
    "tests/integration/store/docker/test_docker_api_version.py": "docker-engine",
    "tests/integration/store/docker/test_docker_engine_stopped.py": "docker-engine",
    "tests/integration/store/docker/test_docker_lifecycle.py": "docker-engine",
    "tests/e2e/test_served.py": "prefect-server",
    "tests/e2e/test_console_exit.py": "prefect-server",
    "tests/e2e/test_ui.py": "prefect-server",
    "tests/e2e/test_postgres_load.py": "module",
    "tests/integration/store/identity/test_seaweedfs_identity.py": "module",
    "tests/integration/test_install.py": "module",
    "tests/acceptance/test_kind_cluster.py": "module",
}
SHARED_FIXTURE_GROUPS = {"docker_engine": "docker-engine", "prefect_server": "prefect-server"}


def xdist_scope(nodeid: str) -> str:
    """The work unit of a test id: its group, its file for a "module" group, else the test alone."""
    if "@" in nodeid.rpartition("]")[2]:  # an xdist_group mark, on an xdist/pytest pair where loadgroup works
        return nodeid.rpartition("@")[2]
    path = nodeid.split("::", 1)[0]
    group = XDIST_GROUPS.get(path)
    return path if group == "module" else group or nodeid


def xdist_group_of(item: pytest.Item) -> str | None:
    """The group a test needs by its fixtures: a shared session fixture's, else its file when it uses a
    module-scoped fixture (a server or a build made once per module), else none."""
    names = getattr(item, "fixturenames", ())
    for fixture, group in SHARED_FIXTURE_GROUPS.items():
        if fixture in names:
            return group
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    if any(defs and defs[-1].scope == "module" for defs in definitions.values()):
        return item.nodeid.split("::", 1)[0]
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        needed = xdist_group_of(item)
        if needed and xdist_scope(item.nodeid) != needed:
            raise pytest.UsageError(f"{item.nodeid} needs the xdist group {needed!r}: list its file in XDIST_GROUPS")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadgroup` with the groups above. xdist's own loadgroup reads xdist_group marks through the test
    ids, which pytest 9.2 no longer lets it change (pytest-dev/pytest-xdist#1386): its groups are silently lost."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return FileGroupScheduling(config, log)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Once every server of the session has stopped (session fixtures are torn down before this), its state goes
    too — also the xdist controller's, which runs no fixture."""
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _stop_local_prefect_server() -> Iterator[None]:
    """A command without a Prefect API starts the local Prefect server in this session's state dir; a command
    run by the console script starts the warm process in its runtime dir."""
    yield
    from runner_cache.tasks import prefect_server
    from tests.support.warm import stop_warm_processes

    prefect_server.stop(_SESSION_DIR / "xdg-data" / "runner-cache")
    stop_warm_processes(_SESSION_DIR / "run")


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
