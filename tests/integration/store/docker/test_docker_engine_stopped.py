"""Fault matrix row "Docker Engine stopped mid-setup", with the real engine really stopped (SIGTERM, as
``systemctl stop docker`` sends): between runs, and at three points inside a run. Each time the error is one
line that names the Docker Engine, what the run had already done and what to do; a run after the engine is
back completes, and an object written before the fault is read back. These tests skip on a shared engine
(``TEST_DOCKER_HOST``): they must not stop someone else's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import DockerEngineUnreachable
from runner_cache.tasks.store import docker_backend
from tests.integration.store.docker.conftest import Engine
from tests.integration.store.docker.test_docker_lifecycle import BODY, inspect, read_object, write_object

MakeStore = Callable[..., StoreSettings]


def test_engine_stopped_between_runs(docker_engine: Engine, docker_store: MakeStore) -> None:
    private = docker_engine.require_private()
    store = docker_store()
    docker_backend.ensure(store)
    write_object(store)
    private.stop()

    with pytest.raises(DockerEngineUnreachable) as caught:
        docker_backend.ensure(store)

    message = str(caught.value)
    assert message.startswith(f"Docker Engine at {docker_engine.url} is not reachable (")
    assert "start Docker" in message and "RUNNER_CACHE_STORE__DOCKER__HOST" in message and "\n" not in message
    assert "this run had already" not in message  # it changed nothing
    assert not caught.value.transient  # the task does not retry it: starting the engine is the user's fix
    status = docker_backend.status(store)
    assert status["engine_reachable"] is False and status["error"] == message

    private.start()  # restart=always: the engine starts the container again, with its volume
    assert docker_backend.ensure(store).status == "unchanged"
    assert read_object(store) == BODY


def _stop_engine_at(monkeypatch: pytest.MonkeyPatch, engine: Engine, step: str, *, after: bool) -> None:
    """Stop the engine just before (or after) the backend's ``step`` talks to it."""
    original = getattr(docker_backend, step)
    private = engine.require_private()

    def step_with_fault(*args: Any, **kwargs: Any) -> Any:
        if not after:
            private.stop()
        result = original(*args, **kwargs)
        if after:
            private.stop()
        return result

    monkeypatch.setattr(docker_backend, step, step_with_fault)


@pytest.mark.parametrize(
    ("step", "after", "already", "rerun"),
    [
        # the old container is stopped and removed, the new one not yet created: no store runs at all
        ("_create", False, "stopped and removed container {name}", "created and started container {name}"),
        # created, not started: `restart=always` does not start a container that never ran
        (
            "_start",
            False,
            "stopped and removed container {name}, created container {name}",
            "started the stopped container {name} (it was created)",
        ),
        # started, then the engine stops it while the store comes up
        (
            "_start",
            True,
            "stopped and removed container {name}, created container {name}, started container {name}",
            "container {name} runs as configured",
        ),
    ],
    ids=["before-create", "before-start", "while-the-store-starts"],
)
def test_engine_stopped_in_the_middle_of_a_recreate(
    docker_engine: Engine,
    docker_store: MakeStore,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    after: bool,
    already: str,
    rerun: str,
) -> None:
    store = docker_store(ready_timeout=5.0)
    docker_backend.ensure(store)
    write_object(store)
    rotated = docker_store(secret_key=SecretStr("rotated-secret-key-0042"), ready_timeout=5.0)
    name = store.docker.container_name
    _stop_engine_at(monkeypatch, docker_engine, step, after=after)

    with pytest.raises(DockerEngineUnreachable) as caught:
        docker_backend.ensure(rotated)
    monkeypatch.undo()

    message = str(caught.value)
    assert message.startswith(f"Docker Engine at {docker_engine.url} is not reachable (")
    assert (
        f"this run had already {already.format(name=name)}, and data in volume {store.docker.volume} is untouched"
        in message
    )
    assert message.count("start Docker") == 1 and "\n" not in message

    docker_engine.require_private().start()
    result = docker_backend.ensure(rotated)
    assert result.detail.startswith(rerun.format(name=name))
    assert read_object(rotated) == BODY
    assert docker_backend.ensure(rotated).status == "unchanged"


def test_the_store_task_fails_at_once_and_a_run_after_the_restart_completes(
    prefect_api: None, docker_engine: Engine, docker_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow

    from runner_cache.tasks.store import ensure_store_task

    private = docker_engine.require_private()
    store = docker_store()
    docker_backend.ensure(store)
    write_object(store)
    container_id = inspect(docker_engine, store)["Id"]
    attempts: list[str] = []
    ensure = docker_backend.ensure

    def counted(*args: Any, **kwargs: Any) -> Any:
        attempts.append("ensure")
        return ensure(*args, **kwargs)

    monkeypatch.setattr(docker_backend, "ensure", counted)

    @flow
    def setup_store() -> str:
        return ensure_store_task(store).status

    private.stop()
    failed = setup_store(return_state=True)

    assert failed.is_failed() and attempts == ["ensure"]  # a stopped engine is the user's to start: no retries
    with pytest.raises(DockerEngineUnreachable, match=f"Docker Engine at {docker_engine.url} is not reachable"):
        failed.result()

    private.start()
    state = setup_store(return_state=True)
    assert state.is_completed() and state.result() == "unchanged"  # restart=always brought the container back
    assert inspect(docker_engine, store)["Id"] == container_id
    assert read_object(store) == BODY


def test_setup_with_the_engine_stopped_exits_1_naming_it_and_a_rerun_completes(
    prefect_api: None, docker_engine: Engine, docker_store: MakeStore
) -> None:
    from prefect.settings import PREFECT_API_URL

    private = docker_engine.require_private()
    store = docker_store()
    docker_backend.ensure(store)
    write_object(store)
    secret = store.secret_key.get_secret_value()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("RUNNER_CACHE_", "PREFECT_API"))}
    env.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value()),  # the session's test server: no temporary server per run
        RUNNER_CACHE_STORE__BACKEND="docker",
        RUNNER_CACHE_STORE__ENDPOINT=store.endpoint,
        RUNNER_CACHE_STORE__ACCESS_KEY=store.access_key.get_secret_value(),
        RUNNER_CACHE_STORE__SECRET_KEY=secret,
        RUNNER_CACHE_STORE__BUCKET=store.bucket,
        RUNNER_CACHE_STORE__DOCKER__HOST=docker_engine.url,
        RUNNER_CACHE_STORE__DOCKER__IMAGE=store.docker.image,
        RUNNER_CACHE_STORE__DOCKER__CONTAINER_NAME=store.docker.container_name,
        RUNNER_CACHE_STORE__DOCKER__VOLUME=store.docker.volume,
    )

    def setup() -> tuple[int, dict, str]:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "runner-cache"), "setup", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert "Traceback" not in done.stderr and secret not in done.stdout + done.stderr
        return done.returncode, json.loads(done.stdout), done.stderr

    private.stop()
    code, report, _ = setup()

    assert code == 1
    store_step = report["steps"][0]
    assert (store_step["step"], store_step["status"]) == ("store", "failed")
    assert f"Docker Engine at {docker_engine.url} is not reachable" in store_step["detail"]
    assert "start Docker" in store_step["detail"]
    assert all(step["status"] in {"failed", "skipped"} for step in report["steps"])  # nothing after it ran

    private.start()
    code, report, stderr = setup()
    assert code == 0, stderr[-3000:]
    assert report["steps"][0]["status"] == "unchanged"  # restart=always had brought the container back
    assert read_object(store) == BODY
