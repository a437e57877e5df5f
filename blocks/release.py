"""The gitlab-runner Helm release whose cache settings runner-cache manages."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field, field_validator


class ReleaseSettings(BaseModel):
    """Which release, chart and cluster; the release step is skipped until ``chart`` is set."""

    chart: str | None = Field(None, description="A chart directory/.tgz, or a repo reference such as gitlab/gitlab-runner.")
    chart_version: str | None = Field(None, description="Chart version to pull for a repo reference.")
    chart_repo: str = Field("https://charts.gitlab.io", description="Helm repository URL for a repo reference.")
    release: str = "gitlab-runner"
    namespace: str = "gitlab-runner"
    values_file: Path | None = Field(None, description="The user's own values file, merged under ours.")
    secret_name: str = Field("runner-cache-s3", description="Kubernetes Secret with accesskey/secretkey.")
    kubeconfig: Path | None = None
    context: str | None = None
    timeout_seconds: int = Field(600, gt=0, description="helm --timeout and the rollout wait.")

    @field_validator("release")
    @classmethod
    def _release_is_a_helm_name(cls, value: str) -> str:
        if len(value) > 53 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", value):
            raise ValueError("must be a Helm release name: up to 53 characters of a-z, 0-9, '-', '.', starting and ending with a letter or digit")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace_is_a_dns_label(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value):
            raise ValueError("must be a DNS label: up to 63 characters of a-z, 0-9, '-', starting and ending with a letter or digit")
        return value

    @field_validator("secret_name")
    @classmethod
    def _secret_name_is_a_dns_name(cls, value: str) -> str:
        if len(value) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", value):
            raise ValueError("must be a Kubernetes object name: a-z, 0-9, '-', '.', starting and ending with a letter or digit")
        return value

    @property
    def configured(self) -> bool:
        return self.chart is not None
