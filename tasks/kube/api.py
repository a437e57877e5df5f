"""The Kubernetes API, through the official client: connecting, the runner's cache Secret, rollout waits.

Objects are read and written as the API's own JSON (raw responses, dict bodies) rather than the client's
generated models, so that our manifests read like the YAML users know, drift is compared on the API's field
names, and the code works on every client version pyproject allows (their generated models changed shape over time).

Errors: a cluster that does not answer, or answers 5xx, raises :class:`KubernetesUnreachable` (transient: the
task policy retries it); anything the API refuses (401, 403, 404 on a write, 409, 422) raises
:class:`KubernetesError`, which names the object and the API's reason. Neither ever carries a
request body, and ``redact`` values are scrubbed from the API's messages before they reach an exception.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.results import StepResult, timed

Cluster = ReleaseSettings | KubeStoreSettings  # anything that says which kubeconfig and context to use
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read: seconds for each API call
MANAGED_BY = {"app.kubernetes.io/managed-by": "runner-cache"}
SECRET_DATA_KEYS = ("accesskey", "secretkey")  # what the gitlab-runner chart reads from runners.cache.secretName
# kind -> (API group attribute, method suffix); the client's methods are read_<suffix>, create_<suffix>, patch_<suffix>.
_METHODS = {
    "Namespace": ("core", "namespace"),
    "Secret": ("core", "namespaced_secret"),
    "Service": ("core", "namespaced_service"),
    "PersistentVolumeClaim": ("core", "namespaced_persistent_volume_claim"),
    "Deployment": ("apps", "namespaced_deployment"),
}


def encode(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def api_client(cluster: Cluster) -> k8s.ApiClient:
    """A client for the configured kubeconfig/context; without either, the pod's service account when in a
    cluster, else ``$KUBECONFIG`` / ``~/.kube/config``."""
    if cluster.kubeconfig is not None and not cluster.kubeconfig.is_file():
        raise ConfigError(f"the kubeconfig {cluster.kubeconfig} does not exist")
    try:
        if cluster.kubeconfig is None and cluster.context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = k8s.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)
            return k8s.ApiClient(configuration)
        # $KUBECONFIG is read now: the client library reads it once, when it is imported
        config_file = str(cluster.kubeconfig) if cluster.kubeconfig else os.environ.get("KUBECONFIG") or None
        return k8s_config.new_client_from_config(config_file=config_file, context=cluster.context)
    except (ConfigException, OSError, ValueError) as error:
        where = cluster.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        context = f" (context {cluster.context!r})" if cluster.context else ""
        raise ConfigError(f"cannot use the kubeconfig {where}{context}: {error}") from None


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
        """A strategic-merge patch (the client's choice for a dict body): maps merge, named lists merge by name."""
        patched = self._call("patch", kind, namespace, name, body)
        self.writes.append(f"patched {kind} {_where(namespace, name)}")
        return patched

    def _call(self, verb: str, kind: str, namespace: str, name: str, body: dict | None) -> Any:
        group, suffix = _METHODS[kind]
        method = getattr(getattr(self, group), f"{verb}_{suffix}")
        args: list[Any] = {"read": [name], "create": [], "patch": [name]}[verb]
        args += [namespace] if namespace else []
        args += [body] if body is not None else []
        try:
            response = method(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
            return json.loads(response.data)
        except ApiException as error:
            if verb == "read" and error.status == 404:
                return None
            raise self._refused(error, verb, kind, _where(namespace, name)) from None
        except ValidationError as error:  # the client checks bodies before sending; never echo their values
            raise KubernetesError(
                f"the kubernetes client rejected the {kind} {_where(namespace, name)} ({error.error_count()} problems)"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubernetesUnreachable(
                f"the Kubernetes API at {self.host} is not reachable: {type(error).__name__}"
            ) from None

    def _refused(self, error: ApiException, verb: str, kind: str, where: str) -> Exception:
        message = self._scrub(_status_message(error))
        if error.status in (0, None) or error.status >= 500:
            return KubernetesUnreachable(
                f"the Kubernetes API at {self.host} answered HTTP {error.status} to {verb} {kind} {where}: {message}"
            )
        if error.status == 401:
            return KubernetesError(
                f"the Kubernetes API at {self.host} rejected the credentials (HTTP 401): check the kubeconfig and context"
            )
        if error.status == 403:
            return KubernetesError(
                f"not allowed to {verb} {kind} {where} (HTTP 403): {message}; grant the user or service account that permission (RBAC)"
            )
        return KubernetesError(
            f"the Kubernetes API refused to {verb} {kind} {where} (HTTP {error.status} {error.reason}): {message}"
        )

    def _scrub(self, text: str) -> str:
        return redact(text, self.redact)


def _where(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _status_message(error: ApiException) -> str:
    """The ``message`` of the API's Status answer; never the whole body."""
    try:
        return str(json.loads(error.body).get("message", "")).strip() or str(error.reason)
    except (TypeError, ValueError, AttributeError):
        return str(error.reason)


@contextmanager
def connect(cluster: Cluster, redact: Sequence[str] = ()) -> Iterator[Kube]:
    """A :class:`Kube` for ``cluster``, closed afterwards."""
    api = api_client(cluster)
    try:
        yield Kube(api, redact)
    finally:
        api.close()


def ensure_namespace(kube: Kube, namespace: str) -> bool:
    """Create ``namespace`` when missing; True when created."""
    if kube.get("Namespace", "", namespace) is not None:
        return False
    run_logger(__name__).info("creating namespace %s: it does not exist yet", namespace)
    kube.create(
        "Namespace",
        "",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": MANAGED_BY}},
    )
    return True


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


def ensure_cache_secret(release: ReleaseSettings, store: StoreSettings, *, apply: bool = True) -> StepResult:
    """The Secret the runner's chart names in ``runners.cache.secretName``, holding the store's credentials
    as ``accesskey``/``secretkey``: created when missing, updated only when a value differs.

    The values go to the API only; the result, the logs and any error name the keys, never their values.
    ``apply=False`` reads only and reports what it would do.
    """
    access, secret = store.credentials()
    wanted = {"accesskey": access.get_secret_value(), "secretkey": secret.get_secret_value()}
    namespace, name = release.namespace, release.secret_name
    where = f"Secret {namespace}/{name}"
    with timed() as timer, connect(release, redact=list(wanted.values())) as kube:
        live = kube.get("Secret", namespace, name)
        data = {key: encode(value) for key, value in wanted.items()}
        drift = (
            list(SECRET_DATA_KEYS)
            if live is None
            else [path.removeprefix("data.") for path in manifest_drift({"data": data}, live)]
        )
        if not drift:
            status, detail = "unchanged", f"{where} already holds the store's accesskey and secretkey"
        elif not apply:
            verb = "create" if live is None else f"update {' and '.join(drift)} in"
            status, detail = "planned", f"would {verb} {where}"
        elif live is None:
            ensure_namespace(kube, namespace)
            run_logger(__name__).info("creating %s with the store's accesskey and secretkey", where)
            live = kube.create(
                "Secret",
                namespace,
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "labels": MANAGED_BY},
                    "type": "Opaque",
                    "data": data,
                },
            )
            status, detail = "changed", f"created {where} with the store's accesskey and secretkey"
        else:
            words = f"{' and '.join(drift)} in {where}: {'it differed' if len(drift) == 1 else 'they differed'} from the store's credentials"
            run_logger(__name__).info("updating %s", words)
            live = kube.patch("Secret", namespace, name, {"data": {key: data[key] for key in drift}})
            status, detail = "changed", f"updated {words}"
        writes = list(kube.writes)
    return StepResult(
        step="secret",
        status=status,
        detail=detail,
        seconds=timer.seconds,
        data={
            "namespace": namespace,
            "secret": name,
            "changed_keys": drift if status != "unchanged" else [],
            "writes": writes,
            # changes whenever the Secret's data changes: put into the runner's pod template, it restarts the pods
            "resource_version": (live or {}).get("metadata", {}).get("resourceVersion"),
        },
    )


def rollout_state(deployment: dict) -> tuple[bool, str]:
    """``(done, words)`` for a Deployment, by the rules of ``kubectl rollout status``.

    Raises:
        RolloutFailed: the controller reports ``ProgressDeadlineExceeded``.
    """
    meta, spec, status = deployment["metadata"], deployment.get("spec", {}), deployment.get("status") or {}
    name = f"{meta.get('namespace')}/{meta['name']}"
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, "the controller has not yet seen the latest change"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutFailed(
                f"deployment {name} exceeded its progress deadline: {condition.get('message', '')}".rstrip(": ")
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
        RolloutFailed: the controller gave up (progress deadline exceeded).
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
