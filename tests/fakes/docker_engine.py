"""A fake Docker Engine: the few Engine API endpoints the ``docker`` store backend calls, on a unix socket.

Written from the public Engine API reference (https://docs.docker.com/reference/api/engine/): the same paths,
status codes and JSON shapes (errors as ``{"message": ...}``), so the real docker SDK talks to it unchanged.
It keeps images, containers and volumes in memory and records every call, but runs nothing: tests pair a
"started" container with a real S3 server on the container's published port.

Only for what a real engine cannot be made to do on these machines (a pull, a 500, a stall, an error inside a
pull's stream): everything else is tested against Debian's real dockerd (tests/integration/store/docker/).
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.fakes.server import WsgiThread

_VERSIONED = re.compile(r"^/v(\d+\.\d+)(/.*)$")


@dataclass
class Call:
    """One request as the engine saw it: version prefix stripped, query and JSON body decoded."""

    method: str
    path: str
    query: dict[str, str]
    body: Any = None


@dataclass
class EngineError(Exception):
    status: int
    message: str


def canonical(ref: str) -> str:
    """How the engine stores a reference: with a digest, the tag is dropped (``repo:tag@sha256:…`` → ``repo@sha256:…``)."""
    if "@" not in ref:
        return ref
    name, digest = ref.split("@", 1)
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return f"{name}@{digest}"


def _version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


@dataclass
class FakeDockerEngine:
    """State and behaviour of one engine; ``registry`` lists the image references a pull can fetch."""

    registry: set[str] = field(default_factory=set)
    api_version: str = "1.47"
    min_api_version: str = "1.24"
    images: dict[str, dict] = field(default_factory=dict)
    containers: dict[str, dict] = field(default_factory=dict)
    volumes: dict[str, dict] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # When set, every request is answered with this status (an engine that is up but broken).
    fail_status: int | None = None
    # Seconds to wait before answering a path (an engine or registry that hangs).
    stall_seconds: dict[str, float] = field(default_factory=dict)
    # When set, a pull streams this error after its first progress line (HTTP 200, like a real engine).
    pull_stream_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- helpers for tests -------------------------------------------------------------------------------

    def container(self, name: str) -> dict:
        """The inspect document of the container called ``name`` (KeyError when there is none)."""
        found = self._find_container(name)
        if found is None:
            raise KeyError(name)
        return found

    def requests(self, method: str, path_pattern: str) -> list[Call]:
        """Recorded calls with this method whose path matches the regular expression ``path_pattern``."""
        return [call for call in self.calls if call.method == method and re.fullmatch(path_pattern, call.path)]

    # --- WSGI ---------------------------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        path, version = request.path, None
        if match := _VERSIONED.match(path):
            version, path = match.groups()
        body = request.get_json(silent=True) if request.data else None
        call = Call(request.method, path, dict(request.args), body)
        time.sleep(self.stall_seconds.get(path, 0.0))
        with self.lock:
            self.calls.append(call)
            try:
                if self.fail_status is not None:
                    raise EngineError(self.fail_status, "Internal Server Error: the engine is broken (fake)")
                if version is not None:
                    self._check_version(version)
                response = self._route(call)
            except EngineError as error:
                response = Response(json.dumps({"message": error.message}), error.status, mimetype="application/json")
        response.headers["Api-Version"] = self.api_version
        return response(environ, start_response)

    def _check_version(self, version: str) -> None:
        if _version_tuple(version) > _version_tuple(self.api_version):
            raise EngineError(
                400, f"client version {version} is too new. Maximum supported API version is {self.api_version}"
            )
        if _version_tuple(version) < _version_tuple(self.min_api_version):
            raise EngineError(
                400,
                f"client version {version} is too old. Minimum supported API version is {self.min_api_version}, "
                "please upgrade your client to a newer version",
            )

    def _route(self, call: Call) -> Response:
        routes: list[tuple[str, str, Any]] = [
            ("GET", r"/_ping", self._ping),
            ("HEAD", r"/_ping", self._ping),
            ("GET", r"/version", self._version),
            ("GET", r"/images/(?P<name>.+)/json", self._inspect_image),
            ("POST", r"/images/create", self._pull),
            ("GET", r"/volumes/(?P<name>[^/]+)", self._inspect_volume),
            ("POST", r"/volumes/create", self._create_volume),
            ("POST", r"/containers/create", self._create_container),
            ("GET", r"/containers/(?P<ref>[^/]+)/json", self._inspect_container),
            ("POST", r"/containers/(?P<ref>[^/]+)/start", self._start),
            ("POST", r"/containers/(?P<ref>[^/]+)/stop", self._stop),
            ("DELETE", r"/containers/(?P<ref>[^/]+)", self._remove),
        ]
        for method, pattern, handler in routes:
            if call.method == method and (match := re.fullmatch(pattern, call.path)):
                return handler(call, **match.groupdict())
        raise EngineError(404, f"page not found: {call.method} {call.path} is not part of the fake")

    # --- system -------------------------------------------------------------------------------------------

    def _ping(self, call: Call) -> Response:
        return Response("OK", 200, mimetype="text/plain")

    def _version(self, call: Call) -> Response:
        return _json(
            {
                "Version": "27.5.1",
                "ApiVersion": self.api_version,
                "MinAPIVersion": self.min_api_version,
                "Os": "linux",
                "Arch": "amd64",
            }
        )

    # --- images -------------------------------------------------------------------------------------------

    def _find_image(self, ref: str) -> dict | None:
        return self.images.get(canonical(ref)) or next(
            (image for image in self.images.values() if image["Id"] == ref), None
        )

    def _inspect_image(self, call: Call, name: str) -> Response:
        image = self._find_image(name)
        if image is None:
            raise EngineError(404, f"No such image: {name}")
        return _json(image)

    def _pull(self, call: Call) -> Response:
        repository, tag = call.query.get("fromImage", ""), call.query.get("tag") or "latest"
        ref = f"{repository}{'@' if tag.startswith('sha256:') else ':'}{tag}"
        if ref not in {canonical(known) for known in self.registry}:
            raise EngineError(
                404, f"pull access denied for {repository}, repository does not exist or may require 'docker login'"
            )
        lines = [{"status": f"Pulling from {repository}", "id": tag}]
        if self.pull_stream_error:
            lines.append({"errorDetail": {"message": self.pull_stream_error}, "error": self.pull_stream_error})
        else:
            self.images[ref] = {"Id": "sha256:" + secrets.token_hex(32), "RepoTags": [ref], "RepoDigests": []}
            lines.append({"status": f"Status: Downloaded newer image for {ref}"})
        return Response((json.dumps(line) + "\r\n" for line in lines), 200, mimetype="application/json")

    # --- volumes ------------------------------------------------------------------------------------------

    def _new_volume(self, name: str, labels: dict[str, str] | None = None) -> dict:
        volume = {
            "Name": name,
            "Driver": "local",
            "Mountpoint": f"/var/lib/docker/volumes/{name}/_data",
            "Labels": labels or {},
            "Scope": "local",
            "Options": {},
        }
        self.volumes[name] = volume
        return volume

    def _inspect_volume(self, call: Call, name: str) -> Response:
        if name not in self.volumes:
            raise EngineError(404, f"get {name}: no such volume")
        return _json(self.volumes[name])

    def _create_volume(self, call: Call) -> Response:
        body = call.body or {}
        name = body.get("Name") or secrets.token_hex(32)
        volume = self.volumes.get(name) or self._new_volume(name, body.get("Labels"))
        return _json(volume, 201)

    # --- containers ---------------------------------------------------------------------------------------

    def _find_container(self, ref: str) -> dict | None:
        for container in self.containers.values():
            if ref in (container["Id"], container["Id"][:12], container["Name"].lstrip("/")):
                return container
        return None

    def _get_container(self, ref: str) -> dict:
        container = self._find_container(ref)
        if container is None:
            raise EngineError(404, f"No such container: {ref}")
        return container

    def _create_container(self, call: Call) -> Response:
        body, name = call.body or {}, call.query.get("name", "")
        if name and (existing := self._find_container(name)) is not None:
            raise EngineError(
                409,
                f'Conflict. The container name "/{name}" is already in use by container "{existing["Id"]}". '
                "You have to remove (or rename) that container to be able to reuse that name.",
            )
        image = self._find_image(body.get("Image", ""))
        if image is None:
            raise EngineError(404, f"No such image: {body.get('Image')}")
        host_config = body.get("HostConfig") or {}
        mounts = []
        for bind in host_config.get("Binds") or []:
            source, destination, *mode = bind.split(":")
            if source.startswith("/"):
                mounts.append({"Type": "bind", "Source": source, "Destination": destination, "RW": mode != ["ro"]})
            else:
                volume = self.volumes.get(source) or self._new_volume(source)
                mounts.append(
                    {
                        "Type": "volume",
                        "Name": source,
                        "Source": volume["Mountpoint"],
                        "Destination": destination,
                        "RW": mode != ["ro"],
                    }
                )
        container_id = secrets.token_hex(32)
        self.containers[container_id] = {
            "Id": container_id,
            "Name": "/" + (name or container_id[:12]),
            "Image": image["Id"],
            "Config": {key: body.get(key) for key in ("Image", "Cmd", "Env", "Labels", "ExposedPorts")},
            "HostConfig": host_config,
            "Mounts": mounts,
            "State": {"Status": "created", "Running": False, "Restarting": False, "Paused": False, "ExitCode": 0},
            "NetworkSettings": {"Ports": {}},
        }
        return _json({"Id": container_id, "Warnings": []}, 201)

    def _inspect_container(self, call: Call, ref: str) -> Response:
        return _json(self._get_container(ref))

    def _start(self, call: Call, ref: str) -> Response:
        container = self._get_container(ref)
        if container["State"]["Running"]:
            return Response(status=304)
        container["State"].update(Status="running", Running=True)
        container["NetworkSettings"]["Ports"] = container["HostConfig"].get("PortBindings") or {}
        return Response(status=204)

    def _stop(self, call: Call, ref: str) -> Response:
        container = self._get_container(ref)
        if not container["State"]["Running"]:
            return Response(status=304)
        container["State"].update(Status="exited", Running=False, ExitCode=0)
        container["NetworkSettings"]["Ports"] = {}
        return Response(status=204)

    def _remove(self, call: Call, ref: str) -> Response:
        container = self._get_container(ref)
        if container["State"]["Running"] and call.query.get("force") not in ("1", "true", "True"):
            raise EngineError(
                409,
                f"You cannot remove a running container {container['Id']}. "
                "Stop the container before attempting removal or force remove",
            )
        del self.containers[container["Id"]]  # named volumes and host paths outlive the container, as on Docker
        return Response(status=204)


def _json(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document), status, mimetype="application/json")


class EngineServer:
    """Serves a :class:`FakeDockerEngine` on a unix socket in a short temp dir (socket paths max ~107 bytes)."""

    def __init__(self, engine: FakeDockerEngine) -> None:
        self.engine = engine
        self.directory = Path(tempfile.mkdtemp(prefix="rc-docker-"))
        self.socket = self.directory / "docker.sock"
        self._server = WsgiThread(engine, "fake-docker-engine", host=f"unix://{self.socket}")

    @property
    def url(self) -> str:
        """The engine's address as DOCKER_HOST / ``store.docker.host`` take it."""
        return f"unix://{self.socket}"

    def __enter__(self) -> EngineServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
        self.socket.unlink(missing_ok=True)
        self.directory.rmdir()
