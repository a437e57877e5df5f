"""The docker backend against a fake Docker Engine on a unix socket, through the real docker SDK.

The fake runs no MinIO: the store's endpoint points at a real S3 server (SeaweedFS, or moto where the
credentials change), so the readiness wait passes or fails for real, and the tests read what the engine
was asked to run (published port, environment, volume) from the fake's records.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from pydantic import SecretStr

from runner_cache.blocks.settings import load_settings
from runner_cache.blocks.store import DEFAULT_MINIO_IMAGE, DockerStoreSettings, StoreSettings
from runner_cache.errors import ConfigError, DockerEngineError, DockerEngineUnreachable, StoreUnreachable
from runner_cache.tasks.policy import is_transient
from runner_cache.tasks.store import docker_backend
from runner_cache.tasks.store.docker_backend import (
    LABEL,
    bind_address,
)
from tests.fakes.docker_engine import EngineServer, FakeDockerEngine
from tests.support.servers import free_port

NEW_IMAGE = "quay.io/minio/minio:RELEASE.2025-10-15T17-29-55Z"
NAME = "runner-cache-minio"
VOLUME = "runner-cache-minio-data"


@pytest.fixture
def engine() -> Iterator[EngineServer]:
    fake = FakeDockerEngine(registry={DEFAULT_MINIO_IMAGE, NEW_IMAGE})
    with EngineServer(fake) as server:
        yield server


def docker_store(
    s3: StoreSettings, server: EngineServer | str, *, store: dict | None = None, **docker_fields: Any
) -> StoreSettings:
    """A docker-backend store whose endpoint and credentials are those of the real S3 server ``s3``."""
    fields: dict[str, Any] = {
        "backend": "docker",
        "endpoint": s3.endpoint,
        "access_key": s3.access_key,
        "secret_key": s3.secret_key,
        "ready_timeout": 10.0,
        "docker": DockerStoreSettings(host=server if isinstance(server, str) else server.url, **docker_fields),
    }
    return StoreSettings(**{**fields, **(store or {})})


def posts(server: EngineServer) -> list[str]:
    """Every state-changing call (POST or DELETE) the engine received, as 'METHOD /path'."""
    return [f"{call.method} {call.path}" for call in server.engine.calls if call.method in {"POST", "DELETE"}]


def created_body(server: EngineServer) -> dict:
    (create,) = server.engine.requests("POST", "/containers/create")
    return create.body


# --- the ensure cycle ----------------------------------------------------------------------------------------


def test_first_run_pulls_creates_and_starts_minio(engine: EngineServer, seaweed_server: StoreSettings) -> None:
    store = docker_store(seaweed_server, engine)
    result = docker_backend.ensure(store)

    assert result.status == "changed" and result.step == "store"
    assert result.detail.startswith(f"created and started container {NAME} publishing 127.0.0.1:{store.port}")
    assert f"pulled {DEFAULT_MINIO_IMAGE}" in result.detail and f"created volume {VOLUME}" in result.detail
    container_id = engine.engine.container(NAME)["Id"]
    assert posts(engine) == [
        "POST /images/create",
        "POST /volumes/create",
        "POST /containers/create",
        f"POST /containers/{container_id}/start",
    ]
    # pinned by digest: the engine is asked for exactly that digest
    (pull,) = engine.engine.requests("POST", "/images/create")
    assert pull.query == {"fromImage": "ghcr.io/coollabsio/minio", "tag": DEFAULT_MINIO_IMAGE.split("@")[1]}
    body = created_body(engine)
    assert engine.engine.requests("POST", "/containers/create")[0].query == {"name": NAME}
    assert body["Image"] == DEFAULT_MINIO_IMAGE and body["Cmd"] == ["server", "/data"]
    assert sorted(body["Env"]) == sorted(
        [
            f"MINIO_ROOT_USER={seaweed_server.access_key.get_secret_value()}",
            f"MINIO_ROOT_PASSWORD={seaweed_server.secret_key.get_secret_value()}",
            "MINIO_SITE_REGION=us-east-1",
        ]
    )
    assert body["ExposedPorts"] == {"9000/tcp": {}}
    assert body["HostConfig"]["PortBindings"] == {"9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(store.port)}]}
    assert body["HostConfig"]["Binds"] == [f"{VOLUME}:/data:rw"]
    assert body["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert body["Labels"][LABEL + "managed-by"] == "runner-cache"
    assert body["Labels"][LABEL + "credentials"].startswith("pbkdf2-sha256$")
    assert engine.engine.volumes[VOLUME]["Labels"] == {LABEL + "managed-by": "runner-cache"}
    assert engine.engine.container(NAME)["State"]["Running"]
    assert result.data["published"] == f"127.0.0.1:{store.port}" and result.data["container_id"] == container_id[:12]


def test_second_run_changes_nothing(engine: EngineServer, seaweed_server: StoreSettings) -> None:
    store = docker_store(seaweed_server, engine)
    docker_backend.ensure(store)
    engine.engine.calls.clear()

    result = docker_backend.ensure(store)

    assert result.status == "unchanged"
    assert result.detail.startswith(f"container {NAME} runs as configured, serving {store.endpoint}")
    assert posts(engine) == []
    assert [call.path for call in engine.engine.calls] == ["/_ping", f"/containers/{NAME}/json"]


def test_a_stopped_container_is_started_not_recreated(engine: EngineServer, moto_server: StoreSettings) -> None:
    store = docker_store(moto_server, engine)
    docker_backend.ensure(store)
    container_id = engine.engine.container(NAME)["Id"]
    engine.engine.stop_outside(NAME)
    engine.engine.calls.clear()

    result = docker_backend.ensure(store)

    assert result.status == "changed"
    assert result.detail.startswith(f"started the stopped container {NAME} (it was exited)")
    assert posts(engine) == [f"POST /containers/{container_id}/start"]
    assert engine.engine.container(NAME)["State"]["Running"]
    assert docker_backend.ensure(store).status == "unchanged"


def test_image_drift_recreates_the_container_on_the_same_volume(
    engine: EngineServer, moto_server: StoreSettings
) -> None:
    docker_backend.ensure(docker_store(moto_server, engine))
    old_id = engine.engine.container(NAME)["Id"]
    engine.engine.calls.clear()
    store = docker_store(moto_server, engine, image=NEW_IMAGE)

    result = docker_backend.ensure(store)

    assert result.status == "changed" and result.data["drift"] == ["image"]
    assert "because its image changed" in result.detail and f"data in volume {VOLUME} kept" in result.detail
    new = engine.engine.container(NAME)
    # the new image is pulled before the old container is stopped, and the volume is never removed
    assert posts(engine) == [
        "POST /images/create",
        f"POST /containers/{old_id}/stop",
        f"DELETE /containers/{old_id}",
        "POST /containers/create",
        f"POST /containers/{new['Id']}/start",
    ]
    (remove,) = engine.engine.requests("DELETE", f"/containers/{old_id}")
    assert remove.query.get("v") in (None, "False", "0")
    assert new["Id"] != old_id and new["Config"]["Image"] == NEW_IMAGE
    assert new["HostConfig"]["Binds"] == [f"{VOLUME}:/data:rw"] and VOLUME in engine.engine.volumes
    assert docker_backend.ensure(store).status == "unchanged"


def test_credential_drift_recreates_with_the_new_credentials(engine: EngineServer, moto_server: StoreSettings) -> None:
    docker_backend.ensure(docker_store(moto_server, engine))
    old = engine.engine.container(NAME)
    engine.engine.calls.clear()
    store = docker_store(moto_server, engine, store={"secret_key": SecretStr("a-brand-new-secret-9")})

    result = docker_backend.ensure(store)

    assert result.status == "changed" and result.data["drift"] == ["credentials"]
    assert not engine.engine.requests("POST", "/images/create")  # the image is already there
    env = created_body(engine)["Env"]
    assert "MINIO_ROOT_PASSWORD=a-brand-new-secret-9" in env
    new_labels = engine.engine.container(NAME)["Config"]["Labels"]
    assert new_labels[LABEL + "credentials"] != old["Config"]["Labels"][LABEL + "credentials"]
    assert docker_backend.ensure(store).status == "unchanged"


def test_port_and_volume_drift_are_both_named(
    engine: EngineServer, moto_server: StoreSettings, seaweed_server: StoreSettings
) -> None:
    docker_backend.ensure(docker_store(moto_server, engine))
    engine.engine.calls.clear()
    store = docker_store(seaweed_server, engine, volume="/srv/runner-cache/minio")

    result = docker_backend.ensure(store)

    assert result.data["drift"] == ["published port", "data volume"]
    assert "because its published port, data volume changed" in result.detail
    assert "data now in host directory /srv/runner-cache/minio" in result.detail
    assert "the previous volume and its data were left as they were" in result.detail and "kept" not in result.detail
    body = created_body(engine)
    assert body["HostConfig"]["Binds"] == ["/srv/runner-cache/minio:/data:rw"]
    assert body["HostConfig"]["PortBindings"]["9000/tcp"][0]["HostPort"] == str(seaweed_server.port)
    assert not engine.engine.requests("POST", "/volumes/create")  # a host path needs no volume


def test_region_is_passed_to_minio_and_a_change_is_drift(engine: EngineServer, moto_server: StoreSettings) -> None:
    docker_backend.ensure(docker_store(moto_server, engine))
    engine.engine.calls.clear()

    result = docker_backend.ensure(docker_store(moto_server, engine, store={"region": "eu-central-1"}))

    assert result.data["drift"] == ["region"]
    assert "MINIO_SITE_REGION=eu-central-1" in created_body(engine)["Env"]


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
def test_the_port_is_bound_to_loopback_only_for_a_loopback_endpoint(endpoint: str, bound: str) -> None:
    store = StoreSettings(
        backend="docker", endpoint=endpoint, access_key=SecretStr("abc"), secret_key=SecretStr("abcdefgh")
    )
    assert bind_address(store) == bound


def test_a_store_that_never_answers_names_the_container_logs(engine: EngineServer, moto_server: StoreSettings) -> None:
    silent = moto_server.model_copy(update={"endpoint": f"http://127.0.0.1:{free_port()}"})
    store = docker_store(silent, engine, store={"ready_timeout": 1.0})

    with pytest.raises(StoreUnreachable, match=f"did not become ready.*docker logs {NAME}"):
        docker_backend.ensure(store)
    assert engine.engine.container(NAME)["State"]["Running"]  # the container is left for inspection


# --- plan, status, stop --------------------------------------------------------------------------------------


def test_plan_and_status_read_only(engine: EngineServer, moto_server: StoreSettings) -> None:
    store = docker_store(moto_server, engine)
    assert docker_backend.ensure(store, apply=False).status == "planned"
    assert docker_backend.status(store) | {"engine": None} == {
        "backend": "docker",
        "engine": None,
        "engine_reachable": True,
        "endpoint": store.endpoint,
        "container": NAME,
        "exists": False,
        "running": False,
        "volume": VOLUME,
    }
    docker_backend.ensure(store)
    drifted = docker_store(moto_server, engine, image=NEW_IMAGE)
    engine.engine.calls.clear()

    assert docker_backend.ensure(store, apply=False).status == "unchanged"
    plan = docker_backend.ensure(drifted, apply=False)
    assert plan.status == "planned" and plan.detail.startswith(
        f"would recreate container {NAME} because its image changed"
    )
    status = docker_backend.status(drifted)
    assert status["running"] and status["state"] == "running" and status["drift"] == ["image"]
    assert status["image"] == DEFAULT_MINIO_IMAGE and status["published"] == f"127.0.0.1:{store.port}"
    assert docker_backend.status(store)["drift"] == []
    assert posts(engine) == []
    engine.engine.stop_outside(NAME)
    assert docker_backend.ensure(store, apply=False).detail == f"would start the stopped container {NAME} (exited)"


def test_stop_has_a_dry_run_and_keeps_the_data(engine: EngineServer, moto_server: StoreSettings) -> None:
    store = docker_store(moto_server, engine)
    docker_backend.ensure(store)
    container_id = engine.engine.container(NAME)["Id"]
    engine.engine.calls.clear()

    planned = docker_backend.stop(store, apply=False)
    assert planned.status == "planned" and planned.detail.startswith(
        f"would stop and remove container {NAME} (running)"
    )
    assert posts(engine) == []

    stopped = docker_backend.stop(store)
    assert stopped.status == "changed" and f"data kept in volume {VOLUME}" in stopped.detail
    assert posts(engine) == [f"POST /containers/{container_id}/stop", f"DELETE /containers/{container_id}"]
    assert engine.engine.containers == {} and VOLUME in engine.engine.volumes

    again = docker_backend.stop(store)
    assert again.status == "unchanged" and again.detail == f"no container {NAME}: nothing to stop"
    engine.engine.calls.clear()
    restarted = docker_backend.ensure(store)
    assert restarted.status == "changed" and "created volume" not in restarted.detail
    assert created_body(engine)["HostConfig"]["Binds"] == [f"{VOLUME}:/data:rw"]


# --- errors --------------------------------------------------------------------------------------------------


def test_an_engine_that_does_not_exist_gives_one_clear_error(moto_server: StoreSettings, tmp_path: Any) -> None:
    socket = f"unix://{tmp_path}/no-engine/docker.sock"
    store = docker_store(moto_server, socket)

    with pytest.raises(DockerEngineUnreachable) as caught:
        docker_backend.ensure(store)
    message = str(caught.value)
    assert message.startswith(f"Docker Engine: not reachable at {socket} (FileNotFoundError")
    assert "RUNNER_CACHE_STORE__DOCKER__HOST" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    # a stopped engine is the user's to fix: Prefect must not retry it as if it were a network blip
    assert not isinstance(caught.value, ConfigError) and caught.value.exit_code == 1 and not is_transient(caught.value)
    with pytest.raises(DockerEngineUnreachable):
        docker_backend.stop(store)
    status = docker_backend.status(store)
    assert status["engine_reachable"] is False and status["error"] == message
    # asking the engine for its version first ('auto') fails the same way
    with pytest.raises(DockerEngineUnreachable, match=f"Docker Engine: not reachable at {socket}"):
        docker_backend.ensure(docker_store(moto_server, socket, api_version="auto"))


def test_an_engine_answering_500_gives_the_same_error_before_any_change(
    engine: EngineServer, moto_server: StoreSettings
) -> None:
    engine.engine.fail_status = 500

    with pytest.raises(DockerEngineUnreachable, match=r"answered HTTP 500 .*start Docker"):
        docker_backend.ensure(docker_store(moto_server, engine))
    assert [call.path for call in engine.engine.calls] == ["/_ping"]


def test_an_older_engine_asks_for_another_api_version_and_auto_works(
    engine: EngineServer, moto_server: StoreSettings
) -> None:
    engine.engine.api_version = "1.41"  # Docker 20.10, as in Debian 12

    with pytest.raises(
        DockerEngineError, match=r"does not speak API version 1\.44 .*RUNNER_CACHE_STORE__DOCKER__API_VERSION"
    ):
        docker_backend.ensure(docker_store(moto_server, engine))
    engine.engine.calls.clear()

    assert docker_backend.ensure(docker_store(moto_server, engine, api_version="auto")).status == "changed"
    assert engine.engine.calls[0].path == "/version"
    assert created_body(engine)["Image"] == DEFAULT_MINIO_IMAGE


def test_a_refused_pull_names_the_image_and_changes_nothing(engine: EngineServer, moto_server: StoreSettings) -> None:
    with pytest.raises(DockerEngineError, match=r"could not pull minio/minio:missing: pull access denied"):
        docker_backend.ensure(docker_store(moto_server, engine, image="minio/minio:missing"))
    assert engine.engine.containers == {}


def test_a_failed_pull_on_drift_leaves_the_running_store_alone(
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

    with pytest.raises(DockerEngineError, match=f"no progress for 0.6 s while pulling {NEW_IMAGE}.*DOCKER__TIMEOUT"):
        docker_backend.ensure(docker_store(moto_server, engine, image=NEW_IMAGE, timeout=0.6))
    assert engine.engine.containers == {}


def test_an_engine_that_hangs_midway_is_unreachable(engine: EngineServer, moto_server: StoreSettings) -> None:
    engine.engine.stall_seconds["/containers/create"] = 3.0

    with pytest.raises(
        DockerEngineUnreachable, match=r"did not answer within 0.6 s: .*RUNNER_CACHE_STORE__DOCKER__TIMEOUT"
    ):
        docker_backend.ensure(docker_store(moto_server, engine, timeout=0.6))


def test_a_taken_port_is_reported_with_the_engines_reason(engine: EngineServer, moto_server: StoreSettings) -> None:
    store = docker_store(moto_server, engine)
    engine.engine.occupied_ports.add(store.port)

    with pytest.raises(
        DockerEngineError,
        match=f"could not start container {NAME}: .*127.0.0.1:{store.port} failed: port is already allocated",
    ):
        docker_backend.ensure(store)


def test_a_container_runner_cache_did_not_make_is_left_alone(engine: EngineServer, moto_server: StoreSettings) -> None:
    client = docker.DockerClient(base_url=engine.url, version="1.44")
    client.images.pull(NEW_IMAGE)
    client.containers.create(NEW_IMAGE, ["sleep", "infinity"], name=NAME).start()
    engine.engine.calls.clear()
    store = docker_store(moto_server, engine)

    for action in (docker_backend.ensure, docker_backend.stop):
        with pytest.raises(
            DockerEngineError, match=f"a container named {NAME} exists that runner-cache did not create"
        ):
            action(store)
    assert posts(engine) == []


def test_https_endpoint_and_bad_region_are_refused_before_the_engine_is_asked(
    engine: EngineServer, moto_server: StoreSettings
) -> None:
    with pytest.raises(ConfigError, match="plain HTTP: use an http:// RUNNER_CACHE_STORE__ENDPOINT"):
        docker_backend.ensure(docker_store(moto_server, engine, store={"endpoint": "https://127.0.0.1:9000"}))
    with pytest.raises(ConfigError, match="RUNNER_CACHE_STORE__REGION"):
        docker_backend.ensure(docker_store(moto_server, engine, store={"region": "us east"}))
    assert engine.engine.calls == []


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


# --- secrets -------------------------------------------------------------------------------------------------


def test_credentials_never_leave_the_container_environment(
    engine: EngineServer, moto_server: StoreSettings, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    access, secret, secret2 = "SENTINEL-ak-4d1f", "SENTINEL-sk-83b2c9e0", "SENTINEL-sk2-f00d7a11"
    caplog.set_level(logging.DEBUG)
    store = docker_store(moto_server, engine, store={"access_key": SecretStr(access), "secret_key": SecretStr(secret)})
    rotated = store.model_copy(update={"secret_key": SecretStr(secret2)})
    texts: list[str] = []

    texts.append(docker_backend.ensure(store).model_dump_json())
    texts.append(json.dumps(docker_backend.status(rotated)))
    texts.append(docker_backend.ensure(rotated, apply=False).model_dump_json())
    texts.append(docker_backend.ensure(rotated).model_dump_json())
    texts.append(docker_backend.stop(rotated, apply=False).model_dump_json())
    engine.engine.occupied_ports.add(store.port)
    texts.append(docker_backend.stop(rotated).model_dump_json())
    errors = []
    for failing in (
        rotated,
        docker_store(moto_server, f"unix://{tmp_path}/none.sock", store={"secret_key": SecretStr(secret2)}),
    ):
        with pytest.raises(DockerEngineError) as caught:
            docker_backend.ensure(failing)
        errors.append(caught.value)
    assert "port is already allocated" in str(errors[0]) and isinstance(errors[1], DockerEngineUnreachable)
    texts += [str(error) for error in errors] + [repr(error) for error in errors]
    texts += [record.getMessage() for record in caplog.records] + [caplog.text]
    texts += [json.dumps(container["Config"]["Labels"]) for container in engine.engine.containers.values()]
    texts += [repr(store), str(store.model_dump()), repr(rotated.docker)]

    # the sentinels did reach the engine, as the container's environment and nowhere else
    bodies = [call.body for call in engine.engine.requests("POST", "/containers/create")]
    assert f"MINIO_ROOT_USER={access}" in bodies[0]["Env"] and f"MINIO_ROOT_PASSWORD={secret2}" in bodies[1]["Env"]
    assert len(caplog.records) >= 4  # the steps did log
    leaks = [text for text in texts if access in text or secret in text or secret2 in text]
    assert leaks == []


# --- through Prefect -----------------------------------------------------------------------------------------


def test_the_provision_task_does_not_retry_a_dead_engine(
    prefect_api: None, engine: EngineServer, moto_server: StoreSettings
) -> None:
    from prefect import flow

    from runner_cache.tasks.store import ensure_store_task

    engine.engine.fail_status = 500
    store = docker_store(moto_server, engine)

    @flow
    def provision() -> None:
        ensure_store_task(store)

    state = provision(return_state=True)

    assert state.is_failed()
    with pytest.raises(DockerEngineUnreachable, match="answered HTTP 500"):
        state.result()
    assert [call.path for call in engine.engine.calls] == ["/_ping"]  # one attempt, no retries
