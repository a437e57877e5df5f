"""helm failing mid-upgrade during rebuild-runner (the public flow, with the recording fake helm of
tests/fakes/fake_helm.py): the release is rolled back and the report says which revision runs now."""

from __future__ import annotations

import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.flows.rebuild import RebuildParameters, rebuild_runner
from tests.integration.kube.conftest import FakeHelm, cluster, configured, helm  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_upgrade_that_times_out_is_rolled_back_and_the_report_names_the_revision(
    configured: StoreSettings,  # noqa: F811
    helm: FakeHelm,  # noqa: F811
) -> None:
    configured.client().make_bucket(configured.bucket)
    assert rebuild_runner(return_state=True).is_completed()  # revision 1
    helm.set_state(fail={"upgrade": "timed out waiting for the condition"})
    state = rebuild_runner(parameters=RebuildParameters(runner_image_tag="alpine-v18.7.0"), return_state=True)
    assert state.is_failed()
    result = state.result(raise_on_failure=False)
    release = next(step for step in result["steps"] if step["step"] == "release")
    assert release["status"] == "failed"
    assert "rolled back" in release["detail"] and "timed out waiting for the condition" in release["detail"]
    deployed = [r for r in helm.revisions() if r["status"] == "deployed"]
    assert len(deployed) == 1
    assert f"revision {deployed[0]['revision']} " in release["detail"], release["detail"]
    assert "is deployed now" in release["detail"], "the report says which revision runs"
