"""prepare_chart on every fixture generation × endpoint scheme: the runner gets what we intend, patched only if needed."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from runner_cache.errors import ConfigError
from runner_cache.tasks.chart.patch import ChartMismatch, prepare_chart
from runner_cache.tasks.chart.render import differences, effective_settings, render_manifests, runner_view
from runner_cache.tasks.chart.values import COMPARED_FIELDS
from tests.support.charts import ACCESS_KEY, CHARTS, SECRET_KEY, chart_copy, sections, tree_digest, write_values

# (fixture, scheme) → patched? The hand-patched chart renders "true" for http (right) and "" for https (wrong).
EXPECT_PATCHED = {
    ("pre-0.3", "http"): True,
    ("pre-0.3", "https"): True,
    ("legacy", "http"): False,
    ("legacy", "https"): False,
    ("legacy-handpatched", "http"): False,
    ("legacy-handpatched", "https"): True,
    ("modern", "http"): False,
    ("modern", "https"): False,
}


@pytest.mark.parametrize(("fixture", "scheme"), sorted(EXPECT_PATCHED))
def test_runner_gets_the_intended_settings(helm: Path, workdir: Path, fixture: str, scheme: str) -> None:
    before = tree_digest(CHARTS / fixture)
    config = sections(scheme, path="ci/cache", shared=True)
    plan = prepare_chart(config, str(CHARTS / fixture), workdir=workdir)

    assert plan.ok and plan.differences == []
    assert plan.effective == {name: plan.intended[name] for name in COMPARED_FIELDS}
    assert plan.intended["Insecure"] is (scheme == "http")
    assert plan.patched is EXPECT_PATCHED[fixture, scheme]
    assert tree_digest(CHARTS / fixture) == before
    if plan.patched:
        assert plan.chart_dir.is_relative_to(workdir) and plan.patch.startswith(
            "runner-cache patched a copy of gitlab-runner"
        )
    else:
        assert plan.chart_dir == (CHARTS / fixture).resolve() and plan.patch is None
    dumped = json.dumps(plan.document()) + json.dumps(plan.values)
    assert ACCESS_KEY not in dumped and SECRET_KEY not in dumped


@pytest.mark.parametrize(("fixture", "scheme"), [key for key, patched in EXPECT_PATCHED.items() if patched])
def test_the_patched_copy_renders_right_on_its_own(helm: Path, workdir: Path, fixture: str, scheme: str) -> None:
    config = sections(scheme)
    plan = prepare_chart(config, str(CHARTS / fixture), workdir=workdir)
    manifests = render_manifests(
        plan.chart_dir,
        release=plan.release,
        namespace=plan.namespace,
        values=plan.values,
        values_files=plan.values_files,
    )
    view = runner_view(manifests)
    assert differences(plan.intended, effective_settings(view), view, config.release.secret_name) == []
    # and the original, with the same values, does not: the patch is what made it right
    manifests = render_manifests(
        CHARTS / fixture, release=plan.release, namespace=plan.namespace, values=plan.values, values_files=[]
    )
    view = runner_view(manifests)
    assert differences(plan.intended, effective_settings(view), view, config.release.secret_name) != []


def test_pre_0_3_patch_explains_each_renamed_env(helm: Path, workdir: Path) -> None:
    plan = prepare_chart(sections("http", path="team"), str(CHARTS / "pre-0.3"), workdir=workdir)
    assert (
        "- templates/_cache.tpl:12: rename env S3_CACHE_INSECURE to CACHE_S3_INSECURE: the runner reads CACHE_S3_INSECURE; S3_CACHE_INSECURE is an old (pre-11.0) name that runners no longer read and charts before 0.3.0 still emitted, so Insecure came out False instead of True"
        in plan.patch
    )
    assert "rename env S3_CACHE_PATH to CACHE_PATH" in plan.patch
    assert "-- name: S3_SERVER_ADDRESS\n+- name: CACHE_S3_SERVER_ADDRESS\n" in plan.patch
    assert plan.patch.count("rename env") == 5
    patched = (plan.chart_dir / "templates" / "_cache.tpl").read_text()
    assert "- name: S3_" not in patched and patched.count("- name: CACHE_") == 7


def test_pre_0_3_over_https_leaves_the_unrendered_insecure_line_alone(helm: Path, workdir: Path) -> None:
    plan = prepare_chart(sections("https"), str(CHARTS / "pre-0.3"), workdir=workdir)
    assert "S3_CACHE_INSECURE" not in plan.patch and "S3_CACHE_PATH" not in plan.patch
    assert "- name: S3_CACHE_INSECURE" in (plan.chart_dir / "templates" / "_cache.tpl").read_text()


def test_hand_patched_chart_gets_default_false(helm: Path, workdir: Path) -> None:
    plan = prepare_chart(sections("https"), str(CHARTS / "legacy-handpatched"), workdir=workdir)
    assert (
        'CACHE_S3_INSECURE renders as "" when Insecure is false, and the runner reads an empty boolean as true'
        in plan.patch
    )
    assert (
        '-  value: {{ default "" .Values.runners.cache.s3CacheInsecure | quote }}\n+  value: {{ default false .Values.runners.cache.s3CacheInsecure | quote }}\n'
        in plan.patch
    )
    assert plan.sources["Insecure"] == 'env CACHE_S3_INSECURE="false"'


def test_a_second_run_gives_the_same_plan(helm: Path, tmp_path: Path) -> None:
    plans = []
    for run in ("one", "two"):
        workdir = tmp_path / run
        workdir.mkdir()
        plan = prepare_chart(sections("https"), str(CHARTS / "legacy-handpatched"), workdir=workdir)
        plans.append(plan.model_dump(exclude={"chart_dir"}) | {"patch": plan.patch.replace(str(workdir), "")})
    assert plans[0] == plans[1]


def test_users_runners_config_survives(helm: Path, tmp_path: Path, workdir: Path) -> None:
    values_file = write_values(
        tmp_path,
        "runners:\n"
        "  config: |\n"
        "    # ours: keep\n"
        "    [[runners]]\n"
        "      [runners.kubernetes]\n"
        '        namespace = "{{.Release.Namespace}}"\n'
        '        image = "debian:12"\n'
        '        cpu_limit = "2"\n'
        "      [runners.cache.s3]\n"
        '        AccessKey = "left-over-access"\n'
        "  tags: k8s,cache\n",
    )
    plan = prepare_chart(sections("http", values_file=values_file), str(CHARTS / "modern"), workdir=workdir)
    assert plan.ok and not plan.patched and plan.values_files == [values_file]
    config = plan.values["runners"]["config"]
    assert "# ours: keep" in config and "left-over-access" not in config
    runner = tomllib.loads(config)["runners"][0]
    assert runner["kubernetes"] == {"namespace": "{{.Release.Namespace}}", "image": "debian:12", "cpu_limit": "2"}
    assert plan.config_from == "the values file"
    assert plan.notes == [
        "runners.config from the values file: only its cache section is ours",
        "removed AccessKey from runners.config [runners.cache.s3]: credentials come from the Secret only",
    ]
    assert plan.sources["BucketName"].endswith("key config.template.toml [runners.cache.s3] BucketName")


def test_a_wrong_that_no_patch_explains_fails_with_the_difference(helm: Path, tmp_path: Path, workdir: Path) -> None:
    values_file = write_values(tmp_path, 'envVars:\n- name: CACHE_S3_INSECURE\n  value: ""\n')
    before = tree_digest(CHARTS / "modern")
    with pytest.raises(
        ChartMismatch,
        match=r'Insecure: intended false, runner gets true \(env CACHE_S3_INSECURE="" \(an empty boolean reads as true\)\)',
    ) as error:
        prepare_chart(sections("https", values_file=values_file), str(CHARTS / "modern"), workdir=workdir)
    plan = error.value.plan
    assert not plan.ok and not plan.patched and plan.chart_dir == (CHARTS / "modern").resolve()
    assert [d.field for d in plan.differences] == ["Insecure"]
    assert tree_digest(CHARTS / "modern") == before


def test_a_chart_that_does_not_mount_the_secret_fails(helm: Path, tmp_path: Path, workdir: Path) -> None:
    chart = chart_copy(tmp_path, "modern")
    deployment = chart / "templates" / "deployment.yaml"
    deployment.write_text(
        deployment.read_text().replace(
            '          {{- include "gitlab-runner.cache.projected-secret" . | indent 10 }}\n', ""
        )
    )
    with pytest.raises(
        ChartMismatch, match=r"credentials: intended \"runner-cache-s3\", runner gets \[\"gitlab-runner\"\]"
    ):
        prepare_chart(sections("http"), str(chart), workdir=workdir)


def test_no_chart_configured(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="no chart to render: pass --chart or set RUNNER_CACHE_RELEASE__CHART"):
        prepare_chart(sections("http"), workdir=workdir)


def test_chart_and_version_default_to_the_release_settings(helm: Path, workdir: Path) -> None:
    plan = prepare_chart(
        sections("http", chart=str(CHARTS / "legacy"), chart_version="0.36.0", release="ci", namespace="build"),
        workdir=workdir,
    )
    assert (plan.reference, plan.version, plan.runner) == (
        str(CHARTS / "legacy"),
        "0.36.0",
        "Deployment/ci-gitlab-runner container ci-gitlab-runner",
    )


def test_still_wrong_after_patching_fails_with_what_is_left(helm: Path, tmp_path: Path, workdir: Path) -> None:
    values_file = write_values(tmp_path, "envVars:\n- name: CACHE_S3_BUCKET_NAME\n  value: someone-elses\n")
    with pytest.raises(ChartMismatch) as error:
        prepare_chart(sections("https", values_file=values_file), str(CHARTS / "legacy-handpatched"), workdir=workdir)
    plan = error.value.plan
    assert plan.patched and "default false" in plan.patch and plan.effective["Insecure"] is False
    assert [str(d) for d in plan.differences] == [
        'BucketName: intended "ci-cache", runner gets "someone-elses" (env CACHE_S3_BUCKET_NAME="someone-elses")'
    ]
