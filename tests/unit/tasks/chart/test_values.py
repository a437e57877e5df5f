"""Intended settings, the values base (values file, deployed release, chart default), our values per generation."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from runner_cache.errors import ConfigError
from runner_cache.tasks.chart.values import (
    ValueSources,
    build_values,
    chart_default_values,
    describe_value_changes,
    image_values,
    intended_settings,
    load_values_file,
    merge_values,
    parse_release_values,
    runner_part,
    under_key,
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


def _sources(chart: dict | None = None, deployed: dict | None = None, user: dict | None = None) -> ValueSources:
    return ValueSources(chart=chart or {}, deployed=deployed or {}, user=user or {})


MODERN_DEFAULTS = chart_default_values(CHARTS / "modern")


def test_modern_values_merge_into_the_users_config_and_name_only_the_secret() -> None:
    user = {"runners": {"config": USER_CONFIG}}
    values, notes = build_values("modern", _intended(), "my-s3-secret", _sources(MODERN_DEFAULTS, user=user))
    assert set(values) == {"runners"} and values["runners"]["cache"] == {"secretName": "my-s3-secret"}
    assert "node_selector" in values["runners"]["config"]
    assert notes[0] == "runners.config from the values file: only its cache section is ours"
    assert "removed AccessKey, SecretKey from runners.config [runners.cache.s3]" in notes[-1]
    dumped = json.dumps(values)
    assert ACCESS_KEY not in dumped and SECRET_KEY not in dumped and "hand-written" not in dumped


def test_modern_values_start_from_the_charts_default_config() -> None:
    values, notes = build_values("modern", _intended(), "s", _sources(MODERN_DEFAULTS))
    runner = tomllib.loads(values["runners"]["config"])["runners"][0]
    assert runner["kubernetes"] == {"namespace": "{{.Release.Namespace}}", "image": "alpine"}
    assert runner["cache"]["Type"] == "s3" and notes == [
        "runners.config from the chart's default: only its cache section is ours"
    ]


def test_the_base_config_is_the_values_file_then_the_deployed_release_then_the_chart() -> None:
    deployed = {"runners": {"config": '[[runners]]\n  [runners.kubernetes]\n    image = "team:1"\n'}}
    user = {"runners": {"config": '[[runners]]\n  [runners.kubernetes]\n    image = "file:2"\n'}}
    for sources, image, where in [
        (_sources(MODERN_DEFAULTS), "alpine", "the chart's default"),
        (_sources(MODERN_DEFAULTS, deployed), "team:1", "the deployed release"),
        (_sources(MODERN_DEFAULTS, deployed, user), "file:2", "the values file"),
        (_sources(MODERN_DEFAULTS, deployed, {"runners": {"tags": "x"}}), "team:1", "the deployed release"),
    ]:
        values, _ = build_values("modern", _intended(), "s", sources)
        assert tomllib.loads(values["runners"]["config"])["runners"][0]["kubernetes"]["image"] == image
        assert sources.base_config()[1] == where


def test_a_release_that_registers_with_a_config_file_is_not_switched_to_ours() -> None:
    deployed = {"runners": {"config": "", "configPath": "/mnt/team/config.toml"}}
    with pytest.raises(ConfigError, match="registers with runners.configPath"):
        build_values("modern", _intended(), "s", _sources({"runners": {"config": "[[runners]]\n"}}, deployed))


@pytest.mark.parametrize("generation", ["pre-0.3", "legacy"])
def test_env_generations_get_runners_cache_values(generation: str) -> None:
    values, notes = build_values(
        generation, _intended("https", path="p", shared=True), "sec", _sources(chart_default_values(CHARTS / "legacy"))
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
        "legacy", _intended("http"), "sec", _sources(deployed={"runners": {"config": USER_CONFIG}})
    )
    cache = tomllib.loads(values["runners"]["config"])["runners"][0]["cache"]
    assert cache["Type"] == "s3" and cache["s3"]["Insecure"] is True
    assert notes[0] == (
        "runners.config from the deployed release had its own [runners.cache] section: set it to the same settings"
    )


@pytest.mark.parametrize(
    ("effective", "ours"),
    [
        (
            {"image": {"registry": "registry.team.example", "image": "mirror/runner", "tag": "v1"}},
            {"image": {"tag": "v2"}},
        ),
        (
            {"image": "registry.team.example:5000/mirror/runner:v1"},
            {"image": "registry.team.example:5000/mirror/runner:v2"},
        ),
        (
            {"image": "registry.team.example:5000/mirror/runner"},
            {"image": "registry.team.example:5000/mirror/runner:v2"},
        ),
        ({"image": "mirror/runner:v1@sha256:abc"}, {"image": "mirror/runner:v2"}),
        ({"image": None, "registry": "r.example", "repository": "mirror/runner", "tag": "v1"}, {"tag": "v2"}),
    ],
)
def test_the_image_tag_goes_where_the_chart_keeps_it(effective: dict, ours: dict) -> None:
    assert image_values(effective, "v2") == ours


def test_an_image_value_of_no_known_shape_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot tell where this chart takes the runner image tag"):
        image_values({"image": 5}, "v2")


def test_a_rebuilds_tag_keeps_the_deployed_registry() -> None:
    deployed = {"image": {"registry": "registry.team.example", "image": "mirror/runner", "tag": "v1"}}
    values, _ = build_values("modern", _intended(), "s", _sources(MODERN_DEFAULTS, deployed), image_tag="v2")
    assert values["image"] == {"tag": "v2"}
    assert merge_values(_sources(MODERN_DEFAULTS, deployed).effective(), values)["image"] == {
        "registry": "registry.team.example",
        "image": "mirror/runner",
        "tag": "v2",
    }


def test_merge_values_is_helms() -> None:
    base = {"image": {"registry": "r", "tag": "v1"}, "runners": {"config": "a", "tags": "x"}, "gone": 1}
    override = {"image": {"tag": "v2"}, "runners": {"config": "b"}, "gone": None}
    assert merge_values(base, override) == {
        "image": {"registry": "r", "tag": "v2"},
        "runners": {"config": "b", "tags": "x"},
    }
    assert base["image"]["tag"] == "v1", "inputs are not changed"


def test_umbrella_values_sit_under_the_dependency_key() -> None:
    assert runner_part({"upstream": {"runners": {}}, "team": 1}, "upstream") == {"runners": {}}
    assert runner_part({"team": 1}, "upstream") == {}
    assert runner_part({"runners": {}}, None) == {"runners": {}}
    assert under_key({"runners": {}}, "upstream") == {"upstream": {"runners": {}}}
    assert under_key({"runners": {}}, None) == {"runners": {}}


@pytest.mark.parametrize(
    "text",
    [
        "USER-SUPPLIED VALUES:\ngitlabUrl: https://g.example\nrunners:\n  config: x\n",
        "gitlabUrl: https://g.example\nrunners:\n  config: x\n",
        '{"gitlabUrl": "https://g.example", "runners": {"config": "x"}}',
    ],
)
def test_release_values_as_helm_get_values_prints_them(text: str) -> None:
    assert parse_release_values(text, "f") == {"gitlabUrl": "https://g.example", "runners": {"config": "x"}}


@pytest.mark.parametrize("text", ["USER-SUPPLIED VALUES:\nnull\n", "null\n", "", "USER-SUPPLIED VALUES:"])
def test_release_values_of_a_release_without_values(text: str) -> None:
    assert parse_release_values(text, "f") == {}


def test_bad_release_values_name_the_file_not_the_content() -> None:
    with pytest.raises(ConfigError, match="release.yaml is not valid YAML at line 4") as error:
        parse_release_values("USER-SUPPLIED VALUES:\na: 1\nrunnerToken: [glrt-hunter2, b: c\n", "release.yaml")
    assert "hunter2" not in str(error.value)
    with pytest.raises(ConfigError, match="must hold a mapping"):
        parse_release_values("- a\n", "release.yaml")


def test_value_changes_in_words_show_only_what_runner_cache_sets() -> None:
    old = {
        "runnerToken": "glrt-old-hunter2",
        "upstream": {"image": {"tag": "v1"}, "runners": {"config": USER_CONFIG, "cache": {"secretName": "old"}}},
    }
    config, _ = build_values("modern", _intended("https"), "new", _sources(deployed=old["upstream"]))
    new = {
        **old,
        "runnerToken": "glrt-new-hunter3",
        "upstream": merge_values(old["upstream"], {**config, "image": {"tag": "v2"}}),
    }
    words = describe_value_changes(old, new)
    assert 'upstream.image.tag: "v1" → "v2"' in words
    assert 'upstream.runners.cache.secretName: "old" → "new"' in words
    assert "runnerToken changed" in words
    assert 'runners.config [runners.cache] Type: "gcs" → "s3"' in words
    assert "the rest of runners.config unchanged" in words
    assert "hunter" not in " ".join(words)
    assert describe_value_changes(new, new) == []


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
