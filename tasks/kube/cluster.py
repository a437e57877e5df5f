"""Which cluster runner-cache talks to: ONE rule for the Kubernetes client and for helm.

helm loads its cluster with client-go's ``DeferredLoadingClientConfig``
(``staging/src/k8s.io/client-go/tools/clientcmd/merged_client_builder.go``, ``ClientConfig``): the kubeconfig —
``--kubeconfig``, else the files listed in ``$KUBECONFIG``, else ``~/.kube/config`` — and only when that yields
nothing, the pod's service account. The python client's defaults differ (``kubernetes/config/__init__.py``
``load_config``), and runner-cache used to prefer the service account whenever ``KUBERNETES_SERVICE_HOST`` was set:
in a pod with ``KUBECONFIG`` set, the Secret went to one cluster and the release to another.

:func:`select_cluster` decides once, in client-go's order, and both sides take its answer: the API client loads
exactly those files and that context, helm gets them as ``--kubeconfig``/``--kube-context`` (or ``KUBECONFIG``
for a list of files), and for the service account helm runs without ``KUBECONFIG``, as client-go then does too.
Nothing here imports the kubernetes client, so helm's side can use it alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runner_cache.errors import ConfigError

# client-go's inClusterClientConfig.Possible(): both variables set and this file present
TOKEN_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True)
class ClusterTarget:
    """The chosen cluster: kubeconfig files (merged in this order) and a context, or the pod's service account."""

    source: Literal["kubeconfig", "in-cluster"]
    kubeconfig: tuple[Path, ...] = ()
    context: str | None = None
    reason: str = ""

    def describe(self) -> str:
        """Which cluster, in words, for messages and logs."""
        if self.source == "in-cluster":
            return f"the pod's service account ({self.reason})"
        files = os.pathsep.join(str(path) for path in self.kubeconfig)
        context = f"context {self.context}" if self.context else "its current context"
        return f"kubeconfig {files}, {context} ({self.reason})"

    def helm_args(self) -> list[str]:
        """The flags that make helm pick this same cluster."""
        args = ["--kubeconfig", str(self.kubeconfig[0])] if len(self.kubeconfig) == 1 else []
        return args + (["--kube-context", self.context] if self.context else [])

    def helm_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """helm's environment: ``KUBECONFIG`` is the chosen list of files, or absent (one file goes as a flag)."""
        env = {name: value for name, value in environ.items() if name != "KUBECONFIG"}
        if len(self.kubeconfig) > 1:
            env["KUBECONFIG"] = os.pathsep.join(str(path) for path in self.kubeconfig)
        return env


def select_cluster(
    kubeconfig: Path | None, context: str | None, environ: Mapping[str, str] | None = None
) -> ClusterTarget:
    """client-go's order: the configured kubeconfig; else the existing files of ``$KUBECONFIG``; else
    ``~/.kube/config``; else the pod's service account.

    Raises:
        ConfigError: the configured kubeconfig does not exist, a context is named where only the service account
            is, or there is no cluster at all.
    """
    environ = os.environ if environ is None else environ
    if kubeconfig is not None:
        if not kubeconfig.is_file():
            raise ConfigError(f"the kubeconfig {kubeconfig} does not exist")
        return ClusterTarget("kubeconfig", (kubeconfig,), context, "configured")
    listed = [Path(item) for item in environ.get("KUBECONFIG", "").split(os.pathsep) if item]
    existing = tuple(path for path in listed if path.is_file())
    if existing:
        return ClusterTarget("kubeconfig", existing, context, "$KUBECONFIG")
    home = Path(environ.get("HOME") or Path.home()) / ".kube" / "config"
    if home.is_file():
        return ClusterTarget("kubeconfig", (home,), context, "~/.kube/config")
    in_pod = bool(environ.get("KUBERNETES_SERVICE_HOST") and environ.get("KUBERNETES_SERVICE_PORT"))
    if in_pod and TOKEN_FILE.is_file():
        if context is not None:
            raise ConfigError(
                f"a kubeconfig context ({context!r}) is set, but there is no kubeconfig, only the pod's service account"
            )
        return ClusterTarget("in-cluster", reason="no kubeconfig found, running in a pod")
    looked = "".join(f"{path}, " for path in listed)
    raise ConfigError(
        f"no Kubernetes cluster configured: found no kubeconfig ({looked}{home}) and no pod service account; "
        "set KUBECONFIG, or RUNNER_CACHE_RELEASE__KUBECONFIG / RUNNER_CACHE_STORE__KUBERNETES__KUBECONFIG"
    )
