"""Unit tests run without servers: no Prefect API, no S3 server, no helm, no fakes listening on ports."""

from __future__ import annotations

import pytest

SERVER_FIXTURES = {
    "prefect_api",
    "seaweed_server",
    "moto_server",
    "s3_store",
    "seaweed_store",
    "moto_store",
    "helm",
    "real_helm",
}


@pytest.fixture(autouse=True)
def _no_servers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    used = SERVER_FIXTURES & set(request.fixturenames)
    assert not used, f"unit tests must not start servers; move this test to tests/integration ({sorted(used)})"
    # An explicit API URL wins over the local Prefect server: a unit test that reaches Prefect fails at once
    # (nothing listens on port 9) instead of starting a server.
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
