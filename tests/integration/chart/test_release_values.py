"""Real ``helm template`` of every construct: a deployed release keeps its own settings, only the cache becomes ours.

Charts (tests/charts/README.md says which published chart each reproduces): ``modern-templated`` (0.86,
``tpl … | toYaml``), ``legacy-templated`` (0.45, ``tpl (toYaml …)``, CACHE_* env), the older ``modern`` and
``legacy`` fixtures, and ``umbrella`` (a team's chart with gitlab-runner under the alias ``upstream``, as a
``charts/*.tgz`` or an unpacked directory). ``release_values`` plays ``helm get values`` of the deployed release.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from runner_cache.errors import ChartError, ConfigError
from runner_cache.tasks.chart.patch import ChartPlan, prepare_chart
from runner_cache.tasks.chart.render import render_manifests
from runner_cache.tasks.chart.runners_config import outside_cache_section
from tests.support.charts import CHARTS, sections, tree_digest, umbrella_chart, write_values

# A team's runners.config as installed: settings of its own, an action in a string with inner quotes, bare
# values, a conditional around another section, a stale gcs cache with a key of the team's.
TEAM_CONFIG = """\
# team A: tuned by hand
[[runners]]
  output_limit = 16384
  [runners.kubernetes]
    namespace = "{{.Release.Namespace}}-jobs"
    image = "{{ printf "%s/%s:%s" .Values.runners.job.registry .Values.runners.job.repository .Values.runners.job.tag }}"
    privileged = {{ .Values.runners.privileged }}
    helper_image = {{ .Values.runners.helperImage | quote }}
    cpu_limit = "2"
  {{- if .Values.runners.gpu }}
  [runners.kubernetes.node_selector]
    "nvidia.com/gpu" = "true"
  {{- else }}
  [runners.kubernetes.node_selector]
    "pool" = "ci"
  {{- end }}
  [runners.cache]
    Type = "gcs"
    MaxUploadedArchiveSize = 104857600
    [runners.cache.gcs]
      BucketName = "old-cache"
"""
TOKEN = "glrt-team-token-0042"
TEAM_RUNNERS = {
    "privileged": True,
    "helperImage": "registry.team.example/helper:v18.5.0",
    "gpu": False,
    "job": {"registry": "registry.team.example", "repository": "ci/ubuntu", "tag": "22.04"},
    "config": TEAM_CONFIG,
}
TEAM_KUBERNETES = {
    "namespace": "ci-jobs",
    "image": "registry.team.example/ci/ubuntu:22.04",
    "privileged": True,
    "helper_image": "registry.team.example/helper:v18.5.0",
    "cpu_limit": "2",
    "node_selector": {"pool": "ci"},
}


def _cache(scheme: str) -> dict[str, Any]:
    return {
        "Type": "s3",
        "Path": "",
        "Shared": False,
        "s3": {
            "ServerAddress": f"minio.runner-cache.svc:{9000 if scheme == 'http' else 443}",
            "BucketName": "ci-cache",
            "BucketLocation": "eu-west-1",
            "Insecure": scheme == "http",
            "PathStyle": True,
        },
    }


def _runner(plan: ChartPlan) -> dict[str, Any]:
    assert plan.runner_config, "the rendered TOML the runner registers with"
    return tomllib.loads(plan.runner_config)["runners"][0]


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("chart", ["modern-templated", "modern", "legacy-templated", "legacy"])
def test_a_deployed_releases_own_config_survives(chart: str, scheme: str, helm: Path, workdir: Path) -> None:
    deployed = {"gitlabUrl": "https://gitlab.example.com", "runnerToken": TOKEN, "runners": TEAM_RUNNERS}
    config = sections(scheme, chart=str(CHARTS / chart), namespace="ci")
    plan = prepare_chart(config, workdir=workdir, release_values=deployed)
    assert plan.ok and plan.config_from == "the deployed release"
    runner = _runner(plan)
    assert runner["output_limit"] == 16384 and runner["kubernetes"] == TEAM_KUBERNETES
    assert runner["cache"] == {**_cache(scheme), "MaxUploadedArchiveSize": 104857600}, "gcs replaced, not merged into"
    ours = plan.values["runners"]["config"]
    assert outside_cache_section(ours) == outside_cache_section(TEAM_CONFIG), "every byte outside the cache section"
    assert ours.startswith(TEAM_CONFIG.split("  [runners.cache]")[0])
    assert plan.effective["Insecure"] is (scheme == "http")
    assert TOKEN not in json.dumps(plan.document()) + json.dumps(plan.values)


def test_the_values_file_comes_before_the_deployed_release(helm: Path, tmp_path: Path, workdir: Path) -> None:
    values_file = write_values(
        tmp_path,
        "runners:\n"
        "  config: |\n"
        "    [[runners]]\n"
        "      [runners.kubernetes]\n"
        '        image = "from-the-file:1"\n'
        "      [runners.cache]\n"
        '        Type = "gcs"\n'
        "        [runners.cache.gcs]\n"
        '          CredentialsFile = "/secrets/gcs.json"\n',
    )
    deployed = {"runners": TEAM_RUNNERS}
    config = sections("https", chart=str(CHARTS / "modern-templated"), values_file=values_file)
    plan = prepare_chart(config, workdir=workdir, release_values=deployed)
    assert plan.config_from == "the values file"
    runner = _runner(plan)
    assert runner["kubernetes"] == {"image": "from-the-file:1"} and runner["cache"] == _cache("https")
    assert any("removed [runners.cache.gcs]" in note for note in plan.notes)


def test_nothing_deployed_starts_from_the_charts_templated_default(helm: Path, workdir: Path) -> None:
    plan = prepare_chart(sections("http", chart=str(CHARTS / "modern-templated"), namespace="ci"), workdir=workdir)
    assert plan.config_from == "the chart's default"
    runner = _runner(plan)
    assert runner["kubernetes"] == {"namespace": "ci", "image": "registry.example.com/ci/ubi9:9.7"}
    assert runner["cache"] == _cache("http")


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("packaged", [True, False], ids=["charts-tgz", "charts-dir"])
def test_an_umbrella_chart_takes_ours_under_its_alias(
    packaged: bool, scheme: str, helm: Path, tmp_path: Path, workdir: Path
) -> None:
    chart = umbrella_chart(tmp_path, packaged=packaged)
    plan = prepare_chart(sections(scheme, chart=str(chart), namespace="ci"), workdir=workdir)
    assert plan.ok and (plan.name, plan.version, plan.generation) == ("team-runner", "2.3.0", "modern")
    assert plan.values_key == "upstream" and set(plan.values) == {"upstream"}
    assert plan.values["upstream"]["runners"]["cache"] == {"secretName": "runner-cache-s3"}
    assert plan.runner == "Deployment/team-runner container team-runner", "the umbrella's fullnameOverride"
    assert plan.config_from == "the chart's default"
    runner = _runner(plan)
    assert runner["clone_url"] == "http://gitlab-webservice-default.gitlab.svc:8181", "the umbrella's own default"
    assert runner["kubernetes"]["image"] == "registry.example.com/ci/ubi9:9.7"
    assert runner["cache"] == _cache(scheme)


def test_an_umbrella_release_keeps_its_values_and_its_name(helm: Path, tmp_path: Path, workdir: Path) -> None:
    deployed = {"upstream": {"fullnameOverride": "team-a-runner", "runnerToken": TOKEN, "runners": TEAM_RUNNERS}}
    plan = prepare_chart(
        sections("https", chart=str(umbrella_chart(tmp_path)), namespace="ci"), workdir=workdir, release_values=deployed
    )
    assert plan.runner == "Deployment/team-a-runner container team-a-runner", "the rollout waits for this one"
    assert plan.config_from == "the deployed release"
    assert _runner(plan)["kubernetes"] == TEAM_KUBERNETES
    ours = plan.values["upstream"]["runners"]["config"]
    assert outside_cache_section(ours) == outside_cache_section(TEAM_CONFIG)


@pytest.mark.parametrize("packaged", [True, False], ids=["charts-tgz", "charts-dir"])
def test_an_umbrella_around_a_chart_that_needs_a_patch_is_patched_in_a_copy(
    packaged: bool, helm: Path, tmp_path: Path, workdir: Path
) -> None:
    chart = umbrella_chart(tmp_path, packaged=packaged, runner="legacy-handpatched")
    before = tree_digest(chart)
    plan = prepare_chart(sections("https", chart=str(chart)), workdir=workdir)
    assert plan.ok and plan.patched and plan.generation == "legacy" and plan.effective["Insecure"] is False
    assert plan.chart_dir.is_relative_to(workdir) and tree_digest(chart) == before, "the input is never written"
    assert (plan.chart_dir / "charts" / "gitlab-runner" / "templates" / "_cache.tpl").is_file()
    assert not list((plan.chart_dir / "charts").glob("*.tgz")), "the patched dependency replaces its package"
    assert (
        plan.values == {"upstream": plan.values["upstream"]}
        and "s3CacheInsecure" in plan.values["upstream"]["runners"]["cache"]
    )


def test_an_umbrella_without_its_dependency_says_to_build_it(helm: Path, tmp_path: Path, workdir: Path) -> None:
    chart = tmp_path / "bare-umbrella"
    chart.mkdir()
    (chart / "Chart.yaml").write_text((CHARTS / "umbrella" / "Chart.yaml").read_text())
    with pytest.raises(
        ConfigError,
        match=r"depends on gitlab-runner, which its charts/ directory does not hold: run `helm dependency build",
    ):
        prepare_chart(sections("http", chart=str(chart)), workdir=workdir)


def test_an_umbrella_whose_dependency_is_another_version_says_to_build_it(
    helm: Path, tmp_path: Path, workdir: Path
) -> None:
    chart = umbrella_chart(tmp_path, runner="modern")  # charts/gitlab-runner-0.60.0.tgz
    (chart / "Chart.yaml").write_text((chart / "Chart.yaml").read_text().replace("version: 0.60.0", "version: 0.86.0"))
    with pytest.raises(
        ConfigError, match=r"charts holds gitlab-runner 0.60.0, but Chart.yaml depends on version 0.86.0"
    ):
        prepare_chart(sections("http", chart=str(chart)), workdir=workdir)


def test_a_cache_section_only_a_conditional_decides_is_refused_by_line(helm: Path, workdir: Path) -> None:
    config = '[[runners]]\n  [runners.kubernetes]\n    image = "a"\n  {{- if .Values.cache }}\n  [runners.cache]\n    Type = "s3"\n  {{- end }}\n'
    with pytest.raises(
        ConfigError, match=r"\[runners.cache\] \(line 5\) is inside the template block opened at line 4"
    ):
        prepare_chart(
            sections("http", chart=str(CHARTS / "modern-templated")),
            workdir=workdir,
            release_values={"runners": {"config": config, "token": TOKEN}},
        )


def _runner_image(plan: ChartPlan, release_values: dict[str, Any]) -> str:
    manifests = render_manifests(
        plan.chart_dir, release=plan.release, namespace=plan.namespace, values=plan.values, values_files=[],
        release_values=release_values,
    )  # fmt: skip
    deployment = next(doc for doc in manifests if doc["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


@pytest.mark.parametrize(
    ("chart", "deployed", "image"),
    [
        (
            "modern-templated",
            {"image": {"registry": "registry.team.example", "image": "mirror/gitlab-runner", "tag": "v18.5.0"}},
            "registry.team.example/mirror/gitlab-runner:v18.6.0",
        ),
        (
            "legacy-templated",
            {"registry": "registry.team.example"},
            "registry.team.example/gitlab/gitlab-runner:v18.6.0",
        ),
        (
            "legacy",
            {"image": "registry.team.example/mirror/runner:v14.6.0"},
            "registry.team.example/mirror/runner:v18.6.0",
        ),
    ],
)
def test_a_rebuilds_image_tag_changes_the_tag_only(
    chart: str, deployed: dict, image: str, helm: Path, workdir: Path
) -> None:
    plan = prepare_chart(
        sections("http", chart=str(CHARTS / chart)), workdir=workdir, release_values=deployed, image_tag="v18.6.0"
    )
    assert _runner_image(plan, deployed) == image


def test_a_render_failure_does_not_quote_the_releases_tokens(helm: Path, workdir: Path) -> None:
    deployed = {"runnerToken": TOKEN, "runners": {"config": "{{ fail .Values.runnerToken }}\n"}}
    with pytest.raises(ChartError) as failed:
        prepare_chart(
            sections("http", chart=str(CHARTS / "modern-templated")), workdir=workdir, release_values=deployed
        )
    assert "execution error at (gitlab-runner/templates/deployment.yaml:19:31): ***" in str(failed.value)
    assert TOKEN not in str(failed.value)
