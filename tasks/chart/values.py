"""The cache settings the runner should get (*intended*), and the chart values that say so for each generation.

Credentials never appear here: values only name the Kubernetes Secret (keys ``accesskey``/``secretkey``).
The values built here are *ours* only; the user's own values file is passed to helm before them, so helm's
usual deep merge applies (ours win) and the user's tokens never pass through this code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import tomlkit
import yaml
from tomlkit.items import AoT, Table

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.store import StoreSettings, is_loopback
from runner_cache.errors import ConfigError

Generation = Literal["pre-0.3", "legacy", "modern"]

# What render-chart compares, in the runner's own [runners.cache] names.
COMPARED_FIELDS = ("Type", "ServerAddress", "BucketName", "BucketLocation", "Insecure", "Shared", "Path")
CACHE_KEYS = ("Type", "Path", "Shared")  # [runners.cache]
S3_KEYS = ("ServerAddress", "BucketName", "BucketLocation", "Insecure", "PathStyle")  # [runners.cache.s3]
CONFIG_CREDENTIAL_KEYS = ("AccessKey", "SecretKey", "SessionToken")

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
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"RUNNER_CACHE_RELEASE__VALUES_FILE {path} is not valid YAML{where}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"RUNNER_CACHE_RELEASE__VALUES_FILE {path} must hold a mapping of chart values")
    return values


def chart_default_values(chart_dir: Path) -> dict[str, Any]:
    """The chart's own ``values.yaml`` (the defaults helm starts from)."""
    path = chart_dir / "values.yaml"
    if not path.is_file():
        return {}
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    return values if isinstance(values, dict) else {}


def _runners_config(values: dict[str, Any]) -> str | None:
    runners = values.get("runners")
    config = runners.get("config") if isinstance(runners, dict) else None
    return config if isinstance(config, str) else None


def _table(parent: Table, key: str) -> Table:
    current = parent.get(key)
    if current is None:
        current = tomlkit.table()
        parent.append(key, current)
    elif not isinstance(current, Table):
        raise ConfigError(f"runners.config: [runners.{key}] must be a table")
    return current


def merge_cache_section(config: str, intended: Intended) -> tuple[str, list[str]]:
    """``config`` (a runners.config TOML) with our ``[runners.cache]`` and ``[runners.cache.s3]`` keys set.

    Everything else — other sections, other cache keys, comments, layout — is kept. Credentials found in the
    s3 section are removed (they come from the Secret), and each removal is returned as a note.

    Raises:
        ConfigError: the text is not plain TOML (e.g. Go template actions outside strings), or it holds more
            than one ``[[runners]]`` table (the runner's register template takes exactly one).
    """
    try:
        document = tomlkit.parse(config)
    except tomlkit.exceptions.ParseError as error:
        raise ConfigError(
            f"runners.config is not plain TOML (line {error.line}, column {error.col}); template actions such as "
            "{{ if }} outside strings cannot be merged safely: move the cache section out of them"
        ) from None
    runners = document.get("runners")
    if runners is None:
        runners = tomlkit.aot()
        runners.append(tomlkit.table())
        document.append("runners", runners)
    if not isinstance(runners, AoT) or len(runners) != 1:
        raise ConfigError(
            "runners.config must hold exactly one [[runners]] table (the runner's register template takes one)"
        )
    cache = _table(runners[0], "cache")
    for key in CACHE_KEYS:
        cache[key] = intended[key]
    s3 = _table(cache, "s3")
    for key in S3_KEYS:
        s3[key] = intended[key]
    notes = []
    for key in CONFIG_CREDENTIAL_KEYS:
        if key in s3:
            del s3[key]
            notes.append(f"removed {key} from runners.config [runners.cache.s3]: credentials come from the Secret only")
    return tomlkit.dumps(document), notes


def build_values(
    generation: Generation,
    intended: Intended,
    secret_name: str,
    *,
    chart_defaults: dict[str, Any],
    user_values: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """Our chart values for ``generation`` (applied over the user's values file), and notes on what we changed.

    - pre-0.3 and legacy: ``runners.cache.{cacheType, cachePath, s3CachePath, cacheShared, s3ServerAddress,
      s3BucketName, s3BucketLocation, s3CacheInsecure, secretName}``, which the chart renders to env vars.
      Both path keys are set because legacy templates ``coalesce`` them and pre-0.3 reads only ``s3CachePath``.
      If a runners.config already has a ``[runners.cache]`` section, ours is merged into it too: the runner's
      register command takes template values wherever an env var is empty or false, so a stale
      ``Insecure = true`` there would win over ``s3CacheInsecure: false``.
    - modern: ``runners.config`` (the user's, else the chart's default) with our cache section merged in, and
      ``runners.cache.secretName``.
    """
    base_config = _runners_config(user_values) or _runners_config(chart_defaults)
    runners: dict[str, Any] = {}
    notes: list[str] = []
    if generation == "modern":
        runners["config"], notes = merge_cache_section(base_config or "", intended)
        runners["cache"] = {"secretName": secret_name}
        return {"runners": runners}, notes
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
    if base_config and _has_cache_section(base_config):
        runners["config"], notes = merge_cache_section(base_config, intended)
        notes.insert(0, "runners.config had its own [runners.cache] section: set it to the same settings")
    return {"runners": runners}, notes


def _has_cache_section(config: str) -> bool:
    try:
        document = tomlkit.parse(config)
    except tomlkit.exceptions.ParseError:
        return False  # a templated config we cannot read; the rendered check still sees what it yields
    runners = document.get("runners")
    return isinstance(runners, AoT) and any("cache" in runner for runner in runners)
