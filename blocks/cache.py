"""The runner's own ``[runners.cache]`` layout settings."""

from __future__ import annotations

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
    def _path_is_relative_and_clean(cls, value: str) -> str:
        if value.startswith("/") or value.endswith("/"):
            raise ValueError("must not start or end with '/' (the runner joins it with '/' itself)")
        if any(part in {"", ".", ".."} for part in value.split("/")) and value:
            raise ValueError("must not contain empty, '.' or '..' segments")
        if "\\" in value:
            raise ValueError("must not contain '\\'")
        return value
