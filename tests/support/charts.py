"""Chart test helpers without fixtures: the fixture charts, configurations per scheme, values files, tree digests."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path

from pydantic import SecretStr

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.release import ReleaseSettings
from runner_cache.blocks.settings import RunnerCacheSections
from runner_cache.blocks.store import StoreSettings

CHARTS = Path(__file__).resolve().parents[1] / "charts"
# fixture dir → (Chart.yaml version, generation)
FIXTURES = {
    "pre-0.3": ("0.2.0", "pre-0.3"),
    "legacy": ("0.36.0", "legacy"),
    "legacy-handpatched": ("0.15.0", "legacy"),
    "modern": ("0.60.0", "modern"),
    "legacy-templated": ("0.45.0", "legacy"),
    "modern-templated": ("0.86.0", "modern"),
}
ACCESS_KEY = "rc-chart-access"
SECRET_KEY = "rc-chart-secret-0123456789"


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


def write_values(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my-values.yaml"
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def umbrella_chart(tmp_path: Path, *, packaged: bool = True, runner: str = "modern-templated") -> Path:
    """The ``umbrella`` fixture with the fixture chart ``runner`` as its gitlab-runner dependency in ``charts/``:
    packed as helm packs it (``gitlab-runner-<version>.tgz`` holding ``gitlab-runner/``), or unpacked."""
    root = chart_copy(tmp_path, "umbrella")
    version = FIXTURES[runner][0]
    chart_yaml = root / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 0.86.0", f"version: {version}"))
    charts = root / "charts"
    charts.mkdir()
    if not packaged:
        shutil.copytree(CHARTS / runner, charts / "gitlab-runner")
        return root
    with tarfile.open(charts / f"gitlab-runner-{version}.tgz", "w:gz") as package:
        package.add(CHARTS / runner, arcname="gitlab-runner")
    return root
