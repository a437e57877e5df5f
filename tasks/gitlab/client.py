"""The one python-gitlab client factory: bounded request time, transient errors retried by python-gitlab itself
(429 with Retry-After, 5xx), and the token only ever in the request headers."""

from __future__ import annotations

import gitlab

from runner_cache.blocks.gitlab import GitLabSettings
from runner_cache.errors import ConfigError


def gitlab_client(settings: GitLabSettings) -> gitlab.Gitlab:
    """A client for ``settings``; raises :class:`ConfigError` when the URL or token is missing."""
    if not (settings.url and settings.token):
        raise ConfigError("GitLab is not configured: set RUNNER_CACHE_GITLAB__URL and RUNNER_CACHE_GITLAB__TOKEN")
    return gitlab.Gitlab(
        settings.url,
        private_token=settings.token.get_secret_value(),
        timeout=settings.request_timeout,
        retry_transient_errors=True,
        per_page=100,
        user_agent="runner-cache",
    )
