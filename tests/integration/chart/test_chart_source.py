"""Locating charts (directory, .tgz, helm pull from a repository on 127.0.0.1), generations, and which helm runs."""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runner_cache.errors import ChartError, ConfigError
from runner_cache.tasks.chart.helm_cli import HELM_ENV, helm_binary, run_helm
from runner_cache.tasks.chart.source import locate_chart
from tests.support.charts import CHARTS, FIXTURES, chart_copy, tree_digest

UNUSED_REPO = "http://127.0.0.1:9/unused"


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_local_directory_is_used_in_place(fixture: str, workdir: Path) -> None:
    before = tree_digest(CHARTS / fixture)
    source = locate_chart(str(CHARTS / fixture), None, UNUSED_REPO, workdir)
    assert (source.version, source.generation) == FIXTURES[fixture]
    assert source.path == (CHARTS / fixture).resolve() and source.local and source.name == "gitlab-runner"
    assert tree_digest(CHARTS / fixture) == before and list(workdir.iterdir()) == []


def _package(helm: Path, fixture: str, dest: Path) -> Path:
    subprocess.run(
        [str(helm), "package", str(CHARTS / fixture), "--destination", str(dest)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return dest / f"gitlab-runner-{FIXTURES[fixture][0]}.tgz"


def test_tgz_is_unpacked_into_the_workdir(helm: Path, tmp_path: Path, workdir: Path) -> None:
    archive = _package(helm, "modern", tmp_path)
    source = locate_chart(str(archive), "0.60.0", UNUSED_REPO, workdir)
    assert source.generation == "modern" and not source.local
    assert source.path.is_relative_to(workdir) and (source.path / "templates" / "_cache.tpl").is_file()


@pytest.fixture
def chart_repo(helm: Path, tmp_path: Path) -> Iterator[str]:
    """A Helm chart repository (index.yaml + packages) served over HTTP on 127.0.0.1."""
    root = tmp_path / "repo"
    root.mkdir()
    for fixture in ("legacy", "modern"):
        _package(helm, fixture, root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    url = f"http://127.0.0.1:{server.server_address[1]}"
    subprocess.run([str(helm), "repo", "index", str(root), "--url", url], check=True, capture_output=True, timeout=60)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.mark.parametrize(
    ("reference", "version", "generation"),
    [("gitlab/gitlab-runner", "0.36.0", "legacy"), ("gitlab-runner", "0.60.0", "modern")],
)
def test_repo_reference_is_pulled(
    chart_repo: str, workdir: Path, reference: str, version: str, generation: str
) -> None:
    source = locate_chart(reference, version, chart_repo, workdir)
    assert (source.version, source.generation, source.local) == (version, generation, False)
    assert source.path == workdir / "pulled" / "gitlab-runner"


def test_pull_without_version_takes_the_newest(chart_repo: str, workdir: Path) -> None:
    assert locate_chart("gitlab/gitlab-runner", None, chart_repo, workdir).version == "0.60.0"


def test_pull_of_a_missing_version_says_what_failed(chart_repo: str, workdir: Path) -> None:
    with pytest.raises(
        ChartError,
        match=r"no local chart at 'gitlab/gitlab-runner', and pulling it from http://127\.0\.0\.1:\d+ failed: helm pull failed: .*0\.99\.0",
    ):
        locate_chart("gitlab/gitlab-runner", "0.99.0", chart_repo, workdir)


def test_missing_path_is_a_config_error(tmp_path: Path, workdir: Path) -> None:
    with pytest.raises(ConfigError, match=r"chart path .*/nowhere/chart does not exist"):
        locate_chart(str(tmp_path / "nowhere" / "chart"), None, UNUSED_REPO, workdir)


def test_directory_without_chart_yaml(tmp_path: Path, workdir: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="is not a Helm chart: it has no Chart.yaml"):
        locate_chart(str(tmp_path / "empty"), None, UNUSED_REPO, workdir)


def test_file_that_is_not_a_chart_archive(tmp_path: Path, workdir: Path) -> None:
    path = tmp_path / "chart.tgz"
    path.write_text("not a tarball")
    with pytest.raises(ConfigError, match="is a file but not a chart archive"):
        locate_chart(str(path), None, UNUSED_REPO, workdir)


@pytest.mark.parametrize(
    ("chart_yaml", "message"),
    [
        ("name: gitlab-runner\nappVersion: 14.6.0\n", "has no version: cannot tell the chart's generation"),
        ("name: gitlab-runner\nversion: latest\n", r"chart version 'latest' is not a semantic version"),
        ("name: [gitlab-runner\n", "is not valid YAML"),
    ],
)
def test_bad_chart_yaml(tmp_path: Path, workdir: Path, chart_yaml: str, message: str) -> None:
    chart = chart_copy(tmp_path, "legacy")
    (chart / "Chart.yaml").write_text(chart_yaml)
    with pytest.raises(ConfigError, match=message):
        locate_chart(str(chart), None, UNUSED_REPO, workdir)


def test_unknown_generation_when_templates_read_no_cache_settings(tmp_path: Path, workdir: Path) -> None:
    chart = tmp_path / "nginx"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: nginx\nversion: 1.2.3\n")
    (chart / "templates" / "deployment.yaml").write_text("kind: Deployment\n")
    with pytest.raises(
        ConfigError, match=r"unknown chart generation: .*read neither runners.cache.s3\* nor runners.config"
    ):
        locate_chart(str(chart), None, UNUSED_REPO, workdir)


@pytest.mark.parametrize(
    ("fixture", "version", "message"),
    [
        ("legacy", "0.60.0", r"says 0\.60\.0 \(modern.*read runners.cache.s3\* like a legacy chart"),
        ("modern", "0.40.0", r"says 0\.40\.0 \(legacy\) but the templates .* do not read runners.cache.s3\*"),
    ],
)
def test_version_and_templates_must_agree(
    tmp_path: Path, workdir: Path, fixture: str, version: str, message: str
) -> None:
    chart = chart_copy(tmp_path, fixture)
    chart_yaml = chart / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace(f"version: {FIXTURES[fixture][0]}", f"version: {version}"))
    with pytest.raises(ConfigError, match=message):
        locate_chart(str(chart), None, UNUSED_REPO, workdir)


def test_requested_version_must_match_a_local_chart(workdir: Path) -> None:
    with pytest.raises(ConfigError, match=r"is version 0\.36\.0, not the requested 0\.37\.0"):
        locate_chart(str(CHARTS / "legacy"), "0.37.0", UNUSED_REPO, workdir)


def _executable(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_helm_env_var_wins_over_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = _executable(tmp_path / "bin" / "helm", "exit 0")
    explicit = _executable(tmp_path / "pinned" / "helm", "exit 0")
    monkeypatch.setenv("PATH", str(on_path.parent))
    monkeypatch.delenv(HELM_ENV, raising=False)
    assert helm_binary() == on_path
    monkeypatch.setenv(HELM_ENV, str(explicit))
    assert helm_binary() == explicit


def test_helm_env_var_must_name_an_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "helm").write_text("not executable")
    monkeypatch.setenv(HELM_ENV, str(tmp_path / "helm"))
    with pytest.raises(ConfigError, match=f"{HELM_ENV} names .* which is not an executable file"):
        helm_binary()


def test_helm_beside_python_is_the_last_resort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed runner-cache finds the helm its venv carries, wherever the repository is (or without one)."""
    monkeypatch.delenv(HELM_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    installed = _executable(tmp_path / "venv" / "bin" / "helm", "exit 0")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    assert helm_binary() == installed
    monkeypatch.setattr(sys, "executable", str(tmp_path / "other" / "bin" / "python"))
    with pytest.raises(ConfigError, match="helm not found: put helm"):
        helm_binary()


def test_helm_errors_carry_helms_message(helm: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ChartError, match=r"helm template failed: .*no such file or directory|helm template failed: .*not found"
    ):
        run_helm(["template", "x", str(tmp_path / "absent-chart")], timeout=30)


def test_helm_is_stopped_at_its_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HELM_ENV, str(_executable(tmp_path / "slow-helm", "exec sleep 30")))
    with pytest.raises(ChartError, match=r"helm template did not finish within 0\.5 s"):
        run_helm(["template", "x", "y"], timeout=0.5)
