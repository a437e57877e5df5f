"""The live branches and tags of each project, from GitLab through python-gitlab: what ``--deleted-refs`` keeps."""

from __future__ import annotations

import gitlab
import requests

from runner_cache.blocks.gitlab import GitLabSettings
from runner_cache.errors import ConfigError, GitLabError, GitLabUnreachable
from runner_cache.tasks.gitlab.client import gitlab_client
from runner_cache.tasks.prune.rules import LiveRefs


class GitLabRefs:
    """The names (and so the slugs) of each project's live branches and tags, fetched once per project through
    python-gitlab."""

    def __init__(self, settings: GitLabSettings) -> None:
        if not (settings.url and settings.token):
            raise ConfigError(
                "--deleted-refs needs GitLab: set RUNNER_CACHE_GITLAB__URL and RUNNER_CACHE_GITLAB__TOKEN"
            )
        self._gitlab = gitlab_client(settings)
        self._refs: dict[int, LiveRefs | None] = {}
        self.notes: list[str] = []
        self.errors: list[str] = []  # lookups that failed; their projects' caches are kept
        try:  # fail before anything is deleted when the token is wrong
            self._gitlab.auth()
        except gitlab.exceptions.GitlabAuthenticationError:
            raise GitLabError(
                f"{settings.url} rejected the token (401)",
                hint="--deleted-refs needs RUNNER_CACHE_GITLAB__TOKEN with read_api scope",
            ) from None
        except gitlab.exceptions.GitlabError as error:
            raise GitLabError(
                f"{settings.url} refused to answer for --deleted-refs (HTTP {error.response_code})"
            ) from None
        except requests.RequestException as error:
            raise GitLabUnreachable(
                f"{settings.url} did not answer for --deleted-refs ({type(error).__name__})",
                hint="check RUNNER_CACHE_GITLAB__URL and that GitLab is up",
            ) from None

    def __call__(self, project_id: int) -> LiveRefs | None:
        if project_id not in self._refs:
            self._refs[project_id] = self._fetch(project_id)
        return self._refs[project_id]

    def _fetch(self, project_id: int) -> LiveRefs | None:
        project = self._gitlab.projects.get(project_id, lazy=True)
        kept = "its caches were kept by --deleted-refs"
        try:
            refs = [branch.name for branch in project.branches.list(iterator=True)]
        except gitlab.exceptions.GitlabError as error:
            if error.response_code in (403, 404):
                self.notes.append(f"project {project_id}: not found in GitLab (HTTP {error.response_code}); {kept}")
            else:
                self.errors.append(f"GitLab project {project_id}: HTTP {error.response_code}; {kept}")
            return None
        except requests.RequestException as error:
            self.errors.append(f"GitLab project {project_id}: {type(error).__name__}; {kept}")
            return None
        if not refs:
            self.notes.append(f"project {project_id}: GitLab lists no branch; {kept}")
            return None
        try:
            refs += [tag.name for tag in project.tags.list(iterator=True)]
        except gitlab.exceptions.GitlabError as error:
            if error.response_code not in (403, 404):
                self.errors.append(f"GitLab project {project_id} tags: HTTP {error.response_code}; {kept}")
                return None
            self.notes.append(
                f"project {project_id}: GitLab does not list its tags (HTTP {error.response_code}); only branches were compared"
            )
        except requests.RequestException as error:
            self.errors.append(f"GitLab project {project_id} tags: {type(error).__name__}; {kept}")
            return None
        return LiveRefs.of(refs)
