"""Which ``helm`` runs, and running it. One rule, first match wins:

1. ``$RUNNER_CACHE_HELM``: an explicit path, which must be an executable file;
2. ``helm`` on ``PATH``;
3. ``helm`` beside the running Python (``<venv>/bin/helm``: ``make install`` links the pinned binary there), so an
   installed runner-cache finds it wherever the repository is, or without one.

helm keeps its own state in ``HELM_CACHE_HOME`` / ``HELM_CONFIG_HOME`` / ``HELM_DATA_HOME``; they pass through.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from runner_cache.errors import ChartError, ConfigError

HELM_ENV = "RUNNER_CACHE_HELM"


def helm_binary() -> Path:
    """The helm executable, by the rule in this module's docstring."""
    explicit = os.environ.get(HELM_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"{HELM_ENV} names {path}, which is not an executable file")
        return path
    found = shutil.which("helm")
    if found:
        return Path(found)
    beside = Path(sys.executable).parent / "helm"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    raise ConfigError(
        f"helm not found: put helm (>= 3.14) on PATH, set {HELM_ENV}, or run scripts/get-helm.sh {beside.parent}"
    )


def run_helm(args: list[str], *, timeout: float, stdin: str | None = None) -> str:
    """Run helm with ``args`` (never a secret: values go through ``stdin``) and return its stdout.

    Raises:
        ChartError: helm failed or did not finish within ``timeout`` seconds; the message carries helm's stderr.
    """
    command = [str(helm_binary()), *args]
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ChartError(f"helm {args[0]} did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        raise ChartError(f"helm {args[0]} failed: {done.stderr.strip() or f'exit code {done.returncode}'}")
    return done.stdout
