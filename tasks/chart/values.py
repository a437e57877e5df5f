"""The cache settings the runner should get (*intended*), and the chart values that say so for each generation.

Credentials never appear here: values only name the Kubernetes Secret (keys ``accesskey``/``secretkey``).
The values built here are *ours* only. helm puts them over the user's values file (``-f`` order) and those over
what the deployed release was installed with (``--reset-then-reuse-values``: pkg/action/upgrade.go
``reuseValues`` coalesces the release's values under the new ones), so only the keys we set change. The one
value that is a whole string — ``runners.config`` — is therefore built from that same base: the user's file,
else the deployed release, else the chart's default (:class:`ValueSources`), with only its cache section ours
(:mod:`runner_cache.tasks.chart.runners_config`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.store import StoreSettings, is_loopback
from runner_cache.errors import ConfigError
from runner_cache.tasks.chart.runners_config import describe_change, has_cache_section, merge_cache_section

Generation = Literal["pre-0.3", "legacy", "modern"]

# What render-chart compares, in the runner's own [runners.cache] names.
COMPARED_FIELDS = ("Type", "ServerAddress", "BucketName", "BucketLocation", "Insecure", "Shared", "Path")

Intended = dict[str, str | bool]


def intended_settings(store: StoreSettings, cache: CacheSettings) -> Intended:
    """The runner's cache settings for this store: ``Insecure`` means plain HTTP, so it follows the scheme of
    the endpoint the runner uses (:attr:`StoreSettings.runner_endpoint`)."""
    runner_endpoint = urlsplit(store.runner_endpoint)
    if is_loopback(runner_endpoint.hostname):
        raise ConfigError(
            f"the runner's pods cannot reach a store at {runner_endpoint.netloc} (a loopback address): set "
            "RUNNER_CACHE_STORE__RUNNER_URL to the URL the pods use (e.g. http://minio.example.com:9000)"
        )
    intended: Intended = {
        "Type": "s3",
        "ServerAddress": runner_endpoint.netloc,
        "BucketName": store.bucket,
        "BucketLocation": store.region,
        "Insecure": runner_endpoint.scheme == "http",
        "PathStyle": True,  # MinIO and SeaweedFS serve buckets as paths, not as virtual hosts
        "Path": cache.path,
        "Shared": cache.shared,
    }
    if any("{{" in value for value in intended.values() if isinstance(value, str)):
        # runners.config goes through helm's `tpl`: a `{{` would be read as a template action.
        raise ConfigError("cache.path must not contain '{{' (the chart renders runners.config as a template)")
    return intended


def load_values_file(path: Path | None) -> dict[str, Any]:
    """The user's own values file (``release.values_file``), or nothing."""
    if path is None:
        return {}
    if not path.is_file():
        raise ConfigError(f"RUNNER_CACHE_RELEASE__VALUES_FILE names {path}, which is not a file")
    return _values_mapping(path.read_text(encoding="utf-8"), f"RUNNER_CACHE_RELEASE__VALUES_FILE {path}")


def _values_mapping(text: str, source: str, *, skipped_lines: int = 0, shape: str = "") -> dict[str, Any]:
    """Chart values from YAML ``text``: a mapping (``null`` is ``{}``); errors name ``source`` and the line."""
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1 + skipped_lines}" if mark else ""
        raise ConfigError(f"{source} is not valid YAML{where}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source} must hold a mapping of chart values{shape}")
    return values


def chart_default_values(chart_dir: Path) -> dict[str, Any]:
    """The chart's own ``values.yaml`` (the defaults helm starts from)."""
    path = chart_dir / "values.yaml"
    if not path.is_file():
        return {}
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    return values if isinstance(values, dict) else {}


def parse_release_values(text: str, source: str) -> dict[str, Any]:
    """Values shaped like ``helm get values`` output: ``-o yaml``, ``-o json``, or the plain output whose first
    line is ``USER-SUPPLIED VALUES:`` (pkg/cmd/get_values.go); ``null`` (installed without values) is ``{}``."""
    header = text.startswith("USER-SUPPLIED VALUES:")
    return _values_mapping(
        text.partition("\n")[2] if header else text,
        source,
        skipped_lines=int(header),
        shape=", as `helm get values -o yaml` prints them",
    )


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """helm's merge of values given in order (``-f`` files, then ``--reset-then-reuse-values`` putting the
    release's values under them): maps merge key by key, anything else in ``override`` wins, and a ``null`` there
    removes the key (pkg/chart/common/util/coalesce.go ``coalesceTablesFullKey``)."""
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def runner_part(values: dict[str, Any], key: str | None) -> dict[str, Any]:
    """The runner chart's part of ``values``: all of it, or what an umbrella chart passes under ``key``."""
    if key is None:
        return values
    part = values.get(key)
    return part if isinstance(part, dict) else {}


def under_key(values: dict[str, Any], key: str | None) -> dict[str, Any]:
    """Runner chart ``values`` as the chart to install takes them (an umbrella: under its dependency's key)."""
    return {key: values} if key else values


def _runners_config(values: dict[str, Any]) -> str | None:
    runners = values.get("runners")
    config = runners.get("config") if isinstance(runners, dict) else None
    return config if isinstance(config, str) else None


@dataclass(frozen=True)
class ValueSources:
    """What an upgrade starts from, at the runner chart's level, in helm's order: the chart's defaults, the values
    the deployed release was installed with (``helm get values``; empty when not installed), the user's file."""

    chart: dict[str, Any]
    deployed: dict[str, Any]
    user: dict[str, Any]

    def effective(self) -> dict[str, Any]:
        """The values the chart sees before ours."""
        return merge_values(merge_values(self.chart, self.deployed), self.user)

    def base_config(self) -> tuple[str | None, str]:
        """The ``runners.config`` ours goes into, and where it is from: the user's values file, else the deployed
        release, else the chart's default — never the default over a team's own config."""
        for values, where in (
            (self.user, "the values file"),
            (self.deployed, "the deployed release"),
            (self.chart, "the chart's default"),
        ):
            config = _runners_config(values)
            if config is not None:
                return config, where
        return None, "none (a new one)"


def image_values(effective: dict[str, Any], tag: str) -> dict[str, Any]:
    """The runner image tag, set where this chart keeps it and nothing else: ``image.tag`` of an ``image`` map
    (DoD-Platform-One chart/values.yaml 0.52+, @d8b934d), the tag of an ``image`` string (0.19.2-bb.1 … 0.39,
    @7aeb26a), or ``tag`` beside ``registry``/``repository`` when ``image`` is null (0.41 … 0.49, @39821f3).
    Registry and repository stay what the release has (a private mirror keeps working).

    Raises:
        ConfigError: the effective ``image`` value has none of these shapes.
    """
    image = effective.get("image")
    if isinstance(image, dict):
        return {"image": {"tag": tag}}
    if isinstance(image, str) and image:
        name = image.split("@", 1)[0]
        repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        return {"image": f"{repository}:{tag}"}
    if image is None and "repository" in effective and "tag" in effective:
        return {"tag": tag}
    raise ConfigError(
        "cannot tell where this chart takes the runner image tag: its `image` value is neither a map (image.tag) "
        "nor an image string; set `image` in RUNNER_CACHE_RELEASE__VALUES_FILE"
    )


def build_values(
    generation: Generation,
    intended: Intended,
    secret_name: str,
    sources: ValueSources,
    *,
    image_tag: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Our values for the runner chart (not yet under an umbrella's key), and notes on what we changed.

    - pre-0.3 and legacy: ``runners.cache.{cacheType, cachePath, s3CachePath, cacheShared, s3ServerAddress,
      s3BucketName, s3BucketLocation, s3CacheInsecure, secretName}``, which the chart renders to env vars.
      Both path keys are set because legacy templates ``coalesce`` them and pre-0.3 reads only ``s3CachePath``.
      If the base ``runners.config`` has a ``[runners.cache]`` section of its own, ours is merged into it too: the
      runner's register command takes template values wherever an env var is empty or false, so a stale
      ``Insecure = true`` there would win over ``s3CacheInsecure: false``.
    - modern: the base ``runners.config`` (:meth:`ValueSources.base_config`) with our cache section, and
      ``runners.cache.secretName``.
    - ``image_tag``: the runner image tag only (:func:`image_values`).
    """
    base_config, where = sources.base_config()
    runners: dict[str, Any] = {}
    notes: list[str] = []
    if generation == "modern":
        config_path = (sources.effective().get("runners") or {}).get("configPath")
        if not base_config and config_path:
            # 0.58+ registers with runners.configPath only while runners.config is empty (templates/configmap.yaml
            # `else if .Values.runners.configPath`, DoD-Platform-One chart@69871ff): setting one would replace it
            raise ConfigError(
                "the release registers with runners.configPath (a config file in the pod), not runners.config: "
                "runner-cache cannot merge into that file. Put its [runners.cache] there by hand, or move the config "
                "into runners.config"
            )
        merged = merge_cache_section(base_config or "", intended)
        runners["config"], notes = (
            merged.text,
            [f"runners.config from {where}: only its cache section is ours", *merged.notes],
        )
        runners["cache"] = {"secretName": secret_name}
    else:
        runners["cache"] = {
            "cacheType": intended["Type"],
            "cachePath": intended["Path"],
            "s3CachePath": intended["Path"],
            "cacheShared": intended["Shared"],
            "s3ServerAddress": intended["ServerAddress"],
            "s3BucketName": intended["BucketName"],
            "s3BucketLocation": intended["BucketLocation"],
            "s3CacheInsecure": intended["Insecure"],
            "secretName": secret_name,
        }
        if base_config and has_cache_section(base_config):
            merged = merge_cache_section(base_config, intended)
            runners["config"] = merged.text
            notes = [
                f"runners.config from {where} had its own [runners.cache] section: set it to the same settings",
                *merged.notes,
            ]
    values: dict[str, Any] = {"runners": runners}
    if image_tag:
        values |= image_values(sources.effective(), image_tag)
    return values, notes


# Values runner-cache sets: plan shows their old and new value (none is a secret). Any other path: its name only.
_SHOWN = {
    ("runners", "cache", name)
    for name in (
        "cacheType", "cachePath", "s3CachePath", "cacheShared", "s3ServerAddress", "s3BucketName",
        "s3BucketLocation", "s3CacheInsecure", "secretName",
    )
} | {("image",), ("image", "tag"), ("tag",)}  # fmt: skip


def describe_value_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two values trees, in words: ``runners.config`` by cache setting (and whether anything
    else in it changed), the values runner-cache sets with old and new value, any other path by its name only (it
    may hold a token). Paths are matched at the top and one level down (an umbrella chart's dependency key)."""
    words = []
    for path in _changed_paths(old, new):
        before, after = _at(old, path), _at(new, path)
        if ("runners", "config") in (path, path[1:]) and isinstance(after, str):
            words += describe_change(before if isinstance(before, str) else None, after)
        elif _SHOWN & {path, path[1:]} or "podAnnotations" in path[:2] and path[-1].startswith("runner-cache.io/"):
            words.append(f"{'.'.join(path)}: {_shown(before)} → {_shown(after)}")
        else:
            words.append(f"{'.'.join(path)} changed")
    return words


def _changed_paths(old: Any, new: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(old, dict) and new is None or old is None and isinstance(new, dict):
        old, new = old or {}, new or {}
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        return [found for name in keys for found in _changed_paths(old.get(name), new.get(name), (*path, str(name)))]
    return [] if old == new else [path or ("values",)]


def _at(values: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        values = values.get(part) if isinstance(values, dict) else None
    return values


def _shown(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value)
