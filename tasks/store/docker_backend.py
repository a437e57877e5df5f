"""The ``docker`` backend: one MinIO container managed through the Docker Engine API (docker SDK).

The container runs ``server /data`` with ``restart=always``, keeps its data in a named volume or a host
directory (``store.docker.volume``), and gets the root credentials as ``MINIO_ROOT_USER`` /
``MINIO_ROOT_PASSWORD`` plus ``MINIO_SITE_REGION`` (current MinIO ignores the legacy ``MINIO_REGION_NAME``),
so that signatures and bucket locations use the configured region, like the runner's ``BucketLocation``.

MinIO's port 9000 is published on the endpoint's port. When the endpoint's host is a loopback address
(``localhost``, ``127.x``, ``::1``) the port is bound to that loopback address only, as the endpoint says
nobody else needs it; for any other host it is bound to ``0.0.0.0``, because runner pods on other machines
reach it by a name or address that need not belong to an interface of the engine's host (DNS, NAT).

Labels on the container record what it was made from: each setting (the credentials only as a salted
PBKDF2 hash) and a hash of the whole definition. Same definition: nothing to do. A different one: the
new image is pulled first, then the container is stopped, removed and created again on the same volume,
so the data is kept and the step names what drifted.

The Engine API version is negotiated by default (``store.docker.api_version = "auto"``): the client asks the
engine's ``/version`` and speaks that, so Debian 12's Docker 20.10 (API 1.41) and Docker 29 (1.44 and later) both
work. A pinned version the engine does not speak fails with the engine's limit and the fix.

Errors name the Docker Engine by address and say what to do. An engine that cannot be reached, answers a ping
with a server error or stops answering raises :class:`DockerEngineUnreachable`; anything the engine refuses
raises :class:`DockerEngineError`. Neither is retried: starting the engine or freeing a port is the user's fix.
An error in the middle of a run also says what the run had already changed (the data volume is never touched),
so an engine stopped mid-setup leaves a readable account, and a re-run after the fix finishes the job.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import docker
import docker.auth
from docker.errors import APIError, DockerException, NotFound, create_api_error_from_http_exception
from docker.models.containers import Container
from docker.utils import parse_repository_tag
from requests.exceptions import HTTPError, RequestException, Timeout

from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import (
    ConfigError,
    DockerEngineError,
    DockerEngineUnreachable,
    StoreUnreachable,
    innermost_cause,
)
from runner_cache.redaction import redact
from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.results import StepResult, timed
from runner_cache.tasks.store.s3 import wait_until_ready

T = TypeVar("T")

LABEL = "io.runner-cache."
COMMAND = ["server", "/data"]
DATA_DIR = "/data"
MINIO_PORT = "9000/tcp"
STOP_SECONDS = 10
_PBKDF2_ROUNDS = 100_000
# How an engine refuses a pinned version it does not speak (as Docker 20.10.24 answers a client pinned to 1.44).
_VERSION_REFUSED = re.compile(
    r"client version (?P<asked>[0-9.]+) is too (?P<which>new|old)\. "
    r"(?:Maximum|Minimum) supported API version is (?P<limit>[0-9.]+)"
)
_REGION = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]+$")  # MinIO refuses to start with any other region name
# What each per-setting label means to a user, in the order a drift is reported.
_DRIFT_NAMES = {
    "image": "image",
    "published": "published port",
    "volume": "data volume",
    "region": "region",
    "credentials": "credentials",
}


@dataclass(frozen=True)
class MinioSpec:
    """Everything the container is made from; ``credentials`` is a salted hash, never the credentials."""

    image: str
    host_ip: str
    port: int
    volume: str
    region: str
    credentials: str

    @property
    def published(self) -> str:
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{host}:{self.port}"

    def create_args(self, root_user: str, root_password: str) -> dict[str, Any]:
        """The docker SDK's ``containers.create`` arguments, but for the name and labels."""
        return {
            "image": self.image,
            "command": COMMAND,
            "environment": {
                "MINIO_ROOT_USER": root_user,
                "MINIO_ROOT_PASSWORD": root_password,
                "MINIO_SITE_REGION": self.region,
            },
            "ports": {MINIO_PORT: (self.host_ip, self.port)},
            "volumes": {self.volume: {"bind": DATA_DIR, "mode": "rw"}},
            "restart_policy": {"Name": "always"},
        }

    def digest(self) -> str:
        """A hash of the whole definition, so that a change of command or environment is drift too."""
        definition = {**self.create_args("*", "*"), "credentials": self.credentials}
        return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()

    def labels(self) -> dict[str, str]:
        return {
            LABEL + "managed-by": "runner-cache",
            LABEL + "spec": self.digest(),
            LABEL + "image": self.image,
            LABEL + "published": self.published,
            LABEL + "volume": self.volume,
            LABEL + "region": self.region,
            LABEL + "credentials": self.credentials,
        }

    def drift(self, labels: dict[str, str]) -> list[str]:
        """What differs from a container with these ``labels``, in words; empty when it matches."""
        if labels.get(LABEL + "spec") == self.digest():
            return []
        mine = self.labels()
        named = [words for key, words in _DRIFT_NAMES.items() if labels.get(LABEL + key) != mine[LABEL + key]]
        return named or ["container definition (made by another runner-cache version)"]


def bind_address(store: StoreSettings) -> str:
    """Where the published port listens: the loopback address of a loopback endpoint, else every interface."""
    host = urlsplit(store.endpoint).hostname or ""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "0.0.0.0"
    return str(address) if address.is_loopback else "0.0.0.0"


def _credentials_hash(store: StoreSettings, salt: str) -> str:
    access, secret = store.credentials()
    material = f"{access.get_secret_value()}\0{secret.get_secret_value()}".encode()
    return f"pbkdf2-sha256${salt}${hashlib.pbkdf2_hmac('sha256', material, salt.encode(), _PBKDF2_ROUNDS).hex()}"


def _spec(store: StoreSettings, labels: dict[str, str]) -> MinioSpec:
    """The wanted spec; the credentials are hashed with the existing container's salt so that they compare."""
    previous = labels.get(LABEL + "credentials", "").split("$")
    salt = previous[1] if len(previous) == 3 else secrets.token_hex(16)
    return MinioSpec(
        image=store.docker.image,
        host_ip=bind_address(store),
        port=store.port,
        volume=store.docker.volume,
        region=store.region,
        credentials=_credentials_hash(store, salt),
    )


def _validate(store: StoreSettings) -> None:
    if store.backend != "docker":
        raise ConfigError(f"the docker backend was asked to manage a {store.backend!r} store")
    if store.secure:
        raise ConfigError(
            "the docker backend serves MinIO over plain HTTP: use an http:// RUNNER_CACHE_STORE__ENDPOINT "
            "(or put TLS in front of it and use the external backend)"
        )
    if not _REGION.match(store.region):
        raise ConfigError("RUNNER_CACHE_STORE__REGION must be a simple name such as us-east-1 for MinIO")


def engine_address(store: StoreSettings) -> str:
    """Where the engine is looked for, in the words of the settings that chose it."""
    if store.docker.host:
        return store.docker.host
    if os.environ.get("DOCKER_HOST"):
        return f"{os.environ['DOCKER_HOST']} (DOCKER_HOST)"
    return "the default Docker socket or context"


def _scrub(text: str, store: StoreSettings) -> str:
    """An engine message may quote the request (an invalid environment entry, say): blank the credentials."""
    return redact(text, store.credentials())


def _api_error(error: APIError, store: StoreSettings, doing: str) -> DockerEngineError:
    explanation = _scrub(str(error.explanation or error), store)
    where = engine_address(store)
    if version := _VERSION_REFUSED.search(explanation):
        bound = "up to" if version["which"] == "new" else "from"
        return DockerEngineError(
            f"Docker Engine at {where} speaks Engine API {bound} {version['limit']}, and "
            f"RUNNER_CACHE_STORE__DOCKER__API_VERSION is {version['asked']}",
            hint="set RUNNER_CACHE_STORE__DOCKER__API_VERSION=auto (the default) to speak the engine's version",
        )
    return DockerEngineError(f"Docker Engine at {where} could not {doing}: {explanation}")


_START_HINT = (
    "start Docker (or give this user access to its socket), or point RUNNER_CACHE_STORE__DOCKER__HOST "
    "(or DOCKER_HOST) at a running engine"
)


@contextmanager
def _engine(store: StoreSettings) -> Iterator[docker.DockerClient]:
    """A client whose engine has answered a ping; every failure leaves as one of this module's errors."""
    where = engine_address(store)
    environment = {**os.environ, **({"DOCKER_HOST": store.docker.host} if store.docker.host else {})}
    try:
        # version="auto" asks the engine's /version first; the SDK wraps a failed answer in a DockerException
        client = docker.DockerClient.from_env(
            version=store.docker.api_version, timeout=store.docker.timeout, environment=environment
        )
    except DockerException as error:
        raise _unanswered(error.__context__ if isinstance(error.__context__, APIError) else error, store) from None
    try:
        try:
            client.ping()
        except APIError as error:
            raise _unanswered(error, store) from None
        yield client
    except Timeout:
        raise DockerEngineUnreachable(
            f"Docker Engine at {where} did not answer within {store.docker.timeout:g} s",
            hint="check that it is healthy, or raise RUNNER_CACHE_STORE__DOCKER__TIMEOUT",
        ) from None
    except (DockerException, RequestException) as error:  # the engine's refusals were already named by _refused
        raise _unanswered(error, store) from None
    finally:
        client.close()


def _unanswered(error: BaseException, store: StoreSettings) -> DockerEngineError:
    """The engine did not answer a version query or a ping: absent, broken (5xx), or refusing a pinned version."""
    where = engine_address(store)
    if not isinstance(error, APIError):
        return DockerEngineUnreachable(
            f"Docker Engine at {where} is not reachable ({innermost_cause(error)})", hint=_START_HINT
        )
    if (error.status_code or 0) >= 500:
        explanation = _scrub(str(error.explanation), store)
        return DockerEngineUnreachable(
            f"Docker Engine at {where} answered HTTP {error.status_code} ({explanation})", hint=_START_HINT
        )
    return _api_error(error, store, "answer a ping")


@contextmanager
def _refused(store: StoreSettings, doing: str) -> Iterator[None]:
    """Turn the engine's refusal of one step into a :class:`DockerEngineError` that names the step."""
    try:
        yield
    except APIError as error:
        raise _api_error(error, store, doing) from None


def _get(store: StoreSettings, doing: str, getter: Callable[[str], T], name: str) -> T | None:
    """One lookup by name: the object, or None when the engine has none by that name."""
    with _refused(store, doing):
        try:
            return getter(name)
        except NotFound:
            return None


def _find(client: docker.DockerClient, store: StoreSettings) -> Container | None:
    """Our container, or None; a container of that name that runner-cache did not make is left alone."""
    name = store.docker.container_name
    container = _get(store, f"inspect container {name}", client.containers.get, name)
    if container is not None and container.labels.get(LABEL + "managed-by") != "runner-cache":
        raise DockerEngineError(
            f"Docker Engine at {engine_address(store)} has a container named {name} that runner-cache did not create",
            hint="remove it, or choose another RUNNER_CACHE_STORE__DOCKER__CONTAINER_NAME",
        )
    return container


def _ensure_image(client: docker.DockerClient, store: StoreSettings) -> bool:
    """Pull the image unless the engine has it; True when pulled."""
    image = store.docker.image
    if _get(store, f"inspect image {image}", client.images.get, image) is not None:
        return False
    run_logger(__name__).info("pulling %s: the engine does not have it yet", image)
    with _refused(store, f"pull {image}"):
        _pull(client, store, image)
    return True


def _pull(client: docker.DockerClient, store: StoreSettings, image: str) -> None:
    """``POST /images/create`` as the SDK sends it, but with a read timeout.

    The SDK's pull waits without any timeout, so a stalled registry would hang the flow run; here the engine
    must send progress at least every ``store.docker.timeout`` seconds. Errors in the stream count too.
    """
    repository, tag = parse_repository_tag(image)
    if tag and tag.startswith("sha256:"):  # repo:tag@digest: the digest decides, as with `docker pull`
        repository = parse_repository_tag(repository)[0]
    registry, _ = docker.auth.resolve_repository_name(repository)
    auth = docker.auth.get_config_header(client.api, registry)
    try:
        response = client.api.post(
            f"{client.api.base_url}/v{client.api.api_version}/images/create",
            params={"fromImage": repository, "tag": tag or "latest"},
            headers={"X-Registry-Auth": auth} if auth else {},
            stream=True,
            timeout=store.docker.timeout,
        )
        with response:
            try:
                response.raise_for_status()
            except HTTPError as error:
                create_api_error_from_http_exception(error)  # raises the SDK's APIError, as its own pull would
            for raw in response.iter_lines():
                line = json.loads(raw) if raw.strip() else {}
                if "error" in line:
                    where, reason = engine_address(store), _scrub(str(line["error"]), store)
                    raise DockerEngineError(f"Docker Engine at {where} could not pull {image}: {reason}")
    except Timeout:
        raise DockerEngineError(
            f"Docker Engine at {engine_address(store)} sent no progress for {store.docker.timeout:g} s "
            f"while pulling {image}",
            hint="check that it can reach the registry, or raise RUNNER_CACHE_STORE__DOCKER__TIMEOUT",
        ) from None


def _ensure_volume(client: docker.DockerClient, store: StoreSettings) -> bool:
    """Create the named volume (labelled as ours) when missing; True when created. Host paths need nothing."""
    name = store.docker.volume
    if name.startswith("/") or _get(store, f"inspect volume {name}", client.volumes.get, name) is not None:
        return False
    with _refused(store, f"create volume {name}"):
        client.volumes.create(name=name, labels={LABEL + "managed-by": "runner-cache"})
    return True


def _create(client: docker.DockerClient, store: StoreSettings, spec: MinioSpec) -> Container:
    access, secret = store.credentials()
    name = store.docker.container_name
    with _refused(store, f"create container {name}"):
        container = client.containers.create(
            name=name, labels=spec.labels(), **spec.create_args(access.get_secret_value(), secret.get_secret_value())
        )
    return container


def _create_and_start(client: docker.DockerClient, store: StoreSettings, spec: MinioSpec, done: list[str]) -> Container:
    container = _create(client, store, spec)
    done.append(f"created container {container.name}")
    _start(container, store)
    done.append(f"started container {container.name}")
    return container


def _not_ready(store: StoreSettings, error: StoreUnreachable) -> DockerEngineError | StoreUnreachable:
    """Why a started store does not answer, in the engine's words: the engine went away, or the container is
    gone, stopped or crash-looping (``restart=always`` restarts a server that exits, so it rarely looks stopped)."""
    name = store.docker.container_name
    logs = f"see `docker logs {name}` on the engine's host"
    try:
        with _engine(store) as client:
            container = _find(client, store)
    except DockerEngineError as engine_error:  # stopped while the store started: that is what to fix first
        return engine_error
    if container is None:
        return StoreUnreachable(f"{error.message}: container {name} is gone", hint=logs)
    restarts = container.attrs.get("RestartCount", 0)
    if restarts or not _is_up(container):
        how = f"keeps exiting (restarted {restarts} times)" if restarts else f"is {container.status}"
        if container.status != "running":  # a running container's exit code was reset by its restart
            how += f", last exit code {container.attrs['State'].get('ExitCode')}"
        return StoreUnreachable(f"{error.message}: container {name} {how}", hint=logs)
    return StoreUnreachable(error.message, hint=logs)


def _start(container: Container, store: StoreSettings) -> None:
    with _refused(store, f"start container {container.name}"):
        container.start()


def _stop_and_remove(container: Container, store: StoreSettings) -> None:
    with _refused(store, f"stop container {container.name}"):
        container.stop(timeout=STOP_SECONDS)
    with _refused(store, f"remove container {container.name}"):
        container.remove()


def _volume_words(store: StoreSettings) -> str:
    volume = store.docker.volume
    return f"host directory {volume}" if volume.startswith("/") else f"volume {volume}"


def _is_up(container: Container) -> bool:
    return container.status in {"running", "restarting"}


def ensure(store: StoreSettings, *, apply: bool = True) -> StepResult:
    """Create, start or recreate the MinIO container as needed, then wait until it accepts signed requests.

    ``apply=False`` reads the engine only (no pull, create, start or stop) and says what it would do.
    """
    _validate(store)
    if not apply:
        return _plan(store)
    done: list[str] = []
    try:
        return _converge(store, done)
    except (DockerEngineError, StoreUnreachable) as error:
        if not done:
            raise
        raise type(error)(
            f"{error.message}; this run had already {', '.join(done)}, and data in {_volume_words(store)} "
            "is untouched: run it again once that is fixed",
            hint=error.hint,
            transient=error.transient,
        ) from None


def _converge(store: StoreSettings, done: list[str]) -> StepResult:
    """:func:`ensure`'s work; each change the engine confirmed is appended to ``done`` as it happens."""
    log, name = run_logger(__name__), store.docker.container_name
    with timed() as timer:
        with _engine(store) as client:
            container = _find(client, store)
            spec = _spec(store, container.labels if container else {})
            drift = spec.drift(container.labels) if container else []
            pulled = created_volume = False
            if container is None or drift:
                pulled = _ensure_image(client, store)  # before any stop: a failed pull leaves the old store running
                done += [f"pulled {spec.image}"] if pulled else []
                created_volume = _ensure_volume(client, store)
                done += [f"created volume {store.docker.volume}"] if created_volume else []
            status, data_words = "changed", f"data in {_volume_words(store)}"
            if container is None:
                log.info("creating container %s from %s, publishing %s", name, spec.image, spec.published)
                container = _create_and_start(client, store, spec, done)
                action = f"created and started container {name} publishing {spec.published}"
            elif drift:
                moved = "data volume" in drift
                if moved:  # the old volume keeps the old data; the new one starts empty
                    data_words = (
                        f"data now in {_volume_words(store)}; the previous volume and its data were left as they were"
                    )
                else:
                    data_words += " kept"
                log.info("recreating container %s: its %s changed; %s", name, ", ".join(drift), data_words)
                _stop_and_remove(container, store)
                done.append(f"stopped and removed container {name}")
                container = _create_and_start(client, store, spec, done)
                action = f"recreated container {name} because its {', '.join(drift)} changed"
            elif not _is_up(container):
                log.info("starting container %s: it was %s", name, container.status)
                _start(container, store)
                done.append(f"started container {name}")
                action, data_words = (
                    f"started the stopped container {name} (it was {container.status})",
                    data_words + " kept",
                )
            else:
                status, action = "unchanged", f"container {name} runs as configured"
            changes = ((pulled, f"pulled {spec.image}"), (created_volume, f"created volume {store.docker.volume}"))
            extras = [text for happened, text in changes if happened]
            container_id = container.id
        try:
            wait_until_ready(store)
        except StoreUnreachable as error:
            raise _not_ready(store, error) from None
    return StepResult(
        step="store",
        status=status,
        detail="; ".join([f"{action}, serving {store.endpoint}", data_words, *extras]),
        seconds=timer.seconds,
        data={
            "backend": "docker",
            "endpoint": store.endpoint,
            "container": name,
            "container_id": container_id[:12],
            "image": spec.image,
            "published": spec.published,
            "volume": store.docker.volume,
            "drift": drift,
            "pulled": pulled,
        },
    )


def _plan(store: StoreSettings) -> StepResult:
    name = store.docker.container_name
    with _engine(store) as client:
        container = _find(client, store)
        if container is None:
            return StepResult(
                step="store",
                status="planned",
                detail=f"would create and start container {name} serving {store.endpoint}",
            )
        drift = _spec(store, container.labels).drift(container.labels)
    if drift:
        detail = f"would recreate container {name} because its {', '.join(drift)} changed (data in {_volume_words(store)} kept)"
        return StepResult(step="store", status="planned", detail=detail, data={"drift": drift})
    if not _is_up(container):
        return StepResult(
            step="store", status="planned", detail=f"would start the stopped container {name} ({container.status})"
        )
    return StepResult(
        step="store", status="unchanged", detail=f"container {name} runs as configured at {store.endpoint}"
    )


def stop(store: StoreSettings, *, apply: bool = True) -> StepResult:
    """Stop and remove the container, keeping the data; ``runner-cache setup`` creates it again.

    Removing rather than only stopping it is deliberate: with ``restart=always`` the engine would start a
    merely stopped container again on its next restart.
    """
    _validate(store)
    name = store.docker.container_name
    with timed() as timer, _engine(store) as client:
        container = _find(client, store)
        if container is None:
            return StepResult(step="store", status="unchanged", detail=f"no container {name}: nothing to stop")
        words = f"container {name} ({container.status})"
        if not apply:
            return StepResult(
                step="store",
                status="planned",
                detail=f"would stop and remove {words}; data in {_volume_words(store)} would be kept",
            )
        run_logger(__name__).info("stopping and removing %s; data in %s is kept", words, _volume_words(store))
        _stop_and_remove(container, store)
    return StepResult(
        step="store",
        status="changed",
        detail=f"stopped and removed {words}; data kept in {_volume_words(store)}",
        seconds=timer.seconds,
        data={"container": name, "container_id": container.id[:12], "volume": store.docker.volume},
    )


def status(store: StoreSettings) -> dict:
    """The container as the engine sees it, for ``runner-cache store document``; an unreachable engine is a document."""
    _validate(store)
    document: dict = {
        "backend": "docker",
        "engine": engine_address(store),
        "engine_reachable": True,
        "endpoint": store.endpoint,
        "container": store.docker.container_name,
        "exists": False,
        "running": False,
        "volume": store.docker.volume,
    }
    try:
        with _engine(store) as client:
            container = _find(client, store)
            if container is not None:
                labels = container.labels
                document.update(
                    exists=True,
                    running=_is_up(container),
                    state=container.status,
                    id=container.id[:12],
                    image=labels.get(LABEL + "image"),
                    published=labels.get(LABEL + "published"),
                    drift=_spec(store, labels).drift(labels),
                )
    except DockerEngineUnreachable as error:
        document.update(engine_reachable=False, error=str(error))
    return document
