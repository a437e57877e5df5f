"""The orchestration around helm's cluster commands, with the recording fake helm first on PATH.

Rendering is not exercised here (tests of tasks/chart_* use the real helm binary): these tests check what runs
when, with which flags and values, what is skipped, and how rollback and its failure are reported.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.errors import ConfigError, HelmClusterUnreachable, HelmError, HelmTimeout
from runner_cache.tasks.policy import is_transient
from runner_cache.tasks.release.helm import (
    DIGEST_MARK,
    chart_digest,
    deployed_release,
    rollback_release,
    upgrade_release,
)
from tests.fakes.fake_helm import installed_by_hand
from tests.integration.kube.conftest import ACCESS, SECRET, FakeHelm, assert_clean, installable
from tests.support.prefect_records import events

CHART = Path(__file__).resolve().parents[2] / "charts" / "modern"
VALUES = {
    "runners": {
        "config": '[[runners]]\n  [runners.cache]\n    Type = "s3"\n',
        "cache": {"secretName": "runner-cache-s3"},
    }
}
SECRETS = (SecretStr(ACCESS), SecretStr(SECRET))

pytestmark = pytest.mark.usefixtures("prefect_api")  # upgrade and rollback emit events


@pytest.fixture
def release(tmp_path: Path) -> ReleaseSettings:
    """A release with a unique name, so that the events of one test are told from the others'."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    return ReleaseSettings(
        chart=str(CHART), release=f"rc-{uuid.uuid4().hex[:10]}", kubeconfig=kubeconfig, timeout_seconds=30
    )


def seed(helm: FakeHelm, release: ReleaseSettings, *revisions: dict) -> None:
    """Releases as helm would have recorded them; each revision: version, values, status, description."""
    history = [
        {
            "revision": number,
            "status": revision.get("status", "superseded" if number < len(revisions) else "deployed"),
            "chart": "gitlab-runner",
            "version": revision.get("version", "0.60.0"),
            "app_version": "16.7.0",
            "description": revision.get("description", "Upgrade complete"),
            "values": revision.get("values", VALUES),
        }
        for number, revision in enumerate(revisions, start=1)
    ]
    helm.set_state(releases={f"{release.namespace}/{release.release}": history})


def _upgrade_call(helm: FakeHelm) -> dict:
    calls = [record for record in helm.records() if record["argv"][0] == "upgrade"]
    assert len(calls) == 1
    return calls[0]


def _events(name: str, release: ReleaseSettings, timeout: float = 15.0) -> list[dict]:
    """The events called ``name`` about this test's release, waiting for the first to arrive."""
    resource = f"runner-cache.release.{release.namespace}.{release.release}"
    deadline = time.monotonic() + timeout
    while True:
        found = [event for event in events(name, expect=0) if event["resource"]["prefect.resource.id"] == resource]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def test_first_install_then_nothing_to_do(
    helm: FakeHelm, release: ReleaseSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = upgrade_release(release, installable(CHART), VALUES, secrets=SECRETS)
    assert first.status == "changed"
    assert first.data["revision"] == 1 and first.data["previous_revision"] is None
    assert first.data["reasons"] == ["not installed yet"]

    call = _upgrade_call(helm)
    argv = call["argv"]
    assert argv[:4] == ["upgrade", release.release, str(CHART), "--install"]
    for flag in ("--wait", "--reset-then-reuse-values", "--rollback-on-failure"):
        assert flag in argv
    assert "--create-namespace" not in argv, "helm would CREATE the namespace (403 without cluster rights)"
    assert "--atomic" not in argv
    assert argv[argv.index("--timeout") + 1] == "30s"
    assert argv[argv.index("--namespace") + 1] == "gitlab-runner"
    assert argv[argv.index("--kubeconfig") + 1] == str(release.kubeconfig)
    assert argv[argv.index("--description") + 1] == DIGEST_MARK + chart_digest(CHART)
    [values_file] = call["values_files"]
    assert values_file["mode"] == "0o600", "the values file must be private while helm reads it"
    assert json.loads(values_file["content"]) == VALUES
    assert not Path(values_file["path"]).exists() and not Path(values_file["path"]).parent.exists(), (
        "the values file must be gone"
    )
    assert_clean(json.dumps(helm.records()), "helm's argv, stdin or values file")

    [event] = _events("runner-cache.release.upgraded", release)
    assert event["payload"]["revision"] == 1 and event["payload"]["chart"] == "gitlab-runner-0.60.0"

    second = upgrade_release(release, installable(CHART), VALUES, secrets=SECRETS)
    assert second.status == "unchanged"
    assert second.detail.endswith("already runs chart gitlab-runner-0.60.0 with these values (revision 1): no upgrade")
    assert helm.commands().count("upgrade") == 1, "a no-op must not make a new revision"
    assert len(helm.revisions(f"gitlab-runner/{release.release}")) == 1
    for result in (first, second):
        assert_clean(result.model_dump_json(), "a StepResult")
    assert_clean(caplog.text, "the logs")


def test_skipped_when_deployed_by_hand_with_same_chart_and_values(helm: FakeHelm, release: ReleaseSettings) -> None:
    seed(helm, release, {"values": {}}, {"values": VALUES})
    result = upgrade_release(release, installable(CHART), VALUES)
    assert result.status == "unchanged" and result.data["revision"] == 2
    assert helm.commands() == ["status", "history", "get"]


def test_values_change_upgrades_and_remembers_the_previous_revision(helm: FakeHelm, release: ReleaseSettings) -> None:
    seed(helm, release, {"values": {}}, {"values": {"runners": {"config": "old"}}})
    result = upgrade_release(release, installable(CHART), VALUES)
    assert result.status == "changed"
    assert result.data["reasons"] == [
        f'values: runners.cache.secretName: (unset) → "{VALUES["runners"]["cache"]["secretName"]}"; '
        "runners.config replaced (the deployed one is not TOML even with its template actions set aside)"
    ]
    assert result.data["previous_revision"] == 2 and result.data["revision"] == 3
    assert "(revision 2)" in result.detail


def test_chart_version_change_upgrades(helm: FakeHelm, release: ReleaseSettings) -> None:
    seed(helm, release, {"version": "0.59.0"})
    result = upgrade_release(release, installable(CHART), VALUES)
    assert result.data["reasons"] == ["chart gitlab-runner-0.59.0 → gitlab-runner-0.60.0"]


def test_patched_copy_of_the_same_version_is_deployed(helm: FakeHelm, release: ReleaseSettings, tmp_path: Path) -> None:
    patched = tmp_path / "patched"
    shutil.copytree(CHART, patched)
    (patched / "templates" / "_cache.tpl").write_text(
        (patched / "templates" / "_cache.tpl").read_text() + "\n{{/* patched */}}\n"
    )
    seed(helm, release, {"description": "Upgrade complete"})  # deployed by hand from the original: no digest
    assert upgrade_release(release, installable(CHART), VALUES).status == "unchanged"
    result = upgrade_release(release, installable(patched, patched=True), VALUES)
    assert result.data["reasons"] == ["chart files differ (a patched copy)"]
    assert upgrade_release(release, installable(patched, patched=True), VALUES).status == "unchanged"
    assert upgrade_release(release, installable(CHART), VALUES).data["reasons"] == ["chart files differ"], (
        "back to the original is a change too"
    )


def test_user_values_file_goes_first_and_counts_for_the_no_op(
    helm: FakeHelm, release: ReleaseSettings, tmp_path: Path
) -> None:
    user_values = tmp_path / "my-values.yaml"
    user_values.write_text("gitlabUrl: https://gitlab.example.com/\nrunners:\n  config: mine\n  tags: docker\n")
    mine = release.model_copy(update={"values_file": user_values})
    chart = installable(CHART, values_file=user_values)  # read once, when the chart is prepared
    upgrade_release(mine, chart, VALUES)
    argv = _upgrade_call(helm)["argv"]
    files = [argv[index + 1] for index, item in enumerate(argv) if item == "--values"]
    assert files[0] == str(user_values) and len(files) == 2, "the user's file first, so that ours win"
    stored = helm.revisions(f"gitlab-runner/{release.release}")[-1]["values"]
    assert stored["runners"]["config"] == VALUES["runners"]["config"] and stored["runners"]["tags"] == "docker"
    assert upgrade_release(mine, chart, VALUES).status == "unchanged"


def test_bad_user_values_file(helm: FakeHelm, release: ReleaseSettings, tmp_path: Path) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping of chart values"):
        installable(CHART, values_file=listing)
    with pytest.raises(
        ConfigError, match="RUNNER_CACHE_RELEASE__VALUES_FILE names .*missing.yaml, which is not a file"
    ):
        installable(CHART, values_file=tmp_path / "missing.yaml")


def test_helm_3_uses_atomic(helm: FakeHelm, release: ReleaseSettings) -> None:
    helm.set_state(version="v3.16.4")
    upgrade_release(release, installable(CHART), VALUES)
    argv = _upgrade_call(helm)["argv"]
    assert "--atomic" in argv and "--rollback-on-failure" not in argv


def test_unsupported_helm_version(helm: FakeHelm, release: ReleaseSettings) -> None:
    helm.set_state(version="v2.17.0")
    with pytest.raises(ConfigError, match="helm reports version 'v2.17.0'; runner-cache needs helm 3 or 4"):
        upgrade_release(release, installable(CHART), VALUES)
    assert "upgrade" not in helm.commands()


def test_credentials_in_values_are_refused_before_helm_runs(helm: FakeHelm, release: ReleaseSettings) -> None:
    leaky = {"runners": {"cache": {"s3SecretKey": SECRET}}}
    with pytest.raises(ConfigError, match="refusing to pass the store's credentials to helm") as caught:
        upgrade_release(release, installable(CHART), leaky, secrets=SECRETS)
    assert helm.records() == []
    assert_clean(str(caught.value), "the exception")


def test_failed_upgrade_is_rolled_back_by_helm_and_reported(helm: FakeHelm, release: ReleaseSettings) -> None:
    seed(helm, release, {"values": {}})
    helm.set_state(fail={"upgrade": "timed out waiting for the condition"})
    with pytest.raises(HelmError) as caught:
        upgrade_release(release, installable(CHART), VALUES)
    message = str(caught.value)
    where = f"gitlab-runner/{release.release}"
    assert f"upgrade of release {where} to gitlab-runner-0.60.0 failed: " in message
    assert "has been rolled back due to rollback-on-failure being set: timed out waiting for the condition" in message
    assert message.endswith(f"revision 3 of release {where} is deployed now (gitlab-runner-0.60.0)"), "what runs now"
    assert [r["status"] for r in helm.revisions(f"gitlab-runner/{release.release}")] == [
        "superseded",
        "failed",
        "deployed",
    ]


def test_dry_run_reads_only(helm: FakeHelm, release: ReleaseSettings) -> None:
    seed(helm, release, {"version": "0.59.0"})
    planned = upgrade_release(release, installable(CHART), VALUES, apply=False)
    assert planned.status == "planned" and "would upgrade release" in planned.detail
    assert set(helm.commands()) == {"status", "history", "get"}


def test_unreachable_cluster_is_transient(helm: FakeHelm, release: ReleaseSettings) -> None:
    helm.set_state(
        fail={
            "status": 'kubernetes cluster unreachable: Get "https://10.0.0.1:6443/version": dial tcp: connection refused'
        }
    )
    with pytest.raises(HelmClusterUnreachable) as caught:
        deployed_release(release)
    assert is_transient(caught.value)


def test_slow_helm_is_stopped_with_a_clear_error(helm: FakeHelm, release: ReleaseSettings) -> None:
    helm.set_state(sleep={"status": 5})
    with pytest.raises(HelmTimeout, match="helm status did not finish within 1 s"):
        deployed_release(release.model_copy(update={"timeout_seconds": 1}))


def test_rollback_to_the_remembered_revision(helm: FakeHelm, release: ReleaseSettings) -> None:
    seed(helm, release, {"values": {}})
    upgraded = upgrade_release(release, installable(CHART), VALUES)
    result = rollback_release(release, upgraded.data["previous_revision"], delay=0.01)
    rollback = [record["argv"] for record in helm.records() if record["argv"][0] == "rollback"]
    cluster = ["--namespace", "gitlab-runner", "--kubeconfig", str(release.kubeconfig)]
    assert rollback == [["rollback", release.release, "1", *cluster, "--wait", "--timeout", "30s"]]
    where = f"gitlab-runner/{release.release}"
    assert result.status == "changed" and result.data["running_revision"] == 3
    assert (
        result.detail
        == f"rolled back release {where} to revision 1: revision 3 of release {where} is deployed now (gitlab-runner-0.60.0)"
    )
    latest = helm.revisions(f"gitlab-runner/{release.release}")[-1]
    assert latest["description"] == "Rollback to 1" and latest["values"] == {}


def test_rollback_is_retried(helm: FakeHelm, release: ReleaseSettings) -> None:
    seed(helm, release, {}, {})
    helm.set_state(
        fail={"rollback": "another operation (install/upgrade/rollback) is in progress"}, fail_times={"rollback": 2}
    )
    result = rollback_release(release, 1, attempts=3, delay=0.01)
    assert result.data["attempts"] == 3 and "after 2 failed attempts" in result.detail
    assert helm.commands().count("rollback") == 3


def test_failed_rollback_emits_an_event(helm: FakeHelm, release: ReleaseSettings) -> None:
    seed(helm, release, {}, {})
    helm.set_state(fail={"rollback": "timed out waiting for the condition"})
    words = f"rollback of release gitlab-runner/{release.release} to revision 1 failed 2 times; last error: .*timed out"
    with pytest.raises(HelmError, match=words):
        rollback_release(release, 1, attempts=2, delay=0.01)
    [event] = _events("runner-cache.release.rollback-failed", release)
    assert event["payload"]["revision"] == 1 and event["payload"]["attempts"] == 2
    assert "timed out waiting for the condition" in event["payload"]["error"]


def test_values_the_release_was_installed_with_are_kept(helm: FakeHelm, release: ReleaseSettings) -> None:
    """A release installed by hand (`helm install -f values.yaml`) keeps gitlabUrl, its token and the rest."""
    values = {"gitlabUrl": "https://gitlab.example.com/", "runnerToken": "by-hand", "concurrent": 8}
    helm.set_state(releases={"gitlab-runner/gitlab-runner": [installed_by_hand(values, app_version="")]})
    first = upgrade_release(release, installable(CHART), VALUES)
    assert first.status == "changed"
    assert "gitlabUrl" not in " ".join(first.data["reasons"]), "keys we do not own are not drift"
    assert "--reset-then-reuse-values" in _upgrade_call(helm)["argv"]
    stored = helm.revisions()[-1]["values"]
    assert (stored["gitlabUrl"], stored["runnerToken"], stored["concurrent"]) == (
        "https://gitlab.example.com/",
        "by-hand",
        8,
    )
    assert "by-hand" not in json.dumps(_upgrade_call(helm)["values_files"]), (
        "the user's values never pass through our file"
    )
    assert upgrade_release(release, installable(CHART), VALUES).status == "unchanged"
