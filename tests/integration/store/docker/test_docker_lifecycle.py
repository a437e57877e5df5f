"""The docker backend's whole lifecycle against a real Docker Engine and the MinIO stand-in image.

Each test checks what the engine really did (``docker inspect``) and what the store really holds (an object
written before a change is read back after it), not what the backend was asked to do.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import urllib3
from minio.error import S3Error, ServerError
from pydantic import SecretStr

from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import DockerEngineError, DockerEngineUnreachable, StoreUnreachable
from runner_cache.tasks.store import docker_backend
from runner_cache.tasks.store.docker_backend import LABEL
from tests.integration.store.docker.conftest import Engine, StandinImages
from tests.support.servers import free_port

MakeStore = Callable[..., StoreSettings]
KEY, BODY = "project/1/default-protected", b"cache archive written before the change"


def write_object(store: StoreSettings) -> None:
    client = store.client(retries=0)
    if not client.bucket_exists(store.bucket):
        client.make_bucket(store.bucket)
    client.put_object(store.bucket, KEY, io.BytesIO(BODY), len(BODY))


def read_object(store: StoreSettings, patience: float = 15.0) -> bytes:
    """The object :func:`write_object` wrote. A 5xx is retried for a few seconds: the stand-in's S3 gateway answers
    before SeaweedFS's volume server has reported its volumes to the master (MinIO serves objects once it answers)."""
    client, deadline = store.client(retries=0), time.monotonic() + patience
    while True:
        try:
            response = client.get_object(store.bucket, KEY)
            break
        except (ServerError, urllib3.exceptions.MaxRetryError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def inspect(engine: Engine, store: StoreSettings) -> dict:
    client = engine.client()
    try:
        return client.api.inspect_container(store.docker.container_name)
    finally:
        client.close()


# --- create, re-run, stopped container ------------------------------------------------------------------------


def test_first_run_creates_and_starts_a_store_that_serves_s3(docker_engine: Engine, docker_store: MakeStore) -> None:
    store = docker_store()

    result = docker_backend.ensure(store)

    name = store.docker.container_name
    assert result.status == "changed"
    assert result.detail.startswith(f"created and started container {name} publishing 127.0.0.1:{store.port}")
    assert f"created volume {store.docker.volume}" in result.detail and "pulled" not in result.detail
    container = inspect(docker_engine, store)
    assert container["State"]["Running"] and container["Id"].startswith(result.data["container_id"])
    assert container["Config"]["Cmd"] == ["server", "/data"]
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert container["HostConfig"]["PortBindings"] == {
        "9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(store.port)}]
    }
    (mount,) = container["Mounts"]
    assert (mount["Type"], mount["Name"], mount["Destination"]) == ("volume", store.docker.volume, "/data")
    assert container["Config"]["Labels"][LABEL + "managed-by"] == "runner-cache"
    write_object(store)  # the readiness wait passed, so signed requests with the configured credentials work
    assert read_object(store) == BODY


def test_second_run_changes_nothing(docker_engine: Engine, docker_store: MakeStore) -> None:
    store = docker_store()
    docker_backend.ensure(store)
    before = inspect(docker_engine, store)

    result = docker_backend.ensure(store)

    assert result.status == "unchanged"
    assert result.detail.startswith(f"container {store.docker.container_name} runs as configured")
    after = inspect(docker_engine, store)
    assert (after["Id"], after["State"]["StartedAt"]) == (before["Id"], before["State"]["StartedAt"])


def test_a_stopped_container_is_started_with_its_data(docker_engine: Engine, docker_store: MakeStore) -> None:
    store = docker_store()
    docker_backend.ensure(store)
    write_object(store)
    client = docker_engine.client()
    client.containers.get(store.docker.container_name).stop(timeout=10)  # `docker stop` by someone else
    client.close()
    container_id = inspect(docker_engine, store)["Id"]

    assert docker_backend.ensure(store, apply=False).detail.startswith(
        f"would start the stopped container {store.docker.container_name}"
    )
    result = docker_backend.ensure(store)

    assert result.status == "changed" and result.detail.startswith(
        f"started the stopped container {store.docker.container_name} (it was exited)"
    )
    assert inspect(docker_engine, store)["Id"] == container_id  # started, not recreated
    assert read_object(store) == BODY
    assert docker_backend.ensure(store).status == "unchanged"


# --- drift ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["image", "published port", "region", "credentials"])
def test_drift_recreates_the_container_and_keeps_the_data(
    docker_engine: Engine, docker_store: MakeStore, standin_images: StandinImages, what: str
) -> None:
    old = docker_store()
    docker_backend.ensure(old)
    write_object(old)
    old_id = inspect(docker_engine, old)["Id"]
    new = {
        "image": lambda: docker_store(docker={"image": standin_images.next_image}),
        "published port": lambda: docker_store(endpoint=f"http://127.0.0.1:{free_port()}"),
        "region": lambda: docker_store(region="eu-central-1"),
        "credentials": lambda: docker_store(secret_key=SecretStr("a-brand-new-secret-key-9")),
    }[what]()

    plan = docker_backend.ensure(new, apply=False)
    assert plan.status == "planned" and f"because its {what} changed" in plan.detail
    assert inspect(docker_engine, old)["Id"] == old_id  # planning changed nothing
    result = docker_backend.ensure(new)

    assert result.status == "changed" and result.data["drift"] == [what]
    assert (
        f"because its {what} changed" in result.detail and f"data in volume {new.docker.volume} kept" in result.detail
    )
    container = inspect(docker_engine, new)
    assert container["Id"] != old_id and container["Config"]["Image"] == new.docker.image
    assert f"MINIO_SITE_REGION={new.region}" in container["Config"]["Env"]
    assert read_object(new) == BODY
    if what == "credentials":
        with pytest.raises(S3Error, match="AccessDenied|SignatureDoesNotMatch|InvalidAccessKeyId"):
            read_object(old)
    if what == "published port":
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", old.port), timeout=2).close()
    assert docker_backend.ensure(new).status == "unchanged"


def test_a_new_data_volume_starts_empty_and_the_old_one_keeps_its_data(
    docker_engine: Engine, docker_store: MakeStore, tmp_path: Path
) -> None:
    store = docker_store()
    docker_backend.ensure(store)
    write_object(store)
    moved = docker_store(docker={"volume": str(tmp_path / "minio-data")})

    result = docker_backend.ensure(moved)

    assert result.data["drift"] == ["data volume"]
    assert (
        f"data now in host directory {tmp_path / 'minio-data'}; the previous volume and its data were left"
        in result.detail
    )
    (mount,) = inspect(docker_engine, moved)["Mounts"]
    assert (mount["Type"], mount["Source"], mount["Destination"]) == ("bind", str(tmp_path / "minio-data"), "/data")
    with pytest.raises(S3Error, match="NoSuchBucket"):
        read_object(moved)  # a new, empty store, as the result says
    assert docker_backend.ensure(store).data["drift"] == ["data volume"]  # back to the volume: the data is there
    assert read_object(store) == BODY


def test_a_server_that_keeps_exiting_is_named_with_its_exit_code(
    docker_store: MakeStore, standin_images: StandinImages
) -> None:
    store = docker_store(ready_timeout=5.0, docker={"image": standin_images.broken_image})
    name = store.docker.container_name

    with pytest.raises(StoreUnreachable) as caught:
        docker_backend.ensure(store)

    message = str(caught.value)
    assert f"did not become ready within 5 s: container {name} keeps exiting (restarted " in message
    assert "last exit code" not in message or "last exit code 3" in message  # none while it briefly runs again
    assert f"see `docker logs {name}` on the engine's host" in message
    assert (
        f"this run had already created volume {store.docker.volume}, created container {name}, started container {name}"
        in message
    )


# --- stop -------------------------------------------------------------------------------------------------------


def test_store_stop_removes_the_container_and_keeps_the_volume(docker_engine: Engine, docker_store: MakeStore) -> None:
    store = docker_store()
    docker_backend.ensure(store)
    write_object(store)
    name, volume = store.docker.container_name, store.docker.volume

    planned = docker_backend.stop(store, apply=False)
    assert planned.status == "planned" and planned.detail.startswith(
        f"would stop and remove container {name} (running)"
    )
    assert inspect(docker_engine, store)["State"]["Running"]

    stopped = docker_backend.stop(store)

    assert stopped.status == "changed" and f"data kept in volume {volume}" in stopped.detail
    client = docker_engine.client()
    assert client.containers.list(all=True, filters={"name": name}) == []
    assert client.volumes.get(volume).attrs["Labels"] == {LABEL + "managed-by": "runner-cache"}
    client.close()
    assert docker_backend.status(store)["exists"] is False
    again = docker_backend.stop(store)
    assert again.status == "unchanged" and again.detail == f"no container {name}: nothing to stop"
    restarted = docker_backend.ensure(store)
    assert restarted.status == "changed" and "created volume" not in restarted.detail
    assert read_object(store) == BODY


def test_status_reads_the_engine(docker_store: MakeStore, standin_images: StandinImages) -> None:
    store = docker_store()
    assert docker_backend.status(store)["exists"] is False
    docker_backend.ensure(store)

    status = docker_backend.status(docker_store(docker={"image": standin_images.next_image}))

    assert status["engine_reachable"] and status["running"] and status["state"] == "running"
    assert status["drift"] == ["image"] and status["image"] == store.docker.image
    assert status["published"] == f"127.0.0.1:{store.port}"


# --- what the real engine refuses -------------------------------------------------------------------------------


def test_a_taken_port_fails_with_the_engines_reason_and_a_rerun_starts_it(
    docker_engine: Engine, docker_store: MakeStore
) -> None:
    store = docker_store()
    holder = socket.create_server(("127.0.0.1", store.port))
    try:
        with pytest.raises(DockerEngineError) as caught:
            docker_backend.ensure(store)
    finally:
        holder.close()
    message = str(caught.value)
    assert message.startswith("Docker Engine")
    assert f"could not start container {store.docker.container_name}" in message and "address already in use" in message
    assert not isinstance(caught.value, DockerEngineUnreachable) and not caught.value.transient

    result = docker_backend.ensure(store)  # the port is free again: the created container is started, not remade

    assert result.status == "changed" and result.detail.startswith(
        f"started the stopped container {store.docker.container_name} (it was created)"
    )


def test_an_image_the_engine_cannot_pull_is_named_and_nothing_is_changed(
    docker_engine: Engine, docker_store: MakeStore
) -> None:
    store = docker_store()
    docker_backend.ensure(store)
    old_id = inspect(docker_engine, store)["Id"]
    missing = docker_store(docker={"image": "runner-cache-test/not-built-here:1"})

    with pytest.raises(DockerEngineError, match="could not pull runner-cache-test/not-built-here:1"):
        docker_backend.ensure(missing)

    container = inspect(docker_engine, store)  # the pull comes before any stop: the old store still runs
    assert container["Id"] == old_id and container["State"]["Running"]


def test_a_container_runner_cache_did_not_make_is_left_alone(docker_engine: Engine, docker_store: MakeStore) -> None:
    store = docker_store()
    client = docker_engine.client()
    theirs = client.containers.create(store.docker.image, ["server", "/data"], name=store.docker.container_name)
    client.close()

    for action in (docker_backend.ensure, docker_backend.stop):
        with pytest.raises(
            DockerEngineError,
            match=f"has a container named {store.docker.container_name} that runner-cache did not create",
        ):
            action(store)
    assert inspect(docker_engine, store)["Id"] == theirs.id


def test_no_engine_at_the_address_is_one_clear_line(docker_store: MakeStore, tmp_path) -> None:
    address = f"unix://{tmp_path}/no-engine.sock"
    store = docker_store(docker={"host": address})

    with pytest.raises(DockerEngineUnreachable) as caught:
        docker_backend.ensure(store)

    message = str(caught.value)
    assert message.startswith(f"Docker Engine at {address} is not reachable")
    assert "RUNNER_CACHE_STORE__DOCKER__HOST" in message and "\n" not in message
    status = docker_backend.status(store)
    assert status["engine_reachable"] is False and status["error"] == message


def test_credentials_reach_the_container_environment_and_nothing_else(
    docker_engine: Engine, docker_store: MakeStore, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    store = docker_store()
    rotated = docker_store(secret_key=SecretStr("SENTINEL-rotated-secret-77"))
    access, secret = (value.get_secret_value() for value in store.credentials())
    texts = [docker_backend.ensure(store).model_dump_json(), json.dumps(docker_backend.status(rotated))]
    texts += [
        docker_backend.ensure(rotated, apply=False).model_dump_json(),
        docker_backend.ensure(rotated).model_dump_json(),
    ]
    container = inspect(docker_engine, rotated)
    texts += [json.dumps(container["Config"]["Labels"]), json.dumps(container["Config"]["Cmd"])]
    texts.append(docker_backend.stop(rotated).model_dump_json())
    errors: list[Exception] = []
    holder = socket.create_server(("127.0.0.1", rotated.port))  # the engine's refusal quotes its request
    try:
        with pytest.raises(DockerEngineError) as refused:
            docker_backend.ensure(rotated)
    finally:
        holder.close()
    with pytest.raises(DockerEngineUnreachable) as unreachable:
        docker_backend.ensure(
            docker_store(
                secret_key=SecretStr("SENTINEL-rotated-secret-77"), docker={"host": f"unix://{tmp_path}/none.sock"}
            )
        )
    errors += [refused.value, unreachable.value]
    texts += [str(error) for error in errors] + [repr(error) for error in errors]
    texts += [record.getMessage() for record in caplog.records] + [caplog.text]

    assert "MINIO_ROOT_PASSWORD=SENTINEL-rotated-secret-77" in container["Config"]["Env"]  # it did reach the engine
    assert f"MINIO_ROOT_USER={access}" in container["Config"]["Env"]
    assert len(caplog.records) >= 3  # the steps did log
    assert [text for text in texts if access in text or secret in text or "SENTINEL-rotated" in text] == []
