"""Find the gitlab-runner chart to install: a local directory or ``.tgz``, or a repository reference pulled with helm.

The chart's *generation* decides which values configure the cache (see DESIGN.md, "The chart, by generation"):
Chart.yaml's version places it, and the templates must agree — a chart whose templates read neither
``runners.cache.s3*`` nor ``runners.config`` is not one we know how to configure.

An *umbrella* chart (a team's, or a platform's like DoD-Platform-One's 0.77.2-bb.1+, chart/Chart.yaml@7832826)
depends on gitlab-runner under an alias (``upstream``) and vendors its package in ``charts/``: the runner chart
is that dependency, its generation is the dependency's, and its values go under the alias (:class:`RunnerChart`).
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runner_cache.errors import ChartError, ConfigError
from runner_cache.tasks.chart.helm_cli import run_helm
from runner_cache.tasks.chart.values import Generation

PULL_TIMEOUT = 120.0
LEGACY_FROM = (0, 3, 0)
MODERN_FROM = (0, 53, 0)

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?$")
_REPO_REF = re.compile(r"^(oci://\S+|[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9._-]*)?)$")
_READS_S3_VALUES = re.compile(r"\.Values\.runners\.cache\.s3(ServerAddress|BucketName|BucketLocation|CacheInsecure)\b")
_READS_CONFIG = re.compile(r"\.Values\.runners\.config\b")


@dataclass(frozen=True)
class RunnerChart:
    """The gitlab-runner chart inside the chart to install: the chart itself, or an umbrella chart's dependency.

    ``values_key``: the key the umbrella passes the runner's values under (the dependency's alias, else its name),
    None when the chart is the runner chart itself. ``path``: the runner chart's root (a ``charts/*.tgz`` is
    unpacked into the caller's workdir to read it). ``package``: its entry in the umbrella's ``charts/``.
    """

    path: Path
    name: str
    version: str
    values_key: str | None = None
    package: str | None = None


@dataclass(frozen=True)
class ChartSource:
    """A chart ready to render: ``path`` is its root directory (``local`` when it is the user's own, never written);
    ``runner`` the gitlab-runner chart in it, whose version gives the ``generation``."""

    reference: str
    path: Path
    name: str
    version: str
    generation: Generation
    local: bool
    runner: RunnerChart


def parse_version(version: str) -> tuple[int, int, int]:
    """``major.minor.patch`` of a chart version (``v`` prefix, pre-release and build suffixes allowed)."""
    match = _VERSION.match(version.strip())
    if not match:
        raise ConfigError(f"chart version {version!r} is not a semantic version (major.minor.patch)")
    return int(match[1]), int(match[2]), int(match[3])


def read_chart_yaml(root: Path) -> tuple[str, str]:
    """``(name, version)`` from ``root/Chart.yaml``."""
    chart_yaml = root / "Chart.yaml"
    if not chart_yaml.is_file():
        raise ConfigError(f"{root} is not a Helm chart: it has no Chart.yaml")
    try:
        meta = yaml.safe_load(chart_yaml.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{chart_yaml} is not valid YAML: {error}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{chart_yaml} is not a mapping")
    version = meta.get("version")
    if version in (None, ""):
        raise ConfigError(f"{chart_yaml} has no version: cannot tell the chart's generation")
    return str(meta.get("name") or root.name), str(version)


def _templates_text(root: Path) -> str:
    templates = root / "templates"
    if not templates.is_dir():
        return ""
    files = sorted(p for p in templates.rglob("*") if p.is_file() and p.suffix in {".tpl", ".yaml", ".yml"})
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)


def detect_generation(root: Path, version: str) -> Generation:
    """pre-0.3 (< 0.3.0), legacy (0.3.0 – 0.52.x) or modern (≥ 0.53.0), confirmed by what the templates read.

    Raises:
        ConfigError: the templates read no cache settings we know, or contradict the version.
    """
    parsed = parse_version(version)
    text = _templates_text(root)
    reads_s3_values = bool(_READS_S3_VALUES.search(text))
    reads_config = bool(_READS_CONFIG.search(text))
    if not reads_s3_values and not reads_config:
        raise ConfigError(
            f"unknown chart generation: the templates of {root} read neither runners.cache.s3* nor runners.config "
            "(is this a gitlab-runner chart?)"
        )
    if parsed < LEGACY_FROM:
        generation: Generation = "pre-0.3"
    elif parsed < MODERN_FROM:
        generation = "legacy"
    else:
        generation = "modern"
    if generation == "modern" and reads_s3_values:
        raise ConfigError(
            f"unknown chart generation: Chart.yaml says {version} (modern, cache only in runners.config) "
            f"but the templates of {root} read runners.cache.s3* like a legacy chart"
        )
    if generation != "modern" and not reads_s3_values:
        raise ConfigError(
            f"unknown chart generation: Chart.yaml says {version} ({generation}) "
            f"but the templates of {root} do not read runners.cache.s3* values"
        )
    return generation


def _reads_runner_values(root: Path) -> bool:
    text = _templates_text(root)
    return bool(_READS_CONFIG.search(text) or _READS_S3_VALUES.search(text))


def _dependencies(root: Path) -> list[dict[str, Any]]:
    """Chart.yaml's ``dependencies`` (apiVersion v2) and requirements.yaml's (v1)."""
    found = []
    for name in ("Chart.yaml", "requirements.yaml"):
        path = root / name
        meta = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
        if isinstance(meta, dict):
            found += [dep for dep in meta.get("dependencies") or [] if isinstance(dep, dict) and dep.get("name")]
    return found


def _vendored(root: Path, name: str, workdir: Path) -> tuple[Path, str] | None:
    """The dependency ``name`` in ``root/charts``: a chart directory, or a ``.tgz`` unpacked into ``workdir``."""
    charts = root / "charts"
    for entry in sorted(charts.iterdir()) if charts.is_dir() else []:
        if entry.is_dir() and (entry / "Chart.yaml").is_file() and read_chart_yaml(entry)[0] == name:
            return entry, entry.name
        if entry.name.endswith(".tgz") and entry.name.startswith(f"{name}-") and tarfile.is_tarfile(entry):
            dest = workdir / "dependencies" / entry.name.removesuffix(".tgz")
            dest.mkdir(parents=True, exist_ok=True)
            with tarfile.open(entry) as bundle:
                bundle.extractall(dest, filter="data")
            unpacked = _single_chart_dir(dest, str(entry))
            if read_chart_yaml(unpacked)[0] == name:
                return unpacked, entry.name
    return None


def find_runner_chart(root: Path, name: str, version: str, workdir: Path) -> RunnerChart:
    """The chart itself when its templates read the runner's values, else the one dependency whose do.

    Raises:
        ConfigError: no runner chart in it (a dependency missing from ``charts/`` says to run ``helm dependency
            build``), or more than one.
    """
    if _reads_runner_values(root):
        return RunnerChart(root, name, version)
    found, missing = [], []
    for dependency in _dependencies(root):
        vendored = _vendored(root, dependency["name"], workdir)
        if vendored is None:
            missing.append(dependency["name"])
        elif _reads_runner_values(vendored[0]):
            sub_name, sub_version = read_chart_yaml(vendored[0])
            key = str(dependency.get("alias") or dependency["name"])
            wanted = str(dependency.get("version") or "")
            if _VERSION.match(wanted) and parse_version(wanted) != parse_version(sub_version):
                # helm applies the alias only to a chart in the version range (pkg/chart/v2/util/dependencies.go
                # getAliasDependency): the values under it would not reach this one
                raise ConfigError(
                    f"{root}/charts holds {sub_name} {sub_version}, but Chart.yaml depends on version {wanted}: "
                    f"run `helm dependency build {root}`"
                )
            found.append(RunnerChart(vendored[0], sub_name, sub_version, values_key=key, package=vendored[1]))
    if len(found) > 1:
        keys = ", ".join(str(runner.values_key) for runner in found)
        raise ConfigError(f"{root} depends on more than one gitlab-runner chart ({keys}): runner-cache configures one")
    if found:
        return found[0]
    if missing:
        raise ConfigError(
            f"{root} depends on {', '.join(missing)}, which its charts/ directory does not hold: "
            f"run `helm dependency build {root}` first"
        )
    raise ConfigError(
        f"unknown chart generation: the templates of {root} and of its dependencies read neither "
        "runners.cache.s3* nor runners.config (is this a gitlab-runner chart?)"
    )


def _single_chart_dir(parent: Path, what: str) -> Path:
    roots = [p for p in sorted(parent.iterdir()) if (p / "Chart.yaml").is_file()]
    if len(roots) != 1:
        raise ConfigError(f"{what} holds {len(roots)} charts; expected exactly one")
    return roots[0]


def _unpack(archive: Path, workdir: Path) -> Path:
    if not tarfile.is_tarfile(archive):
        raise ConfigError(f"{archive} is a file but not a chart archive (.tgz)")
    dest = workdir / "unpacked"
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as bundle:
        bundle.extractall(dest, filter="data")
    return _single_chart_dir(dest, str(archive))


def _pull(reference: str, version: str | None, repo: str, workdir: Path) -> Path:
    dest = workdir / "pulled"
    dest.mkdir(parents=True, exist_ok=True)
    if reference.startswith("oci://"):
        args = ["pull", reference]
    else:
        # "gitlab/gitlab-runner": the alias is a local `helm repo add` name; the repository URL is configured.
        args = ["pull", reference.rsplit("/", 1)[-1], "--repo", repo]
    if version:
        args += ["--version", version]
    try:
        run_helm([*args, "--untar", "--untardir", str(dest)], timeout=PULL_TIMEOUT)
    except ChartError as error:
        where = "" if reference.startswith("oci://") else f" from {repo}"
        raise ChartError(f"no local chart at {reference!r}, and pulling it{where} failed: {error}") from None
    return _single_chart_dir(dest, f"helm pull of {reference}")


def locate_chart(reference: str, version: str | None, repo: str, workdir: Path) -> ChartSource:
    """The chart ``reference`` names, unpacked or pulled into ``workdir`` when it is not a local directory.

    A directory is used in place (read only); a ``.tgz`` is unpacked; anything else that looks like a chart
    reference (``gitlab/gitlab-runner``, ``gitlab-runner``, ``oci://…``) is pulled with ``helm pull`` from ``repo``
    at ``version`` (the newest when None). A ``version`` given with a local chart must match its Chart.yaml.
    """
    path = Path(reference).expanduser()
    local = path.is_dir()
    if local:
        root = path.resolve()
    elif path.is_file():
        root = _unpack(path, workdir)
    elif _REPO_REF.match(reference):
        root = _pull(reference, version, repo, workdir)
    else:
        raise ConfigError(f"chart path {reference} does not exist")
    name, chart_version = read_chart_yaml(root)
    if version and parse_version(version) != parse_version(chart_version):
        raise ConfigError(f"the chart at {reference} is version {chart_version}, not the requested {version}")
    runner = find_runner_chart(root, name, chart_version, workdir)
    return ChartSource(
        reference=reference,
        path=root,
        name=name,
        version=chart_version,
        generation=detect_generation(runner.path, runner.version),
        local=local,
        runner=runner,
    )
