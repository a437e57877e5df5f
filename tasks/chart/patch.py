"""Prepare the gitlab-runner chart so the runner provably gets the intended cache settings: :func:`prepare_chart`.

It renders the chart with our values and reads back what the runner gets. Only where that is wrong does it
patch a template — in a **copy** of the chart, never the input — with a minimal, explained line edit, then
renders and compares again. Known wrongs it can fix:

- an env name current runners never read (``S3_CACHE_INSECURE`` and the other ``S3_*`` names that charts
  before 0.3.0 emitted): the line is renamed to the ``CACHE_*`` name the runner reads;
- a boolean rendered as ``""`` for false (the 2020 ``default ""`` hand-patch), which the runner reads as true:
  ``default ""`` becomes ``default false`` on that line.

Anything else that is still wrong fails with the difference (:class:`ChartMismatch`).

The render uses the values the upgrade would really produce: the deployed release's own (``release_values``,
as ``helm get values`` gives them), the user's values file, then ours — so what is checked, and the Deployment
name the rollout waits for (a ``fullnameOverride``), are the release's, not the chart defaults'.
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from runner_cache.blocks.settings import RunnerCacheSections
from runner_cache.errors import ChartError, ConfigError, WorkFailed
from runner_cache.tasks.chart.render import (
    BOOL_FIELDS,
    FIELD_ENV,
    UNREAD_ALIASES,
    Difference,
    Reading,
    RunnerView,
    differences,
    effective_settings,
    render_manifests,
    runner_view,
)
from runner_cache.tasks.chart.source import ChartSource, locate_chart
from runner_cache.tasks.chart.values import (
    COMPARED_FIELDS,
    Generation,
    ValueSources,
    build_values,
    chart_default_values,
    intended_settings,
    load_values_file,
    merge_values,
    runner_part,
    under_key,
)
from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.results import markdown_table

_TEMPLATE_SUFFIXES = {".tpl", ".yaml", ".yml"}
_EMPTY_DEFAULT = re.compile(r"default\s+(\"\"|'')")


@dataclass(frozen=True)
class InstallableChart:
    """What ``helm upgrade`` needs of a chart, each read once: its directory, name and version (Chart.yaml),
    whether it is our patched copy, and the user's values file as loaded (``{}`` without one)."""

    path: Path
    name: str
    version: str
    patched: bool = False
    user_values: dict[str, Any] = field(default_factory=dict)


class ChartPlan(BaseModel):
    """What to install and why: the result of :func:`prepare_chart`.

    Attributes:
        reference: the chart as given (path or repo reference); ``name``/``version`` from its Chart.yaml.
        generation: ``pre-0.3``, ``legacy`` or ``modern``.
        chart_dir: the chart to install — the input directory itself when untouched, else the unpacked, pulled
            or patched copy inside the caller's ``workdir``.
        values: our values (no secrets); pass them after ``values_files`` (the user's own), e.g. on stdin. For an
            umbrella chart they sit under ``values_key`` (its gitlab-runner dependency's alias).
        config_from: where the ``runners.config`` ours was merged into came from (values file, deployed release,
            chart default); ``runner_config``: the rendered TOML the runner registers with (None: the chart has none).
        patched / patch: whether a template was patched, and the explained unified diff.
        intended / effective: the runner's cache settings we want, and what the rendered chart gives it;
            ``sources`` says where each effective value comes from.
        differences: what is still wrong (empty when ``ok``); ``notes``: other changes worth telling the user.
    """

    reference: str
    name: str
    version: str
    generation: Generation
    chart_dir: Path
    release: str
    namespace: str
    values: dict[str, Any]
    values_files: list[Path]
    patched: bool
    patch: str | None
    intended: dict[str, str | bool]
    effective: dict[str, str | bool | None]
    sources: dict[str, str]
    differences: list[Difference]
    notes: list[str]
    runner: str
    values_key: str | None = None
    config_from: str | None = None
    runner_config: str | None = None
    user_values: dict[str, Any] = {}

    @property
    def installable(self) -> InstallableChart:
        """This plan's chart as the upgrade takes it: nothing is read again."""
        return InstallableChart(self.chart_dir, self.name, self.version, self.patched, self.user_values)

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        """Markdown for people (the CLI's text, a flow's artifact): verdict, settings table, what is wrong, the patch."""
        if not self.ok:
            verdict = "the runner would still get other cache settings than intended"
        elif self.patched:
            verdict = "patched a copy; the runner now gets the intended cache settings"
        else:
            verdict = "renders the intended cache settings; not patched"
        rows = [
            [name, json.dumps(self.intended[name]), json.dumps(self.effective[name]), self.sources[name]]
            for name in COMPARED_FIELDS
        ]
        parts = [
            f"{self.name} {self.version} ({self.generation}) from {self.reference}: {verdict}",
            markdown_table(["setting", "intended", "runner gets", "from"], rows),
        ]
        if self.differences:
            parts.append("still wrong:\n" + "\n".join(f"- {difference}" for difference in self.differences))
        if self.notes:
            parts.append("notes:\n" + "\n".join(f"- {note}" for note in self.notes))
        if self.patch:
            parts.append(f"```diff\n{self.patch}```")
        return "\n\n".join(parts)

    def document(self) -> dict[str, Any]:
        """The ``render-chart --json`` document."""
        return {
            "chart": self.reference,
            "version": self.version,
            "generation": self.generation,
            "patched": self.patched,
            "patch": self.patch,
            "intended": self.intended,
            "effective": self.effective,
            "ok": self.ok,
            "differences": [d.model_dump() for d in self.differences],
            "sources": self.sources,
            "runner": self.runner,
            "notes": self.notes,
            "values_key": self.values_key,
            "runners_config_from": self.config_from,
            "runner_config": self.runner_config,
        }


class ChartMismatch(WorkFailed):
    """The rendered chart still gives the runner other cache settings than intended; ``plan`` says which."""

    def __init__(self, plan: ChartPlan) -> None:
        self.plan = plan
        lines = "\n".join(f"  {difference}" for difference in plan.differences)
        super().__init__(
            f"{plan.name} {plan.version} ({plan.generation}) does not give the runner the intended cache settings:\n{lines}"
        )


@dataclass(frozen=True)
class Fix:
    """One line edit in one template file (``file`` relative to the chart root, ``line`` 1-based)."""

    file: str
    line: int
    old: str
    new: str
    reason: str


def _template_lines(chart_dir: Path) -> list[tuple[str, list[str]]]:
    templates = chart_dir / "templates"
    files = (
        sorted(p for p in templates.rglob("*") if p.is_file() and p.suffix in _TEMPLATE_SUFFIXES)
        if templates.is_dir()
        else []
    )
    return [(str(p.relative_to(chart_dir)), p.read_text(encoding="utf-8").splitlines(keepends=True)) for p in files]


def _name_line(name: str) -> re.Pattern[str]:
    return re.compile(rf"^(\s*-?\s*name:\s*[\"']?){re.escape(name)}([\"']?\s*)$")


def _rename_fixes(chart_dir: Path, alias: str, target: str, reason: str) -> list[Fix]:
    pattern = _name_line(alias)
    fixes = []
    for file, lines in _template_lines(chart_dir):
        for number, line in enumerate(lines, start=1):
            match = pattern.match(line.rstrip("\r\n"))
            if match:
                fixes.append(Fix(file, number, line, line.replace(match[0], f"{match[1]}{target}{match[2]}"), reason))
    return fixes


def _empty_bool_fixes(chart_dir: Path, name: str, reason: str) -> list[Fix]:
    pattern = _name_line(name)
    fixes = []
    for file, lines in _template_lines(chart_dir):
        for index, line in enumerate(lines):
            if not pattern.match(line.rstrip("\r\n")):
                continue
            following = next((i for i in range(index + 1, len(lines)) if lines[i].strip()), None)
            if following is None:
                continue
            value_line = lines[following]
            if value_line.lstrip().startswith("value:") and _EMPTY_DEFAULT.search(value_line):
                fixes.append(
                    Fix(
                        file,
                        following + 1,
                        value_line,
                        _EMPTY_DEFAULT.sub("default false", value_line, count=1),
                        reason,
                    )
                )
    return fixes


def find_fixes(chart_dir: Path, view: RunnerView, found: list[Difference]) -> list[Fix]:
    """The template line edits that address ``found``; none for differences no known patch explains."""
    fixes: list[Fix] = []
    for difference in found:
        name = FIELD_ENV.get(difference.field)
        if name is None:
            continue
        wrong = f"so {difference.field} came out {difference.effective!r} instead of {difference.intended!r}"
        if name not in view.env:
            for alias, target in UNREAD_ALIASES.items():
                if target == name and alias in view.env:
                    why = (
                        f"rename env {alias} to {target}: the runner reads {target}; {alias} is an old (pre-11.0) name "
                        f"that runners no longer read and charts before 0.3.0 still emitted, {wrong}"
                    )
                    fixes += _rename_fixes(chart_dir, alias, target, why)
        elif difference.field in BOOL_FIELDS and view.env[name] == "" and difference.intended is False:
            why = (
                f'{name} renders as "" when {difference.field} is false, and the runner reads an empty boolean as true '
                f'(the well-known 2020 `default ""` hand-patch); `default false` renders "false"'
            )
            fixes += _empty_bool_fixes(chart_dir, name, why)
    unique = {(fix.file, fix.line): fix for fix in fixes}
    return list(unique.values())


def apply_fixes(chart_dir: Path, fixes: list[Fix]) -> None:
    """Edit the lines in place (``chart_dir`` must be our copy)."""
    by_file: dict[str, list[Fix]] = {}
    for fix in fixes:
        by_file.setdefault(fix.file, []).append(fix)
    for file, edits in by_file.items():
        path = chart_dir / file
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        for fix in edits:
            if lines[fix.line - 1] != fix.old:
                raise ChartError(f"{file}:{fix.line} changed while patching; refusing to edit it")
            lines[fix.line - 1] = fix.new
        path.write_text("".join(lines), encoding="utf-8")


def describe_patch(original: Path, patched: Path, fixes: list[Fix], title: str) -> str:
    """The reasons, then a unified diff of every edited file (paths relative to the chart root)."""
    reasons = [f"- {fix.file}:{fix.line}: {fix.reason}" for fix in sorted(fixes, key=lambda f: (f.file, f.line))]
    diffs = []
    for file in sorted({fix.file for fix in fixes}):
        before = (original / file).read_text(encoding="utf-8").splitlines(keepends=True)
        after = (patched / file).read_text(encoding="utf-8").splitlines(keepends=True)
        diffs.append("".join(difflib.unified_diff(before, after, f"a/{file}", f"b/{file}", n=1)))
    return f"{title}\n" + "\n".join(reasons) + "\n\n" + "".join(diffs)


def runner_defaults(source: ChartSource) -> dict[str, Any]:
    """The runner chart's default values: its ``values.yaml``, under an umbrella's own ``values.yaml`` for it."""
    defaults = chart_default_values(source.runner.path)
    key = source.runner.values_key
    return merge_values(defaults, runner_part(chart_default_values(source.path), key)) if key else defaults


def _patched_copy(source: ChartSource, workdir: Path) -> tuple[Path, Path]:
    """A copy of the chart to patch, and the runner chart's root inside it (an umbrella's dependency unpacked)."""
    chart_dir = workdir / "patched" / source.path.name
    shutil.copytree(source.path, chart_dir)
    runner = source.runner
    if runner.package is None:
        return chart_dir, chart_dir
    package = chart_dir / "charts" / runner.package
    if package.is_dir():
        return chart_dir, package
    package.unlink()  # the .tgz: helm takes the dependency unpacked in charts/ as well
    shutil.copytree(runner.path, chart_dir / "charts" / runner.name)
    return chart_dir, chart_dir / "charts" / runner.name


def prepare_chart(
    config: RunnerCacheSections,
    chart: str | None = None,
    version: str | None = None,
    *,
    workdir: Path,
    release_values: dict[str, Any] | None = None,
    image_tag: str | None = None,
) -> ChartPlan:
    """Locate the chart, build values, verify the rendered runner settings, patch a copy only if needed.

    Use it before ``helm upgrade``: install ``plan.chart_dir`` with ``--values`` for each of
    ``plan.values_files`` and then ``plan.values`` (on stdin, e.g. ``--values -``). Nothing here needs a cluster.

    Args:
        config: the store, cache and release sections (credentials are never read: values only name
            ``config.release.secret_name``).
        chart: a chart directory, ``.tgz`` or repo reference; defaults to ``config.release.chart``.
        version: the chart version to pull (or to expect); defaults to ``config.release.chart_version``.
        workdir: an empty directory the caller owns and removes; pulled, unpacked and patched charts go
            there, so ``plan.chart_dir`` lives as long as it does. The input chart is never written.
        release_values: the values the deployed release was installed with (``helm get values``), whole
            (an umbrella's included); None or empty when it is not installed. They are the base of
            ``runners.config`` unless the values file sets one, and they are rendered under the user's and ours.
        image_tag: a new runner image tag (rebuild): set where the chart keeps it, nothing else of ``image``.

    Returns:
        The plan; ``plan.ok`` is always true here, ``plan.patched`` says whether a template was patched.

    Raises:
        ConfigError: no chart configured, a bad path, Chart.yaml or values file, an unknown generation, or a
            ``runners.config`` whose cache section only the template decides (the message names the line).
        ChartError: helm failed (pull, template) or the rendered chart has no recognisable runner container.
        ChartMismatch: the runner would still get other settings than intended; ``error.plan`` has them.
    """
    reference = chart or config.release.chart
    if not reference:
        raise ConfigError("no chart to render: pass --chart or set RUNNER_CACHE_RELEASE__CHART")
    release = config.release
    source = locate_chart(reference, version or release.chart_version, release.chart_repo, workdir)
    intended = intended_settings(config.store, config.cache)
    key = source.runner.values_key
    user_values = load_values_file(release.values_file)
    sources = ValueSources(
        chart=runner_defaults(source),
        deployed=runner_part(release_values or {}, key),
        user=runner_part(user_values, key),
    )
    runner_values, notes = build_values(source.generation, intended, release.secret_name, sources, image_tag=image_tag)
    values = under_key(runner_values, key)
    values_files = [release.values_file] if release.values_file else []

    def check(chart_dir: Path) -> tuple[RunnerView, dict[str, Reading], list[Difference]]:
        manifests = render_manifests(
            chart_dir,
            release=release.release,
            namespace=release.namespace,
            values=values,
            values_files=values_files,
            release_values=release_values,
        )
        view = runner_view(manifests)
        readings = effective_settings(view)
        return view, readings, differences(intended, readings, view, release.secret_name)

    view, readings, found = check(source.path)
    chart_dir, applied = source.path, find_fixes(source.runner.path, view, found) if found else []
    runner_dir = source.runner.path
    if applied:
        chart_dir, runner_dir = _patched_copy(source, workdir)
        apply_fixes(runner_dir, applied)
        view, readings, found = check(chart_dir)
    runner = source.runner
    title = f"runner-cache patched a copy of {runner.name} {runner.version} ({source.generation}): the rendered runner got other cache settings than intended."
    patch = describe_patch(source.runner.path, runner_dir, applied, title) if applied else None
    plan = ChartPlan(
        reference=reference,
        user_values=user_values,
        name=source.name,
        version=source.version,
        generation=source.generation,
        chart_dir=chart_dir,
        release=release.release,
        namespace=release.namespace,
        values=values,
        values_files=values_files,
        patched=bool(applied),
        patch=patch,
        intended=intended,
        effective={name: reading.value for name, reading in readings.items()},
        sources={name: reading.source for name, reading in readings.items()},
        differences=found,
        notes=notes,
        runner=f"{view.workload} container {view.container}",
        values_key=key,
        config_from=sources.base_config()[1] if "config" in runner_values.get("runners", {}) else None,
        runner_config=view.config_text,
    )
    log = run_logger(__name__)
    for note in notes:
        log.info("%s", note)
    if not plan.ok:
        raise ChartMismatch(plan)
    if applied:
        log.warning(
            "%s %s: patched %d template line(s) in a copy:\n%s",
            source.name,
            source.version,
            len(applied),
            "\n".join(f.reason for f in applied),
        )
    else:
        log.info(
            "%s %s (%s) renders the intended cache settings: not patched",
            source.name,
            source.version,
            source.generation,
        )
    return plan
