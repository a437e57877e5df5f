"""The gitlab-runner Helm release whose cache settings runner-cache manages."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from runner_cache.blocks.validators import DnsLabel, HelmReleaseName, ObjectName


class ReleaseSettings(BaseModel):
    """Which release, chart and cluster; the release step is skipped until ``chart`` is set."""

    chart: str | None = Field(
        None, description="A chart directory/.tgz, or a repo reference such as gitlab/gitlab-runner."
    )
    chart_version: str | None = Field(None, description="Chart version to pull for a repo reference.")
    chart_repo: str = Field("https://charts.gitlab.io", description="Helm repository URL for a repo reference.")
    release: HelmReleaseName = "gitlab-runner"
    namespace: DnsLabel = "gitlab-runner"
    values_file: Path | None = Field(None, description="The user's own values file, merged under ours.")
    secret_name: ObjectName = Field("runner-cache-s3", description="Kubernetes Secret with accesskey/secretkey.")
    adopt_secret: bool = Field(
        False,
        description="Take over that Secret even when another controller owns it or it is immutable (it is replaced).",
    )
    kubeconfig: Path | None = None
    context: str | None = None
    timeout_seconds: int = Field(600, gt=0, description="helm --timeout and the rollout wait.")

    @property
    def configured(self) -> bool:
        return self.chart is not None
