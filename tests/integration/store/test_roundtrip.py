import pytest
from pydantic import SecretStr

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import RoundTripFailed, StoreAuthError, StoreTLSError, StoreUnreachable
from runner_cache.tasks.policy import is_transient
from runner_cache.tasks.store.bucket import ensure_bucket
from runner_cache.tasks.store.roundtrip import CHECK_SHORT_TOKEN, check_roundtrip
from runner_cache.tasks.store.s3 import check_access


@pytest.mark.parametrize(
    ("cache", "prefix"),
    [
        (CacheSettings(), f"runner/{CHECK_SHORT_TOKEN}/project/1/"),
        (CacheSettings(path="p/q", shared=True), "p/q/project/1/"),
    ],
)
def test_roundtrip_writes_where_the_runner_would_and_cleans_up(
    s3_store: StoreSettings, cache: CacheSettings, prefix: str
) -> None:
    ensure_bucket(s3_store, cache)
    result = check_roundtrip(s3_store, cache)
    assert result.data["object"].startswith(prefix)
    assert result.data["bytes"] > 0
    assert list(s3_store.client().list_objects(s3_store.bucket, recursive=True)) == []


def test_roundtrip_on_a_missing_bucket_fails(moto_store: StoreSettings) -> None:
    with pytest.raises(RoundTripFailed) as raised:
        check_roundtrip(moto_store, CacheSettings())
    assert "HTTP 404 (NoSuchBucket)" in str(raised.value)


def test_wrong_secret_is_permanent_and_not_echoed(seaweed_server: StoreSettings) -> None:
    wrong = seaweed_server.model_copy(update={"secret_key": SecretStr("SENTINEL-wrong-secret")})
    with pytest.raises(StoreAuthError) as raised:
        check_access(wrong.client(retries=0), wrong.endpoint)
    assert "SENTINEL" not in str(raised.value)
    assert not is_transient(raised.value)


def test_unreachable_store_is_transient() -> None:
    store = StoreSettings(
        backend="external", endpoint="http://127.0.0.1:9", access_key=SecretStr("abc"), secret_key=SecretStr("abcdefgh")
    )
    with pytest.raises(StoreUnreachable) as raised:
        check_access(store.client(retries=0), store.endpoint)
    assert is_transient(raised.value)
    assert "127.0.0.1:9 is not reachable" in str(raised.value)


def test_https_to_a_plain_http_store_is_a_tls_error_not_retried(seaweed_server: StoreSettings) -> None:
    https = seaweed_server.model_copy(update={"endpoint": seaweed_server.endpoint.replace("http://", "https://")})
    with pytest.raises(StoreTLSError) as raised:
        check_access(https.client(retries=0), https.endpoint)
    assert "TLS with" in str(raised.value) and "SSLError" in str(raised.value)
    assert not is_transient(raised.value)
