"""``deployments/prefect.yaml``: ``prefect deploy --all`` to a process work pool, and a worker that runs it.

Against the session's Prefect test server, not the served one: deploying the same names there would take the
served deployments over.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.settings import PREFECT_API_URL

from runner_cache.blocks.store import StoreSettings
from tests.e2e.conftest import REPO, store_env

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_api")]

BIN = Path(sys.executable).parent
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
POOL = "runner-cache"


def _cli(*args: str, extra_env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if not name.startswith("RUNNER_CACHE_")}
    env.update(PREFECT_API_URL=PREFECT_API_URL.value(), **(extra_env or {}))
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_the_kubernetes_variant_deploys_with_valid_job_variables(tmp_path: Path) -> None:
    """The documented switch (``*process`` → ``*kubernetes``) is accepted by a kubernetes work pool's job template."""
    text = PREFECT_YAML.read_text()
    assert text.count("work_pool: *process") == 4
    variant = tmp_path / "prefect.yaml"
    variant.write_text(text.replace("work_pool: *process", "work_pool: *kubernetes"))
    created = _cli("prefect", "work-pool", "create", "runner-cache-k8s", "--type", "kubernetes", "--overwrite")
    assert created.returncode == 0, created.stdout + created.stderr
    image = "registry.example.com/runner-cache:0.1.0"
    deployed = _cli(
        "prefect",
        "--no-prompt",
        "deploy",
        "--all",
        "--prefect-file",
        str(variant),
        extra_env={"RUNNER_CACHE_IMAGE": image},
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    with get_client(sync_client=True) as client:
        rebuild = client.read_deployment_by_name("rebuild-runner/after-upgrade")
    assert rebuild.work_pool_name == "runner-cache-k8s"
    assert rebuild.job_variables == {
        "image": image, "namespace": "runner-cache", "service_account_name": "runner-cache",
        "image_pull_policy": "IfNotPresent", "finished_job_ttl": 3600,
    }  # fmt: skip


# moto stores IAM policies but never enforces them: setup's proof that the runner key is restricted cannot pass there
# (tests/integration/store/identity/ prove it on SeaweedFS).
MOTO_IGNORES_IAM = {"RUNNER_CACHE_STORE__IDENTITIES__VERIFY": "false"}


def test_deploy_all_then_a_process_worker_runs_setup(moto_store: StoreSettings) -> None:
    created = _cli("prefect", "work-pool", "create", POOL, "--type", "process", "--overwrite")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = _cli("prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    with get_client(sync_client=True) as client:
        deployments = {
            name: client.read_deployment_by_name(name)
            for name in (
                "setup-runner-cache/default",
                "prune-runner-cache/nightly",
                "verify-runner-cache/on-demand",
                "rebuild-runner/after-upgrade",
            )
        }
        verify_automations = client.read_resource_related_automations(
            f"prefect.deployment.{deployments['verify-runner-cache/on-demand'].id}"
        )
    assert {deployment.work_pool_name for deployment in deployments.values()} == {POOL}
    assert {deployment.entrypoint for deployment in deployments.values()} == {
        "runner_cache.flows.setup.setup_runner_cache", "runner_cache.flows.prune.prune_runner_cache", "runner_cache.flows.verify.verify_runner_cache", "runner_cache.flows.rebuild.rebuild_runner",
    }  # fmt: skip
    (schedule,) = deployments["prune-runner-cache/nightly"].schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 3 * * *", "UTC")
    assert deployments["prune-runner-cache/nightly"].parameters == {
        "config": None,
        "max_age_days": 30,
        "superseded": True,
    }
    (automation,) = verify_automations
    assert automation.trigger.expect == {"runner-cache.release.upgraded"}
    assert automation.trigger.match.model_dump() == {
        "prefect.resource.id": "runner-cache.release.gitlab-runner.gitlab-runner"
    }

    run = _cli("prefect", "deployment", "run", "setup-runner-cache/default")
    assert run.returncode == 0, run.stdout + run.stderr
    worker = _cli(
        "prefect",
        "worker",
        "start",
        "--pool",
        POOL,
        "--run-once",
        extra_env={**store_env(moto_store), **MOTO_IGNORES_IAM},
        timeout=180,
    )
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployments["setup-runner-cache/default"].id])
            )
        )
    assert [run.state.name for run in runs] == ["Completed"], worker.stdout[-3000:] + worker.stderr[-3000:]
    assert moto_store.client().bucket_exists(moto_store.bucket), (
        "the worker's run used the worker's RUNNER_CACHE_* environment"
    )
