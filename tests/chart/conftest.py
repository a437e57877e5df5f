"""Chart tests: the real helm binary with its own state dirs, the fixture charts, and configurations per scheme."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from blocks.cache import CacheSettings
from blocks.release import ReleaseSettings
from blocks.settings import RunnerCacheSections
from blocks.store import StoreSettings
from tasks.chart_source import HELM_ENV, PROJECT_HELM

CHARTS = Path(__file__).resolve().parents[1] / "charts"
# fixture dir → (Chart.yaml version, generation)
FIXTURES = {
    "pre-0.3": ("0.2.0", "pre-0.3"),
    "legacy": ("0.36.0", "legacy"),
    "legacy-handpatched": ("0.15.0", "legacy"),
    "modern": ("0.60.0", "modern"),
}
ACCESS_KEY = "rc-chart-access"
SECRET_KEY = "rc-chart-secret-0123456789"


@pytest.fixture(scope="session")
def real_helm() -> Path:
    """The pinned helm from scripts/get-helm.sh, else one on PATH; tests skip only when there is none at all."""
    candidate = PROJECT_HELM if PROJECT_HELM.is_file() else (Path(found) if (found := shutil.which("helm")) else None)
    if candidate is None:
        pytest.skip("helm is not installed: run scripts/get-helm.sh (make test does)")
    version = subprocess.run([str(candidate), "version", "--template", "{{.Version}}"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("v"), f"{candidate} is not a working helm: {version.stderr}"
    return candidate


@pytest.fixture
def helm(real_helm: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point our code at the real helm, with helm's cache/config/data in a temp dir (per test: no leaks)."""
    home = tmp_path_factory.mktemp("helm-home")
    monkeypatch.setenv(HELM_ENV, str(real_helm))
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()))
    return real_helm


def sections(scheme: str = "http", *, path: str = "", shared: bool = False, **release: object) -> RunnerCacheSections:
    """A configuration whose store endpoint has ``scheme`` (http → Insecure true)."""
    port = 9000 if scheme == "http" else 443
    return RunnerCacheSections(
        store=StoreSettings(
            backend="external",
            endpoint=f"{scheme}://minio.runner-cache.svc:{port}",
            access_key=SecretStr(ACCESS_KEY),
            secret_key=SecretStr(SECRET_KEY),
            bucket="ci-cache",
            region="eu-west-1",
        ),
        cache=CacheSettings(path=path, shared=shared),
        release=ReleaseSettings(**release),
    )


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: its sha256 and mode, to prove a directory was not touched."""
    return {
        str(path.relative_to(root)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def chart_copy(tmp_path: Path, fixture: str, name: str | None = None) -> Path:
    """A writable copy of a fixture chart, for tests that break or vary it."""
    target = tmp_path / (name or fixture)
    shutil.copytree(CHARTS / fixture, target)
    return target


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory for pulled, unpacked and patched charts, as prepare_chart wants."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def write_values(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my-values.yaml"
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o600)
    return path
