"""One redaction helper and one log-record factory keep secrets out of every message."""

from __future__ import annotations

import logging

import pytest
from pydantic import BaseModel, SecretStr

from runner_cache import redaction


class Inner(BaseModel):
    token: SecretStr


class Outer(BaseModel):
    inner: Inner
    others: list[Inner]
    plain: str = "visible"


def test_redact_given_values_and_signed_queries() -> None:
    text = (
        "GET https://s3.example/b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff and https://example/x?page=2 pw hunter22"
    )
    cleaned = redaction.redact(text, ["hunter22", SecretStr("ab"), None, ""])
    assert cleaned == "GET https://s3.example/b/k?*** and https://example/x?page=2 pw ***"


def test_longer_secrets_win_over_their_prefixes() -> None:
    assert redaction.redact("abcdef abc", ["abc", "abcdef"]) == "*** ***"


def test_registered_model_secrets_are_redacted_from_every_log_line(caplog: pytest.LogCaptureFixture) -> None:
    redaction.register_model(
        Outer(inner=Inner(token=SecretStr("S3CRET-one")), others=[Inner(token=SecretStr("S3CRET-two"))])
    )
    with caplog.at_level(logging.INFO):
        logging.getLogger("anything.at.all").info("keys %s and %s", "S3CRET-one", "S3CRET-two")
        logging.getLogger("urllib3.connectionpool").warning("in a url https://h/b?X-Amz-Signature=abc")
    assert [record.getMessage() for record in caplog.records] == ["keys *** and ***", "in a url https://h/b?***"]
    assert "S3CRET" not in caplog.text
