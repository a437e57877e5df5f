"""Intended settings and chart values per generation; the TOML merge keeps the user's own runners.config."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from runner_cache.errors import ConfigError
from runner_cache.tasks.chart.values import (
    build_values,
    chart_default_values,
    intended_settings,
    load_values_file,
    merge_cache_section,
)
from tests.support.charts import ACCESS_KEY, CHARTS, SECRET_KEY, sections, write_values

USER_CONFIG = """\
# our runner, tuned by hand
[[runners]]
  output_limit = 8192
  # pods go to the ci pool
  [runners.kubernetes]
    namespace = "{{.Release.Namespace}}"
    image = "ubuntu:22.04"
    [runners.kubernetes.node_selector]
      "pool" = "ci"
  [runners.cache]
    Type = "gcs"
    MaxUploadedArchiveSize = 104857600
    [runners.cache.s3]
      AccessKey = "hand-written-access"
      SecretKey = "hand-written-secret"
      Insecure = false
"""


def _intended(scheme: str = "http", **cache: object) -> dict:
    config = sections(scheme, **cache)
    return intended_settings(config.store, config.cache)


@pytest.mark.parametrize(("scheme", "insecure"), [("http", True), ("https", False)])
def test_intended_follows_the_endpoint_scheme(scheme: str, insecure: bool) -> None:
    intended = _intended(scheme, path="team/a", shared=True)
    port = 9000 if scheme == "http" else 443
    assert intended == {
        "Type": "s3",
        "ServerAddress": f"minio.runner-cache.svc:{port}",
        "BucketName": "ci-cache",
        "BucketLocation": "eu-west-1",
        "Insecure": insecure,
        "PathStyle": True,
        "Path": "team/a",
        "Shared": True,
    }


def test_intended_refuses_a_path_that_the_chart_would_template() -> None:
    with pytest.raises(ConfigError, match=r"must not contain '\{\{'"):
        _intended(path="a{{b")


def test_merge_keeps_the_users_content_and_sets_ours() -> None:
    merged, notes = merge_cache_section(USER_CONFIG, _intended("https"))
    assert "# our runner, tuned by hand" in merged and "# pods go to the ci pool" in merged
    runner = tomllib.loads(merged)["runners"][0]
    assert runner["output_limit"] == 8192
    assert runner["kubernetes"] == {
        "namespace": "{{.Release.Namespace}}",
        "image": "ubuntu:22.04",
        "node_selector": {"pool": "ci"},
    }
    assert runner["cache"] == {
        "Type": "s3",
        "MaxUploadedArchiveSize": 104857600,
        "Path": "",
        "Shared": False,
        "s3": {
            "Insecure": False,
            "ServerAddress": "minio.runner-cache.svc:443",
            "BucketName": "ci-cache",
            "BucketLocation": "eu-west-1",
            "PathStyle": True,
        },
    }
    assert "hand-written" not in merged
    assert notes == [
        "removed AccessKey from runners.config [runners.cache.s3]: credentials come from the Secret only",
        "removed SecretKey from runners.config [runners.cache.s3]: credentials come from the Secret only",
    ]


def test_merge_is_idempotent() -> None:
    once, _ = merge_cache_section(USER_CONFIG, _intended())
    twice, notes = merge_cache_section(once, _intended())
    assert twice == once and notes == []


def test_merge_into_nothing_creates_the_runner_table() -> None:
    merged, _ = merge_cache_section("", _intended())
    runners = tomllib.loads(merged)["runners"]
    assert len(runners) == 1 and runners[0]["cache"]["s3"]["Insecure"] is True


def test_merge_refuses_two_runner_tables() -> None:
    with pytest.raises(ConfigError, match=r"exactly one \[\[runners\]\] table"):
        merge_cache_section('[[runners]]\nname = "a"\n[[runners]]\nname = "b"\n', _intended())


def test_merge_refuses_templated_toml_without_echoing_it() -> None:
    config = '[[runners]]\n{{- if .Values.extra }}\n  secret_thing = "hunter2"\n{{- end }}\n'
    with pytest.raises(ConfigError, match=r"not plain TOML \(line 2") as error:
        merge_cache_section(config, _intended())
    assert "hunter2" not in str(error.value)


def test_modern_values_merge_into_the_users_config_and_name_only_the_secret() -> None:
    user = {"runners": {"config": USER_CONFIG}}
    values, notes = build_values(
        "modern", _intended(), "my-s3-secret", chart_defaults=chart_default_values(CHARTS / "modern"), user_values=user
    )
    assert set(values) == {"runners"} and values["runners"]["cache"] == {"secretName": "my-s3-secret"}
    assert "node_selector" in values["runners"]["config"] and len(notes) == 2
    dumped = json.dumps(values)
    assert ACCESS_KEY not in dumped and SECRET_KEY not in dumped and "hand-written" not in dumped


def test_modern_values_start_from_the_charts_default_config() -> None:
    values, notes = build_values(
        "modern", _intended(), "s", chart_defaults=chart_default_values(CHARTS / "modern"), user_values={}
    )
    runner = tomllib.loads(values["runners"]["config"])["runners"][0]
    assert runner["kubernetes"] == {"namespace": "{{.Release.Namespace}}", "image": "alpine"}
    assert runner["cache"]["Type"] == "s3" and notes == []


@pytest.mark.parametrize("generation", ["pre-0.3", "legacy"])
def test_env_generations_get_runners_cache_values(generation: str) -> None:
    values, notes = build_values(
        generation,
        _intended("https", path="p", shared=True),
        "sec",
        chart_defaults=chart_default_values(CHARTS / "legacy"),
        user_values={},
    )
    assert values == {
        "runners": {
            "cache": {
                "cacheType": "s3",
                "cachePath": "p",
                "s3CachePath": "p",
                "cacheShared": True,
                "s3ServerAddress": "minio.runner-cache.svc:443",
                "s3BucketName": "ci-cache",
                "s3BucketLocation": "eu-west-1",
                "s3CacheInsecure": False,
                "secretName": "sec",
            }
        }
    }
    assert notes == []


def test_legacy_config_with_its_own_cache_section_is_aligned_too() -> None:
    values, notes = build_values(
        "legacy", _intended("http"), "sec", chart_defaults={}, user_values={"runners": {"config": USER_CONFIG}}
    )
    cache = tomllib.loads(values["runners"]["config"])["runners"][0]["cache"]
    assert cache["Type"] == "s3" and cache["s3"]["Insecure"] is True
    assert notes[0] == "runners.config had its own [runners.cache] section: set it to the same settings"


def test_values_file_is_read(tmp_path: Path) -> None:
    path = write_values(tmp_path, "runners:\n  tags: k8s\n")
    assert load_values_file(path) == {"runners": {"tags": "k8s"}}
    assert load_values_file(None) == {}
    assert load_values_file(write_values(tmp_path, "")) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "must hold a mapping"), ("runners: [unclosed\n  secret: hunter2\n", "is not valid YAML at line")],
)
def test_bad_values_file_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        load_values_file(write_values(tmp_path, text))
    assert "hunter2" not in str(error.value)


def test_missing_values_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="which is not a file"):
        load_values_file(tmp_path / "nope.yaml")
