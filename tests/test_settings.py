from pathlib import Path

import pytest

from blocks.config_block import RunnerCacheConfig, resolve_config
from blocks.errors import ConfigError
from blocks.settings import load_settings
from blocks.store import StoreSettings, local_credentials

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
        ("RUNNER_CACHE_CACHE__PATH", "/cache", "must not start or end with '/'"),
        ("RUNNER_CACHE_CACHE__PATH", "cache/", "must not start or end with '/'"),
        ("RUNNER_CACHE_CACHE__PATH", "a/../b", "'..'"),
        ("RUNNER_CACHE_CACHE__PATH", "a//b", "empty"),
        ("RUNNER_CACHE_CACHE__SHARED", "maybe", "boolean"),
        ("RUNNER_CACHE_CACHE__EXPIRE_DAYS", "0", "greater than or equal to 1"),
        ("RUNNER_CACHE_STORE__BACKEND", "s3fs", "'local', 'docker', 'kubernetes' or 'external'"),
    ],
)
def test_each_bad_value_is_named_clearly(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str) -> None:
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


def test_unknown_block_name_is_a_config_error(prefect_api: None) -> None:
    with pytest.raises(ConfigError, match="no Runner Cache Config block named 'does-not-exist'"):
        resolve_config("does-not-exist")


def test_block_saves_encrypted_and_loads_by_name(prefect_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__BACKEND", "external")
    monkeypatch.setenv("RUNNER_CACHE_STORE__ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("RUNNER_CACHE_STORE__ACCESS_KEY", "block-access")
    monkeypatch.setenv("RUNNER_CACHE_STORE__SECRET_KEY", SENTINEL + "-block")
    monkeypatch.setenv("RUNNER_CACHE_CACHE__PATH", "from-block")
    RunnerCacheConfig.from_environment().save("settings-test", overwrite=True)
    monkeypatch.delenv("RUNNER_CACHE_CACHE__PATH")
    loaded = resolve_config("settings-test")
    assert isinstance(loaded, RunnerCacheConfig)
    assert loaded.cache.path == "from-block"
    assert loaded.store.secret_key.get_secret_value() == SENTINEL + "-block"
    assert "store.secret_key" in RunnerCacheConfig.model_json_schema()["secret_fields"]
    assert SENTINEL not in repr(loaded)


def test_an_invalid_saved_block_is_a_config_error_without_its_values(prefect_api: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentUpdate

    RunnerCacheConfig().save("edited-in-the-ui", overwrite=True)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name("edited-in-the-ui", "runner-cache-config", include_secrets=True)
        store = {**document.data["store"], "backend": "docker", "access_key": SENTINEL, "secret_key": "SENTSHRT"[:5]}
        client.update_block_document(document.id, BlockDocumentUpdate(data={**document.data, "store": store}))
    with pytest.raises(ConfigError) as raised:
        resolve_config("edited-in-the-ui")
    text = str(raised.value)
    assert "is invalid" in text and "store.secret_key: must be at least 8 characters" in text
    assert SENTINEL not in text and "SENTS" not in text
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
