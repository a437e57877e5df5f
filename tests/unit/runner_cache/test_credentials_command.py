"""The [runners.cache] section printed for runners configured by hand."""

import tomllib

from pydantic import SecretStr

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.settings import RunnerCacheSections
from runner_cache.blocks.store import StoreSettings
from runner_cache.commands.credentials import HIDDEN, runners_cache_toml


def _sections(**store: object) -> RunnerCacheSections:
    base = {
        "backend": "external",
        "access_key": SecretStr("admin"),
        "secret_key": SecretStr("admin-secret"),
        "bucket": "cache",
    }
    return RunnerCacheSections(
        store=StoreSettings(**{**base, **store}), cache=CacheSettings(path='ci "x"', shared=True)
    )


def test_the_section_is_valid_toml_the_runner_reads() -> None:
    sections = _sections(endpoint="https://s3.example.com", runner_url="http://minio.ci.svc:9000", region="eu-west-1")
    parsed = tomllib.loads(runners_cache_toml(sections, "AKIARUNNER", "runner-secret"))["runners"]["cache"]
    assert parsed == {
        "Type": "s3",
        "Path": 'ci "x"',
        "Shared": True,
        "s3": {
            "ServerAddress": "minio.ci.svc:9000",
            "AccessKey": "AKIARUNNER",
            "SecretKey": "runner-secret",
            "BucketName": "cache",
            "BucketLocation": "eu-west-1",
            "Insecure": True,
        },
    }


def test_the_admin_key_is_never_in_it() -> None:
    text = runners_cache_toml(_sections(endpoint="https://s3.example.com"), "AKIARUNNER", HIDDEN)
    assert "admin-secret" not in text and "admin" not in text.replace(HIDDEN, "")
    assert "Insecure = false" in text
