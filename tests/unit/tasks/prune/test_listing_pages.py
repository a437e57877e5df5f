"""The listing's own page parsing and range bounds, on canned ListObjectsV2 answers (no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from runner_cache.tasks.prune import listing

PAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>runner</Name><Prefix>cache/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>
  <EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
  <NextContinuationToken>tok-2</NextContinuationToken>
  <Contents><Key>cache/project/1/main-protected</Key><LastModified>2026-11-29T15:59:41.000Z</LastModified>
    <ETag>"x"</ETag><Size>256</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>cache/project/1/with+space%25percent</Key><LastModified>2026-11-29T15:59:41.000Z</LastModified>
    <Size>7</Size></Contents>
  <CommonPrefixes><Prefix>cache/project/2%2Fx/</Prefix></CommonPrefixes>
</ListBucketResult>"""


class _Client:
    """Records the query of each request and answers with PAGE."""

    def __init__(self) -> None:
        self.queries: list[dict] = []

    def _execute(self, method: str, bucket: str, query_params: dict) -> SimpleNamespace:
        self.queries.append(query_params)
        return SimpleNamespace(data=PAGE)


def test_a_page_gives_names_sizes_dates_folders_and_the_next_token() -> None:
    client = _Client()
    page = listing.list_page(client, "runner", "cache/", start_after="cache/project/1/")  # type: ignore[arg-type]
    assert [(item.name, item.size) for item in page.objects] == [
        ("cache/project/1/main-protected", 256),
        ("cache/project/1/with space%percent", 7),  # URL-encoded by the server, decoded here
    ]
    assert page.objects[0].last_modified == datetime(2026, 11, 29, 15, 59, 41, tzinfo=UTC)
    assert page.objects[0].last_modified is page.objects[1].last_modified  # parsed once per distinct value
    assert page.folders == ["cache/project/2/x/"]
    assert page.next_token == "tok-2"
    assert client.queries == [
        {
            "list-type": "2",
            "delimiter": "",
            "encoding-type": "url",
            "max-keys": "1000",
            "prefix": "cache/",
            "start-after": "cache/project/1/",
        }
    ]


def test_a_continuation_replaces_start_after() -> None:
    client = _Client()
    listing.list_page(client, "runner", "cache/", start_after="cache/project/1/", token="tok-2")  # type: ignore[arg-type]
    assert client.queries[0]["continuation-token"] == "tok-2" and "start-after" not in client.queries[0]


def test_ranges_are_bounded_only_where_s3_and_seaweedfs_order_names_alike() -> None:
    siblings = ["p/1/", "p/12-x/", "p/12.a/", "p/12/", "p/120/", "p/13/"]
    assert listing._safe("p/1/", siblings)
    assert listing._safe("p/120/", siblings) and listing._safe("p/13/", siblings)
    assert not listing._safe("p/12/", siblings)  # `12-x/` < `12/` in S3, > in SeaweedFS
    assert not listing._safe("p/12-x/", siblings) and not listing._safe("p/12.a/", siblings)
