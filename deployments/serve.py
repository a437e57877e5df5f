"""The four flows as deployments served by one long-running process (``runner-cache serve``).

``prefect.serve`` registers the deployments and runs their flow runs as subprocesses of this process, which
pass on its environment (``RUNNER_CACHE_*``) to them. Before serving, :func:`prepare` creates what the
deployments rely on, idempotently: the concurrency locks of the configured release and bucket, and the
automation that verifies the cache after every release upgrade.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from prefect import Flow, serve
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron
from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner_cache.blocks.settings import RunnerCacheSections
from runner_cache.deployments.automations import UPGRADED_EVENT, ensure_automation, verify_after_upgrade
from runner_cache.errors import ConfigError
from runner_cache.flows.locks import bucket_lock_name, ensure_limit, release_lock_name
from runner_cache.tasks.prune.rules import PruneOptions
from runner_cache.tasks.results import StepResult, timed

TAGS = ["runner-cache"]


@dataclass(frozen=True)
class Served:
    """One served deployment: which flow (``module:function``), under which deployment name, and why."""

    entrypoint: str
    name: str
    description: str

    def load(self) -> Flow:
        module, function = self.entrypoint.split(":")
        return getattr(importlib.import_module(module), function)


SETUP = Served(
    "runner_cache.flows.setup:setup_runner_cache",
    "default",
    "Provision the store, ensure the bucket, configure the runner release, verify.",
)
PRUNE = Served(
    "runner_cache.flows.prune:prune_runner_cache", "nightly", "Remove stale cache objects by the schedule's rules."
)
VERIFY = Served(
    "runner_cache.flows.verify:verify_runner_cache",
    "on-demand",
    "Prove that two jobs on different pods share the cache; runs after every release upgrade.",
)
REBUILD = Served(
    "runner_cache.flows.rebuild:rebuild_runner",
    "after-upgrade",
    "Upgrade the runner release, verify, roll back when verification fails.",
)
SERVED = (SETUP, PRUNE, VERIFY, REBUILD)


class NightlyPruneRules(PruneOptions):
    """The nightly prune's rules; unlike a one-off prune it has defaults: older than 30 days, and superseded indexes."""

    max_age_days: float | None = Field(
        30, gt=0, description="Delete cache objects last written more than this many days ago."
    )
    superseded: bool = Field(
        True, description="Delete objects of an older cache index once the same key has a newer one."
    )


class ScheduleSettings(BaseModel):
    """When and how ``prune-runner-cache/nightly`` runs."""

    cron: str = Field("0 3 * * *", description="Cron expression of the nightly prune.")
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in, e.g. Europe/Berlin.")
    active: bool = Field(True, description="False registers the schedule paused.")
    prune: NightlyPruneRules = NightlyPruneRules()

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        try:
            CronSchedule(cron=value)
        except ValidationError:
            raise ValueError("must be a cron expression of five fields, e.g. '0 3 * * *'") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone_is_known(cls, value: str) -> str:
        try:
            CronSchedule(cron="0 3 * * *", timezone=value)
        except ValidationError:
            raise ValueError("must be an IANA time zone name, e.g. UTC or Europe/Berlin") from None
        return value


class ServeSettings(BaseSettings):
    """``RUNNER_CACHE_SCHEDULE__*`` from the environment or ``.env``; the flows' own settings are read by the flows."""

    model_config = SettingsConfigDict(
        env_prefix="RUNNER_CACHE_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    schedule: ScheduleSettings = ScheduleSettings()


def load_serve_settings() -> ServeSettings:
    """Read the schedule settings; a :class:`ConfigError` naming each bad variable, never its value."""
    try:
        return ServeSettings()
    except ValidationError as error:
        raise ConfigError.from_validation(error, env_prefix="RUNNER_CACHE_") from None
    except ValueError as error:  # pydantic-settings' own parse errors (malformed JSON) quote the input
        raise ConfigError(
            f"invalid configuration: could not parse RUNNER_CACHE_SCHEDULE__* ({type(error).__name__}): "
            "RUNNER_CACHE_SCHEDULE__PRUNE must be a JSON object"
        ) from None


def deployment_name(served: Served) -> str:
    """``flow-name/deployment-name``, as ``prefect deployment run`` takes it."""
    return f"{served.load().name}/{served.name}"


def build_deployments(config: str | None, schedule: ScheduleSettings) -> list[RunnerDeployment]:
    """The four deployments; every one passes ``config`` (a block name, or None for this process's environment)."""
    deployments = []
    for served in SERVED:
        parameters: dict[str, Any] = {"config": config}
        schedules = None
        if served is PRUNE:
            parameters |= schedule.prune.model_dump(mode="json")
            schedules = [Cron(schedule.cron, timezone=schedule.timezone, active=schedule.active)]
        deployments.append(
            served.load().to_deployment(
                name=served.name,
                description=served.description,
                parameters=parameters,
                schedules=schedules,
                tags=TAGS,
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments


def prepare(sections: RunnerCacheSections, deployments: list[RunnerDeployment]) -> list[StepResult]:
    """The locks and the automation the deployments rely on, created or put back as they should be."""
    steps = []
    for name in (release_lock_name(sections.release), bucket_lock_name(sections.store)):
        with timed() as timer:
            outcome = ensure_limit(name)
        detail = {
            "created": f"created lock {name} (a Prefect global concurrency limit of 1 slot)",
            "updated": f"reset lock {name} to 1 active slot",
            "unchanged": f"lock {name} is in place (1 slot)",
        }[outcome]
        steps.append(_step("lock", outcome, detail, timer.seconds, {"name": name}))
    verify = next(deployment for deployment in deployments if deployment.name == VERIFY.name)
    with timed() as timer:
        verify_id = verify.apply()  # serve() applies it again (an upsert); the automation needs its id now
        wanted = verify_after_upgrade(sections.release, verify_id)
        outcome, automation_id = ensure_automation(wanted)
    what = (
        f"{UPGRADED_EVENT} for {sections.release.namespace}/{sections.release.release} runs {deployment_name(VERIFY)}"
    )
    detail = {
        "created": f"created automation: {what}",
        "updated": f"put the automation back: {what}",
        "unchanged": f"automation in place: {what}",
    }[outcome]
    steps.append(
        _step(
            "automation",
            outcome,
            detail,
            timer.seconds,
            {"name": wanted.name, "id": str(automation_id), "verify_deployment_id": str(verify_id)},
        )
    )
    return steps


def _step(step: str, outcome: str, detail: str, seconds: float, data: dict) -> StepResult:
    return StepResult(
        step=step,
        status="unchanged" if outcome == "unchanged" else "changed",
        detail=detail,
        seconds=seconds,
        data=data,
    )


def serve_forever(deployments: list[RunnerDeployment], limit: int | None) -> None:
    """Serve until SIGTERM or Ctrl+C; on shutdown Prefect pauses the deployments, so no run waits for a dead server.

    Prefect's own start message is left out: the command has printed what it serves (``--json`` keeps stdout clean).
    """
    serve(*deployments, limit=limit, print_starting_message=False)
