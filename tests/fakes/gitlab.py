"""A fake GitLab: the REST endpoints python-gitlab calls for runner-cache, and a pipeline executor that really runs jobs.

Written from the public REST API docs (https://docs.gitlab.com/api/): same paths, status codes, JSON shapes and
pagination headers, so the real python-gitlab client talks to it unchanged. Routes match the raw, still-encoded
request path (``RAW_URI``): ``group%2Fproject`` and ``feature%2Fx`` must stay one segment.

The pipeline executor parses the committed CI file (the project's ``ci_config_path``, default ``.gitlab-ci.yml``)
and runs each job, stage by stage, like a Kubernetes runner would: every job gets its own temporary directory (its
"pod") and ``HOSTNAME``, its ``script`` lines run with the host's ``sh`` (the job's ``image`` is only recorded), and
the runner's cache handling runs against a real S3 server through presigned URLs — restore before the script,
zip-and-upload after it, per ``policy`` — at the object key gitlab-runner uses (built here independently of
``tasks/keys/layout.py``). Traces are the bytes a real runner writes (``tests/fakes/runner_trace.py``: ANSI
colours, section markers, the helpers' padded lines, timestamps per version and ``FF_TIMESTAMPS``).

What GitLab itself does, from its REST API docs and source: 400 "A file with this name already exists" for a
commit ``create`` of an existing path, ``ci_config_path`` and ``empty_repo`` in the project, the job's ``runner``,
``runner_manager`` and ``failure_reason``, 403 ``insufficient_scope`` for a token without ``api``, 429 with
``Retry-After`` (:meth:`GitLabFake.throttle`), pipelines that only an Owner may delete.

Failure modes, each a property of the fake's state rather than a switch in the code under test:

- no runner that may take the job (tags, paused, protected, not enabled for the project) → it stays ``pending``;
- a runner without S3 credentials → "No URL provided" (the cache Secret is not mounted);
- a runner speaking HTTPS to the plain-HTTP store → Go's "server gave HTTP response to HTTPS client";
- a runner with wrong credentials or a missing bucket → the real S3 server's error, in the runner's words;
- a runner whose store address is closed → "connection refused" after the runner's two retries;
- a runner whose image cannot be pulled → the job fails before any cache step (``runner_system_failure``);
- two matching runners with ``shared=False`` → jobs alternate between them and see different prefixes;
- ``protection_override`` → a job gets the other protected-branch suffix than the pipeline's ref;
- ``stall_jobs`` → a job runs its script and then never finishes until cancelled.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import urllib3
import yaml
from minio import Minio
from werkzeug.wrappers import Request, Response

from tests.fakes.runner_trace import TraceWriter, version_tuple
from tests.fakes.server import WsgiThread

API = "/api/v4"
_RESERVED_KEYS = {
    "stages", "variables", "default", "workflow", "include", "image", "services",
    "cache", "before_script", "after_script",
}  # fmt: skip
_SKIP_CI = re.compile(r"\[(skip ci|ci skip)\]", re.IGNORECASE)
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
# A job never runs longer than this, whatever it does (keeps a broken test from hanging the suite).
JOB_HARD_LIMIT = 120.0


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z" if moment else None


def _sha() -> str:
    return hashlib.sha1(secrets.token_bytes(16)).hexdigest()


def ref_slug(ref: str) -> str:
    """``CI_COMMIT_REF_SLUG``: lowercased, non-alphanumerics to ``-``, at most 63 characters, no edge dashes."""
    return re.sub(r"[^a-z0-9]", "-", ref.lower())[:63].strip("-")


class ApiError(Exception):
    """An API error answered as ``{"message": ...}`` with ``status``."""

    def __init__(self, status: int, message: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------------------------------- runners


@dataclass
class FakeRunner:
    """One registered runner and its ``[runners.cache]`` settings (``access_key=None``: the Secret is missing)."""

    name: str = "gitlab-runner-fake"
    token: str = field(default_factory=lambda: "glrt-t3_" + secrets.token_urlsafe(15)[:20])
    version: str = "18.5.0"
    revision: str = "a1b2c3d4"
    tags: list[str] = field(default_factory=list)
    run_untagged: bool = True
    online: bool = True
    paused: bool = False
    access_level: str = "not_protected"  # "ref_protected": only jobs of protected refs
    runner_type: str = "project_type"  # "instance_type": an instance runner, as on GitLab.com
    projects: list[int] | None = None  # project ids it is enabled for; None: every project
    # The runner manager (one gitlab-runner pod): registrations sharing a token are one runner with two managers.
    system_id: str = field(default_factory=lambda: "r_" + secrets.token_hex(6))
    manager: str = field(default_factory=lambda: "gitlab-runner-7c9f8d6b5-" + secrets.token_hex(3)[:5])
    timestamps: bool | None = None  # FF_TIMESTAMPS; None: the version's default (on from 19.0)
    feature_flags: dict[str, bool] = field(default_factory=dict)
    image_pull_fails: bool = False
    server_address: str = "127.0.0.1:9000"
    bucket: str = "runner"
    path: str = ""
    shared: bool = False
    insecure: bool = True
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"
    id: int = 0

    @classmethod
    def for_store(cls, store: Any, *, path: str = "", shared: bool = False, **overrides: Any) -> FakeRunner:
        """A runner configured the way runner-cache configures it for ``store`` (a ``StoreSettings``)."""
        access, secret = store.credentials()
        settings: dict[str, Any] = {
            "server_address": store.server_address,
            "bucket": store.bucket,
            "insecure": not store.secure,
            "access_key": access.get_secret_value(),
            "secret_key": secret.get_secret_value(),
            "region": store.region,
            "path": path,
            "shared": shared,
        }
        settings.update(overrides)
        return cls(**settings)

    @property
    def short_token(self) -> str:
        """gitlab-runner ≥ 18.2's ``helpers.ShortenToken``, written out here on its own (not through
        tasks/keys/layout.py), so that a layout bug there cannot move the fake's objects along with it."""
        if tuple(int(part) for part in self.version.split(".")[:2]) < (18, 2):
            raise NotImplementedError("the fake runner plays gitlab-runner 18.2 or newer")
        token = re.sub(r"^glrt-(t[123]_)?|^t[123]_|^glrtr-", "", self.token)
        token = re.sub(r"^GR[0-9A-Fa-f]{7}", "", re.sub(r"^glcbt-", "", token))
        return token[:9]

    def picks(self, job_tags: list[str], project_id: int, protected_ref: bool) -> bool:
        """GitLab's matching rule: online, not paused, enabled for the project, every job tag on the runner (an
        untagged job needs ``run_untagged``), and a protected runner only for a protected ref."""
        if not self.online or self.paused or (self.projects is not None and project_id not in self.projects):
            return False
        if self.access_level == "ref_protected" and not protected_ref:
            return False
        return set(job_tags) <= set(self.tags) if job_tags else self.run_untagged

    def summary(self) -> dict[str, Any]:
        """``API::Entities::Ci::Runner`` (``lib/api/entities/ci/runner.rb``)."""
        return {"id": self.id, "description": self.name, "ip_address": None, "active": not self.paused,
                "paused": self.paused, "is_shared": self.runner_type == "instance_type",
                "runner_type": self.runner_type, "name": "gitlab-runner", "online": self.online,
                "status": "online" if self.online else "offline"}  # fmt: skip

    def details(self) -> dict[str, Any]:
        """``GET /runners/:id`` adds the settings that decide which jobs it takes."""
        return {**self.summary(), "tag_list": list(self.tags), "run_untagged": self.run_untagged,
                "locked": False, "access_level": self.access_level}  # fmt: skip

    def manager_json(self) -> dict[str, Any]:
        """``API::Entities::Ci::RunnerManager``: ``system_id`` is the trace's "system ID"."""
        return {"id": self.id * 100 + 1, "system_id": self.system_id, "version": self.version,
                "revision": self.revision, "platform": "linux", "architecture": "amd64", "ip_address": "10.42.0.7",
                "status": "online"}  # fmt: skip


# --------------------------------------------------------------------------------------------------- state


@dataclass
class Commit:
    sha: str
    message: str
    files: dict[str, str]
    parent: str | None
    created_at: datetime = field(default_factory=_now)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.sha, "short_id": self.sha[:8], "title": self.message.splitlines()[0] if self.message else "",
            "message": self.message, "parent_ids": [self.parent] if self.parent else [],
            "author_name": "runner-cache", "author_email": "runner-cache@example.invalid",
            "created_at": _iso(self.created_at), "committed_date": _iso(self.created_at),
            "authored_date": _iso(self.created_at), "web_url": "",
        }  # fmt: skip


@dataclass
class Project:
    id: int
    path: str
    default_branch: str = "main"
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    protected: list[str] = field(default_factory=list)  # protected branch name patterns (fnmatch)
    cache_index: int | None = None  # "Clear runner caches" increments it; absent until the first clear
    separate_caches: bool = True  # "Use separate caches for protected branches"
    ci_enabled: bool = True  # CI/CD off in the project settings: creating a pipeline answers 403
    ci_config_path: str | None = None  # "" / None: .gitlab-ci.yml; "x.yml@group/other"; "https://…"

    @property
    def ci_file(self) -> str:
        return (self.ci_config_path or ".gitlab-ci.yml").lstrip("/")

    def is_protected(self, ref: str) -> bool:
        return any(fnmatch.fnmatchcase(ref, pattern) for pattern in self.protected)

    def to_json(self, base_url: str) -> dict[str, Any]:
        namespace, _, name = self.path.rpartition("/")
        return {
            "id": self.id, "name": name, "path": name, "path_with_namespace": self.path,
            "name_with_namespace": self.path.replace("/", " / "),
            "default_branch": self.default_branch if self.branches else None,
            "namespace": {"id": self.id * 10, "name": namespace, "path": namespace, "full_path": namespace, "kind": "group"},
            "web_url": f"{base_url}/{self.path}", "http_url_to_repo": f"{base_url}/{self.path}.git",
            "visibility": "private", "archived": False, "empty_repo": not self.branches,
            "ci_config_path": self.ci_config_path,
        }  # fmt: skip


@dataclass
class Job:
    id: int
    name: str
    stage: str
    spec: dict[str, Any]
    status: str = "created"
    runner: FakeRunner | None = None
    created_at: datetime = field(default_factory=_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    hostname: str | None = None
    trace: TraceWriter | None = None
    failure_reason: str | None = None


@dataclass
class Pipeline:
    id: int
    iid: int
    project: Project
    ref: str
    sha: str
    source: str
    jobs: list[Job] = field(default_factory=list)
    status: str = "created"
    created_at: datetime = field(default_factory=_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


# --------------------------------------------------------------------------------------------------- the fake


class GitLabFake:
    """GitLab's REST API for a few projects, on ``127.0.0.1``, with the given ``token`` as the only valid one.

    Use as a context manager, or ``start()`` / ``stop()``. ``calls`` records ``(method, raw path)`` of every request.
    """

    def __init__(self, token: str | None = None, *, work_dir: Path | None = None) -> None:
        self.token = token or "glpat-" + secrets.token_urlsafe(15)
        # The token's scopes and its user's role in every project (pipelines: Owner deletes; runners: Maintainer).
        self.token_scopes: set[str] = {"api"}
        self.role = "maintainer"
        # Seconds the pipeline-create answer is held back after the pipeline exists (a client read timeout).
        self.slow_pipeline_create = 0.0
        self._throttled, self._retry_after = 0, 1
        self.projects: dict[int, Project] = {}
        self.pipelines: dict[int, Pipeline] = {}
        self.runners: list[FakeRunner] = []
        self.calls: list[tuple[str, str]] = []
        # Failure modes that belong to GitLab rather than to a runner.
        self.stall_jobs: set[str] = set()
        # Jobs added to every API pipeline, as a pipeline execution policy does (name → job spec).
        self.injected_jobs: dict[str, dict[str, Any]] = {}
        self.protection_override: dict[str, str] = {}
        self.lock = threading.RLock()
        self._ids = {"project": 0, "pipeline": 1000, "job": 5000}
        self._work_dir = work_dir
        self._own_work_dir: str | None = None
        self._thread: threading.Thread | None = None
        self._assigned = 0

    # ---- lifecycle

    def start(self) -> GitLabFake:
        if self._work_dir is None:
            self._own_work_dir = tempfile.mkdtemp(prefix="gitlab-fake-")
            self._work_dir = Path(self._own_work_dir)
        self._server = WsgiThread(self._wsgi, "gitlab-fake").start()
        return self

    def stop(self) -> None:
        for pipeline in list(self.pipelines.values()):
            pipeline.cancel.set()
        for pipeline in list(self.pipelines.values()):
            if pipeline.thread is not None:
                pipeline.thread.join(timeout=10)
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._own_work_dir:
            shutil.rmtree(self._own_work_dir, ignore_errors=True)

    def __enter__(self) -> GitLabFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = "127.0.0.1", self._server.port
        return f"http://{host}:{port}"

    # ---- state helpers for tests

    def add_project(
        self, path: str, project_id: int | None = None, *, files: dict[str, str] | None = None, empty: bool = False,
        ci_config_path: str | None = None,
    ) -> int:  # fmt: skip
        """A project with one commit on ``main`` (a README, plus ``files``), or an ``empty`` one; returns its id."""
        with self.lock:
            if project_id is None:
                self._ids["project"] += 1
                project_id = self._ids["project"]
            if project_id in self.projects or any(p.path == path for p in self.projects.values()):
                raise ValueError(f"project {path!r} / {project_id} exists")
            project = Project(id=project_id, path=path, ci_config_path=ci_config_path)
            if not empty:
                commit = Commit(_sha(), "Initial commit", {"README.md": f"# {path}\n", **(files or {})}, None)
                project.commits[commit.sha] = commit
                project.branches[project.default_branch] = commit.sha
            self.projects[project_id] = project
            return project_id

    def project(self, project_id: int) -> Project:
        return self._project_by_id(project_id)

    def throttle(self, requests: int, retry_after: int = 1) -> None:
        """The next ``requests`` API calls answer 429 with ``Retry-After`` (Rack::Attack's plain-text body)."""
        with self.lock:
            self._throttled, self._retry_after = requests, retry_after

    def fail_after(self, trigger: str | None, status: int = 502, requests: int = 1_000_000) -> None:
        """Fault switch (issue 14): once a request whose path contains ``trigger`` was let through (at once when
        ``trigger`` is None), the next ``requests`` API calls answer ``status``, as a GitLab behind a failing proxy."""
        with self.lock:
            self._fault = {"trigger": trigger, "status": status, "left": requests, "armed": trigger is None}

    def _injected_fault(self, raw_path: str) -> Response | None:
        fault = getattr(self, "_fault", None)
        if not fault or fault["left"] <= 0:
            return None
        if not fault["armed"]:
            fault["armed"] = fault["trigger"] in raw_path
            return None
        fault["left"] -= 1
        return Response("<html><body>502 Bad Gateway</body></html>", status=fault["status"], mimetype="text/html")

    def add_branch(self, project_id: int, name: str, ref: str | None = None) -> dict[str, Any]:
        """Create branch ``name`` at ``ref`` (default branch when omitted); returns the branch JSON."""
        with self.lock:
            project = self._project_by_id(project_id)
            return self._create_branch(project, name, ref or project.default_branch)

    def delete_branch(self, project_id: int, name: str) -> None:
        with self.lock:
            project = self._project_by_id(project_id)
            if name not in project.branches:
                raise ApiError(404, "404 Branch Not Found")
            del project.branches[name]

    def branch_names(self, project_id: int) -> list[str]:
        with self.lock:
            return sorted(self._project_by_id(project_id).branches)

    def protect_branch(self, project_id: int, pattern: str) -> None:
        with self.lock:
            self._project_by_id(project_id).protected.append(pattern)

    def add_runner(self, runner: FakeRunner) -> FakeRunner:
        """Register ``runner``; one with the token of an earlier one is another manager of that registration."""
        with self.lock:
            same = next((known for known in self.runners if known.token == runner.token), None)
            runner.id = same.id if same else len({known.id for known in self.runners}) + 1
            self.runners.append(runner)
            return runner

    def pipeline(self, pipeline_id: int) -> Pipeline:
        return self.pipelines[pipeline_id]

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no pipeline thread runs (a test's teardown check)."""
        deadline = time.monotonic() + timeout
        for pipeline in list(self.pipelines.values()):
            if pipeline.thread is not None:
                pipeline.thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # ---- HTTP plumbing

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.path
        raw_path = raw.split("?", 1)[0]
        with self.lock:
            self.calls.append((request.method, raw_path))
        try:
            response = self._dispatch(request, raw_path)
        except ApiError as error:
            response = self._json({"message": error.message}, error.status)
        if delay := environ.get("fake.delay"):
            time.sleep(delay)  # the work is done; only the answer is late
        return response(environ, start_response)

    @staticmethod
    def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(document), status=status, mimetype="application/json", headers=headers)

    def _authorized(self, request: Request) -> bool:
        token = request.headers.get("PRIVATE-TOKEN") or ""
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer "):
            token = bearer[len("Bearer ") :]
        return secrets.compare_digest(token, self.token)

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        data: dict[str, Any] = dict(request.args)
        if request.mimetype == "application/json" and request.data:
            data.update(json.loads(request.data))
        else:
            data.update(request.form.to_dict())
        return data

    def _paginate(self, request: Request, raw_path: str, items: list[Any]) -> Response:
        """One page of ``items`` with GitLab's offset pagination headers and ``Link`` (which python-gitlab follows)."""
        try:
            page = max(1, int(request.args.get("page", 1)))
            per_page = min(100, max(1, int(request.args.get("per_page", 20))))
        except ValueError:
            raise ApiError(400, "400 Bad request - page/per_page is invalid") from None
        total = len(items)
        pages = max(1, -(-total // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        base = f"{request.host_url.rstrip('/')}{raw_path}"
        query = [(k, v) for k, v in request.args.items(multi=True) if k not in {"page", "per_page"}]

        def link(number: int, rel: str) -> str:
            return f'<{base}?{urlencode(query + [("page", number), ("per_page", per_page)])}>; rel="{rel}"'

        links = []
        if page > 1:
            links.append(link(page - 1, "prev"))
        if page < pages:
            links.append(link(page + 1, "next"))
        links += [link(1, "first"), link(pages, "last")]
        headers = {
            "X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(total), "X-Total-Pages": str(pages),
            "X-Next-Page": str(page + 1) if page < pages else "", "X-Prev-Page": str(page - 1) if page > 1 else "",
            "Link": ", ".join(links),
        }  # fmt: skip
        return self._json(chunk, headers=headers)

    # ---- routing

    _ROUTES: list[tuple[str, re.Pattern[str], str]] = [
        (method, re.compile("^" + pattern + "$"), handler)
        for method, pattern, handler in [
            ("GET", r"/user", "_get_user"),
            ("GET", r"/projects/(?P<project>[^/]+)", "_get_project"),
            ("GET", r"/projects/(?P<project>[^/]+)/repository/branches", "_list_branches"),
            ("POST", r"/projects/(?P<project>[^/]+)/repository/branches", "_post_branch"),
            ("GET", r"/projects/(?P<project>[^/]+)/repository/branches/(?P<branch>[^/]+)", "_get_branch"),
            ("DELETE", r"/projects/(?P<project>[^/]+)/repository/branches/(?P<branch>[^/]+)", "_delete_branch"),
            ("GET", r"/projects/(?P<project>[^/]+)/repository/files/(?P<file>[^/]+)", "_get_file"),
            ("POST", r"/projects/(?P<project>[^/]+)/repository/files/(?P<file>[^/]+)", "_write_file"),
            ("PUT", r"/projects/(?P<project>[^/]+)/repository/files/(?P<file>[^/]+)", "_write_file"),
            ("POST", r"/projects/(?P<project>[^/]+)/repository/commits", "_post_commit"),
            ("GET", r"/projects/(?P<project>[^/]+)/repository/commits/(?P<sha>[^/]+)", "_get_commit"),
            ("POST", r"/projects/(?P<project>[^/]+)/pipeline", "_post_pipeline"),
            ("GET", r"/projects/(?P<project>[^/]+)/pipelines", "_list_pipelines"),
            ("GET", r"/projects/(?P<project>[^/]+)/pipelines/(?P<pipeline>\d+)", "_get_pipeline"),
            ("DELETE", r"/projects/(?P<project>[^/]+)/pipelines/(?P<pipeline>\d+)", "_delete_pipeline"),
            ("GET", r"/projects/(?P<project>[^/]+)/runners", "_list_project_runners"),
            ("GET", r"/runners/(?P<runner>\d+)", "_get_runner"),
            ("GET", r"/projects/(?P<project>[^/]+)/pipelines/(?P<pipeline>\d+)/jobs", "_list_jobs"),
            ("POST", r"/projects/(?P<project>[^/]+)/pipelines/(?P<pipeline>\d+)/cancel", "_cancel_pipeline"),
            ("GET", r"/projects/(?P<project>[^/]+)/jobs/(?P<job>\d+)", "_get_job"),
            ("GET", r"/projects/(?P<project>[^/]+)/jobs/(?P<job>\d+)/trace", "_get_trace"),
        ]
    ]

    def _dispatch(self, request: Request, raw_path: str) -> Response:
        if not raw_path.startswith(API):
            raise ApiError(404, "404 Not Found")
        path = raw_path[len(API) :]
        if not self._authorized(request):
            raise ApiError(401, "401 Unauthorized")
        with self.lock:
            if self._throttled > 0:
                self._throttled -= 1
                return Response("Retry later\n", status=429, mimetype="text/plain",
                                headers={"Retry-After": str(self._retry_after)})  # fmt: skip
            if (injected := self._injected_fault(raw_path)) is not None:
                return injected
        if request.method != "GET" and "api" not in self.token_scopes:
            return self._json({
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided by the access token.",
                "scope": "api",
            }, 403)  # fmt: skip
        allowed = False
        for method, pattern, handler in self._ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            allowed = True
            if method == request.method:
                with self.lock:
                    return getattr(self, handler)(request, raw_path, **match.groupdict())
        raise ApiError(405 if allowed else 404, "405 Method Not Allowed" if allowed else "404 Not Found")

    def _project_by_id(self, project_id: int) -> Project:
        if project_id not in self.projects:
            raise ApiError(404, "404 Project Not Found")
        return self.projects[project_id]

    def _project(self, segment: str) -> Project:
        """A project by numeric id or by its url-encoded full path (``group%2Fname``)."""
        ident = unquote(segment)
        if ident.isdigit():
            return self._project_by_id(int(ident))
        for project in self.projects.values():
            if project.path == ident:
                return project
        raise ApiError(404, "404 Project Not Found")

    # ---- users and projects

    def _get_user(self, request: Request, raw_path: str) -> Response:
        return self._json({"id": 1, "username": "runner-cache-bot", "name": "runner-cache", "state": "active"})

    def _get_project(self, request: Request, raw_path: str, project: str) -> Response:
        return self._json(self._project(project).to_json(request.host_url.rstrip("/")))

    # ---- branches

    def _branch_json(self, project: Project, name: str) -> dict[str, Any]:
        return {
            "name": name, "commit": project.commits[project.branches[name]].to_json(), "merged": False,
            "protected": project.is_protected(name), "default": name == project.default_branch,
            "developers_can_push": False, "developers_can_merge": False, "can_push": True, "web_url": "",
        }  # fmt: skip

    def _resolve_ref(self, project: Project, ref: str) -> str | None:
        if ref in project.branches:
            return project.branches[ref]
        matches = [sha for sha in project.commits if len(ref) >= 7 and sha.startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    def _create_branch(self, project: Project, name: str, ref: str) -> dict[str, Any]:
        if not name or name.startswith(("-", "/")) or name.endswith(("/", ".lock")) or ".." in name or " " in name:
            raise ApiError(400, "Branch name is invalid")
        if name in project.branches:
            raise ApiError(400, "Branch already exists")
        sha = self._resolve_ref(project, ref)
        if sha is None:
            raise ApiError(400, "Invalid reference name: " + ref)
        project.branches[name] = sha
        return self._branch_json(project, name)

    def _list_branches(self, request: Request, raw_path: str, project: str) -> Response:
        found = self._project(project)
        search = request.args.get("search")
        names = sorted(name for name in found.branches if not search or search in name)
        return self._paginate(request, raw_path, [self._branch_json(found, name) for name in names])

    def _post_branch(self, request: Request, raw_path: str, project: str) -> Response:
        body = self._body(request)
        if not body.get("branch") or not body.get("ref"):
            raise ApiError(400, "branch is missing, ref is missing" if not body.get("branch") else "ref is missing")
        return self._json(self._create_branch(self._project(project), body["branch"], body["ref"]), 201)

    def _get_branch(self, request: Request, raw_path: str, project: str, branch: str) -> Response:
        found, name = self._project(project), unquote(branch)
        if name not in found.branches:
            raise ApiError(404, "404 Branch Not Found")
        return self._json(self._branch_json(found, name))

    def _delete_branch(self, request: Request, raw_path: str, project: str, branch: str) -> Response:
        found, name = self._project(project), unquote(branch)
        if name not in found.branches:
            raise ApiError(404, "404 Branch Not Found")
        if name == found.default_branch:
            raise ApiError(405, "405 Method Not Allowed")
        if found.is_protected(name):
            raise ApiError(403, "403 Forbidden")
        del found.branches[name]
        return Response(status=204)

    # ---- files and commits

    def _commit(
        self,
        project: Project,
        branch: str,
        start: str | None,
        message: str,
        changes: dict[str, str | None],
        actions: dict[str, str] | None = None,
    ) -> Commit:
        """Commit ``changes`` (path → content, ``None`` deletes) to ``branch``; a push pipeline follows unless skipped.

        ``actions`` (path → create/update/delete) are checked as GitLab's commits API does: ``create`` of an
        existing path and ``update``/``delete`` of a missing one are refused with 400. In an empty repository the
        commit creates ``branch`` from nothing — and it becomes the default branch.
        """
        parent_sha: str | None
        if branch in project.branches:
            parent_sha = project.branches[branch]
        elif not project.branches:
            parent_sha = None
        else:
            if start is None:
                raise ApiError(400, "You can only create or edit files when you are on a branch")
            parent_sha = self._resolve_ref(project, start)
            if parent_sha is None:
                raise ApiError(400, f"Invalid reference name: {start}")
        files = dict(project.commits[parent_sha].files) if parent_sha else {}
        for path, action in (actions or {}).items():
            if action == "create" and path in files:
                raise ApiError(400, "A file with this name already exists")
            if action in {"update", "delete"} and path not in files:
                raise ApiError(400, "A file with this name doesn't exist")
        for path, content in changes.items():
            if content is None:
                files.pop(path, None)
            else:
                files[path] = content
        commit = Commit(_sha(), message, files, parent_sha)
        if not project.branches:
            project.default_branch = branch
        project.commits[commit.sha] = commit
        project.branches[branch] = commit.sha
        if project.ci_file in files:
            self._start_pipeline(project, branch, commit, source="push", skipped=bool(_SKIP_CI.search(message)))
        return commit

    def _get_file(self, request: Request, raw_path: str, project: str, file: str) -> Response:
        found, path = self._project(project), unquote(file)
        ref = request.args.get("ref")
        if not ref:
            raise ApiError(400, "ref is missing")
        sha = self._resolve_ref(found, ref)
        if sha is None or path not in found.commits[sha].files:
            raise ApiError(404, "404 File Not Found")
        content = found.commits[sha].files[path].encode()
        return self._json({
            "file_name": path.rsplit("/", 1)[-1], "file_path": path, "size": len(content), "encoding": "base64",
            "content": base64.b64encode(content).decode(), "content_sha256": hashlib.sha256(content).hexdigest(),
            "ref": ref, "blob_id": hashlib.sha1(content).hexdigest(), "commit_id": sha, "last_commit_id": sha,
        })  # fmt: skip

    def _write_file(self, request: Request, raw_path: str, project: str, file: str) -> Response:
        found, path, body = self._project(project), unquote(file), self._body(request)
        for required in ("branch", "content", "commit_message"):
            if required not in body:
                raise ApiError(400, f"{required} is missing")
        exists = body["branch"] in found.branches and path in found.commits[found.branches[body["branch"]]].files
        if request.method == "POST" and exists:
            raise ApiError(400, "A file with this name already exists")
        if request.method == "PUT" and not exists:
            raise ApiError(400, "A file with this name doesn't exist")
        content = body["content"]
        if body.get("encoding") == "base64":
            content = base64.b64decode(content).decode()
        self._commit(found, body["branch"], body.get("start_branch"), body["commit_message"], {path: content})
        return self._json({"file_path": path, "branch": body["branch"]}, 201 if request.method == "POST" else 200)

    def _post_commit(self, request: Request, raw_path: str, project: str) -> Response:
        found, body = self._project(project), self._body(request)
        for required in ("branch", "commit_message", "actions"):
            if required not in body:
                raise ApiError(400, f"{required} is missing")
        changes: dict[str, str | None] = {}
        kinds: dict[str, str] = {}
        for action in body["actions"]:
            kind, path = action.get("action"), action.get("file_path")
            if kind not in {"create", "update", "delete"} or not path:
                raise ApiError(400, "actions[0][action] does not have a valid value")
            content = action.get("content", "")
            if action.get("encoding") == "base64":
                content = base64.b64decode(content).decode()
            changes[path] = None if kind == "delete" else content
            kinds[path] = kind
        commit = self._commit(found, body["branch"], body.get("start_branch"), body["commit_message"], changes, kinds)
        return self._json(commit.to_json(), 201)

    def _get_commit(self, request: Request, raw_path: str, project: str, sha: str) -> Response:
        found = self._project(project)
        resolved = self._resolve_ref(found, unquote(sha))
        if resolved is None:
            raise ApiError(404, "404 Commit Not Found")
        return self._json(found.commits[resolved].to_json())

    # ---- pipelines and jobs (JSON)

    def _pipeline_json(self, pipeline: Pipeline, base_url: str) -> dict[str, Any]:
        duration = (
            (pipeline.finished_at - pipeline.started_at).total_seconds()
            if pipeline.finished_at and pipeline.started_at
            else None
        )
        return {
            "id": pipeline.id, "iid": pipeline.iid, "project_id": pipeline.project.id, "sha": pipeline.sha,
            "ref": pipeline.ref, "status": pipeline.status, "source": pipeline.source, "tag": False,
            "created_at": _iso(pipeline.created_at), "updated_at": _iso(_now()),
            "started_at": _iso(pipeline.started_at), "finished_at": _iso(pipeline.finished_at), "duration": duration,
            "web_url": f"{base_url}/{pipeline.project.path}/-/pipelines/{pipeline.id}",
        }  # fmt: skip

    def _job_json(self, pipeline: Pipeline, job: Job, base_url: str) -> dict[str, Any]:
        duration = None
        if job.started_at:
            duration = ((job.finished_at or _now()) - job.started_at).total_seconds()
        return {
            "id": job.id, "name": job.name, "stage": job.stage, "status": job.status, "ref": pipeline.ref,
            "tag": False, "allow_failure": False, "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at), "duration": duration,
            "queued_duration": ((job.started_at or _now()) - job.created_at).total_seconds(),
            "tag_list": sorted(str(tag) for tag in job.spec.get("tags") or []),
            "runner": job.runner.summary() if job.runner else None,
            "runner_manager": job.runner.manager_json() if job.runner else None,
            **({"failure_reason": job.failure_reason or "script_failure"} if job.status == "failed" else {}),
            "pipeline": {"id": pipeline.id, "project_id": pipeline.project.id, "ref": pipeline.ref,
                         "sha": pipeline.sha, "status": pipeline.status},
            "web_url": f"{base_url}/{pipeline.project.path}/-/jobs/{job.id}",
        }  # fmt: skip

    def _find_pipeline(self, project: Project, pipeline_id: str) -> Pipeline:
        pipeline = self.pipelines.get(int(pipeline_id))
        if pipeline is None or pipeline.project is not project:
            raise ApiError(404, "404 Not found")
        return pipeline

    def _find_job(self, project: Project, job_id: str) -> tuple[Pipeline, Job]:
        for pipeline in self.pipelines.values():
            if pipeline.project is project:
                for job in pipeline.jobs:
                    if job.id == int(job_id):
                        return pipeline, job
        raise ApiError(404, "404 Not found")

    def _post_pipeline(self, request: Request, raw_path: str, project: str) -> Response:
        found, body = self._project(project), self._body(request)
        ref = body.get("ref")
        if not ref:
            raise ApiError(400, "ref is missing")
        if not found.ci_enabled:
            raise ApiError(403, "403 Forbidden")
        if ref not in found.branches:
            raise ApiError(400, {"base": ["Reference not found"]})
        commit = found.commits[found.branches[ref]]
        pipeline = self._start_pipeline(found, ref, commit, source="api", skipped=False)
        request.environ["fake.delay"] = self.slow_pipeline_create
        return self._json(self._pipeline_json(pipeline, request.host_url.rstrip("/")), 201)

    def _delete_pipeline(self, request: Request, raw_path: str, project: str, pipeline: str) -> Response:
        """Only an Owner may delete a pipeline (``doc/api/pipelines.md``); running jobs are stopped first."""
        found = self._find_pipeline(self._project(project), pipeline)
        if self.role != "owner":
            raise ApiError(403, "403 Forbidden")
        found.cancel.set()
        del self.pipelines[found.id]
        return Response(status=204)

    def _list_project_runners(self, request: Request, raw_path: str, project: str) -> Response:
        """The runners enabled for a project (``GET /projects/:id/runners``): Maintainer role and up."""
        found = self._project(project)
        if self.role not in {"maintainer", "owner"}:
            raise ApiError(403, "403 Forbidden")
        seen: dict[int, FakeRunner] = {}
        for runner in self.runners:
            if runner.projects is None or found.id in runner.projects:
                seen.setdefault(runner.id, runner)
        return self._paginate(request, raw_path, [runner.summary() for runner in seen.values()])

    def _get_runner(self, request: Request, raw_path: str, runner: str) -> Response:
        found = next((known for known in self.runners if known.id == int(runner)), None)
        if found is None:
            raise ApiError(404, "404 Runner Not Found")
        if self.role not in {"maintainer", "owner"}:
            raise ApiError(403, "403 Forbidden")
        return self._json(found.details())

    def _list_pipelines(self, request: Request, raw_path: str, project: str) -> Response:
        found = self._project(project)
        selected = [
            p for p in sorted(self.pipelines.values(), key=lambda p: -p.id)
            if p.project is found and all(request.args.get(k) in (None, getattr(p, k)) for k in ("ref", "sha", "status", "source"))
        ]  # fmt: skip
        base = request.host_url.rstrip("/")
        return self._paginate(request, raw_path, [self._pipeline_json(p, base) for p in selected])

    def _get_pipeline(self, request: Request, raw_path: str, project: str, pipeline: str) -> Response:
        found = self._find_pipeline(self._project(project), pipeline)
        return self._json(self._pipeline_json(found, request.host_url.rstrip("/")))

    def _list_jobs(self, request: Request, raw_path: str, project: str, pipeline: str) -> Response:
        found = self._find_pipeline(self._project(project), pipeline)
        scope = request.args.getlist("scope[]") or request.args.getlist("scope")
        jobs = [job for job in sorted(found.jobs, key=lambda j: -j.id) if not scope or job.status in scope]
        base = request.host_url.rstrip("/")
        return self._paginate(request, raw_path, [self._job_json(found, job, base) for job in jobs])

    def _cancel_pipeline(self, request: Request, raw_path: str, project: str, pipeline: str) -> Response:
        found = self._find_pipeline(self._project(project), pipeline)
        found.cancel.set()
        for job in found.jobs:
            if job.status in {"created", "pending", "running"}:
                job.status = "canceled"
                job.finished_at = _now() if job.started_at else None
                if job.trace is not None:
                    job.trace.finish("canceled")
        if found.status in {"created", "pending", "running"}:
            found.status = "canceled"
            found.finished_at = _now()
        return self._json(self._pipeline_json(found, request.host_url.rstrip("/")))

    def _get_job(self, request: Request, raw_path: str, project: str, job: str) -> Response:
        pipeline, found = self._find_job(self._project(project), job)
        return self._json(self._job_json(pipeline, found, request.host_url.rstrip("/")))

    def _get_trace(self, request: Request, raw_path: str, project: str, job: str) -> Response:
        _, found = self._find_job(self._project(project), job)
        raw = found.trace.raw() if found.trace is not None else b""
        return Response(raw, status=200, mimetype="text/plain")

    # ---- pipeline execution

    def _ci_config(self, project: Project, commit: Commit) -> str:
        """The configuration a pipeline runs: the commit's own file, or another project's (``file@group/project``)."""
        path = project.ci_file
        if "://" in path:
            raise ApiError(400, {"base": [f"Remote file `{path}` could not be fetched because of a timeout error!"]})
        if "@" in path:
            file, _, other = path.partition("@")
            elsewhere = next((p for p in self.projects.values() if p.path == other.split(":")[0]), None)
            if elsewhere is None or not elsewhere.branches:
                raise ApiError(400, {"base": [f"Project `{other}` not found or access denied!"]})
            config = elsewhere.commits[elsewhere.branches[elsewhere.default_branch]].files.get(file)
        else:
            config = commit.files.get(path)
        if config is None:
            raise ApiError(400, {"base": ["Missing CI config file"]})
        return config

    def _start_pipeline(self, project: Project, ref: str, commit: Commit, *, source: str, skipped: bool) -> Pipeline:
        config = self._ci_config(project, commit)
        jobs = [] if skipped else self._parse_jobs(config)
        if source == "api":  # policy jobs run last (.post), after the project's own
            jobs += [(name, ".post", dict(spec)) for name, spec in self.injected_jobs.items()]
        self._ids["pipeline"] += 1
        pipeline = Pipeline(
            id=self._ids["pipeline"],
            iid=sum(1 for p in self.pipelines.values() if p.project is project) + 1,
            project=project, ref=ref, sha=commit.sha, source=source,
        )  # fmt: skip
        for name, stage, spec in jobs:
            self._ids["job"] += 1
            pipeline.jobs.append(Job(id=self._ids["job"], name=name, stage=stage, spec=spec))
        self.pipelines[pipeline.id] = pipeline
        if skipped:
            pipeline.status = "skipped"
            return pipeline
        pipeline.thread = threading.Thread(
            target=self._run_pipeline, args=(pipeline,), name=f"pipeline-{pipeline.id}", daemon=True
        )
        pipeline.thread.start()
        return pipeline

    @staticmethod
    def _parse_jobs(config: str) -> list[tuple[str, str, dict[str, Any]]]:
        """Visible jobs in stage order, with GitLab's validation errors for what runner-cache could get wrong."""
        try:
            document = yaml.safe_load(config)
        except yaml.YAMLError:
            raise ApiError(400, {"base": ["(<unknown>): did not find expected key"]}) from None
        if not isinstance(document, dict):
            raise ApiError(400, {"base": ["Invalid configuration format"]})
        stages = document.get("stages") or ["build", "test", "deploy"]
        jobs = []
        for name, spec in document.items():
            if name in _RESERVED_KEYS or name.startswith("."):
                continue
            if not isinstance(spec, dict) or "script" not in spec:
                raise ApiError(400, {"base": [f"jobs:{name} config should implement a script: or a trigger: keyword"]})
            stage = spec.get("stage", "test")
            if stage not in stages:
                raise ApiError(
                    400,
                    {
                        "base": [
                            f"{name} job: chosen stage {stage} does not exist; available stages are {', '.join(stages)}"
                        ]
                    },
                )
            # Global variables apply to every job; the job's own win (GitLab's precedence).
            variables = {**(document.get("variables") or {}), **(spec.get("variables") or {})}
            jobs.append((name, stage, {**spec, "variables": variables}))
        if not jobs:
            raise ApiError(400, {"base": ["jobs config should contain at least one visible job"]})
        return sorted(jobs, key=lambda item: stages.index(item[1]))

    def _set_pipeline_status(self, pipeline: Pipeline) -> None:
        with self.lock:
            if pipeline.status == "canceled":
                return
            states = [job.status for job in pipeline.jobs]
            if "running" in states:
                pipeline.status = "running"
            elif "pending" in states:
                pipeline.status = "pending" if pipeline.started_at is None else "running"
            elif "failed" in states:
                pipeline.status = "failed"
            elif all(state in {"success", "skipped"} for state in states):
                pipeline.status = "success"
            if pipeline.status in {"success", "failed"} and pipeline.finished_at is None:
                pipeline.finished_at = _now()

    def _run_pipeline(self, pipeline: Pipeline) -> None:
        with self.lock:
            for job in pipeline.jobs:
                job.status = "pending"
            pipeline.status = "pending"
        failed = False
        for job in pipeline.jobs:
            if pipeline.cancel.is_set():
                return
            if failed:
                with self.lock:
                    job.status = "skipped"
                continue
            runner = self._wait_for_runner(pipeline, job)
            if runner is None:
                return
            status = JobExecution(self, pipeline, job, runner).run()
            with self.lock:
                if job.status != "canceled":
                    job.status = status
                    job.finished_at = _now()
            failed = job.status != "success"
            self._set_pipeline_status(pipeline)
        self._set_pipeline_status(pipeline)

    def _wait_for_runner(self, pipeline: Pipeline, job: Job) -> FakeRunner | None:
        """The next runner that may take the job (round robin); None when cancelled while pending."""
        tags = [str(tag) for tag in job.spec.get("tags") or []]
        protected = pipeline.project.is_protected(pipeline.ref)
        while not pipeline.cancel.is_set():
            with self.lock:
                candidates = [runner for runner in self.runners if runner.picks(tags, pipeline.project.id, protected)]
                if candidates:
                    runner = candidates[self._assigned % len(candidates)]
                    self._assigned += 1
                    job.runner, job.status, job.started_at = runner, "running", _now()
                    if pipeline.started_at is None:
                        pipeline.started_at = _now()
                    pipeline.status = "running"
                    return runner
            pipeline.cancel.wait(0.05)
        return None

    def pod_dir(self, name: str) -> Path:
        assert self._work_dir is not None
        path = self._work_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


# --------------------------------------------------------------------------------------------------- one job


class JobExecution:
    """One job on one runner: prepare a pod, restore the cache, run the script, save the cache — and trace it."""

    def __init__(self, fake: GitLabFake, pipeline: Pipeline, job: Job, runner: FakeRunner) -> None:
        self.fake, self.pipeline, self.job, self.runner = fake, pipeline, job, runner
        project = pipeline.project
        # Kubernetes executor: a new pod per job (executors/kubernetes names it after the token and project).
        pod_suffix = secrets.token_hex(3)[:5]
        self.pod = (
            f"runner-{runner.short_token.lower().replace('_', '-')}-project-{project.id}-concurrent-0-{pod_suffix}"
        )
        self.pod_root = fake.pod_dir(f"{self.pod}-{job.id}")
        self.build_dir = self.pod_root / "builds" / project.path
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self.variables = self._variables()

    def _variables(self) -> dict[str, str]:
        pipeline, job, project = self.pipeline, self.job, self.pipeline.project
        predefined = {
            "CI": "true", "GITLAB_CI": "true", "CI_JOB_ID": str(job.id), "CI_JOB_NAME": job.name,
            "CI_JOB_STAGE": job.stage, "CI_PIPELINE_ID": str(pipeline.id), "CI_PIPELINE_IID": str(pipeline.iid),
            "CI_PIPELINE_SOURCE": pipeline.source, "CI_COMMIT_SHA": pipeline.sha,
            "CI_COMMIT_SHORT_SHA": pipeline.sha[:8], "CI_COMMIT_REF_NAME": pipeline.ref,
            "CI_COMMIT_REF_SLUG": ref_slug(pipeline.ref), "CI_COMMIT_BRANCH": pipeline.ref,
            "CI_PROJECT_ID": str(project.id), "CI_PROJECT_PATH": project.path, "CI_PROJECT_DIR": str(self.build_dir),
            "CI_RUNNER_ID": str(self.runner.id), "CI_RUNNER_DESCRIPTION": self.runner.name,
            "CI_RUNNER_SHORT_TOKEN": self.runner.short_token, "CI_RUNNER_TAGS": json.dumps(self.runner.tags),
        }  # fmt: skip
        own = {str(k): str(v) for k, v in (self.job.spec.get("variables") or {}).items()}
        return {**predefined, **{k: self._expand(v, predefined) for k, v in own.items()}}

    @staticmethod
    def _expand(text: str, variables: dict[str, str]) -> str:
        return _VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), ""), text)

    # ---- the job

    def run(self) -> str:
        """The job as a kubernetes-executor runner runs it; returns its final status (the trace says why)."""
        runner, job = self.runner, self.job
        job.hostname = self.pod
        trace = job.trace = TraceWriter(runner.version, timestamps=runner.timestamps)
        trace.header(runner.name, runner.short_token, runner.system_id, runner.revision, runner.feature_flags)
        image = job.spec.get("image", "busybox:1.37.0")
        trace.start("prepare_executor")
        trace.println("Using Kubernetes namespace: gitlab-runner")
        trace.println(f"Using Kubernetes executor with image {image} ...")
        trace.println("Using attach strategy to execute scripts...")
        trace.end("prepare_executor")
        trace.start("prepare_script")
        trace.println(f"Waiting for pod gitlab-runner/{self.pod} to be running, status is Pending")
        if runner.image_pull_fails:
            # executors/kubernetes: ErrImagePull → BuildError{FailureReason: ImagePullFailure}, which GitLab
            # versions without that reason receive as runner_system_failure (common/network.go@v19.3.0:128).
            job.failure_reason = "runner_system_failure"
            trace.finish(
                f'prepare environment: waiting for pod running: pulling image "{image}": image pull failed: '
                f'Back-off pulling image "{image}". Check https://docs.gitlab.com/runner/shells/index.html#shell-profile-loading for more information'
            )
            return "failed"
        trace.echo(f"Running on {self.pod} via {runner.manager}...")
        trace.end("prepare_script")
        trace.start("get_sources")
        if self.variables.get("GIT_STRATEGY") == "none":
            trace.notice("Skipping Git repository setup")
        else:
            trace.notice("Fetching changes with git depth set to 20...")
            trace.echo(f"Initialized empty Git repository in {self.build_dir}/.git/")
            trace.notice(f"Checking out {self.pipeline.sha[:8]} as detached HEAD (ref is {self.pipeline.ref})...")
        trace.end("get_sources")
        caches = self._caches()
        if any(cache["policy"] in {"pull", "pull-push"} for cache in caches):
            trace.start("restore_cache")
            for cache in caches:
                if cache["policy"] in {"pull", "pull-push"}:
                    self._restore(cache)
            trace.end("restore_cache")
        trace.start("step_script")
        exit_code = self._script()
        if exit_code is None:  # cancelled
            trace.finish("canceled")
            return "canceled"
        trace.end("step_script")
        if job.name in self.fake.stall_jobs:
            self.pipeline.cancel.wait(JOB_HARD_LIMIT)
            trace.finish("canceled")
            return "canceled"
        if exit_code == 0 and any(cache["policy"] in {"push", "pull-push"} for cache in caches):
            trace.start("archive_cache")
            for cache in caches:
                if cache["policy"] in {"push", "pull-push"}:
                    self._save(cache)
            trace.end("archive_cache")
        trace.start("cleanup_file_variables")
        trace.end("cleanup_file_variables")
        if exit_code == 0:
            trace.finish()
            return "success"
        job.failure_reason = "script_failure"
        trace.finish(f"command terminated with exit code {exit_code}")
        return "failed"

    def _caches(self) -> list[dict[str, Any]]:
        """The job's ``cache:`` entries with GitLab's key: ``<key>[-<index>][-protected|-non_protected]``."""
        spec = self.job.spec.get("cache") or []
        entries = spec if isinstance(spec, list) else [spec]
        project = self.pipeline.project
        protection = self.fake.protection_override.get(self.job.name)
        if protection is None:
            protection = "protected" if project.is_protected(self.pipeline.ref) else "non_protected"
        caches = []
        for entry in entries:
            key = self._expand(str(entry.get("key", "default")), self.variables)
            if project.cache_index is not None:
                key = f"{key}-{project.cache_index}"
            if project.separate_caches:
                key = f"{key}-{protection}"
            caches.append(
                {"key": key, "paths": list(entry.get("paths") or []), "policy": entry.get("policy", "pull-push")}
            )
        return caches

    def _object_name(self, key: str) -> str:
        """``[<Path>/][runner/<short-token>/]project/<id>/<key>`` as gitlab-runner's cache.go builds it (written out
        here, not through tasks/keys/layout.py); with FF_HASH_CACHE_KEYS the key is its sha256, sharded by its
        first two hex digits from 19.0 (``shells/abstract.go@v18.4.0``, ``cache/cache.go@v19.3.0 GetAdapter``)."""
        runner = self.runner
        prefix = f"{runner.path}/" if runner.path else ""
        namespace = "" if runner.shared else f"runner/{runner.short_token}/"
        if runner.feature_flags.get("FF_HASH_CACHE_KEYS"):
            key = hashlib.sha256(key.encode()).hexdigest()
            if version_tuple(runner.version) >= (19, 0):
                key = f"{key[:2]}/{key}"
        return f"{prefix}{namespace}project/{self.pipeline.project.id}/{key}"

    def _local_cache(self, key: str) -> Path:
        """The pod-local cache file the runner falls back to without a shared cache server."""
        return self.pod_root / "cache" / self.pipeline.project.path / key / "cache.zip"

    def _presigned(self, method: str, key: str) -> str:
        runner = self.runner
        client = Minio(
            runner.server_address, access_key=runner.access_key, secret_key=runner.secret_key,
            secure=not runner.insecure, region=runner.region,
        )  # fmt: skip
        sign = client.presigned_put_object if method == "PUT" else client.presigned_get_object
        return sign(runner.bucket, self._object_name(key), expires=timedelta(hours=1))

    @staticmethod
    def _http() -> urllib3.PoolManager:
        return urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3.0, read=10.0), retries=False, cert_reqs="CERT_NONE"
        )

    @staticmethod
    def _masked(url: str) -> str:
        """The URL as the trace shows it: urlsanitizer.go masks X-Amz-Credential/-Signature/-Security-Token."""
        return re.sub(r"(?i)((?:^|[?&])x-amz-(?:credential|signature|security-token)=)[^&]*", r"\1[MASKED]", url)

    def _go_error(self, verb: str, url: str, error: Exception) -> str:
        """How Go's net/http reports a transport error, with the request URL as the trace shows it."""
        text = str(error)
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text or "record layer" in text:
            reason = "http: server gave HTTP response to HTTPS client"
        elif "refused" in text.lower():
            reason = f"dial tcp {urlsplit(url).netloc}: connect: connection refused"
        else:
            reason = "read: connection reset by peer"
        return f'{verb} "{self._masked(url)}": {reason}'

    def _transfer(
        self, method: str, url: str, body: bytes | None = None
    ) -> tuple[urllib3.BaseHTTPResponse | None, str | None]:
        """One request with ``doRetry``'s policy (retry_helper.go): 5xx and transport errors are tried 3 times in
        all, a 4xx fails at once. Returns the final answer, or the Go error text of the last transport failure."""
        trace = self.job.trace
        assert trace is not None
        for attempt in range(3):
            try:
                headers = {"Content-Type": "application/zip"} if body is not None else None
                response = self._http().request(method, url, body=body, headers=headers)
            except urllib3.exceptions.HTTPError as error:
                failure = self._go_error("Put" if method == "PUT" else "Get", url, error)
                if attempt < 2:
                    trace.helper("warning", "Retrying...", error=failure)
                    continue
                return None, failure
            if response.status >= 500 and attempt < 2:
                trace.helper(
                    "warning",
                    "Retrying...",
                    error=trace.received(response.status, response.reason or "", response.data),
                )
                continue
            return response, None
        raise AssertionError("unreachable")

    def _restore(self, cache: dict[str, Any]) -> None:
        """``cache-extractor`` (commands/helpers/cache_extractor.go): download, then extract; any failure exits 1."""
        trace = self.job.trace
        assert trace is not None
        key = cache["key"]
        trace.notice(f"Checking cache for {key}...")
        if not (self.runner.access_key and self.runner.secret_key):
            trace.helper("info", "No URL provided, cache will not be downloaded from shared cache server. "
                                 "Instead a local version of cache will be extracted.")  # fmt: skip
            local = self._local_cache(key)
            if local.is_file():
                self._extract(local.read_bytes())
                trace.notice("Successfully extracted cache")
            else:
                trace.helper("warning", "Cache file does not exist")
                trace.warning("Failed to extract cache")
            return
        url = self._presigned("GET", key)
        if version_tuple(self.runner.version) >= (19, 0):
            trace.helper("info", "Using presigned URL for cache download")
        response, failure = self._transfer("GET", url)
        if response is None:
            trace.helper("warning", failure or "")
            trace.warning("Failed to extract cache")
            return
        if response.status == 404:
            trace.helper("warning", "file does not exist")
            trace.warning("Failed to extract cache")
            return
        if response.status != 200:
            trace.helper("warning", trace.received(response.status, response.reason or "", response.data))
            trace.warning("Failed to extract cache")
            return
        etag, version = response.headers.get("ETag", ""), version_tuple(self.runner.version)
        fields = {("etag" if version >= (19, 0) else "ETag"): etag} if etag and version >= (18, 0) else {}
        trace.helper("info", f"Downloading cache from {url.split('?', 1)[0]}", **fields)
        self._extract(response.data)
        trace.notice("Successfully extracted cache")

    def _extract(self, data: bytes) -> None:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(self.build_dir)

    def _archive(self, paths: list[str]) -> bytes:
        trace = self.job.trace
        assert trace is not None
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for pattern in paths:
                matches = sorted(self.build_dir.glob(pattern.rstrip("/")))
                count = 0
                for match in matches:
                    for item in [match, *sorted(match.rglob("*"))] if match.is_dir() else [match]:
                        archive.write(item, item.relative_to(self.build_dir).as_posix())
                        count += 1
                if count:
                    trace.helper("info", f"{pattern}: found {count} matching artifact files and directories")
                else:
                    trace.helper("warning", f"{pattern}: no matching files. Ensure that the artifact path is relative to the working directory")  # fmt: skip
        return buffer.getvalue()

    def _save(self, cache: dict[str, Any]) -> None:
        """``cache-archiver`` (commands/helpers/cache_archiver.go): archive, then upload; failures are FATAL."""
        trace = self.job.trace
        assert trace is not None
        key = cache["key"]
        trace.notice(f"Creating cache {key}...")
        data = self._archive(cache["paths"])
        if not (self.runner.access_key and self.runner.secret_key):
            local = self._local_cache(key)
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
            trace.helper("info", "No URL provided, cache will not be uploaded to shared cache server. "
                                 "Cache will be stored only locally.")  # fmt: skip
            trace.notice("Created cache")
            return
        url = self._presigned("PUT", key)
        if version_tuple(self.runner.version) >= (19, 0):
            trace.helper("info", "Using presigned URL for cache upload")
        trace.helper("info", f"Uploading cache.zip to {url.split('?', 1)[0]}")
        response, failure = self._transfer("PUT", url, data)
        if response is None or response.status // 100 != 2:
            reason = (
                failure if response is None else trace.received(response.status, response.reason or "", response.data)
            )
            trace.helper("fatal", reason)
            trace.warning("Failed to create cache")
            return
        trace.notice("Created cache")

    def _script(self) -> int | None:
        """Run the ``script`` lines with ``sh`` like the runner: echo each as ``$ line``, stop at the first failure."""
        lines = self.job.spec["script"]
        lines = [lines] if isinstance(lines, str) else [str(line) for line in lines]
        body = ["set -e"]
        for line in lines:
            body.append("printf '\\033[32;1m%s\\033[0;m\\n' " + _sh_quote("$ " + line))  # bash.go Noticef
            body.append(line)
        script = self.pod_root / "script.sh"
        script.write_text("\n".join(body) + "\n")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.pod_root),
            "HOSTNAME": self.pod,
            **self.variables,
        }
        process = subprocess.Popen(
            ["sh", str(script)],
            cwd=self.build_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: cancelling kills the script's children too
        )
        reader = threading.Thread(target=self._pump, args=(process,), daemon=True)
        reader.start()
        deadline = time.monotonic() + JOB_HARD_LIMIT
        while process.poll() is None:
            if self.pipeline.cancel.is_set() or time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                reader.join(timeout=5)
                return None
            time.sleep(0.02)
        reader.join(timeout=5)
        return process.returncode

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        trace = self.job.trace
        assert trace is not None
        for line in process.stdout:
            trace.echo(line.rstrip("\n"))


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
