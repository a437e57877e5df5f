"""The GitLab project used to prove, with a real pipeline, that two jobs share the cache."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class GitLabSettings(BaseModel):
    """Where the verification pipeline runs; the pipeline check is skipped until url, token and project are set."""

    url: str | None = Field(None, description="GitLab base URL, e.g. https://gitlab.example.com")
    token: SecretStr | None = Field(None, description="A token with api scope on the verification project.")
    project: str | None = Field(None, description="Verification project path (group/name) or numeric id.")
    runner_tags: list[str] = Field(default_factory=list, description="Tags that route the jobs to the runner.")
    image: str = Field("busybox:latest", description="Image for the two verification jobs.")
    timeout_seconds: int = Field(900, gt=0, description="How long to wait for the pipeline.")

    @property
    def configured(self) -> bool:
        return bool(self.url and self.token and self.project)
