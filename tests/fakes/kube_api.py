"""A fake Kubernetes API server: exactly the endpoints runner-cache's kube code calls, on 127.0.0.1.

Written from the API reference (https://kubernetes.io/docs/reference/kubernetes-api/) so that the real
``kubernetes`` client talks to it unchanged: the same paths, bearer-token auth, ``Status`` error bodies with
the apiserver's reasons and codes (401, 404 NotFound, 409 AlreadyExists, 422 Invalid, 415), strategic-merge
and JSON-merge PATCH, and the defaults the apiserver fills in (so that a client comparing its manifest with
the live object must ignore fields it never set). What it serves:

- ``GET|POST /api/v1/namespaces[/NAME]``
- ``GET|POST|PATCH /api/v1/namespaces/NS/{secrets,services,persistentvolumeclaims}[/NAME]``, ``DELETE`` Secrets
- ``GET|POST|PATCH /apis/apps/v1/namespaces/NS/deployments[/NAME]``

Strict where a real cluster is strict:
- **RBAC**: with ``rbac`` set (``Rbac.documented(...)``: the Roles of docs/deployments.md, tests/fakes/rbac.py),
  every request is authorised as the API server does (verb and namespace from the URL like ``requestinfo.go``;
  Role rules only in their namespace, ClusterRoles via ClusterRoleBindings everywhere) and refused with its 403.
- Secrets: ``immutable`` ones refuse data changes (422, ``validation.go`` ValidateSecretUpdate), a
  ``metadata.resourceVersion`` in a patch is a precondition (409 Conflict), DELETE takes preconditions.
- Admission: a create in a missing namespace is 404 ``namespaces "X" not found``, in a terminating one 403 with the
  ``NamespaceTerminating`` cause (namespace lifecycle); ``quota_exceeded`` kinds are refused 403 "exceeded quota".
- ``throttle``: answer 429 with ``Retry-After`` and a plain-text body (``server/filters/maxinflight.go``).
- ``race``: an object someone else creates between our read and our create (our POST then meets 409).

There are no controllers, so a Deployment's ``status`` is simulated: after a spec change it reports the
rollout as ``rollout`` says (complete after ``rollout_after_reads`` reads, stuck, past its progress deadline,
or ``replica-failure``). Pods the ReplicaSet controller could not create show as the ``ReplicaFailure``
condition, as ``pkg/controller/deployment/progress.go`` copies it: always when the pod template breaks the
namespace's enforced Pod Security Standard (label ``pod-security.kubernetes.io/enforce: restricted``) or lacks
the requests/limits ``quota_requires`` names. Every request is recorded in ``calls``; ``writes()`` are the ones
that are not reads.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from werkzeug.wrappers import Request, Response

from tests.fakes.rbac import Rbac
from tests.fakes.rbac import Request as Attributes
from tests.fakes.server import WsgiThread

PLURALS = {
    ("/api/v1", "secrets"): "Secret",
    ("/api/v1", "services"): "Service",
    ("/api/v1", "persistentvolumeclaims"): "PersistentVolumeClaim",
    ("/apis/apps/v1", "deployments"): "Deployment",
}
API_GROUPS = {"Namespace": "", "Secret": "", "Service": "", "PersistentVolumeClaim": "", "Deployment": "apps"}
API_VERSIONS = {
    "Namespace": "v1",
    "Secret": "v1",
    "Service": "v1",
    "PersistentVolumeClaim": "v1",
    "Deployment": "apps/v1",
}
_RESOURCE_NAMES = {"Namespace": "namespaces", **{kind: plural for (_, plural), kind in PLURALS.items()}}
_NAMESPACED = re.compile(r"^(/api/v1|/apis/apps/v1)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?$")
_NAMESPACE = re.compile(r"^/api/v1/namespaces(?:/([^/]+))?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Strategic merge patch: lists of objects merged by these keys (from the API's patchMergeKey tags); others are replaced.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "conditions": "type",
}
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTORS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_FACTORS.update({suffix: 1024 ** (i + 1) for i, suffix in enumerate(["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])})
Key = tuple[str, str, str]  # (kind, namespace or "", name)


class Throttled(Exception):
    """Answered 429 Too Many Requests, as the API server's max-in-flight/APF filter does."""


@dataclass
class Call:
    """One request as the server saw it."""

    method: str
    path: str
    content_type: str
    body: Any = None


class ApiError(Exception):
    """Answered as a ``Status`` object, the way the apiserver reports failures (``details``: name, kind, causes)."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


def restricted_violations(pod: dict) -> list[str]:
    """What breaks the ``restricted`` Pod Security Standard (kubernetes.io/docs/concepts/security/pod-security-standards;
    ``k8s.io/pod-security-admission/policy``), in its own words."""
    security = pod.get("securityContext") or {}
    problems = []
    for container in pod.get("containers", []):
        own, name = container.get("securityContext") or {}, container.get("name")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(
                f'allowPrivilegeEscalation != false (container "{name}" must set securityContext.allowPrivilegeEscalation=false)'
            )
        if "ALL" not in ((own.get("capabilities") or {}).get("drop") or []):
            problems.append(
                f'unrestricted capabilities (container "{name}" must set securityContext.capabilities.drop=["ALL"])'
            )
        if not own.get("runAsNonRoot", security.get("runAsNonRoot")):
            problems.append(
                f'runAsNonRoot != true (pod or container "{name}" must set securityContext.runAsNonRoot=true)'
            )
        if own.get("runAsUser", security.get("runAsUser")) == 0:
            problems.append(f'runAsUser=0 (container "{name}" must not set runAsUser=0)')
        profile = (own.get("seccompProfile") or security.get("seccompProfile") or {}).get("type")
        if profile not in {"RuntimeDefault", "Localhost"}:
            problems.append(
                f'seccompProfile (pod or container "{name}" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
            )
    allowed = {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= allowed:
            problems.append(
                f'restricted volume types (volume "{volume["name"]}" uses {", ".join(sorted(kinds - allowed))})'
            )
    return problems


def _quantity(value: str) -> float:
    match = _QUANTITY.match(str(value))
    if not match:
        raise ApiError(422, "Invalid", f"quantities must match the regular expression '{_QUANTITY.pattern}'")
    return float(match[1]) * _FACTORS[match[2]]


def strategic_merge(live: Any, patch: Any, key: str = "") -> Any:
    """Apply a strategic-merge patch: maps merge, ``null`` deletes, keyed lists merge by their merge key."""
    if isinstance(patch, dict) and isinstance(live, dict):
        merged = dict(live)
        for name, value in patch.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = strategic_merge(live.get(name), value, name)
        return merged
    if isinstance(patch, list) and isinstance(live, list) and all(isinstance(item, dict) for item in patch + live):
        merge_key = _MERGE_KEYS.get(key) or ("port" if key == "ports" and all("port" in i for i in patch) else None)
        merge_key = merge_key or ("containerPort" if key == "ports" else None)
        if merge_key:
            merged = [copy.deepcopy(item) for item in live]
            for item in patch:
                index = next((i for i, old in enumerate(merged) if old.get(merge_key) == item.get(merge_key)), None)
                if index is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[index] = strategic_merge(merged[index], item, key)
            return merged
    return copy.deepcopy(patch)


def json_merge(live: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, ``null`` deletes, lists are replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(live) if isinstance(live, dict) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = json_merge(merged.get(name), value)
    return merged


def _probe_defaults(probe: dict | None) -> None:
    if probe is None:
        return
    for name, value in {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}.items():
        probe.setdefault(name, value)
    if "httpGet" in probe:
        probe["httpGet"].setdefault("scheme", "HTTP")


def _container_defaults(container: dict) -> None:
    image = container.get("image", "")
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports", []):
        port.setdefault("protocol", "TCP")
    _probe_defaults(container.get("readinessProbe"))
    _probe_defaults(container.get("livenessProbe"))


def apply_defaults(kind: str, obj: dict, cluster_ips: itertools.count) -> None:
    """Fill in what the apiserver's defaulting would, so the live object has fields the client never sent."""
    spec = obj.setdefault("spec", {}) if kind not in {"Secret", "Namespace"} else None
    if kind == "Namespace":
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
    elif kind == "Service":
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        if "clusterIP" not in spec:
            spec["clusterIP"] = f"10.96.0.{next(cluster_ips)}"
            spec["clusterIPs"] = [spec["clusterIP"]]
        for port in spec.get("ports", []):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        obj["status"] = {"loadBalancer": {}}
    elif kind == "PersistentVolumeClaim":
        spec.setdefault("volumeMode", "Filesystem")
        spec.setdefault("storageClassName", "standard")  # the DefaultStorageClass admission plugin
        requested = spec.get("resources", {}).get("requests", {}).get("storage")
        obj["status"] = {
            "phase": "Bound",
            "accessModes": spec.get("accessModes", []),
            "capacity": {"storage": requested},
        }
    elif kind == "Deployment":
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault(
            "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
        )
        pod = spec.setdefault("template", {}).setdefault("spec", {})
        for name, value in {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "securityContext": {},
        }.items():
            pod.setdefault(name, value)
        for container in pod.get("containers", []):
            _container_defaults(container)
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                volume["secret"].setdefault("defaultMode", 420)


@dataclass
class FakeKubeApi:
    """State and behaviour of one API server; tests read and seed ``objects`` through the helpers below."""

    token: str = field(default_factory=lambda: secrets.token_hex(12))
    objects: dict[Key, dict] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # How a Deployment's rollout goes after a spec change: completes after ``rollout_after_reads`` reads of
    # the Deployment, never completes (``stuck``), fails its progress deadline (``deadline``), or its pods cannot
    # be created (``replica-failure``, with ``replica_failure`` as the ReplicaSet controller's message).
    rollout: Literal["complete", "stuck", "deadline", "replica-failure"] = "complete"
    rollout_after_reads: int = 0
    replica_failure: str = 'pods "x" is forbidden: error looking up service account gitlab-runner/missing: not found'
    allow_volume_expansion: bool = True
    # (method, kind) -> HTTP status answered instead of doing the request, e.g. ("PATCH", "Secret"): 403.
    fail: dict[tuple[str, str], int] = field(default_factory=dict)
    # The identity's permissions: None allows everything; Rbac.documented(...) is what docs/deployments.md grants.
    rbac: Rbac | None = None
    # (method, kind) -> how many times to answer 429 (Retry-After: ``retry_after``) before serving the request.
    throttle: dict[tuple[str, str], int] = field(default_factory=dict)
    retry_after: int = 1
    # objects another client creates right after our GET of them found nothing (our POST then meets 409)
    race: dict[Key, dict] = field(default_factory=dict)
    quota_exceeded: set[str] = field(default_factory=set)  # kinds a full ResourceQuota refuses to create
    quota_requires: list[str] = field(default_factory=list)  # e.g. ["limits.memory"]: pods without it fail
    lock: threading.Lock = field(default_factory=threading.Lock)
    _versions: itertools.count = field(default_factory=lambda: itertools.count(1000))
    _cluster_ips: itertools.count = field(default_factory=lambda: itertools.count(10))
    _reads: dict[Key, int] = field(default_factory=dict)

    # --- helpers for tests -------------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        with self.lock:
            found = self.objects.get((kind, namespace, name))
            return copy.deepcopy(found) if found else None

    def put(self, obj: dict) -> dict:
        """Store ``obj`` as if a client had created it (its namespace too), defaults and status included."""
        kind, meta = obj["kind"], obj["metadata"]
        with self.lock:
            namespace = meta.get("namespace", "")
            if namespace and ("Namespace", "", namespace) not in self.objects:
                self._store("Namespace", "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            return copy.deepcopy(self._store(kind, namespace, copy.deepcopy(obj)))

    def edit(self, kind: str, namespace: str, name: str, patch: dict) -> None:
        """Change a live object behind the client's back (like ``kubectl edit``), with strategic-merge semantics."""
        with self.lock:
            key = (kind, namespace, name)
            self.objects[key] = self._updated(kind, self.objects[key], strategic_merge(self.objects[key], patch))

    def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, decoded."""
        secret = self.get("Secret", namespace, name) or {}
        return {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}

    def writes(self) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.method not in {"GET", "HEAD"}]

    def terminate(self, namespace: str) -> None:
        """Mark ``namespace`` as being deleted (phase Terminating), as ``kubectl delete namespace`` leaves it."""
        with self.lock:
            self.objects[("Namespace", "", namespace)]["status"] = {"phase": "Terminating"}

    # --- the API -----------------------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        try:
            body = json.loads(request.get_data()) if request.get_data() else None
        except ValueError:
            body = None
        with self.lock:
            self.calls.append(Call(request.method, request.path, request.headers.get("Content-Type", ""), body))
            try:
                if request.headers.get("Authorization") != f"Bearer {self.token}":
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                watch = request.args.get("watch", "false").lower() not in {"false", "0"}
                status, answer = self._route(
                    request.method, request.path, request.headers.get("Content-Type", ""), body, watch
                )
            except Throttled:
                response = Response(
                    "Too many requests, please try again later.\n", status=429, content_type="text/plain"
                )
                response.headers["Retry-After"] = str(self.retry_after)
                return response(environ, start_response)
            except ApiError as error:
                status, answer = (
                    error.code,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": error.message,
                        "reason": error.reason,
                        "code": error.code,
                        **({"details": error.details} if error.details else {}),
                    },
                )
        return Response(json.dumps(answer), status=status, content_type="application/json")(environ, start_response)

    def _route(self, method: str, path: str, content_type: str, body: Any, watch: bool = False) -> tuple[int, dict]:
        if match := _NAMESPACE.match(path):
            # requestinfo.go: in /api/v1/namespaces/NAME the namespace *is* NAME (a Role there can allow reading it)
            kind, namespace, name = "Namespace", match[1] or "", match[1]
        elif (match := _NAMESPACED.match(path)) and (match[1], match[3]) in PLURALS:
            kind, namespace, name = PLURALS[(match[1], match[3])], match[2], match[4]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self._authorise(method, kind, namespace, name, watch)
        if self.throttle.get((method, kind), 0) > 0:
            self.throttle[(method, kind)] -= 1
            raise Throttled
        if (method, kind) in self.fail:
            raise self._failure(self.fail[(method, kind)], method, kind, namespace)
        if kind == "Namespace":
            namespace = ""
        if method == "GET" and name:
            return 200, self._read(kind, namespace, name)
        if method == "POST" and not name:
            return 201, self._create(kind, namespace, body)
        if method == "PATCH" and name:
            return 200, self._patch(kind, namespace, name, content_type, body)
        if method == "DELETE" and name and kind == "Secret":
            return 200, self._delete(kind, namespace, name, body)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _authorise(self, method: str, kind: str, namespace: str, name: str | None, watch: bool) -> None:
        """RBAC, as ``plugin/pkg/auth/authorizer/rbac`` decides on ``requestinfo.go``'s attributes."""
        if self.rbac is None:
            return
        verb = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        attributes = Attributes(verb[method], API_GROUPS[kind], _RESOURCE_NAMES[kind], namespace, name or "")
        if not name and method == "GET":
            attributes = Attributes("watch" if watch else "list", API_GROUPS[kind], _RESOURCE_NAMES[kind], namespace)
        if not self.rbac.allows(attributes):
            details = {"name": name or "", "kind": _RESOURCE_NAMES[kind]}
            raise ApiError(403, "Forbidden", attributes.words(self.rbac.user), details)

    @staticmethod
    def _failure(code: int, method: str, kind: str, namespace: str) -> ApiError:
        if code == 403:
            verb, resource = {"GET": "get", "POST": "create", "PATCH": "patch"}[method], _RESOURCE_NAMES[kind]
            words = f'{resource} is forbidden: User "fake" cannot {verb} resource "{resource}" in the namespace "{namespace}"'
            return ApiError(403, "Forbidden", words)
        return ApiError(
            code,
            {401: "Unauthorized", 500: "InternalError", 503: "ServiceUnavailable"}.get(code, "BadRequest"),
            f"fake failure {code}",
        )

    def _missing(self, kind: str, name: str) -> ApiError:
        details = {"name": name, "kind": _RESOURCE_NAMES[kind]}
        return ApiError(404, "NotFound", f'{_RESOURCE_NAMES[kind]} "{name}" not found', details)

    def _read(self, kind: str, namespace: str, name: str) -> dict:
        key = (kind, namespace, name)
        if key not in self.objects:
            if key in self.race:  # someone else creates it now, after our read found nothing
                self._store(kind, namespace, copy.deepcopy(self.race.pop(key)))
            raise self._missing(kind, name)
        if kind == "Deployment":
            self._reads[key] = self._reads.get(key, 0) + 1
            self.objects[key]["status"] = self._rollout_status(self.objects[key], self._reads[key])
        return copy.deepcopy(self.objects[key])

    def _validate(self, kind: str, namespace: str, obj: dict) -> None:
        if not isinstance(obj, dict) or obj.get("kind") != kind or obj.get("apiVersion") != API_VERSIONS[kind]:
            raise ApiError(400, "BadRequest", f"the body is not a {API_VERSIONS[kind]} {kind}")
        name = obj.get("metadata", {}).get("name", "")
        rule = _DNS_1035 if kind == "Service" else _DNS_LABEL if kind == "Namespace" else _DNS_SUBDOMAIN
        if not rule.match(name) or len(name) > 63:
            raise ApiError(422, "Invalid", f'{kind} "{name}" is invalid: metadata.name: Invalid value: "{name}"')
        if obj["metadata"].get("namespace", namespace) != namespace:
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        if kind == "Secret":
            for key, value in obj.get("data", {}).items():
                try:
                    base64.b64decode(value, validate=True)
                except (binascii.Error, TypeError):
                    raise ApiError(
                        400, "BadRequest", f'Secret in version "v1" cannot be handled: illegal base64 data for {key}'
                    ) from None
        if kind == "Deployment":
            spec = obj.get("spec", {})
            selector = spec.get("selector", {}).get("matchLabels", {})
            labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                words = "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`"
                raise ApiError(422, "Invalid", f'Deployment.apps "{name}" is invalid: {words}')
        if kind == "PersistentVolumeClaim":
            _quantity(obj.get("spec", {}).get("resources", {}).get("requests", {}).get("storage", ""))

    def _create(self, kind: str, namespace: str, body: Any) -> dict:
        self._validate(kind, namespace, body)
        name, resource = body["metadata"]["name"], _RESOURCE_NAMES[kind]
        if namespace and ("Namespace", "", namespace) not in self.objects:  # namespace lifecycle admission
            raise self._missing("Namespace", namespace)
        phase = self.objects.get(("Namespace", "", namespace), {}).get("status", {}).get("phase")
        if namespace and phase == "Terminating":
            words = f"unable to create new content in namespace {namespace} because it is being terminated"
            cause = {"type": "NamespaceTerminating", "message": f"namespace {namespace} is being terminated"}
            cause["field"] = "metadata.namespace"
            details = {"name": name, "kind": resource, "causes": [cause]}
            raise ApiError(403, "Forbidden", f'{resource} "{name}" is forbidden: {words}', details)
        if kind in self.quota_exceeded:  # resourcequota admission: count/<resource> is used up
            words = f"exceeded quota: object-counts, requested: count/{resource}=1, used: count/{resource}=5, limited: count/{resource}=5"
            raise ApiError(
                403, "Forbidden", f'{resource} "{name}" is forbidden: {words}', {"name": name, "kind": resource}
            )
        if (kind, namespace, name) in self.objects:
            details = {"name": name, "kind": resource}
            raise ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists', details)
        return copy.deepcopy(self._store(kind, namespace, copy.deepcopy(body)))

    def _delete(self, kind: str, namespace: str, name: str, body: Any) -> dict:
        key = (kind, namespace, name)
        if key not in self.objects:
            raise self._missing(kind, name)
        wanted = ((body or {}).get("preconditions") or {}).get("resourceVersion")
        if wanted and wanted != self.objects[key]["metadata"]["resourceVersion"]:
            raise self._conflict(kind, name)
        del self.objects[key]
        return {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}

    @staticmethod
    def _conflict(kind: str, name: str) -> ApiError:
        words = "the object has been modified; please apply your changes to the latest version and try again"
        resource = _RESOURCE_NAMES[kind]
        return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": {words}')

    def _store(self, kind: str, namespace: str, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        if namespace:
            meta["namespace"] = namespace
        meta.update(
            uid=str(uuid.uuid4()), resourceVersion=str(next(self._versions)), creationTimestamp="2026-01-01T00:00:00Z"
        )
        if kind == "Secret" and "stringData" in obj:
            data = obj.setdefault("data", {})
            data.update({k: base64.b64encode(v.encode()).decode() for k, v in obj.pop("stringData").items()})
        apply_defaults(kind, obj, self._cluster_ips)
        if kind == "Deployment":
            meta["generation"] = 1
            self._reads[(kind, namespace, meta["name"])] = 0
            obj["status"] = self._rollout_status(obj, 0)
        self.objects[(kind, namespace, meta["name"])] = obj
        return obj

    def _patch(self, kind: str, namespace: str, name: str, content_type: str, body: Any) -> dict:
        key = (kind, namespace, name)
        if key not in self.objects:
            raise self._missing(kind, name)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the patch body is not a JSON object")
        version = (body.get("metadata") or {}).get("resourceVersion")
        if version and version != self.objects[key]["metadata"]["resourceVersion"]:  # a precondition
            raise self._conflict(kind, name)
        if content_type.startswith("application/strategic-merge-patch+json"):
            merged = strategic_merge(self.objects[key], body)
        elif content_type.startswith("application/merge-patch+json"):
            merged = json_merge(self.objects[key], body)
        else:
            accepted = "application/strategic-merge-patch+json, application/merge-patch+json"
            raise ApiError(415, "UnsupportedMediaType", f"unknown body format; accepted media types: {accepted}")
        self._validate(kind, namespace, merged)
        self.objects[key] = self._updated(kind, self.objects[key], merged)
        return copy.deepcopy(self.objects[key])

    def _updated(self, kind: str, old: dict, new: dict) -> dict:
        """Immutable fields checked, defaults applied, resourceVersion (and a Deployment's generation) bumped on change."""
        name = old["metadata"]["name"]
        if kind == "Deployment" and new["spec"].get("selector") != old["spec"].get("selector"):
            raise ApiError(
                422, "Invalid", f'Deployment.apps "{name}" is invalid: spec.selector: Invalid value: field is immutable'
            )
        if kind == "PersistentVolumeClaim":
            self._check_pvc_update(name, old["spec"], new["spec"])
        if kind == "Secret" and old.get("immutable"):  # pkg/apis/core/validation ValidateSecretUpdate
            for field_name in ("data", "immutable"):
                if new.get(field_name) != old.get(field_name):
                    words = f"{field_name}: Forbidden: field is immutable when `immutable` is set"
                    causes = [{"reason": "FieldValueForbidden", "message": words, "field": field_name}]
                    details = {"name": name, "kind": "Secret", "causes": causes}
                    raise ApiError(422, "Invalid", f'Secret "{name}" is invalid: {words}', details)
        if kind == "Service" and new["spec"].get("clusterIP", old["spec"]["clusterIP"]) != old["spec"]["clusterIP"]:
            raise ApiError(
                422, "Invalid", f'Service "{name}" is invalid: spec.clusterIP: Invalid value: field is immutable'
            )
        apply_defaults(kind, new, self._cluster_ips)
        if kind == "Deployment":
            new["status"] = old.get("status", {})
        if new == old:
            return old
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        if kind == "Deployment" and new["spec"] != old["spec"]:
            new["metadata"]["generation"] = old["metadata"]["generation"] + 1
            key = (kind, old["metadata"]["namespace"], name)
            self._reads[key] = 0
            new["status"] = self._rollout_status(new, 0)
        return new

    def _check_pvc_update(self, name: str, old: dict, new: dict) -> None:
        old_size = old["resources"]["requests"]["storage"]
        new_size = new.get("resources", {}).get("requests", {}).get("storage", old_size)
        if {k: v for k, v in old.items() if k != "resources"} != {k: v for k, v in new.items() if k != "resources"}:
            raise ApiError(
                422,
                "Invalid",
                f'PersistentVolumeClaim "{name}" is invalid: spec: Forbidden: spec is immutable after creation except '
                "resources.requests and volumeAttributesClassName for bound claims",
            )
        if _quantity(new_size) < _quantity(old_size):
            words = "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
            raise ApiError(422, "Invalid", f'PersistentVolumeClaim "{name}" is invalid: {words}')
        if _quantity(new_size) > _quantity(old_size) and not self.allow_volume_expansion:
            raise ApiError(
                403,
                "Forbidden",
                f'persistentvolumeclaims "{name}" is forbidden: only dynamically provisioned pvc can be resized and '
                "the storageclass that provisions the pvc must support resize",
            )

    def _pods_refused(self, deployment: dict) -> str | None:
        """Why the ReplicaSet controller cannot create this Deployment's pods (the admission's message), or None."""
        pod = deployment["spec"].get("template", {}).get("spec", {})
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        labels = self.objects.get(("Namespace", "", namespace), {}).get("metadata", {}).get("labels") or {}
        pod_name = f'pods "{name}-5d8f9c7b4-x2x7q" is forbidden'
        if labels.get("pod-security.kubernetes.io/enforce") == "restricted":
            problems = restricted_violations(pod)
            if problems:
                return f'{pod_name}: violates PodSecurity "restricted:latest": {", ".join(problems)}'
        for requirement in self.quota_requires:
            section, resource = requirement.split(".", 1)
            if any(resource not in ((c.get("resources") or {}).get(section) or {}) for c in pod.get("containers", [])):
                return f"{pod_name}: failed quota: compute: must specify {requirement}"
        if self.rollout == "replica-failure":
            return self.replica_failure
        return None

    def _rollout_status(self, deployment: dict, reads: int) -> dict:
        spec, generation = deployment["spec"], deployment["metadata"]["generation"]
        replicas = spec.get("replicas", 1)
        refused = self._pods_refused(deployment)
        if refused and reads >= 1:  # the controller has seen the generation and failed to create the pods
            return {
                "observedGeneration": generation,
                "replicas": 0,
                "updatedReplicas": 0,
                "availableReplicas": 0,
                "unavailableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
                    {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
                    {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": refused},
                ],
            }
        if self.rollout == "complete" and reads > self.rollout_after_reads:
            return {
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                ],
            }
        if self.rollout == "complete" and reads <= 1:  # the controller has not seen the new generation yet
            return {
                "observedGeneration": generation - 1,
                "replicas": replicas,
                "updatedReplicas": 0,
                "availableReplicas": 0,
            }
        progressing = (
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": f'ReplicaSet "{deployment["metadata"]["name"]}-5d8f" has timed out progressing.',
            }
            if self.rollout == "deadline"
            else {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
        )
        return {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": 0,
            "availableReplicas": 0,
            "unavailableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
                progressing,
            ],
        }


class KubeApiServer:
    """Serves a :class:`FakeKubeApi` over HTTP on a free 127.0.0.1 port, in a thread."""

    def __init__(self, api: FakeKubeApi) -> None:
        self.api = api
        self._server = WsgiThread(api, "fake-kube-api")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def kubeconfig(self, path: Path, context: str = "fake") -> Path:
        """Write a kubeconfig whose ``context`` (the current one) points at this server with its bearer token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.api.token}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def __enter__(self) -> KubeApiServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
