"""The ``kubernetes`` backend: MinIO inside the cluster, as four objects in ``store.kubernetes.namespace``.

- Secret ``<name>-credentials``: ``MINIO_ROOT_USER`` / ``MINIO_ROOT_PASSWORD``, the store's access and secret key;
- PVC ``<name>-data``: the data, ReadWriteOnce, ``storage_size`` (may grow when the storage class allows, never shrink);
- Deployment ``<name>``: one MinIO pod, readiness probe on ``/minio/health/ready``, liveness on ``/minio/health/live``;
- Service ``<name>``: ClusterIP, port 9000.

A Deployment with strategy ``Recreate``, not a StatefulSet: one replica with one claim needs no stable pod
identity, a StatefulSet's ``volumeClaimTemplates`` can never change after creation (so the volume could not
grow), and ``Recreate`` stops the old pod before the new one mounts the ReadWriteOnce volume.

Idempotent: each object is created when missing; otherwise only the fields we set are compared with the live
object (defaults the API server filled in are ignored) and patched when one differs, and the step names the
fields that drifted. The pod template carries the credentials Secret's version (its uid and how often we wrote its
data: ``runner_cache.tasks.kube.api.credentials_version``), so new credentials restart MinIO, which reads them at
start — and a label someone adds to the Secret does not.

The pod meets the ``restricted`` Pod Security Standard (kubernetes.io/docs/concepts/security/pod-security-standards:
non-root uid, no privilege escalation, all capabilities dropped, the RuntimeDefault seccomp profile; ``fsGroup`` makes
the volume writable for that uid, and MinIO's certs directory is an emptyDir instead of ``$HOME/.minio``), asks for
CPU and memory (a ResourceQuota that tracks them refuses pods without requests and limits), and its probes get 5 s
(the 1 s default fails a busy MinIO). A pod the namespace still refuses shows as the Deployment's ``ReplicaFailure``
condition, which the rollout wait reports at once instead of waiting out its timeout.

RBAC: the ``store`` Role of docs/deployments.md (get, create, patch on the four kinds); the namespace is never read —
when a create answers that it is missing, it is created (the optional ``namespaces`` ClusterRole).

Endpoint: pods reach MinIO at ``http://<name>.<namespace>.svc.<cluster domain>:9000``, which is what the
runner's ``ServerAddress`` must name. This flow reaches it at ``store.endpoint``: the same name when the flow
runs in the cluster, or a ``kubectl port-forward`` address when it does not.
"""

from __future__ import annotations

import re

from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import UsageError, WorkFailed
from runner_cache.tasks.kube.api import (
    MANAGED_BY,
    Kube,
    connect,
    converge_secret,
    create_in_namespace,
    credentials_version,
    manifest_drift,
    wait_for_rollout,
)
from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.results import StepResult, timed

PORT = 9000
DATA_DIR = "/data"
CERTS_DIR = "/tmp/certs"  # MinIO creates its certs directory at start; $HOME/.minio is not writable for a non-root uid
MINIO_UID = 1000  # any non-root uid works: MinIO needs only its data directory (minio/minio#9398)
# Requests and limits: a ResourceQuota that tracks cpu/memory refuses pods that do not state them.
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
PROBE_TIMEOUT = 5  # seconds; the API's default of 1 s fails a MinIO busy with uploads
CREDENTIALS_ANNOTATION = "runner-cache.io/credentials-version"
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTORS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_FACTORS |= {suffix: 1024 ** (power + 1) for power, suffix in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))}


class KubeStoreError(WorkFailed):
    """The live objects cannot be brought to the configuration without losing data (a smaller or other volume)."""


def quantity_bytes(value: str) -> float:
    """A Kubernetes storage quantity in bytes; the API server may print ``1024Mi`` back as ``1Gi``."""
    match = _QUANTITY.match(value)
    if not match:
        raise KubeStoreError(f"cannot read the storage quantity {value!r}")
    return float(match[1]) * _FACTORS[match[2] or ""]


def _selector(store: StoreSettings) -> dict[str, str]:
    return {"app.kubernetes.io/name": "minio", "app.kubernetes.io/instance": store.kubernetes.name}


def _labels(store: StoreSettings) -> dict[str, str]:
    return {**_selector(store), **MANAGED_BY}


def _names(store: StoreSettings) -> tuple[str, str, str]:
    """Deployment/Service, Secret and PVC names."""
    name = store.kubernetes.name
    return name, f"{name}-credentials", f"{name}-data"


def secret_values(store: StoreSettings) -> dict[str, str]:
    """The credentials Secret's data, plain (``converge_secret`` encodes it)."""
    access, secret = store.credentials()
    return {"MINIO_ROOT_USER": access.get_secret_value(), "MINIO_ROOT_PASSWORD": secret.get_secret_value()}


def pvc_manifest(store: StoreSettings) -> dict:
    spec: dict = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": store.kubernetes.storage_size}},
    }
    if store.kubernetes.storage_class:
        spec["storageClassName"] = store.kubernetes.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": _names(store)[2], "labels": _labels(store)},
        "spec": spec,
    }


def deployment_manifest(store: StoreSettings, credentials_version: str) -> dict:
    name, secret, claim = _names(store)

    def from_secret(key: str) -> dict:
        return {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}

    def probe(path: str, **timing: int) -> dict:
        return {"httpGet": {"path": path, "port": PORT}, "timeoutSeconds": PROBE_TIMEOUT, **timing}

    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": _labels(store)},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate", "rollingUpdate": None},  # null removes a RollingUpdate left by others
            "selector": {"matchLabels": _selector(store)},
            "template": {
                "metadata": {"labels": _labels(store), "annotations": {CREDENTIALS_ANNOTATION: credentials_version}},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": MINIO_UID,
                        "runAsGroup": MINIO_UID,
                        "fsGroup": MINIO_UID,
                        "fsGroupChangePolicy": "OnRootMismatch",
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "minio",
                            "image": store.kubernetes.image,
                            "args": ["server", DATA_DIR, "--address", f":{PORT}", "--certs-dir", CERTS_DIR],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "runAsNonRoot": True,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "resources": RESOURCES,
                            "env": [
                                from_secret("MINIO_ROOT_USER"),
                                from_secret("MINIO_ROOT_PASSWORD"),
                                {"name": "MINIO_SITE_REGION", "value": store.region},
                            ],
                            "ports": [{"name": "s3", "containerPort": PORT}],
                            "readinessProbe": probe("/minio/health/ready", periodSeconds=5),
                            "livenessProbe": probe("/minio/health/live", initialDelaySeconds=10, periodSeconds=20),
                            "volumeMounts": [
                                {"name": "data", "mountPath": DATA_DIR},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": claim}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def service_manifest(store: StoreSettings) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": _names(store)[0], "labels": _labels(store)},
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(store),
            "ports": [{"name": "s3", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
        },
    }


def _pvc_drift(store: StoreSettings, live: dict) -> list[str]:
    """What differs on the PVC; refuses what would need a new volume (and so lose the data)."""
    name, spec = live["metadata"]["name"], live.get("spec", {})
    wanted_class = store.kubernetes.storage_class
    if wanted_class and spec.get("storageClassName") != wanted_class:
        raise KubeStoreError(
            f"PVC {store.kubernetes.namespace}/{name} uses storage class {spec.get('storageClassName')!r}, not {wanted_class!r}; "
            "a claim's class cannot change: set RUNNER_CACHE_STORE__KUBERNETES__STORAGE_CLASS back, or move the data and delete the PVC yourself"
        )
    live_size = spec.get("resources", {}).get("requests", {}).get("storage", "0")
    wanted = quantity_bytes(store.kubernetes.storage_size)
    if wanted < quantity_bytes(live_size):
        raise KubeStoreError(
            f"PVC {store.kubernetes.namespace}/{name} has {live_size}; volumes cannot shrink to {store.kubernetes.storage_size}: "
            f"set RUNNER_CACHE_STORE__KUBERNETES__STORAGE_SIZE to {live_size} or more"
        )
    return ["storage size"] if wanted > quantity_bytes(live_size) else []


def _reconcile(kube: Kube, store: StoreSettings, wanted: dict, actions: list[str], *, apply: bool) -> dict | None:
    """Create ``wanted`` when missing, patch it on drift, and say so in ``actions``; the live object (None when
    it is missing and only planned)."""
    namespace, kind, name = store.kubernetes.namespace, wanted["kind"], wanted["metadata"]["name"]
    live = kube.get(kind, namespace, name)
    if live is None:
        actions.append(f"{'created' if apply else 'create'} {kind} {name}")
        if not apply:
            return None
        run_logger(__name__).info("creating %s %s/%s: it does not exist yet", kind, namespace, name)
        return create_in_namespace(kube, kind, namespace, wanted)
    if kind == "PersistentVolumeClaim":
        drift, patch = _pvc_drift(store, live), {"spec": {"resources": wanted["spec"]["resources"]}}
    else:
        drift, patch = manifest_drift(wanted, live), wanted
    if not drift:
        return live
    words = f"{kind} {name} ({', '.join(drift)} differed)"
    actions.append(f"{'patched' if apply else 'patch'} {words}")
    if not apply:
        return live
    run_logger(__name__).info("patching %s in namespace %s: it drifted from the configuration", words, namespace)
    return kube.patch(kind, namespace, name, patch)


def ensure(store: StoreSettings, *, apply: bool = True) -> StepResult:
    """Create or repair MinIO in the cluster, then wait until its pod is ready (the readiness probe passed).

    ``apply=False`` reads only and reports what it would create or patch (status ``planned``).
    """
    config = store.kubernetes
    namespace, endpoint = config.namespace, config.service_endpoint()
    access, secret = store.credentials()
    actions: list[str] = []
    with timed() as timer:
        with connect(config, redact=[access.get_secret_value(), secret.get_secret_value()]) as kube:
            secret_name = _names(store)[1]
            outcome = converge_secret(kube, namespace, secret_name, secret_values(store), _labels(store), apply=apply)
            if f"created Namespace {namespace}" in kube.writes:
                actions.append(f"created namespace {namespace}")
            if outcome.action in {"create", "created"}:
                actions.append(f"{outcome.action} Secret {secret_name}")
            elif outcome.action in {"update", "updated"}:
                verb = "patched" if apply else "patch"
                actions.append(
                    f"{verb} Secret {secret_name} ({', '.join(f'data.{key}' for key in outcome.keys)} differed)"
                )
            _reconcile(kube, store, pvc_manifest(store), actions, apply=apply)
            version = credentials_version(outcome.live)
            _reconcile(kube, store, deployment_manifest(store, version), actions, apply=apply)
            _reconcile(kube, store, service_manifest(store), actions, apply=apply)
            writes = list(kube.writes)
        if not apply:
            status = "planned" if actions else "unchanged"
            detail = f"would {', '.join(actions)} for " if actions else ""
            detail += f"MinIO in namespace {namespace}" + ("" if actions else " is as configured")
        else:
            rollout = wait_for_rollout(config, namespace, config.name, config.rollout_timeout)
            status = "changed" if actions else "unchanged"
            done = "; ".join(actions) + "; " if actions else f"MinIO in namespace {namespace} runs as configured; "
            detail = f"{done}it is ready at {endpoint} ({rollout.data['state']})"
            if store.endpoint != endpoint:
                run_logger(__name__).info(
                    "the runner will reach MinIO at %s; this flow reaches it at %s (RUNNER_CACHE_STORE__ENDPOINT): the "
                    "service address when the flow runs in the cluster, or a `kubectl port-forward svc/%s -n %s` address",
                    endpoint,
                    store.endpoint,
                    config.name,
                    namespace,
                )
    return StepResult(
        step="store",
        status=status,
        detail=detail,
        seconds=timer.seconds,
        data={
            "backend": "kubernetes",
            "endpoint": endpoint,
            "flow_endpoint": store.endpoint,
            "namespace": namespace,
            "deployment": config.name,
            "image": config.image,
            "actions": actions,
            "writes": writes,
        },
    )


def status(store: StoreSettings) -> dict:
    """What ``ensure(apply=False)`` finds in the cluster, as a status document."""
    planned = ensure(store, apply=False)
    return {
        "backend": "kubernetes",
        "endpoint": planned.data["endpoint"],
        "as_configured": planned.status == "unchanged",
        "detail": planned.detail,
    }


def stop(store: StoreSettings, *, apply: bool = True) -> StepResult:
    """MinIO in the cluster belongs to the cluster's operators: runner-cache does not stop it."""
    raise UsageError(
        f"`store stop` does not stop MinIO in a cluster; scale it yourself: kubectl scale deployment/{store.kubernetes.name} "
        f"-n {store.kubernetes.namespace} --replicas=0 (the volume is kept)"
    )
