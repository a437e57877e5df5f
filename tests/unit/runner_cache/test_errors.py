"""One error hierarchy decides exit codes and retries: configuration and usage → 2, outside systems and failed
work → 1 naming the system; only errors that say they are transient are retried."""

from __future__ import annotations

import pytest

from runner_cache import errors
from runner_cache.cli import main
from runner_cache.tasks.policy import is_transient

OUTSIDE = [
    errors.StoreUnreachable, errors.StoreAuthError, errors.StoreTLSError, errors.BucketError, errors.RoundTripFailed,
    errors.DockerEngineError, errors.DockerEngineUnreachable, errors.KubernetesError, errors.KubernetesUnreachable,
    errors.RolloutTimeout, errors.RolloutFailed, errors.HelmError, errors.HelmClusterUnreachable, errors.HelmTimeout,
    errors.ChartError, errors.GitLabError, errors.GitLabUnreachable, errors.PrefectApiError,
]  # fmt: skip
TRANSIENT = {errors.StoreUnreachable, errors.KubernetesUnreachable,
             errors.HelmClusterUnreachable, errors.GitLabUnreachable, errors.PrefectApiError}  # fmt: skip


def test_one_root() -> None:
    for cls in [*OUTSIDE, errors.ConfigError, errors.UsageError, errors.WorkFailed]:
        assert issubclass(cls, errors.RunnerCacheError), cls


@pytest.mark.parametrize("cls", OUTSIDE, ids=lambda cls: cls.__name__)
def test_outside_system_errors_exit_1_name_the_system_and_say_if_retried(cls: type[errors.ExternalSystemError]) -> None:
    error = cls("it broke", hint="do this")
    assert error.exit_code == 1 and not isinstance(error, errors.UsageError)
    assert str(error) == f"{cls.system}: it broke (do this)"
    assert cls.system != errors.ExternalSystemError.system
    assert is_transient(error) is (cls in TRANSIENT)


def test_transient_can_be_decided_per_error() -> None:
    assert is_transient(errors.KubernetesError("HTTP 429", transient=True))
    assert not is_transient(errors.StoreUnreachable("TLS", transient=False))


def test_config_and_usage_errors_exit_2() -> None:
    assert errors.ConfigError("x").exit_code == 2 and errors.UsageError("x").exit_code == 2
    assert not is_transient(errors.ConfigError("x"))


def test_library_errors_reaching_a_task_untranslated() -> None:
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert not is_transient(ValueError("bad")) and not is_transient(KeyError("x"))


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], raised: Exception) -> tuple[int, str]:
    from runner_cache.commands import store

    def status(args: object) -> int:
        raise raised

    monkeypatch.setattr(store, "run_status", status)
    code = main(["store", "status"])
    return code, capsys.readouterr().err


def test_cli_exit_codes_follow_the_branch(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(monkeypatch, capsys, errors.ConfigError("invalid configuration:\n  RUNNER_CACHE_X: bad"))
    assert code == 2 and err.startswith("runner-cache: invalid configuration")
    code, err = _run(
        monkeypatch, capsys, errors.DockerEngineUnreachable("not reachable at unix:///x", hint="start Docker")
    )
    assert code == 1 and err == "runner-cache: Docker Engine: not reachable at unix:///x (start Docker)\n"
    code, err = _run(monkeypatch, capsys, errors.WorkFailed("verification failed"))
    assert code == 1 and "Traceback" not in err
