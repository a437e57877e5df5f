"""The runner's own ``[runners.cache]`` layout settings."""

from __future__ import annotations

import logging

from pydantic import BaseModel, Field, field_validator


class CacheSettings(BaseModel):
    """Where the runner writes cache objects (``Path``, ``Shared``) and how long the bucket keeps them."""

    path: str = Field("", description="[runners.cache] Path: a prefix inside the bucket, without slashes at the ends.")
    shared: bool = Field(
        False, description="[runners.cache] Shared: all runners use one namespace (no runner/<token>/)."
    )
    expire_days: int = Field(
        30, ge=1, le=3650, description="Lifecycle rule: the store expires cache objects after this many days."
    )

    @field_validator("path")
    @classmethod
    def _path_as_the_runner_uses_it(cls, value: str) -> str:
        """The runner cleans ``Path`` with Go's ``path.Join`` (``cache/cache.go``), and the s3v2 adapter drops a
        leading ``/`` (``cache/s3v2/adapter.go@v17.5.0``): ``cache/``, ``/cache`` and ``a//./b`` are what it writes
        as ``cache`` and ``a/b``. Use the cleaned form, and say so; refuse only what would leave the bucket's root."""
        if "\\" in value:
            raise ValueError("must not contain '\\' (the runner keeps it literally in every object name)")
        if ".." in value.split("/"):
            raise ValueError("must not contain '..' segments")
        cleaned = "/".join(part for part in value.split("/") if part not in {"", "."})
        if cleaned != value:
            logging.getLogger(__name__).warning(
                "RUNNER_CACHE_CACHE__PATH %r is used as %r: the runner cleans Path with path.Join (cache/cache.go)",
                value,
                cleaned,
            )
        return cleaned
