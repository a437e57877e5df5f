import pytest
from pydantic import SecretStr

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.settings import load_settings
from runner_cache.blocks.store import KubeStoreSettings, StoreSettings
from runner_cache.errors import ConfigError
from runner_cache.tasks.chart.values import intended_settings


def test_kubernetes_store_gives_the_runner_the_in_cluster_service() -> None:
    store = StoreSettings(
        backend="kubernetes",
        endpoint="https://127.0.0.1:19443",  # e.g. a port-forward this tool uses
        access_key=SecretStr("abc"),
        secret_key=SecretStr("abcdefgh"),
        kubernetes=KubeStoreSettings(name="minio", namespace="cache"),
    )
    intended = intended_settings(store, CacheSettings())
    assert intended["ServerAddress"] == "minio.cache.svc.cluster.local:9000"
    assert intended["Insecure"] is True


def test_other_backends_give_the_runner_the_endpoint() -> None:
    store = StoreSettings(
        backend="external",
        endpoint="https://s3.example.com",
        access_key=SecretStr("abc"),
        secret_key=SecretStr("abcdefgh"),
    )
    intended = intended_settings(store, CacheSettings())
    assert intended["ServerAddress"] == "s3.example.com" and intended["Insecure"] is False


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000", "http://127.0.1.1:9000"]
)
def test_a_loopback_store_is_refused_for_the_runner(endpoint: str) -> None:
    store = StoreSettings(endpoint=endpoint)
    with pytest.raises(ConfigError, match="RUNNER_CACHE_STORE__RUNNER_URL"):
        intended_settings(store, CacheSettings())


def test_runner_url_tells_the_runner_where_the_store_is() -> None:
    store = StoreSettings(endpoint="http://127.0.0.1:9000", runner_url="https://cache.example.com:8443")
    intended = intended_settings(store, CacheSettings())
    assert intended["ServerAddress"] == "cache.example.com:8443" and intended["Insecure"] is False


def test_runner_url_must_be_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_STORE__RUNNER_URL", "cache.example.com")
    with pytest.raises(ConfigError, match="RUNNER_CACHE_STORE__RUNNER_URL: must be a URL with scheme"):
        load_settings()
