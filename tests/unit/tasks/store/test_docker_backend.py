"""The docker backend's decisions that need no engine: where the port listens, what it refuses before asking
the engine anything, and how bad docker settings are named. The engine itself: tests/integration/store/docker/."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from runner_cache.blocks.settings import load_settings
from runner_cache.blocks.store import DockerStoreSettings, StoreSettings
from runner_cache.errors import ConfigError
from runner_cache.tasks.store import docker_backend


def docker_store(tmp_path: Path, **fields: object) -> StoreSettings:
    """Settings whose engine address has nothing behind it: a test that reached the engine would fail differently."""
    return StoreSettings(
        **{
            "backend": "docker",
            "access_key": SecretStr("abc"),
            "secret_key": SecretStr("abcdefgh"),
            "docker": DockerStoreSettings(host=f"unix://{tmp_path}/no-engine.sock"),
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("endpoint", "bound"),
    [
        ("http://127.0.0.1:9000", "127.0.0.1"),
        ("http://127.0.0.2:9000", "127.0.0.2"),
        ("http://localhost:9000", "127.0.0.1"),
        ("http://[::1]:9000", "::1"),
        ("http://minio.ci.example.com:9000", "0.0.0.0"),
        ("http://10.20.0.5:9000", "0.0.0.0"),
    ],
)
def test_the_port_is_bound_to_loopback_only_for_a_loopback_endpoint(tmp_path: Path, endpoint: str, bound: str) -> None:
    assert docker_backend.bind_address(docker_store(tmp_path, endpoint=endpoint)) == bound


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"endpoint": "https://127.0.0.1:9000"}, "plain HTTP: use an http:// RUNNER_CACHE_STORE__ENDPOINT"),
        ({"region": "us east"}, "RUNNER_CACHE_STORE__REGION must be a simple name"),
    ],
)
def test_settings_minio_cannot_serve_are_refused_before_the_engine_is_asked(
    tmp_path: Path, fields: dict, message: str
) -> None:
    store = docker_store(tmp_path, **fields)
    for action in (docker_backend.ensure, docker_backend.stop, docker_backend.status):
        with pytest.raises(ConfigError, match=message):
            action(store)


def test_the_engine_api_version_is_negotiated_unless_pinned() -> None:
    assert DockerStoreSettings().api_version == "auto"
    assert DockerStoreSettings(api_version="1.41").api_version == "1.41"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("VOLUME", "data/minio", "must be a volume name"),
        ("VOLUME", "/srv/a:b", "must not contain ':' or ','"),
        ("CONTAINER_NAME", "-minio", "must be 2+ characters"),
        ("HOST", "/run/user/1000/docker.sock", "must be an engine URL"),
        ("API_VERSION", "v1.44", "must be an Engine API version"),
        ("IMAGE", "minio/minio latest", "must be one image reference"),
        ("IMAGE", "https://ghcr.io/minio/minio", "without spaces or scheme"),
        ("TIMEOUT", "-5", "greater than 0"),
    ],
)
def test_bad_docker_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"RUNNER_CACHE_STORE__DOCKER__{variable}", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert f"RUNNER_CACHE_STORE__DOCKER__{variable}: " in str(caught.value) and message in str(caught.value)
    assert value not in str(caught.value)
