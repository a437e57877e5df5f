"""setup puts the runner identity's key into the runner's Secret, never the store's admin key; rotation replaces it
and revokes the old key only after the release worked with the new one (fake cluster + helm, moto's IAM API)."""

from __future__ import annotations

import json

import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.flows.setup import setup_runner_cache
from runner_cache.tasks.release.step import SECRET_VERSION_ANNOTATION
from runner_cache.tasks.store.identity import BlockVault, IamApiAdmin
from runner_cache.tasks.store.policy import identity_name
from tests.integration.kube.conftest import Cluster, FakeHelm

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def store(configured: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> StoreSettings:
    # moto's S3 ignores IAM policies, so the proof that the runner key cannot delete would fail there (it runs for
    # real on SeaweedFS in tests/integration/store/identity/); everything else here is the real code path.
    monkeypatch.setenv("RUNNER_CACHE_STORE__IDENTITIES__VERIFY", "false")
    return configured


def _secret(cluster: Cluster) -> dict[str, str]:
    return cluster.api.secret_data("gitlab-runner", "runner-cache-s3")


def _keys(store: StoreSettings) -> set[str]:
    return set(IamApiAdmin(store).state(identity_name("runner", store.bucket), {"Statement": []}).keys)


def test_the_runners_secret_holds_the_runner_identity_not_the_admin_key(
    store: StoreSettings, helm: FakeHelm, cluster: Cluster
) -> None:
    result = setup_runner_cache(return_state=True).result()
    steps = {step["step"]: step["status"] for step in result["steps"]}
    assert steps["identity"] == "changed" and steps["release"] == "changed" and steps["identity-check"] == "skipped"
    record = BlockVault().load(store, "runner")
    assert record is not None
    secret = _secret(cluster)
    assert secret == {"accesskey": record.access_key, "secretkey": record.secret_key.get_secret_value()}
    assert store.access_key.get_secret_value() not in secret.values()
    assert store.secret_key.get_secret_value() not in secret.values()
    assert record.secret_key.get_secret_value() not in json.dumps(helm.records()) + json.dumps(result)


def test_rotation_that_fails_before_revoke_keeps_the_old_key_then_finishes(
    store: StoreSettings, helm: FakeHelm, cluster: Cluster
) -> None:
    setup_runner_cache()
    old = BlockVault().load(store, "runner")
    first_pods = helm.revisions()[-1]["values"]["podAnnotations"][SECRET_VERSION_ANNOTATION]

    helm.set_state(fail={"upgrade": "the cluster is out of capacity"}, fail_times={"upgrade": 1})
    failed = setup_runner_cache(rotate_runner_credentials=True, return_state=True)
    assert failed.is_failed()
    new = BlockVault().load(store, "runner")
    assert new.access_key != old.access_key and old.access_key in new.revoke
    assert {old.access_key, new.access_key} <= _keys(store), "the old key must stay valid while the rollout failed"
    steps = [step["step"] for step in failed.result(raise_on_failure=False)["steps"]]
    assert "revoke" not in steps

    done = setup_runner_cache(return_state=True).result()
    statuses = {step["step"]: step["status"] for step in done["steps"]}
    assert statuses["release"] == "changed" and statuses["revoke"] == "changed"
    assert _keys(store) == {new.access_key}
    assert _secret(cluster)["accesskey"] == new.access_key
    assert helm.revisions()[-1]["values"]["podAnnotations"][SECRET_VERSION_ANNOTATION] != first_pods  # pods restarted
