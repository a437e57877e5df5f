"""The Kubernetes API, through the official client: connecting, Secrets we own, rollout waits.

Objects are read and written as the API's own JSON (raw responses, dict bodies) rather than the client's
generated models, so that our manifests read like the YAML users know, drift is compared on the API's field
names, and the code works on every client version pyproject allows (their generated models changed shape over time).

Which cluster: :func:`runner_cache.tasks.kube.cluster.select_cluster`, the rule helm is given too.

How the API server answers, and what we do (``staging/src/k8s.io/apiserver`` sources, cited where used):
- no answer, or 5xx: :class:`KubernetesUnreachable` (transient: the task policy retries it);
- 429 (API Priority and Fairness / max-in-flight; a plain-text body with ``Retry-After``): waited out here;
- 403: worded by its cause — RBAC, a full ResourceQuota, a namespace being deleted, a refused RBAC escalation;
- 409 AlreadyExists on a create, or Conflict on a write that carries the version we read: re-read and decide again;
- 404 on a create that names the namespace: the namespace is missing, so it is created then. It is never read
  (reading it needs a permission nothing else does).
No error ever carries a request body, and ``redact`` values are scrubbed from the API's messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from pydantic import ValidationError

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.blocks.store import KubeStoreSettings, StoreSettings
from runner_cache.errors import ConfigError, KubernetesError, KubernetesUnreachable, RolloutFailed, RolloutTimeout
from runner_cache.redaction import redact
from runner_cache.tasks.kube.cluster import ClusterTarget, select_cluster
from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.results import StepResult, timed

Cluster = ReleaseSettings | KubeStoreSettings  # anything that says which kubeconfig and context to use
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read: seconds for each API call
THROTTLED_TRIES = 5  # tries of one request the API server keeps answering 429
MAX_RETRY_AFTER = 30.0  # seconds: a longer Retry-After is cut to this
MANAGED_BY = {"app.kubernetes.io/managed-by": "runner-cache"}
SECRET_DATA_KEYS = ("accesskey", "secretkey")  # what the gitlab-runner chart reads from runners.cache.secretName
# How often runner-cache wrote a Secret's data. With the Secret's uid it is the version the pods' restart
# annotation carries: new credentials restart the pods, a label or annotation written by anyone else does not
# (those change resourceVersion, which is why that is not used).
GENERATION_ANNOTATION = "runner-cache.io/credentials-generation"
RBAC_DOC = "docs/deployments.md, 'RBAC: the least runner-cache needs'"
# kind -> (API group attribute, method suffix); the client's methods are read_<suffix>, create_<suffix>, patch_<suffix>.
_METHODS = {
    "Namespace": ("core", "namespace"),
    "Secret": ("core", "namespaced_secret"),
    "Service": ("core", "namespaced_service"),
    "PersistentVolumeClaim": ("core", "namespaced_persistent_volume_claim"),
    "Deployment": ("apps", "namespaced_deployment"),
}


class ApiRefused(KubernetesError):
    """The API answered 4xx. ``code``, ``reason``, ``kind`` (the Status details' kind) and ``cause`` (for a 403:
    rbac, quota, terminating, escalation) let callers react to it."""

    def __init__(
        self, message: str, *, code: int, reason: str, kind: str = "", cause: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.code, self.reason, self.kind, self.cause = code, reason, kind, cause


def encode(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def cluster_target(cluster: Cluster) -> ClusterTarget:
    """The one cluster rule applied to these settings (helm gets the same: ``tasks/release/helm.py``)."""
    return select_cluster(cluster.kubeconfig, cluster.context)


def api_client(cluster: Cluster) -> k8s.ApiClient:
    """A client for the cluster :func:`cluster_target` picks.

    Its urllib3 pool must not answer 429 itself: the client hands ``configuration.retries`` (None: urllib3's
    ``Retry.DEFAULT``) to its pool (kubernetes/client/rest.py@37.0.1), and that retries a throttled GET/PUT/DELETE
    three times, sleeping whatever ``Retry-After`` says, uncapped (``RETRY_AFTER_STATUS_CODES``,
    ``respect_retry_after_header``: urllib3/util/retry.py@2.8.0), before :meth:`Kube._call` sees it — so
    "5 tries" were 20 requests and a server asking for 30 s stalled a call for minutes. Only broken connections are
    retried there; throttling is :meth:`Kube._call`'s, with its cap.
    """
    target = cluster_target(cluster)
    configuration = k8s.Configuration()
    try:
        if target.source == "in-cluster":
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            files = ":".join(str(path) for path in target.kubeconfig)  # the client merges a KUBECONFIG-style list
            k8s_config.load_kube_config(config_file=files, context=target.context, client_configuration=configuration)
    except (ConfigException, OSError, ValueError) as error:
        raise ConfigError(f"cannot use {target.describe()}: {error}") from None
    configuration.retries = urllib3.Retry(total=3, status=0, respect_retry_after_header=False)
    return k8s.ApiClient(configuration)


def _status(error: ApiException) -> dict:
    """The API's ``Status`` answer, or {} (a 429 from the max-in-flight filter has a plain-text body)."""
    try:
        body = json.loads(error.body)
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def retry_after(error: ApiException) -> float:
    """Seconds the server asked us to wait: ``Retry-After`` (``server/filters/maxinflight.go`` tooManyRequests
    sets it), else the Status' ``retryAfterSeconds``, else 1."""
    header = error.headers.get("Retry-After") if error.headers else None
    seconds = (_status(error).get("details") or {}).get("retryAfterSeconds")
    try:
        value = float(header) if header is not None else float(seconds) if seconds is not None else 1.0
    except ValueError:  # an HTTP date: wait the default
        value = 1.0
    return min(max(value, 0.0), MAX_RETRY_AFTER)


class Kube:
    """One API connection; reads return the object's JSON or None, writes are recorded in ``writes`` for reports."""

    def __init__(self, api: k8s.ApiClient, redact: Sequence[str] = ()) -> None:
        self.core = k8s.CoreV1Api(api)
        self.apps = k8s.AppsV1Api(api)
        self.host = api.configuration.host
        self.redact = [value for value in redact if value]
        self.writes: list[str] = []

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        return self._call("read", kind, namespace, name, None)

    def create(self, kind: str, namespace: str, body: dict) -> dict:
        created = self._call("create", kind, namespace, body["metadata"]["name"], body)
        self.writes.append(f"created {kind} {_where(namespace, body['metadata']['name'])}")
        return created

    def patch(self, kind: str, namespace: str, name: str, body: dict) -> dict:
        """A strategic-merge patch (the client's choice for a dict body): maps merge, named lists merge by name.
        With ``metadata.resourceVersion`` in ``body``, the server refuses it (409 Conflict) if the object changed."""
        patched = self._call("patch", kind, namespace, name, body)
        self.writes.append(f"patched {kind} {_where(namespace, name)}")
        return patched

    def delete(self, kind: str, namespace: str, name: str, resource_version: str) -> None:
        """Delete exactly the version we read (a precondition: 409 Conflict if it changed since)."""
        options = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(resource_version=resource_version))
        self._call("delete", kind, namespace, name, None, options=options)
        self.writes.append(f"deleted {kind} {_where(namespace, name)}")

    def _call(self, verb: str, kind: str, namespace: str, name: str, body: dict | None, options: Any = None) -> Any:
        group, suffix = _METHODS[kind]
        method = getattr(getattr(self, group), f"{verb}_{suffix}")
        args: list[Any] = [] if verb == "create" else [name]
        args += [namespace] if namespace else []
        args += [body] if body is not None else []
        for attempt in range(1, THROTTLED_TRIES + 1):
            try:
                keywords = {"body": options} if options is not None else {}  # DeleteOptions go by keyword
                response = method(*args, **keywords, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
                return json.loads(response.data)
            except ApiException as error:
                if verb == "read" and error.status == 404:
                    return None
                if error.status == 429 and attempt < THROTTLED_TRIES:
                    wait = retry_after(error)
                    run_logger(__name__).info(
                        "the Kubernetes API is throttling (HTTP 429): waiting %g s as asked", wait
                    )
                    time.sleep(wait)
                    continue
                raise self._refused(error, verb, kind, namespace, name) from None
            except ValidationError as error:  # the client checks bodies before sending; never echo their values
                where = _where(namespace, name)
                raise KubernetesError(
                    f"the kubernetes client rejected the {kind} {where} ({error.error_count()} problems)"
                ) from None
            except (urllib3.exceptions.HTTPError, OSError) as error:
                raise KubernetesUnreachable(
                    f"the Kubernetes API at {self.host} is not reachable: {type(error).__name__}"
                ) from None
        raise AssertionError("the loop returns or raises")

    def _refused(self, error: ApiException, verb: str, kind: str, namespace: str, name: str) -> Exception:
        status = _status(error)
        message = redact(str(status.get("message") or error.reason or "").strip(), self.redact)
        code, reason, where = (
            error.status or 0,
            str(status.get("reason") or error.reason or ""),
            _where(namespace, name),
        )
        if code == 0 or code >= 500:
            return KubernetesUnreachable(
                f"the Kubernetes API at {self.host} answered HTTP {code} to {verb} {kind} {where}: {message}"
            )
        if code == 429:
            return KubernetesUnreachable(
                f"the Kubernetes API at {self.host} kept throttling {verb} {kind} {where} (HTTP 429, {THROTTLED_TRIES} tries)",
                hint="the API server is overloaded: a later try will get through",
            )
        if code == 401:
            return KubernetesError(
                f"the Kubernetes API at {self.host} rejected the credentials (HTTP 401)",
                hint="check the kubeconfig and context",
            )
        details = status.get("details") or {}
        if code == 403:
            causes = [str(cause.get("type") or cause.get("reason") or "") for cause in details.get("causes") or []]
            return forbidden(verb, kind, namespace, name, message, causes)
        return ApiRefused(
            f"the Kubernetes API refused to {verb} {kind} {where} (HTTP {code} {reason}): {message}",
            code=code,
            reason=reason,
            kind=str(details.get("kind") or ""),
        )


def forbidden(verb: str, kind: str, namespace: str, name: str, message: str, causes: Sequence[str]) -> ApiRefused:
    """A 403, worded by its cause. The API server answers 403 for RBAC, but also for a full ResourceQuota
    (``exceeded quota``: ``plugin/pkg/admission/resourcequota``), for a namespace being deleted (cause
    ``NamespaceTerminating``: ``admission/plugin/namespace/lifecycle/admission.go``) and for a Role or RoleBinding
    that grants more than the caller holds (``pkg/registry/rbac/validation/rule.go`` ConfirmNoEscalation)."""
    where = _where(namespace, name)

    def refused(cause: str, words: str, hint: str, transient: bool = False) -> ApiRefused:
        label = {"rbac": "RBAC", "quota": "ResourceQuota", "terminating": "namespace terminating"}
        label["escalation"] = "RBAC escalation"
        text = f"{words} (HTTP 403, {label[cause]}): {message}"
        error = ApiRefused(text, code=403, reason="Forbidden", cause=cause, hint=hint)
        error.transient = transient
        return error

    if "NamespaceTerminating" in causes or "because it is being terminated" in message:
        return refused(
            "terminating",
            f"cannot {verb} {kind} {where}: namespace {namespace} is being deleted",
            f"wait until `kubectl get namespace {namespace}` finds nothing, then run again: it is created anew",
            transient=True,
        )
    if "exceeded quota" in message or "failed quota" in message:
        return refused(
            "quota",
            f"a ResourceQuota in namespace {namespace} refused to {verb} {kind} {where}",
            f"see `kubectl -n {namespace} describe resourcequota`: raise the quota or free room",
        )
    if "attempting to grant RBAC permissions not currently held" in message:
        return refused(
            "escalation",
            f"not allowed to {verb} {kind} {where}: it grants permissions runner-cache does not hold",
            f"grant `escalate` and `bind` on roles, or those permissions ({RBAC_DOC})",
        )
    return refused("rbac", f"not allowed to {verb} {kind} {where}", f"grant it as {RBAC_DOC} shows")


def _where(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


@contextmanager
def connect(cluster: Cluster, redact: Sequence[str] = ()) -> Iterator[Kube]:
    """A :class:`Kube` for ``cluster``, closed afterwards."""
    api = api_client(cluster)
    try:
        yield Kube(api, redact)
    finally:
        api.close()


def create_namespace(kube: Kube, namespace: str) -> None:
    """Create ``namespace``, which a write just found missing. That needs cluster-wide ``create namespaces``:
    without it, say what to do. One that someone else created meanwhile (409) is fine."""
    run_logger(__name__).info("creating namespace %s: it does not exist yet", namespace)
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": MANAGED_BY}}
    try:
        kube.create("Namespace", "", body)
    except ApiRefused as error:
        if error.code == 409:
            return
        if error.cause == "rbac":
            raise KubernetesError(
                f"namespace {namespace} does not exist, and runner-cache may not create it (HTTP 403)",
                hint=f"create it (`kubectl create namespace {namespace}`), or grant the 'namespaces' ClusterRole of {RBAC_DOC}",
            ) from None
        raise


def create_in_namespace(kube: Kube, kind: str, namespace: str, body: dict) -> dict:
    """Create ``body``; when the API answers that its namespace is missing (404 ``namespaces "X" not found``, from
    the namespace lifecycle admission), create the namespace and try once more."""
    try:
        return kube.create(kind, namespace, body)
    except ApiRefused as error:
        if error.code != 404 or error.kind != "namespaces":
            raise
    create_namespace(kube, namespace)
    return kube.create(kind, namespace, body)


def manifest_drift(wanted: Any, live: Any, path: str = "") -> list[str]:
    """Paths of the fields set in ``wanted`` whose value in ``live`` differs; fields only ``live`` has are ignored.

    Those are the API server's defaults, or additions by others that a strategic-merge patch of ``wanted``
    would keep too; lists of named items are matched by name, for the same reason. Paths name fields, never values.
    """
    if isinstance(wanted, dict):
        if not isinstance(live, dict):
            return [path or "object"]
        return [
            diff
            for key, value in wanted.items()
            for diff in manifest_drift(value, live.get(key), f"{path}.{key}" if path else key)
        ]
    if isinstance(wanted, list) and wanted and all(isinstance(item, dict) and "name" in item for item in wanted):
        if not isinstance(live, list):
            return [path]
        by_name = {item.get("name"): item for item in live if isinstance(item, dict)}
        return [
            diff
            for item in wanted
            for diff in manifest_drift(item, by_name.get(item["name"]), f"{path}[{item['name']}]")
        ]
    if isinstance(wanted, list):
        if not isinstance(live, list) or len(live) != len(wanted):
            return [path]
        return [
            diff
            for index, pair in enumerate(zip(wanted, live, strict=True))
            for diff in manifest_drift(*pair, f"{path}[{index}]")
        ]
    return [] if wanted == live else [path]


# --- Secrets we keep: compared key by key, never someone else's --------------------------------------------------


def foreign_owner(secret: dict) -> str | None:
    """Who else manages ``secret`` (a controller that would put its own values back after our write), or None.

    An owner reference (External Secrets, SealedSecrets…) or a ``managed-by`` label other than ours (a Helm
    release…). A Secret made by hand (``kubectl create secret``: the by-hand procedure) has neither: ours to update.
    """
    meta = secret.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        return f"{owner.get('kind', 'an owner')} {owner.get('name', '')}".strip()
    manager = (meta.get("labels") or {}).get("app.kubernetes.io/managed-by")
    if manager and manager != MANAGED_BY["app.kubernetes.io/managed-by"]:
        release = (meta.get("annotations") or {}).get("meta.helm.sh/release-name")
        return f"{manager} release {release}" if release else manager
    return None


def credentials_version(secret: dict | None) -> str:
    """The version the pods' restart annotation carries: the Secret's uid and how often runner-cache wrote its data.
    It changes when new credentials are written or the Secret is made anew, and on nothing else."""
    if not secret:
        return ""
    meta = secret.get("metadata") or {}
    return f"{str(meta.get('uid', ''))[:8]}.{(meta.get('annotations') or {}).get(GENERATION_ANNOTATION, '0')}"


@dataclass(frozen=True)
class SecretOutcome:
    """What :func:`converge_secret` found (``unchanged``, ``create``, ``update``: planned) or did (``created``,
    ``updated``, ``replaced``), the keys concerned, and the live Secret afterwards."""

    live: dict | None
    action: str
    keys: list[str]


def _holds(data: dict, key: str, value: str) -> bool:
    try:
        return base64.b64decode(data.get(key) or "", validate=True) == value.encode()
    except (binascii.Error, ValueError):
        return False


def _secret_body(name: str, labels: dict[str, str], data: dict[str, str], kind: str = "Opaque") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels, "annotations": {GENERATION_ANNOTATION: "1"}},
        "type": kind,
        "data": data,
    }


def converge_secret(
    kube: Kube,
    namespace: str,
    name: str,
    wanted: dict[str, str],
    labels: dict[str, str],
    *,
    adopt: bool = False,
    apply: bool = True,
) -> SecretOutcome:
    """Make Secret ``namespace/name`` hold ``wanted`` (key -> plain value), compared key by key; other keys stay.

    A Secret another controller owns (:func:`foreign_owner`) or an ``immutable`` one (the API answers 422 "field is
    immutable when `immutable` is set" to any data change) is refused unless ``adopt``: then its owner reference is
    dropped, and an immutable one is deleted (precondition: the version we read) and made anew. A create that meets
    409 AlreadyExists, or a write that meets 409 Conflict or 404, re-reads and decides again.
    """
    where = f"Secret {namespace}/{name}"
    for _ in range(3):
        live = kube.get("Secret", namespace, name)
        if live is None:
            if not apply:
                return SecretOutcome(None, "create", list(wanted))
            body = _secret_body(name, labels, {key: encode(value) for key, value in wanted.items()})
            try:
                return SecretOutcome(create_in_namespace(kube, "Secret", namespace, body), "created", list(wanted))
            except ApiRefused as error:
                if error.code != 409:
                    raise
                run_logger(__name__).info("%s was created by someone else meanwhile: reading it again", where)
                continue
        data = live.get("data") or {}  # a Secret without data has no `data` field at all
        drift = [key for key, value in wanted.items() if not _holds(data, key, value)]
        if not drift:
            return SecretOutcome(live, "unchanged", [])
        owner, immutable = foreign_owner(live), bool(live.get("immutable"))
        if (owner or immutable) and not adopt:
            why = f"belongs to {owner}, which would put its own values back" if owner else "is immutable"
            raise KubernetesError(
                f"{where} {why}: runner-cache will not overwrite its {' and '.join(drift)}",
                hint="change the credentials where that Secret comes from, name another Secret "
                "(RUNNER_CACHE_RELEASE__SECRET_NAME), or let runner-cache take it over "
                "(RUNNER_CACHE_RELEASE__ADOPT_SECRET=true)",
            )
        if not apply:
            return SecretOutcome(live, "update", drift)
        try:
            return _write_secret(kube, live, wanted, drift, labels, owner is not None, immutable)
        except ApiRefused as error:
            if error.code not in (404, 409):
                raise
            run_logger(__name__).info(
                "%s changed while runner-cache wrote it (HTTP %d): reading it again", where, error.code
            )
    raise KubernetesError(
        f"{where} kept changing while runner-cache wrote it", hint="something else writes it: stop that, then run again"
    )


def _write_secret(
    kube: Kube,
    live: dict,
    wanted: dict[str, str],
    drift: list[str],
    labels: dict[str, str],
    owned: bool,
    immutable: bool,
) -> SecretOutcome:
    meta = live["metadata"]
    namespace, name, version = meta["namespace"], meta["name"], meta["resourceVersion"]
    changed = {key: encode(wanted[key]) for key in drift}
    if immutable:  # adopted: an immutable Secret can only be replaced
        kube.delete("Secret", namespace, name, version)
        body = _secret_body(name, labels, {**(live.get("data") or {}), **changed}, live.get("type", "Opaque"))
        return SecretOutcome(kube.create("Secret", namespace, body), "replaced", drift)
    generation = int((meta.get("annotations") or {}).get(GENERATION_ANNOTATION, "0") or 0) + 1
    metadata: dict[str, Any] = {
        "resourceVersion": version,  # the API refuses the patch (409) if someone wrote the Secret since we read it
        "labels": labels,
        "annotations": {GENERATION_ANNOTATION: str(generation)},
    }
    if owned:
        metadata["ownerReferences"] = None  # adopted: its former owner no longer manages (or deletes) it
    patched = kube.patch("Secret", namespace, name, {"metadata": metadata, "data": changed})
    return SecretOutcome(patched, "updated", drift)


def ensure_cache_secret(release: ReleaseSettings, store: StoreSettings, *, apply: bool = True) -> StepResult:
    """The Secret the runner's chart names in ``runners.cache.secretName``, holding the store's credentials as
    ``accesskey``/``secretkey``: created when missing, updated only where a key differs (other keys stay).

    The values go to the API only; the result, the logs and any error name the keys, never their values.
    ``apply=False`` reads only and reports what it would do. ``data.credentials_version`` goes into the runner's
    pod annotation, so that new credentials — and nothing else — restart the runner (it reads them at start).
    """
    access, secret = store.credentials()
    wanted = {"accesskey": access.get_secret_value(), "secretkey": secret.get_secret_value()}
    namespace, name = release.namespace, release.secret_name
    where = f"Secret {namespace}/{name}"
    with timed() as timer, connect(release, redact=list(wanted.values())) as kube:
        outcome = converge_secret(kube, namespace, name, wanted, MANAGED_BY, adopt=release.adopt_secret, apply=apply)
        writes = list(kube.writes)
    keys = " and ".join(outcome.keys)
    differed = "it differed" if len(outcome.keys) == 1 else "they differed"
    status, detail = {
        "unchanged": ("unchanged", f"{where} already holds the store's accesskey and secretkey"),
        "create": ("planned", f"would create {where}"),
        "update": ("planned", f"would update {keys} in {where}"),
        "created": ("changed", f"created {where} with the store's accesskey and secretkey"),
        "updated": ("changed", f"updated {keys} in {where}: {differed} from the store's credentials"),
        "replaced": ("changed", f"replaced the immutable {where} to update its {keys} (adopted)"),
    }[outcome.action]
    if status == "changed":
        run_logger(__name__).info("%s", detail)
    return StepResult(
        step="secret",
        status=status,
        detail=detail,
        seconds=timer.seconds,
        data={
            "namespace": namespace,
            "secret": name,
            "changed_keys": outcome.keys,
            "writes": writes,
            "credentials_version": credentials_version(outcome.live),
        },
    )


def rollout_state(deployment: dict) -> tuple[bool, str]:
    """``(done, words)`` for a Deployment, by the rules of ``kubectl rollout status``.

    Raises:
        RolloutFailed: the controller gave up (``ProgressDeadlineExceeded``) or cannot create the pods at all:
            ``ReplicaFailure``, copied from the new ReplicaSet by ``pkg/controller/deployment/progress.go`` (a Pod
            Security Standard, a ResourceQuota, a missing service account…). Waiting longer would not help.
    """
    meta, spec, status = deployment["metadata"], deployment.get("spec", {}), deployment.get("status") or {}
    namespace, name = meta.get("namespace"), meta["name"]
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, "the controller has not yet seen the latest change"
    for condition in status.get("conditions") or []:
        message = condition.get("message", "")
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutFailed(f"deployment {namespace}/{name} exceeded its progress deadline: {message}".rstrip(": "))
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            hint = f"see `kubectl -n {namespace} get events`"
            if "PodSecurity" in message:
                hint = f"namespace {namespace} enforces a Pod Security Standard the pod does not meet; {hint}"
            elif "quota" in message:
                hint = f"a ResourceQuota in namespace {namespace} is full or needs requests and limits; {hint}"
            reason = condition.get("reason") or "ReplicaFailure"
            raise RolloutFailed(
                f"deployment {namespace}/{name} cannot create its pods ({reason}): {message}", hint=hint
            )
    wanted = spec.get("replicas", 1)
    updated, total, available = (status.get(key) or 0 for key in ("updatedReplicas", "replicas", "availableReplicas"))
    if updated < wanted:
        return False, f"{updated} of {wanted} replicas updated"
    if total > updated:
        return False, f"{total - updated} old replicas are pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas are available"
    return True, f"{available} of {wanted} replicas updated and available"


def wait_for_rollout(
    cluster: Cluster, namespace: str, deployment: str, timeout: float, interval: float = 2.0
) -> StepResult:
    """Poll the Deployment until its latest generation is fully rolled out (observedGeneration, updatedReplicas,
    availableReplicas), so that "upgraded" means the new pods serve, not just that the API accepted a spec.

    Raises:
        RolloutTimeout: not done within ``timeout`` seconds; says how far it got.
        RolloutFailed: the controller gave up, or cannot create the pods (see :func:`rollout_state`).
        KubernetesError: the Deployment does not exist.
    """
    where = f"{namespace}/{deployment}"
    with timed() as timer, connect(cluster) as kube:
        deadline = time.monotonic() + timeout
        while True:
            live = kube.get("Deployment", namespace, deployment)
            if live is None:
                raise KubernetesError(
                    f"deployment {where} does not exist: nothing to wait for (is the release name right?)"
                )
            done, words = rollout_state(live)
            if done:
                break
            if time.monotonic() >= deadline:
                raise RolloutTimeout(
                    f"deployment {where} did not finish its rollout within {timeout:g} s: {words}; "
                    f"see `kubectl -n {namespace} describe deployment {deployment}` and its pods' events"
                )
            time.sleep(min(interval, max(deadline - time.monotonic(), 0.05)))
    return StepResult(
        step="rollout",
        status="unchanged",
        detail=f"deployment {where} is rolled out: {words}",
        seconds=timer.seconds,
        data={
            "namespace": namespace,
            "deployment": deployment,
            "generation": live["metadata"].get("generation"),
            "state": words,
        },
    )
