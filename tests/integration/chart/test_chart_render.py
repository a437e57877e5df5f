"""Reading back what the runner gets from real ``helm template`` output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner_cache.errors import ChartError
from runner_cache.tasks.chart.render import differences, effective_settings, render_manifests, runner_view
from tests.support.charts import CHARTS, chart_copy, write_values

LEGACY_S3 = {
    "cacheType": "s3",
    "s3ServerAddress": "minio:9000",
    "s3BucketName": "runner",
    "s3BucketLocation": "us-east-1",
    "secretName": "rc-s3",
}
SIDECAR = """\
      - name: log-shipper
        image: fluent/fluent-bit:3.0
        args: ["--config", "/etc/fluent-bit/fluent-bit.conf"]
        env:
        - name: CACHE_S3_INSECURE
          value: "true"
"""


def _view(chart: Path, values: dict[str, Any], values_files: list[Path] | None = None):
    manifests = render_manifests(
        chart, release="ci", namespace="runners", values=values, values_files=values_files or []
    )
    return runner_view(manifests)


def _insert_before_runner(chart: Path, block: str) -> None:
    deployment = chart / "templates" / "deployment.yaml"
    text = deployment.read_text()
    anchor = "      containers:\n"
    deployment.write_text(text.replace(anchor, anchor + block, 1))


def test_runner_container_is_found_by_what_it_runs_not_by_name(helm: Path, tmp_path: Path) -> None:
    chart = chart_copy(tmp_path, "modern")
    _insert_before_runner(chart, SIDECAR)
    view = _view(chart, {"fullnameOverride": "ci-build-agent", "runners": {"cache": {"secretName": "rc-s3"}}})
    assert (view.workload, view.container) == ("Deployment/ci-build-agent", "ci-build-agent")
    assert "CACHE_S3_INSECURE" not in view.env  # the sidecar's env is not the runner's
    assert view.secrets == {"rc-s3", "ci-build-agent"}
    assert view.config_source == "ConfigMap ci-build-agent key config.template.toml"
    assert view.config_template == {"kubernetes": {"namespace": "runners", "image": "alpine"}}


def test_no_runner_container_is_an_error(helm: Path, tmp_path: Path) -> None:
    chart = chart_copy(tmp_path, "legacy")
    deployment = chart / "templates" / "deployment.yaml"
    text = deployment.read_text()
    text = text.replace('command: ["/bin/bash", "/configmaps/entrypoint"]', 'command: ["nginx"]')
    text = text.replace("image: {{ .Values.image }}", "image: nginx:1.27")
    text = text.replace(
        '        {{- include "gitlab-runner.runner-env-vars" . | indent 8 }}',
        '        - name: PORT\n          value: "80"',
    )
    deployment.write_text(text)
    with pytest.raises(ChartError, match="no runner container in the rendered chart"):
        _view(chart, {"runners": {"cache": LEGACY_S3}})


def test_two_look_alike_runner_containers_are_ambiguous(helm: Path, tmp_path: Path) -> None:
    chart = chart_copy(tmp_path, "legacy")
    twin = '      - name: twin\n        image: {{ .Values.image }}\n        command: ["/bin/bash", "/configmaps/entrypoint"]\n        env:\n        {{- include "gitlab-runner.runner-env-vars" . | indent 8 }}\n'
    _insert_before_runner(chart, twin)
    with pytest.raises(
        ChartError, match=r"cannot tell which container is the runner: .*twin, .*gitlab-runner look alike"
    ):
        _view(chart, {"runners": {"cache": LEGACY_S3}})


def test_legacy_env_is_read_as_the_runner_reads_it(helm: Path) -> None:
    view = _view(
        CHARTS / "legacy",
        {"runners": {"cache": {**LEGACY_S3, "s3CacheInsecure": True, "cacheShared": True, "cachePath": "ci"}}},
    )
    readings = effective_settings(view)
    assert {name: reading.value for name, reading in readings.items()} == {
        "Type": "s3",
        "ServerAddress": "minio:9000",
        "BucketName": "runner",
        "BucketLocation": "us-east-1",
        "Insecure": True,
        "Shared": True,
        "Path": "ci",
    }
    assert readings["Insecure"].source == 'env CACHE_S3_INSECURE="true"'
    assert readings["Shared"].source == 'env CACHE_SHARED="true"'


def test_user_env_vars_override_the_charts_and_empty_boolean_reads_true(helm: Path, tmp_path: Path) -> None:
    values_file = write_values(
        tmp_path, 'envVars:\n- name: CACHE_S3_INSECURE\n  value: ""\n- name: CACHE_S3_BUCKET_NAME\n  value: theirs\n'
    )
    view = _view(CHARTS / "legacy", {"runners": {"cache": LEGACY_S3}}, [values_file])
    readings = effective_settings(view)
    assert readings["Insecure"].value is True
    assert readings["Insecure"].source == 'env CACHE_S3_INSECURE="" (an empty boolean reads as true)'
    assert readings["BucketName"].value == "theirs"


def test_a_boolean_the_runner_cannot_parse(helm: Path, tmp_path: Path) -> None:
    values_file = write_values(tmp_path, 'envVars:\n- name: CACHE_SHARED\n  value: "yes"\n')
    readings = effective_settings(_view(CHARTS / "legacy", {"runners": {"cache": LEGACY_S3}}, [values_file]))
    assert readings["Shared"].value is None
    assert "is not a boolean: the runner's registration fails" in readings["Shared"].source


def test_template_fills_what_env_leaves_false(helm: Path) -> None:
    """The register command takes template values where env is empty or false: a stale Insecure = true wins."""
    config = (
        '[[runners]]\n  [runners.cache]\n    Path = "from-template"\n    [runners.cache.s3]\n      Insecure = true\n'
    )
    view = _view(CHARTS / "legacy", {"runners": {"config": config, "cache": {**LEGACY_S3, "s3CacheInsecure": False}}})
    readings = effective_settings(view)
    assert readings["Insecure"].value is True
    assert (
        readings["Insecure"].source == "ConfigMap ci-gitlab-runner key config.template.toml [runners.cache.s3] Insecure"
    )
    assert readings["Path"].value == "from-template"
    assert readings["Path"].source.endswith(
        '[runners.cache] Path (env CACHE_PATH="" is empty or false, so the template fills it)'
    )
    assert readings["ServerAddress"].source == 'env CACHE_S3_SERVER_ADDRESS="minio:9000"'


def test_pre_0_3_names_are_reported_as_unread(helm: Path) -> None:
    view = _view(CHARTS / "pre-0.3", {"runners": {"cache": {**LEGACY_S3, "s3CacheInsecure": True}}})
    readings = effective_settings(view)
    assert readings["Insecure"].value is False
    assert (
        readings["Insecure"].source
        == 'not set; S3_CACHE_INSECURE="true" is set, but current runners do not read S3_CACHE_INSECURE'
    )
    assert readings["ServerAddress"].value == ""
    assert readings["Type"].value == "s3"


def test_differences_name_the_setting_and_the_missing_secret(helm: Path) -> None:
    view = _view(CHARTS / "modern", {"runners": {"cache": {"secretName": "someone-elses"}}})
    intended = {
        "Type": "s3",
        "ServerAddress": "m:9000",
        "BucketName": "b",
        "BucketLocation": "r",
        "Insecure": True,
        "Shared": False,
        "Path": "",
        "PathStyle": True,
    }
    found = {
        difference.field: difference for difference in differences(intended, effective_settings(view), view, "rc-s3")
    }
    assert set(found) == {"Type", "ServerAddress", "BucketName", "BucketLocation", "Insecure", "credentials"}
    assert str(found["Insecure"]) == "Insecure: intended true, runner gets false (not set)"
    assert "does not mount or reference Secret 'rc-s3'" in found["credentials"].why


def test_broken_template_fails_with_helms_message(helm: Path, tmp_path: Path) -> None:
    chart = chart_copy(tmp_path, "legacy")
    cache_tpl = chart / "templates" / "_cache.tpl"
    cache_tpl.write_text(
        cache_tpl.read_text().replace(
            '{{ default "" .Values.runners.cache.s3BucketName | quote }}',
            "{{ default .Values.runners.cache.s3BucketName ",
        )
    )
    with pytest.raises(ChartError, match=r"helm template failed: .*_cache\.tpl"):
        _view(chart, {"runners": {"cache": LEGACY_S3}})


def test_rendered_config_template_that_is_not_toml(helm: Path) -> None:
    with pytest.raises(
        ChartError, match=r"ConfigMap ci-gitlab-runner key config.template.toml is not valid TOML after rendering"
    ):
        _view(
            CHARTS / "modern",
            {"runners": {"config": "[[runners]]\n  this is = = not toml\n", "cache": {"secretName": "rc-s3"}}},
        )


ENV_FROM = """\
        envFrom:
        - configMapRef:
            name: ci-extra-env
"""
EXTRA_ENV = """\
        - name: CACHE_S3_BUCKET_NAME
          valueFrom:
            configMapKeyRef:
              name: ci-extra-env
              key: BUCKET
        - name: CACHE_S3_INSECURE
          valueFrom:
            secretKeyRef:
              name: cluster-wide-cache
              key: insecure
"""


def test_env_from_config_maps_and_secrets(helm: Path, tmp_path: Path) -> None:
    """envFrom and valueFrom resolve against rendered ConfigMaps; a value from a Secret cannot be verified."""
    chart = chart_copy(tmp_path, "legacy")
    (chart / "templates" / "extra-env.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ci-extra-env\ndata:\n  CACHE_SHARED: "true"\n  CACHE_S3_BUCKET_LOCATION: from-env-from\n  BUCKET: from-key-ref\n'
    )
    deployment = chart / "templates" / "deployment.yaml"
    text = deployment.read_text()
    text = text.replace("        env:\n", ENV_FROM + "        env:\n", 1)
    text = text.replace("        readinessProbe:\n", EXTRA_ENV + "        readinessProbe:\n", 1)
    deployment.write_text(text)
    view = _view(chart, {"runners": {"cache": {**LEGACY_S3, "s3BucketLocation": ""}}})
    readings = effective_settings(view)
    assert readings["Shared"].value is True and readings["Shared"].source == 'env CACHE_SHARED="true"'
    assert readings["BucketLocation"].value == ""  # the container's own env entry ("") overrides envFrom
    assert readings["BucketName"].value == "from-key-ref"
    assert readings["Insecure"].value is None
    assert readings["Insecure"].source == "env CACHE_S3_INSECURE comes from outside the chart: cannot verify it"
    assert "cluster-wide-cache" in view.secrets
