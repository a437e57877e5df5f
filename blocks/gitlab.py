"""The GitLab project used to prove, with a real pipeline, that two jobs share the cache."""

from __future__ import annotations

import json
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from runner_cache.blocks.validators import ImageReference

_TAG = re.compile(r"^[^\s,][^,]{0,254}$")
_BRANCH_PREFIX = re.compile(r"^[a-z0-9][a-z0-9._-]{0,59}$")


class GitLabSettings(BaseModel):
    """Where the verification pipeline runs; the pipeline check is skipped until url, token and project are set."""

    url: str | None = Field(None, description="GitLab base URL, e.g. https://gitlab.example.com")
    token: SecretStr | None = Field(None, description="A token with api scope on the verification project.")
    project: str | None = Field(None, description="Verification project path (group/name) or numeric id.")
    runner_tags: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validate_default=True,
        description="Tags that route the jobs to your runner (required for the pipeline check; JSON list or a,b).",
    )
    # Pinned by tag so a registry's "latest" cannot change what the jobs run (docker.io/library/busybox 1.37.0).
    image: ImageReference = Field("busybox:1.37.0", description="Image for the two verification jobs (pin a tag).")
    timeout_seconds: float = Field(
        900, gt=0, description="How long to wait for the two jobs before cancelling the pipeline."
    )
    poll_seconds: float = Field(2.0, gt=0, le=60, description="First wait between status checks; grows to 15 s.")
    request_timeout: float = Field(30.0, gt=0, description="Seconds for each GitLab API request.")
    branch_prefix: str = Field("runner-cache-verify", description="Temporary branches are named <prefix>-<run id>.")

    @property
    def configured(self) -> bool:
        return bool(self.url and self.token and self.project)

    @field_validator("url")
    @classmethod
    def _url_is_a_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be a URL with scheme and host, e.g. https://gitlab.example.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(
                "must not carry a query, fragment or credentials (the token goes in RUNNER_CACHE_GITLAB__TOKEN)"
            )
        return value.rstrip("/")

    @field_validator("project")
    @classmethod
    def _project_is_a_path_or_id(cls, value: str | None) -> str | None:
        if value is None:
            return value
        value = value.strip().strip("/")
        if not value or any(not part or part in {".", ".."} for part in value.split("/")) or " " in value:
            raise ValueError("must be a numeric id or a path like group/project")
        return value

    @field_validator("runner_tags", mode="before")
    @classmethod
    def _tags_from_text(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError:
                    raise ValueError('is not a JSON list; use e.g. ["k8s", "cache"] or k8s,cache') from None
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("runner_tags")
    @classmethod
    def _tags_are_tags(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for tag in value:
            if not _TAG.match(tag) or tag != tag.strip():
                raise ValueError("each tag must be 1-255 characters without commas or surrounding spaces")
        if not value and all(info.data.get(name) for name in ("url", "token", "project")):
            # Untagged jobs may run on any runner that takes untagged jobs (on GitLab.com an instance runner with
            # its own cache store): the pipeline would then prove nothing about this runner's cache.
            raise ValueError("required once url, token and project are set: the tags of the runner to verify")
        return value

    @field_validator("branch_prefix")
    @classmethod
    def _branch_prefix_is_safe(cls, value: str) -> str:
        if not _BRANCH_PREFIX.match(value):
            raise ValueError("must be 1-60 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
        return value
