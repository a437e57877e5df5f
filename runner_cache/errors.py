"""The one error hierarchy. Its branch decides the exit code; ``transient`` decides whether a task retries.

    RunnerCacheError
    ├── UsageError (exit 2)                 a flag, a command or an argument is wrong
    │   └── ConfigError                     a setting is wrong: names it, never echoes its value
    ├── ExternalSystemError (exit 1)        an outside system failed; says which (``system``), whether a retry
    │   │                                   can help (``transient``) and what to do (``hint``)
    │   ├── StoreError → StoreUnreachable (transient), StoreAuthError, StoreTLSError, BucketError, RoundTripFailed
    │   ├── DockerEngineError → DockerEngineUnreachable
    │   ├── KubernetesError → KubernetesUnreachable (transient), RolloutTimeout, RolloutFailed
    │   ├── HelmError → HelmClusterUnreachable (transient), HelmTimeout, ChartError
    │   ├── GitLabError → GitLabUnreachable (transient)
    │   └── PrefectApiError (transient)
    └── WorkFailed (exit 1)                 every system answered, and the check itself failed

Messages never carry a submitted value or a secret: they name settings and systems. Modelled on python-gitlab's
``gitlab/exceptions.py`` (one root, one class per failure a caller handles differently).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import ValidationError


def innermost_cause(error: BaseException) -> str:
    """The innermost cause of a wrapped failure, in a few words: requests wraps urllib3's ``MaxRetryError``, which
    wraps ``NewConnectionError``, which wraps the ``ConnectionRefusedError`` that says what really happened."""
    cause, seen = error, {id(error)}
    while True:
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException):
            inner = cause.__cause__ or cause.__context__
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        cause = inner
    text = str(cause.args[-1] if isinstance(cause, OSError) and cause.args else cause)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


class RunnerCacheError(Exception):
    """Root of every error runner-cache raises on purpose."""

    exit_code: ClassVar[int] = 1
    transient: bool = False


class UsageError(RunnerCacheError):
    """The command line is wrong (a flag, a missing block, an unsupported backend for this command)."""

    exit_code: ClassVar[int] = 2


class ConfigError(UsageError):
    """Configuration is invalid; the message lists every problem by its setting name."""

    @classmethod
    def from_validation(cls, error: ValidationError, env_prefix: str | None = None) -> ConfigError:
        """Name each failing setting as its environment variable (with ``env_prefix``) or its dotted field path."""
        lines = []
        for item in error.errors(include_input=False, include_url=False, include_context=False):
            parts = [str(part) for part in item["loc"]]
            where = env_prefix + "__".join(parts).upper() if env_prefix else ".".join(parts)
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"  {where or 'settings'}: {message}")
        return cls("invalid configuration:\n" + "\n".join(lines))


class ExternalSystemError(RunnerCacheError):
    """An outside system failed or refused. ``str()`` is one line: the system, what happened, what to do."""

    system: ClassVar[str] = "an outside system"

    def __init__(self, message: str, *, hint: str | None = None, transient: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if transient is not None:
            self.transient = transient

    def __str__(self) -> str:
        text = self.message if self.message.startswith(self.system) else f"{self.system}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class WorkFailed(RunnerCacheError):
    """Every system answered, and what they said shows the work did not succeed (a failed check, a lock not had)."""


# The S3 store ---------------------------------------------------------------------------------------------------
class StoreError(ExternalSystemError):
    system: ClassVar[str] = "S3 store"


class StoreUnreachable(StoreError):
    """The store did not answer (refused, timed out, reset) or answered 5xx; retrying later may help."""

    transient = True


class StoreAuthError(StoreError):
    """The store answered but rejected the credentials or the request; retrying will not help."""


class StoreTLSError(StoreError):
    """TLS failed (untrusted certificate, or https to a plain-HTTP port): no retry fixes it."""


class BucketError(StoreError):
    """The bucket cannot be used as a runner cache (owned by someone else, or misconfigured)."""


class RoundTripFailed(StoreError):
    """The store accepted the request but did not give back what was written."""


# Docker Engine --------------------------------------------------------------------------------------------------
class DockerEngineError(ExternalSystemError):
    """The Docker Engine answered but refused a step (pull, create, start…); the engine's reason is kept."""

    system: ClassVar[str] = "Docker Engine"


class DockerEngineUnreachable(DockerEngineError):
    """The Docker Engine did not answer: not running, another host or socket, or no permission on it.

    Not transient: a local engine that is down stays down for the seconds retries last; the fix is the user's.
    """


# Kubernetes API -------------------------------------------------------------------------------------------------
class KubernetesError(ExternalSystemError):
    """The Kubernetes API refused a request (permissions, an invalid or conflicting object)."""

    system: ClassVar[str] = "Kubernetes API"


class KubernetesUnreachable(KubernetesError):
    """The Kubernetes API did not answer, or answered with a server error; retrying later may help."""

    transient = True


class RolloutTimeout(KubernetesError):
    """A Deployment did not finish rolling out in time; the message says how far it got."""


class RolloutFailed(KubernetesError):
    """A Deployment's controller gave up (progress deadline exceeded, ReplicaFailure); waiting longer will not help."""


# helm -----------------------------------------------------------------------------------------------------------
class HelmError(ExternalSystemError):
    """helm refused or failed a command; the message carries helm's reason."""

    system: ClassVar[str] = "helm"


class HelmClusterUnreachable(HelmError):
    """helm could not reach the cluster; retrying later may help."""

    transient = True


class HelmTimeout(HelmError):
    """helm was stopped after its time ran out: an upgrade or rollback may be left ``pending``."""


class ChartError(HelmError):
    """helm could not fetch or render the chart, or the rendered chart cannot be read as a gitlab-runner."""


# GitLab ---------------------------------------------------------------------------------------------------------
class GitLabError(ExternalSystemError):
    """GitLab refused a step of the verification (auth, project, commit, pipeline); the text says which and why."""

    system: ClassVar[str] = "GitLab"


class GitLabUnreachable(GitLabError):
    """GitLab did not answer or answered 5xx/429; retrying later may help."""

    transient = True


# Prefect --------------------------------------------------------------------------------------------------------
class PrefectApiError(ExternalSystemError):
    """Prefect's API did not answer; nothing was started."""

    system: ClassVar[str] = "Prefect API"
    transient = True
