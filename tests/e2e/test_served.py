"""End to end: a real Prefect server, ``runner-cache serve``, the Prefect CLI, SeaweedFS — as a user runs them."""

from __future__ import annotations

import json
import re
import time
from io import BytesIO

import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventResourceFilter

from runner_cache.blocks.config_block import resolve_config
from runner_cache.blocks.release import ReleaseSettings
from runner_cache.deployments.automations import UPGRADED_EVENT, automation_name
from runner_cache.deployments.serve import build_deployments, load_serve_settings, prepare
from runner_cache.flows.locks import bucket_lock_name, release_lock_name
from runner_cache.tasks.events import release_resource
from runner_cache.tasks.keys.layout import cache_object
from tests.e2e.conftest import DEPLOYMENTS, E2E_TIMEZONE, PrefectServer, Served

pytestmark = pytest.mark.e2e

RUN_ID = re.compile(r"UUID: ([0-9a-f-]{36})")


def _seed_superseded_cache(served: Served) -> tuple[str, str]:
    """A key of project 7 written at cache index 0, then (after a "Clear runner caches") at index 1."""
    client = served.store.client()
    old, new = (
        cache_object(path="", shared=False, short_token="e2etoken1", project_id=7, key=key).object_name
        for key in ("main-protected", "main-1-protected")
    )
    client.put_object(served.store.bucket, old, BytesIO(b"PK\x05\x06" + b"\0" * 18), 22)
    time.sleep(1.1)  # S3 LastModified has one-second resolution: the new index must be written strictly later
    client.put_object(served.store.bucket, new, BytesIO(b"PK\x05\x06" + b"\0" * 18), 22)
    return old, new


def _lock_holders(server: PrefectServer, lock: str, run_ids: list[str], timeout: float = 10) -> list[tuple[str, str]]:
    """``(acquired|released, flow run id)`` in order, from Prefect's concurrency events for ``run_ids`` (they arrive late)."""
    deadline = time.monotonic() + timeout
    with server.client_settings(), get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(lock)
        while True:
            page = client.read_events(
                filter=EventFilter(resource=EventResourceFilter(id=[f"prefect.concurrency-limit.{limit.id}"])), limit=50
            )
            holders = [
                (event.event.rsplit(".", 1)[-1], run.id.rsplit(".", 1)[-1])
                for event in sorted(page.events, key=lambda event: event.occurred)
                for run in event.related
                if run.role == "flow-run" and run.id.rsplit(".", 1)[-1] in run_ids
            ]
            if len(holders) >= 2 * len(run_ids) or time.monotonic() > deadline:
                return holders
            time.sleep(0.5)


def test_nightly_prune_runs_from_the_cli_and_shows_in_history(prefect_server: PrefectServer, served: Served) -> None:
    old, new = _seed_superseded_cache(served)

    run = prefect_server.run(
        "prefect", "deployment", "run", "prune-runner-cache/nightly", "--watch", "--watch-timeout", "150"
    )
    assert run.returncode == 0, run.stdout + run.stderr + served.process.output()[-4000:]
    assert "Completed" in run.stdout
    run_id = RUN_ID.search(run.stdout).group(1)

    names = {item.object_name for item in served.store.client().list_objects(served.store.bucket, recursive=True)}
    assert old not in names and new in names, "the superseded index went, the current one stayed"

    history = prefect_server.run("runner-cache", "history", "--flow", "prune-runner-cache", "--json")
    assert history.returncode == 0, history.stderr
    runs = json.loads(history.stdout)["runs"]
    mine = next(item for item in runs if item["id"] == run_id)
    assert mine["state"] == "Completed" and mine["flow"] == "prune-runner-cache"
    assert mine["summary"].startswith("Deleted 1 cache objects")
    assert mine["parameters"]["superseded"] is True and mine["parameters"]["max_age_days"] == 30

    table = prefect_server.run("runner-cache", "history", "--limit", "5")
    assert table.returncode == 0 and "prune-runner-cache" in table.stdout and "Completed" in table.stdout


def test_the_nightly_schedule_and_all_four_deployments_exist(prefect_server: PrefectServer, served: Served) -> None:
    with prefect_server.client_settings(), get_client(sync_client=True) as client:
        deployments = {name: client.read_deployment_by_name(name) for name in DEPLOYMENTS}
    nightly = deployments["prune-runner-cache/nightly"]
    assert len(nightly.schedules) == 1
    schedule = nightly.schedules[0]
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 3 * * *", E2E_TIMEZONE, True)
    assert nightly.parameters["superseded"] is True and nightly.parameters["config"] is None
    for name, deployment in deployments.items():
        assert deployment.entrypoint.startswith("runner_cache.flows."), name
        assert "runner-cache" in deployment.tags
        assert name == "prune-runner-cache/nightly" or not deployment.schedules, f"{name} runs on demand only"
    assert served.started["schedule"] == {
        "deployment": "prune-runner-cache/nightly", "cron": "0 3 * * *", "timezone": E2E_TIMEZONE, "active": True,
        "prune": {"dry_run": False, "max_age_days": 30.0, "superseded": True, "deleted_refs": False,
                  "max_total_size": None, "keep": [], "max_deletions": None},
    }  # fmt: skip


def test_serve_prepared_its_locks_and_automation_and_a_second_prepare_changes_nothing(
    prefect_server: PrefectServer, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {step["step"]: step["status"] for step in served.started["steps"]} == {
        "lock": "changed",
        "automation": "changed",
    }
    for name, value in served.env.items():
        if name.startswith("RUNNER_CACHE_"):
            monkeypatch.setenv(name, value)
    with prefect_server.client_settings():
        steps = prepare(resolve_config(None), build_deployments(None, load_serve_settings().schedule))
        assert [step.status for step in steps] == ["unchanged"] * 3, [step.detail for step in steps]
        with get_client(sync_client=True) as client:
            (automation,) = client.read_automations_by_name(automation_name(ReleaseSettings()))
            client.pause_automation(automation.id)  # someone switched it off in the UI
        steps = prepare(resolve_config(None), build_deployments(None, load_serve_settings().schedule))
        assert [step.status for step in steps] == ["unchanged", "unchanged", "changed"]
        assert steps[2].detail.startswith(
            "put the automation back: runner-cache.release.upgraded for gitlab-runner/gitlab-runner"
        )
        with get_client(sync_client=True) as client:
            assert client.read_automation(automation.id).enabled is True


def test_release_upgraded_event_runs_verify_once_and_only_for_this_release(
    prefect_server: PrefectServer, served: Served
) -> None:
    with prefect_server.client_settings(), get_client(sync_client=True) as client:
        verify = client.read_deployment_by_name("verify-runner-cache/on-demand")
        (automation,) = client.read_automations_by_name(automation_name(ReleaseSettings()))
    assert automation.trigger.expect == {UPGRADED_EVENT}
    assert automation.trigger.match.model_dump() == {
        "prefect.resource.id": "runner-cache.release.gitlab-runner.gitlab-runner"
    }
    (action,) = automation.actions
    assert (action.type, action.source, action.deployment_id) == ("run-deployment", "selected", verify.id)
    known = {run.id for run in prefect_server.runs_of(verify.id)}

    ours = release_resource(ReleaseSettings())["prefect.resource.id"]
    for event, resource_id in (
        (UPGRADED_EVENT, release_resource(ReleaseSettings(release="someone-else"))["prefect.resource.id"]),  # not ours
        ("runner-cache.release.rolled-back", ours),  # not the event
        (UPGRADED_EVENT, ours),  # as a CI job would after `helm upgrade`
    ):
        emitted = prefect_server.run("prefect", "events", "emit", event, "--resource-id", resource_id)
        assert emitted.returncode == 0, emitted.stdout + emitted.stderr

    run = prefect_server.wait_for_new_final_run(verify.id, known)
    assert run.state.name == "Completed", run.state.message
    # verify emitted its own runner-cache.verify.* event; give a loop time to show before counting
    time.sleep(3)
    new = [run for run in prefect_server.runs_of(verify.id) if run.id not in known]
    assert len(new) == 1, "one upgrade of this release, one verify run, no loop"


def test_two_setup_runs_for_the_same_release_take_turns(prefect_server: PrefectServer, served: Served) -> None:
    """Two runs started at once: the release and bucket locks go to one, then to the other — never to both."""
    with prefect_server.client_settings(), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("setup-runner-cache/default")
        known = {run.id for run in prefect_server.runs_of(deployment.id)}
        runs = [client.create_flow_run_from_deployment(deployment.id) for _ in range(2)]
    for _ in runs:
        known.add(prefect_server.wait_for_new_final_run(deployment.id, known).id)
    run_ids = [str(run.id) for run in runs]
    for lock in (release_lock_name(ReleaseSettings()), bucket_lock_name(served.store)):
        holders = _lock_holders(prefect_server, lock, run_ids)
        assert len(holders) == 4, holders
        first, second = holders[0][1], holders[2][1]
        assert holders == [("acquired", first), ("released", first), ("acquired", second), ("released", second)], (
            holders
        )
        assert {first, second} == set(run_ids)
    with prefect_server.client_settings(), get_client(sync_client=True) as client:
        states = [client.read_flow_run(run.id).state for run in runs]
    assert [state.name for state in states] == ["Completed", "Completed"]
