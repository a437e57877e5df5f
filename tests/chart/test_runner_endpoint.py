from pydantic import SecretStr

from blocks.cache import CacheSettings
from blocks.store import KubeStoreSettings, StoreSettings
from tasks.chart_values import intended_settings


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
    store = StoreSettings(backend="external", endpoint="https://s3.example.com", access_key=SecretStr("abc"), secret_key=SecretStr("abcdefgh"))
    intended = intended_settings(store, CacheSettings())
    assert intended["ServerAddress"] == "s3.example.com" and intended["Insecure"] is False
