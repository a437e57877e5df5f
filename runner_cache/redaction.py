"""The one way secrets are kept out of text: :func:`redact` for strings we build, and a log-record factory that
runs it on every log line (ours, Prefect's, the libraries'), so a secret that slips into a message never reaches
a handler, the Prefect API or a file.

Secrets are registered once, when a configuration is loaded (:func:`register_model`); callers that hold a
secret the configuration does not (a generated key, a GitLab token passed directly) pass it to :func:`redact`.
Presigned URLs carry credentials in their query string, so a URL's query is dropped whenever it holds one.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

from pydantic import BaseModel, SecretStr

MASK = "***"
# Shorter values would mangle ordinary words; store keys are >= 3 characters (MinIO's minimum).
MIN_LENGTH = 3
# A URL whose query carries a signature or credential: presigned S3 URLs, or tokens passed as parameters.
_SIGNED_QUERY = re.compile(r"(?P<base>https?://[^\s\"'?]+)\?(?P<query>[^\s\"']*)")
_CREDENTIAL_PARAMS = re.compile(
    r"(?i)(x-amz-(signature|credential|security-token)|signature=|awsaccesskeyid=|private_token=|token=)"
)

_lock = threading.Lock()
_registered: set[str] = set()
_installed = False


def _values(secrets: Iterable[str | SecretStr | None]) -> set[str]:
    found = set()
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value and len(value) >= MIN_LENGTH:
            found.add(value)
    return found


def redact(text: str, secrets: Iterable[str | SecretStr | None] = ()) -> str:
    """``text`` with every registered and given secret replaced by ``***`` and signed URL queries removed."""
    text = _SIGNED_QUERY.sub(lambda m: m["base"] + "?" + MASK if _CREDENTIAL_PARAMS.search(m["query"]) else m[0], text)
    for value in sorted(_values(secrets) | _registered, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def register(secrets: Iterable[str | SecretStr | None]) -> None:
    """Redact these values from every log line from now on."""
    with _lock:
        _registered.update(_values(secrets))
    install()


def forget() -> None:
    """Stop redacting what was registered: a process that switches configuration (a test session) starts over."""
    with _lock:
        _registered.clear()


def register_model(model: BaseModel) -> None:
    """Register every ``SecretStr`` field of ``model`` and of the models nested in it."""
    register(_secret_fields(model))


def _secret_fields(value: object) -> list[SecretStr]:
    if isinstance(value, SecretStr):
        return [value]
    if isinstance(value, BaseModel):
        return [secret for name in type(value).model_fields for secret in _secret_fields(getattr(value, name))]
    if isinstance(value, (list, tuple)):
        return [secret for item in value for secret in _secret_fields(item)]
    return []


def install() -> None:
    """Wrap the log-record factory once, so every record's message is redacted when it is made."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _registered:
                try:
                    message = record.getMessage()
                except Exception:  # a malformed call: let logging report it as it would
                    return record
                cleaned = redact(message)
                if cleaned != message:
                    record.msg, record.args = cleaned, None
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
