from pathlib import Path

import pytest

from runner_cache.blocks.settings import load_settings
from runner_cache.blocks.store import StoreSettings, local_credentials
from runner_cache.errors import ConfigError

SENTINEL = "SENTINEL-not-in-errors"


def test_defaults_follow_the_environment_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.store.backend == "local"
    assert settings.store.bucket == "runner"
    assert settings.store.region == "us-east-1"
    assert settings.cache.path == "" and settings.cache.shared is False


def test_environment_is_read_with_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__BACKEND", "external")
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", "https://s3.example.com:9443/")
    monkeypatch.setenv("RUNNER_CACHE_STORE__ACCESS_KEY", "access")
    monkeypatch.setenv("RUNNER_CACHE_STORE__SECRET_KEY", "secret-123")
    monkeypatch.setenv("RUNNER_CACHE_STORE__BUCKET", "ci-cache")
    monkeypatch.setenv("RUNNER_CACHE_STORE__REGION", "eu-central-1")
    monkeypatch.setenv("RUNNER_CACHE_CACHE__PATH", "team/a")
    monkeypatch.setenv("RUNNER_CACHE_CACHE__SHARED", "true")
    monkeypatch.setenv("RUNNER_CACHE_STORE__DOCKER__IMAGE", "minio/minio:custom")
    settings = load_settings()
    assert settings.store.endpoint == "https://s3.example.com:9443"
    assert settings.store.secure and settings.store.server_address == "s3.example.com:9443"
    assert settings.store.secret_key.get_secret_value() == "secret-123"
    assert (settings.store.bucket, settings.store.region) == ("ci-cache", "eu-central-1")
    assert (settings.cache.path, settings.cache.shared) == ("team/a", True)
    assert settings.store.docker.image == "minio/minio:custom"


def test_toml_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "rc.toml"
    config.write_text('[store]\nbucket = "from-toml"\nregion = "eu-west-1"\n[cache]\nshared = true\n')
    monkeypatch.setenv("RUNNER_CACHE_CONFIG_FILE", str(config))
    monkeypatch.setenv("RUNNER_CACHE_STORE__REGION", "ap-south-1")
    settings = load_settings()
    assert settings.store.bucket == "from-toml"
    assert settings.store.region == "ap-south-1"
    assert settings.cache.shared is True


def test_missing_toml_file_named_explicitly_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RUNNER_CACHE_STORE__ENDPOINT", "minio:9000", "must be a URL with scheme"),
        ("RUNNER_CACHE_STORE__ENDPOINT", "ftp://minio:9000", "must be a URL with scheme"),
        ("RUNNER_CACHE_STORE__ENDPOINT", "http://minio:9000/bucket", "no path"),
        ("RUNNER_CACHE_STORE__ENDPOINT", "http://minio:notaport", "invalid port"),
        ("RUNNER_CACHE_STORE__ENDPOINT", "http://", "has no host"),
        ("RUNNER_CACHE_STORE__BUCKET", "Runner", "3-63 characters"),
        ("RUNNER_CACHE_STORE__BUCKET", "ab", "3-63 characters"),
        ("RUNNER_CACHE_STORE__BUCKET", "my_bucket", "3-63 characters"),
        ("RUNNER_CACHE_STORE__BUCKET", "a..b", "'..'"),
        ("RUNNER_CACHE_STORE__BUCKET", "192.168.1.1", "IP address"),
        ("RUNNER_CACHE_STORE__BUCKET", "xn--cache", "reserves"),
        ("RUNNER_CACHE_STORE__BUCKET", "-runner", "3-63 characters"),
        ("RUNNER_CACHE_CACHE__PATH", "a/../b", "'..'"),
        ("RUNNER_CACHE_CACHE__PATH", "a\\b", "'\\'"),
        ("RUNNER_CACHE_CACHE__SHARED", "maybe", "boolean"),
        ("RUNNER_CACHE_CACHE__EXPIRE_DAYS", "0", "greater than or equal to 1"),
        ("RUNNER_CACHE_STORE__BACKEND", "s3fs", "'local', 'docker', 'kubernetes' or 'external'"),
    ],
)
def test_each_bad_value_is_named_clearly(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert variable in str(raised.value)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("access", "secret", "message"),
    [
        ("ab", SENTINEL, "RUNNER_CACHE_STORE__ACCESS_KEY: must be at least 3 characters"),
        (SENTINEL, "short", "RUNNER_CACHE_STORE__SECRET_KEY: must be at least 8 characters"),
    ],
)
def test_minio_key_lengths_without_echoing_secrets(
    monkeypatch: pytest.MonkeyPatch, access: str, secret: str, message: str
) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__ACCESS_KEY", access)
    monkeypatch.setenv("RUNNER_CACHE_STORE__SECRET_KEY", secret)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert message in str(raised.value)
    for value in (access, secret):
        assert value not in str(raised.value)
        assert value not in repr(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_secrets_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__ACCESS_KEY", SENTINEL + "a")
    monkeypatch.setenv("RUNNER_CACHE_STORE__SECRET_KEY", SENTINEL + "s")
    settings = load_settings()
    assert SENTINEL not in repr(settings) and SENTINEL not in str(settings)
    assert SENTINEL not in settings.model_dump_json()


def test_remote_backends_need_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__BACKEND", "external")
    with pytest.raises(ConfigError, match="the external backend needs access_key and secret_key"):
        load_settings()


def test_half_set_credentials_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__ACCESS_KEY", "access")
    with pytest.raises(ConfigError, match="set both access_key and secret_key"):
        load_settings()


def test_local_credentials_are_generated_once_and_private(tmp_path: Path) -> None:
    store = StoreSettings(state_dir=tmp_path)
    assert local_credentials(tmp_path, create=False) is None
    with pytest.raises(ConfigError, match="no credentials yet"):
        store.credentials()
    first = store.credentials(create=True)
    assert store.credentials() == first
    assert len(first[1].get_secret_value()) >= 8
    assert (tmp_path / "credentials.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("given", "used"), [("cache/", "cache"), ("/cache", "cache"), ("a//./b/", "a/b"), ("/", ""), ("team/a", "team/a")]
)
def test_path_is_cleaned_as_the_runner_cleans_it_and_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, given: str, used: str
) -> None:
    """cache/cache.go joins Path with path.Join; the s3v2 adapter drops a leading '/': same objects either way."""
    monkeypatch.setenv("RUNNER_CACHE_CACHE__PATH", given)
    assert load_settings().cache.path == used
    said = [record.getMessage() for record in caplog.records if "RUNNER_CACHE_CACHE__PATH" in record.getMessage()]
    assert said == (
        []
        if given == used
        else [
            f"RUNNER_CACHE_CACHE__PATH {given!r} is used as {used!r}: the runner cleans Path with path.Join (cache/cache.go)"
        ]
    )
