"""Engine and registry faults a real Docker Engine cannot be made to show here, against the HTTP fake
(``tests/fakes/docker_engine.py``) through the real docker SDK: a pull (no registry is reachable from these
machines), an engine that answers 500, a registry or engine that stalls, an error inside a pull's stream.
Everything else the backend does is tested against the real engine in the other files of this folder.
The fake runs no MinIO: the store's endpoint is a real S3 server, so the readiness wait passes for real.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runner_cache.blocks.store import DEFAULT_MINIO_IMAGE, DockerStoreSettings, StoreSettings
from runner_cache.errors import DockerEngineError, DockerEngineUnreachable
from runner_cache.tasks.store import docker_backend
from tests.fakes.docker_engine import EngineServer, FakeDockerEngine

NEW_IMAGE = "quay.io/minio/minio:RELEASE.2025-10-15T17-29-55Z"
NAME = "runner-cache-minio"


@pytest.fixture
def engine() -> Iterator[EngineServer]:
    fake = FakeDockerEngine(registry={DEFAULT_MINIO_IMAGE, NEW_IMAGE})
    with EngineServer(fake) as server:
        yield server


def docker_store(s3: StoreSettings, server: EngineServer, **docker_fields: Any) -> StoreSettings:
    """A docker-backend store whose endpoint and credentials are those of the real S3 server ``s3``."""
    return s3.model_copy(
        update={
            "backend": "docker",
            "ready_timeout": 10.0,
            "docker": DockerStoreSettings(host=server.url, **docker_fields),
        }
    )


def posts(server: EngineServer) -> list[str]:
    """Every state-changing call (POST or DELETE) the engine received, as 'METHOD /path'."""
    return [f"{call.method} {call.path}" for call in server.engine.calls if call.method in {"POST", "DELETE"}]


def test_a_missing_image_is_pulled_by_its_digest_before_anything_else(
    engine: EngineServer, moto_server: StoreSettings
) -> None:
    result = docker_backend.ensure(docker_store(moto_server, engine))

    assert f"pulled {DEFAULT_MINIO_IMAGE}" in result.detail and result.data["pulled"] is True
    container_id = engine.engine.container(NAME)["Id"]
    assert posts(engine) == [
        "POST /images/create",
        "POST /volumes/create",
        "POST /containers/create",
        f"POST /containers/{container_id}/start",
    ]
    (pull,) = engine.engine.requests("POST", "/images/create")  # pinned by digest: exactly that digest is asked for
    assert pull.query == {"fromImage": "ghcr.io/coollabsio/minio", "tag": DEFAULT_MINIO_IMAGE.split("@")[1]}


def test_an_engine_answering_500_is_unreachable_before_any_change(
    engine: EngineServer, moto_server: StoreSettings
) -> None:
    engine.engine.fail_status = 500

    with pytest.raises(
        DockerEngineUnreachable, match=f"^Docker Engine at {engine.url} answered HTTP 500 .*start Docker"
    ):
        docker_backend.ensure(docker_store(moto_server, engine))
    assert [call.path for call in engine.engine.calls] == ["/version"]  # 'auto' asks the version first


def test_an_error_inside_the_pull_stream_leaves_the_running_store_alone(
    engine: EngineServer, moto_server: StoreSettings
) -> None:
    docker_backend.ensure(docker_store(moto_server, engine))
    old_id = engine.engine.container(NAME)["Id"]
    engine.engine.pull_stream_error = "write /var/lib/docker/tmp/layer: no space left on device"
    engine.engine.calls.clear()

    with pytest.raises(DockerEngineError, match=f"could not pull {NEW_IMAGE}: write .*no space left on device"):
        docker_backend.ensure(docker_store(moto_server, engine, image=NEW_IMAGE))
    assert posts(engine) == ["POST /images/create"]
    assert engine.engine.container(NAME)["Id"] == old_id and engine.engine.container(NAME)["State"]["Running"]


def test_a_stalled_pull_ends_after_the_timeout(engine: EngineServer, moto_server: StoreSettings) -> None:
    engine.engine.stall_seconds["/images/create"] = 3.0

    with pytest.raises(
        DockerEngineError, match=f"sent no progress for 0.6 s while pulling {NEW_IMAGE}.*DOCKER__TIMEOUT"
    ):
        docker_backend.ensure(docker_store(moto_server, engine, image=NEW_IMAGE, timeout=0.6))
    assert engine.engine.containers == {}


def test_an_engine_that_hangs_midway_is_unreachable_and_says_what_was_done(
    engine: EngineServer, moto_server: StoreSettings
) -> None:
    engine.engine.stall_seconds["/containers/create"] = 3.0

    with pytest.raises(DockerEngineUnreachable) as caught:
        docker_backend.ensure(docker_store(moto_server, engine, timeout=0.6))

    message = str(caught.value)
    assert message.startswith(f"Docker Engine at {engine.url} did not answer within 0.6 s")
    assert "this run had already pulled" in message and "RUNNER_CACHE_STORE__DOCKER__TIMEOUT" in message
