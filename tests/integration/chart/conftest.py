"""Chart tests: the real helm binary with its own state dirs, the fixture charts, and configurations per scheme."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runner_cache.errors import ConfigError
from runner_cache.tasks.chart.helm_cli import HELM_ENV, helm_binary


@pytest.fixture(scope="session")
def real_helm() -> Path:
    """helm as runner-cache finds it (make test puts the pinned one on PATH); tests skip only when there is none at all."""
    try:
        candidate: Path | None = helm_binary()
    except ConfigError:
        candidate = None
    if candidate is None:
        pytest.skip("helm is not installed: run scripts/get-helm.sh (make test does)")
    version = subprocess.run(
        [str(candidate), "version", "--template", "{{.Version}}"], capture_output=True, text=True, timeout=30
    )
    assert version.returncode == 0 and version.stdout.startswith("v"), (
        f"{candidate} is not a working helm: {version.stderr}"
    )
    return candidate


@pytest.fixture
def helm(real_helm: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point our code at the real helm, with helm's cache/config/data in a temp dir (per test: no leaks)."""
    home = tmp_path_factory.mktemp("helm-home")
    monkeypatch.setenv(HELM_ENV, str(real_helm))
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()))
    return real_helm


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory for pulled, unpacked and patched charts, as prepare_chart wants."""
    path = tmp_path / "work"
    path.mkdir()
    return path
