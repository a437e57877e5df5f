"""The Engine API version: negotiated by default, so Debian 12's Docker 20.10 (API 1.41) works out of the box;
a pinned version the engine does not speak fails with a line naming the engine, both versions and the fix."""

from __future__ import annotations

from collections.abc import Callable

import docker
import pytest

from runner_cache.blocks.store import DockerStoreSettings, StoreSettings
from runner_cache.errors import ConfigError, DockerEngineError, DockerEngineUnreachable
from runner_cache.tasks.store import docker_backend
from tests.integration.store.docker.conftest import Engine

MakeStore = Callable[..., StoreSettings]


def engine_api_version(engine: Engine) -> str:
    client = engine.client()
    try:
        return client.version()["ApiVersion"]
    finally:
        client.close()


def test_the_default_negotiates_the_engines_version(
    docker_engine: Engine, docker_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert DockerStoreSettings().api_version == "auto"
    spoken: list[str] = []
    from_env = docker.DockerClient.from_env

    def recording(*args, **kwargs):
        client = from_env(*args, **kwargs)
        spoken.append(client.api.api_version)
        return client

    monkeypatch.setattr(docker.DockerClient, "from_env", staticmethod(recording))
    result = docker_backend.ensure(docker_store())

    assert result.status == "changed"
    assert spoken and set(spoken) == {engine_api_version(docker_engine)}


def test_a_pinned_version_the_engine_does_not_speak_names_the_engine_and_the_fix(
    docker_engine: Engine, docker_store: MakeStore
) -> None:
    maximum = engine_api_version(docker_engine)
    too_new = f"1.{int(maximum.split('.')[1]) + 3}"
    store = docker_store(docker={"api_version": too_new})

    with pytest.raises(DockerEngineError) as caught:
        docker_backend.ensure(store)

    error = caught.value
    assert not isinstance(error, (ConfigError, DockerEngineUnreachable)) and not error.transient
    message = str(error)
    assert message.startswith(f"Docker Engine at {docker_engine.url} speaks Engine API up to {maximum}")
    assert f"RUNNER_CACHE_STORE__DOCKER__API_VERSION is {too_new}" in message
    assert "set RUNNER_CACHE_STORE__DOCKER__API_VERSION=auto" in message and "\n" not in message
    with pytest.raises(DockerEngineError, match="speaks Engine API up to"):
        docker_backend.status(store)  # `runner-cache store status` exits 1 with the same line
    client = docker_engine.client()
    assert client.containers.list(all=True, filters={"name": store.docker.container_name}) == []
    client.close()


def test_a_pinned_version_the_engine_speaks_works(docker_engine: Engine, docker_store: MakeStore) -> None:
    store = docker_store(docker={"api_version": engine_api_version(docker_engine)})
    assert docker_backend.ensure(store).status == "changed"
