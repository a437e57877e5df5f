from blocks.store import StoreSettings


def test_each_s3_server_accepts_signed_requests(s3_store: StoreSettings) -> None:
    client = s3_store.client()
    client.make_bucket(s3_store.bucket)
    assert client.bucket_exists(s3_store.bucket)
