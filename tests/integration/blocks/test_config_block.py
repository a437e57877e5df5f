"""The Runner Cache Config block against Prefect's API: saved encrypted, loaded by name, invalid ones named."""

import pytest

from runner_cache.blocks.config_block import RunnerCacheConfig, resolve_config
from runner_cache.errors import ConfigError

SENTINEL = "SENTINEL-not-in-errors"


def test_unknown_block_name_is_a_config_error(prefect_api: None) -> None:
    with pytest.raises(ConfigError, match="--config: no Runner Cache Config block by that name"):
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
