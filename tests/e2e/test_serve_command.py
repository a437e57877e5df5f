"""``runner-cache serve`` before it serves: the schedule settings, the deployments it builds, and its refusals."""

from __future__ import annotations

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from runner_cache import cli
from runner_cache.commands import serve as serve_command
from runner_cache.deployments.serve import PRUNE, SERVED, ScheduleSettings, build_deployments, load_serve_settings
from tests.support.servers import free_port


@pytest.fixture(autouse=True)
def serve_command_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """``runner-cache serve`` through the real entry point, also before cli.py lists the command."""
    if serve_command not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, serve_command))


def test_schedule_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    default = load_serve_settings().schedule
    assert (default.cron, default.timezone, default.active) == ("0 3 * * *", "UTC", True)
    assert (default.prune.max_age_days, default.prune.superseded, default.prune.dry_run) == (30, True, False)

    monkeypatch.setenv("RUNNER_CACHE_SCHEDULE__CRON", "30 1 * * 1-5")
    monkeypatch.setenv("RUNNER_CACHE_SCHEDULE__TIMEZONE", "America/New_York")
    monkeypatch.setenv("RUNNER_CACHE_SCHEDULE__ACTIVE", "false")
    monkeypatch.setenv("RUNNER_CACHE_SCHEDULE__PRUNE__MAX_TOTAL_SIZE", "50G")  # one rule added, the defaults kept
    schedule = load_serve_settings().schedule
    assert (schedule.cron, schedule.timezone, schedule.active) == ("30 1 * * 1-5", "America/New_York", False)
    assert (schedule.prune.max_total_size, schedule.prune.max_age_days, schedule.prune.superseded) == ("50G", 30, True)

    monkeypatch.delenv("RUNNER_CACHE_SCHEDULE__PRUNE__MAX_TOTAL_SIZE")
    monkeypatch.setenv("RUNNER_CACHE_SCHEDULE__PRUNE", '{"max_age_days": null, "keep": ["main-*"], "dry_run": true}')
    rules = load_serve_settings().schedule.prune
    assert (rules.max_age_days, rules.superseded, rules.keep, rules.dry_run) == (None, True, ["main-*"], True)


def test_deployments_carry_the_config_the_schedule_and_the_rules() -> None:
    schedule = ScheduleSettings(cron="15 2 * * *", timezone="Europe/Berlin", active=False, prune={"max_deletions": 500})
    deployments = {f"{d.flow_name}/{d.name}": d for d in build_deployments("prod", schedule)}
    assert set(deployments) == {
        "setup-runner-cache/default", "prune-runner-cache/nightly", "verify-runner-cache/on-demand", "rebuild-runner/after-upgrade",
    }  # fmt: skip
    nightly = deployments["prune-runner-cache/nightly"]
    (cron,) = nightly.schedules
    assert (cron.schedule.cron, cron.schedule.timezone, cron.active) == ("15 2 * * *", "Europe/Berlin", False)
    assert nightly.parameters == {
        "config": "prod", "dry_run": False, "max_age_days": 30.0, "superseded": True, "deleted_refs": False,
        "max_total_size": None, "keep": [], "max_deletions": 500,
    }  # fmt: skip
    for name, deployment in deployments.items():
        assert deployment.parameters["config"] == "prod", name
        assert deployment.entrypoint.startswith("runner_cache.flows."), (
            "served by module path, so any working directory works"
        )
        assert name == "prune-runner-cache/nightly" or not deployment.schedules
    # the rules are exactly the prune flow's parameters: the flow accepts them as they are
    PRUNE.load().validate_parameters(nightly.parameters)
    assert len(SERVED) == 4


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RUNNER_CACHE_SCHEDULE__CRON", "61 * * * *", "RUNNER_CACHE_SCHEDULE__CRON: must be a cron expression"),
        (
            "RUNNER_CACHE_SCHEDULE__TIMEZONE",
            "Mars/Olympus_Mons",
            "RUNNER_CACHE_SCHEDULE__TIMEZONE: must be an IANA time zone",
        ),
        (
            "RUNNER_CACHE_SCHEDULE__ACTIVE",
            "sometimes",
            "RUNNER_CACHE_SCHEDULE__ACTIVE: Input should be a valid boolean",
        ),
        (
            "RUNNER_CACHE_SCHEDULE__PRUNE__MAX_TOTAL_SIZE",
            "lots",
            "RUNNER_CACHE_SCHEDULE__PRUNE__MAX_TOTAL_SIZE: not a size",
        ),
        ("RUNNER_CACHE_SCHEDULE__PRUNE", '{"max_age_days": null, "superseded": false}', "choose at least one rule"),
        ("RUNNER_CACHE_SCHEDULE__PRUNE", '{"max_age_days": 3', "RUNNER_CACHE_SCHEDULE__PRUNE must be a JSON object"),
        ("RUNNER_CACHE_STORE__ENDPOINT", "no-scheme:9000", "RUNNER_CACHE_STORE__ENDPOINT: must be a URL with scheme"),
    ],
)
def test_bad_settings_exit_2_naming_the_variable_not_the_value(
    variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(variable, value)
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        assert cli.main(["serve", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert value not in captured.err


def test_serve_says_when_the_prefect_server_does_not_answer(capsys: pytest.CaptureFixture) -> None:
    api = f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings(updates={PREFECT_API_URL: api}):
        assert cli.main(["serve", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"the Prefect API at {api} does not answer" in captured.err


@pytest.mark.parametrize("limit", ["0", "-1", "two"])
def test_limit_must_be_positive(limit: str, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["serve", "--limit", limit]) == 2  # one line, no usage block (runner_cache.cli.Parser)
    assert "--limit: must be a whole number of 1 or more" in capsys.readouterr().err
