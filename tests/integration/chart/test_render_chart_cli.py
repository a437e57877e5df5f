"""``runner-cache render-chart``: the JSON document, the human text and the exit codes."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from runner_cache import cli
from runner_cache.commands import render_chart
from tests.support.charts import ACCESS_KEY, CHARTS, SECRET_KEY, chart_copy, write_values

EFFECTIVE_TYPES = {
    "Type": str,
    "ServerAddress": str,
    "BucketName": str,
    "BucketLocation": str,
    "Insecure": bool,
    "Shared": bool,
    "Path": str,
}


@pytest.fixture
def run_cli(
    helm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """``runner-cache ARGS`` in-process with an external store over ``scheme``; returns (exit code, stdout, stderr)."""
    if render_chart not in cli.COMMANDS:  # until the registration line lands in runner_cache/cli.py
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, render_chart))
    monkeypatch.chdir(tmp_path)  # no stray .env or runner-cache.toml

    def run(*args: str, scheme: str = "http", **env: str) -> tuple[int, str, str]:
        monkeypatch.setenv("RUNNER_CACHE_STORE__BACKEND", "external")
        monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", f"{scheme}://minio.example.com:9000")
        monkeypatch.setenv("RUNNER_CACHE_STORE__ACCESS_KEY", ACCESS_KEY)
        monkeypatch.setenv("RUNNER_CACHE_STORE__SECRET_KEY", SECRET_KEY)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code = cli.main(["render-chart", *args])
        out, err = capsys.readouterr()
        assert ACCESS_KEY not in out + err and SECRET_KEY not in out + err
        return code, out, err

    return run


def test_json_document_of_a_chart_that_renders_right(run_cli) -> None:
    code, out, _ = run_cli("--chart", str(CHARTS / "legacy"), "--json")
    document = json.loads(out)
    assert code == 0
    assert {"chart", "version", "generation", "patched", "patch", "intended", "effective"} <= set(document)
    assert (document["chart"], document["version"], document["generation"]) == (
        str(CHARTS / "legacy"),
        "0.36.0",
        "legacy",
    )
    assert document["patched"] is False and document["patch"] is None and document["ok"] is True
    assert {name: type(value) for name, value in document["effective"].items()} == EFFECTIVE_TYPES
    assert document["effective"] == {name: document["intended"][name] for name in EFFECTIVE_TYPES}
    assert (
        document["effective"]["ServerAddress"] == "minio.example.com:9000" and document["effective"]["Insecure"] is True
    )


def test_json_document_of_a_patched_chart(run_cli) -> None:
    code, out, _ = run_cli("--chart", str(CHARTS / "pre-0.3"), "--version", "0.2.0", "--json")
    document = json.loads(out)
    assert code == 0 and document["generation"] == "pre-0.3" and document["patched"] is True
    assert "rename env S3_CACHE_INSECURE to CACHE_S3_INSECURE" in document["patch"]


def test_text_output_shows_the_table_and_the_patch(run_cli) -> None:
    code, out, _ = run_cli("--chart", str(CHARTS / "legacy-handpatched"), scheme="https")
    assert code == 0
    assert out.startswith(
        f"gitlab-runner 0.15.0 (legacy) from {CHARTS / 'legacy-handpatched'}: patched a copy; the runner now gets the intended cache settings"
    )
    assert '| Insecure | false | false | env CACHE_S3_INSECURE="false" |' in out
    assert "+  value: {{ default false .Values.runners.cache.s3CacheInsecure | quote }}" in out


def test_chart_defaults_to_the_configured_release_chart(run_cli) -> None:
    code, out, _ = run_cli("--json", RUNNER_CACHE_RELEASE__CHART=str(CHARTS / "modern"))
    assert code == 0 and json.loads(out)["generation"] == "modern"


def test_still_wrong_exits_1_with_the_document(run_cli, tmp_path: Path) -> None:
    values_file = write_values(tmp_path, 'envVars:\n- name: CACHE_S3_INSECURE\n  value: ""\n')
    code, out, _ = run_cli(
        "--chart", str(CHARTS / "modern"), "--json", scheme="https", RUNNER_CACHE_RELEASE__VALUES_FILE=str(values_file)
    )
    document = json.loads(out)
    assert code == 1 and document["ok"] is False and document["patched"] is False
    assert document["effective"]["Insecure"] is True and document["intended"]["Insecure"] is False
    assert document["differences"] == [
        {
            "field": "Insecure",
            "intended": False,
            "effective": True,
            "why": 'env CACHE_S3_INSECURE="" (an empty boolean reads as true)',
        }
    ]


def test_missing_chart_path_exits_2(run_cli, tmp_path: Path) -> None:
    code, out, err = run_cli("--chart", str(tmp_path / "no-such-chart"), "--json")
    assert (code, out) == (2, "")
    assert "chart path" in err and "no-such-chart does not exist" in err


def test_unknown_generation_exits_2(run_cli, tmp_path: Path) -> None:
    chart = chart_copy(tmp_path, "modern")
    (chart / "Chart.yaml").write_text("name: gitlab-runner\nversion: 0.2.0\n")
    code, out, err = run_cli("--chart", str(chart), "--json")
    assert (code, out) == (2, "") and "unknown chart generation" in err


def test_broken_template_exits_1_with_an_error_document(run_cli, tmp_path: Path) -> None:
    chart = chart_copy(tmp_path, "modern")
    (chart / "templates" / "extra.yaml").write_text('data: {{ .Values.nope | required "runners.nope is required" }}\n')
    code, out, _ = run_cli("--chart", str(chart), "--json")
    document = json.loads(out)
    assert code == 1 and document["chart"] == str(chart)
    assert document["error"].startswith("helm template failed:") and "runners.nope is required" in document["error"]


RELEASE_VALUES = """\
USER-SUPPLIED VALUES:
gitlabUrl: https://gitlab.example.com
runnerToken: glrt-cli-token-0042
runners:
  config: |
    [[runners]]
      [runners.kubernetes]
        namespace = "{{.Release.Namespace}}"
        image = "{{ printf "%s:%s" "team/ubuntu" "22.04" }}"
        privileged = true
      [runners.cache]
        Type = "gcs"
"""


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_release_values_render_as_the_upgrade_would(run_cli, tmp_path: Path, scheme: str) -> None:
    release_file = tmp_path / "release.yaml"
    release_file.write_text(RELEASE_VALUES)  # `helm get values gitlab-runner > release.yaml`
    chart = str(CHARTS / "modern-templated")
    code, out, _ = run_cli("--chart", chart, "--release-values", str(release_file), "--json", scheme=scheme)
    document = json.loads(out)
    assert code == 0 and document["ok"] is True and document["runners_config_from"] == "the deployed release"
    runner = tomllib.loads(document["runner_config"])["runners"][0]
    assert runner["kubernetes"] == {"namespace": "gitlab-runner", "image": "team/ubuntu:22.04", "privileged": True}
    assert runner["cache"]["Type"] == "s3" and runner["cache"]["s3"]["Insecure"] is (scheme == "http")
    assert "gcs" not in document["runner_config"] and "glrt-cli-token" not in out

    code, text, _ = run_cli("--chart", chart, "--release-values", str(release_file))
    assert code == 0 and "runners.config from the deployed release" in text and "glrt-cli-token" not in text


def test_runner_config_of_a_legacy_chart_and_of_one_without_release_values(run_cli) -> None:
    code, out, _ = run_cli("--chart", str(CHARTS / "legacy"), "--json")
    document = json.loads(out)
    assert code == 0 and document["runners_config_from"] is None, "legacy: the cache is in env, the config untouched"
    assert tomllib.loads(document["runner_config"])["runners"][0]["kubernetes"]["namespace"] == "gitlab-runner"
    code, out, _ = run_cli("--chart", str(CHARTS / "pre-0.3"), "--json")
    assert json.loads(out)["runner_config"] is None, "a chart without runners.config"


@pytest.mark.parametrize(
    ("text", "message"), [("- a\n- b\n", "must hold a mapping"), ("a: [1\nrunnerToken: glrt-x\n", "is not valid YAML")]
)
def test_bad_release_values_exit_2_without_their_content(run_cli, tmp_path: Path, text: str, message: str) -> None:
    release_file = tmp_path / "release.yaml"
    release_file.write_text(text)
    code, out, err = run_cli("--chart", str(CHARTS / "modern"), "--release-values", str(release_file))
    assert code == 2 and out == "" and message in err and "glrt-x" not in err
    code, _, err = run_cli("--chart", str(CHARTS / "modern"), "--release-values", str(tmp_path / "nope.yaml"))
    assert code == 2 and "--release-values" in err
