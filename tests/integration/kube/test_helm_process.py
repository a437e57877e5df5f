"""helm as a process and per version, against the fake helm (tests/fakes/fake_helm.py) that behaves as helm 3/4 do:
SIGTERM versus SIGKILL, pending-* recovery, the 3.14 minimum, error wording, which revision's values are compared,
and the Kubernetes requests helm's flags imply, authorised against docs/deployments.md's RBAC."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.errors import ConfigError, HelmClusterUnreachable, HelmError, HelmTimeout
from runner_cache.tasks.policy import is_transient
from runner_cache.tasks.release import helm as helm_module
from runner_cache.tasks.release.helm import deployed_release, upgrade_release
from tests.fakes.rbac import Rbac, Request
from tests.integration.kube.conftest import FakeHelm, installable

CHART = Path(__file__).resolve().parents[2] / "charts" / "modern"
VALUES = {"runners": {"cache": {"secretName": "runner-cache-s3"}}}
OLD = "2026-01-01T00:00:00Z"

pytestmark = pytest.mark.usefixtures("prefect_api")  # upgrade and rollback emit events


@pytest.fixture
def release(tmp_path: Path) -> ReleaseSettings:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    name = f"rc-{uuid.uuid4().hex[:10]}"
    return ReleaseSettings(chart=str(CHART), release=name, kubeconfig=kubeconfig, timeout_seconds=30)


def revision(number: int, status: str, values: dict | None = None, updated: str = OLD) -> dict:
    return {
        "revision": number,
        "status": status,
        "chart": "gitlab-runner",
        "version": "0.60.0",
        "app_version": "16.7.0",
        "description": "Upgrade complete",
        "values": VALUES if values is None else values,
        "updated": updated,
    }


def seed(helm: FakeHelm, release: ReleaseSettings, *revisions: dict, **state: object) -> str:
    key = f"{release.namespace}/{release.release}"
    helm.set_state(releases={key: list(revisions)}, **state)
    return key


def statuses(helm: FakeHelm, key: str) -> list[str]:
    return [item["status"] for item in helm.revisions(key)]


# --- versions and wording -------------------------------------------------------------------------------------


def test_helm_3_13_is_refused_before_anything_changes(helm: FakeHelm, release: ReleaseSettings) -> None:
    key = seed(helm, release, revision(1, "deployed", {}), version="v3.13.3")
    with pytest.raises(ConfigError, match=r"helm v3\.13\.3 is too old: runner-cache needs helm 3\.14 or later"):
        upgrade_release(release, installable(CHART), VALUES)
    assert "upgrade" not in helm.commands() and statuses(helm, key) == ["deployed"]


def test_the_fake_helm_3_13_does_not_know_the_flag(helm: FakeHelm, tmp_path: Path) -> None:
    """What the refusal above saves users from (cmd/helm/upgrade.go@v3.13.3 has no such flag)."""
    helm.set_state(version="v3.13.3")
    argv = ["helm", "upgrade", "x", str(CHART), "--install", "--reset-then-reuse-values", "-n", "gitlab-runner"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "unknown flag: --reset-then-reuse-values" in done.stderr


@pytest.mark.parametrize("version", ["v3.16.4", "v4.1.4"])
def test_cluster_unreachable_in_either_wording_is_transient(
    helm: FakeHelm, release: ReleaseSettings, version: str
) -> None:
    helm.set_state(version=version, unreachable=True)
    with pytest.raises(HelmClusterUnreachable) as caught:
        deployed_release(release)
    head = "Kubernetes cluster unreachable" if version.startswith("v3") else "kubernetes cluster unreachable"
    assert head in str(caught.value) and is_transient(caught.value)


@pytest.mark.parametrize(("version", "flag"), [("v3.16.4", "atomic"), ("v4.1.4", "rollback-on-failure")])
def test_failed_first_install_is_uninstalled_by_helm_and_said_so(
    helm: FakeHelm, release: ReleaseSettings, version: str, flag: str
) -> None:
    key = seed(helm, release, version=version, fail={"upgrade": "timed out waiting for the condition"})
    helm.set_state(releases={})
    with pytest.raises(HelmError) as caught:
        upgrade_release(release, installable(CHART), VALUES)
    message = str(caught.value)
    assert f"has been uninstalled due to {flag} being set: timed out waiting for the condition" in message
    assert message.endswith(
        f"nothing of release {key} is installed now (a failed first install is uninstalled by helm)"
    )
    assert helm.revisions(key) == []


# --- SIGTERM, SIGKILL and pending-* ------------------------------------------------------------------------------


def test_timeout_sends_sigterm_and_helm_marks_failed_and_rolls_back(helm: FakeHelm, release: ReleaseSettings) -> None:
    key = seed(helm, release, revision(1, "deployed", {}), sleep={"upgrade": 60})
    with pytest.raises(HelmTimeout) as caught:
        upgrade_release(release.model_copy(update={"timeout_seconds": 1}), installable(CHART), VALUES)
    message = str(caught.value)
    assert "was stopped (SIGTERM)" in message and "SIGKILL" not in message
    assert message.endswith(f"revision 3 of release {key} is deployed now (gitlab-runner-0.60.0)")
    assert statuses(helm, key) == ["superseded", "failed", "deployed"], "helm's handler ran: no pending revision"
    assert helm.revisions(key)[1]["description"] == f'Upgrade "{release.release}" failed: context canceled'


def test_a_helm_that_ignores_sigterm_is_killed_and_its_pending_upgrade_settled(
    helm: FakeHelm, release: ReleaseSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(helm_module, "GRACE_EXTRA", 0.0)  # SIGKILL one --timeout (1 s) after SIGTERM
    key = seed(helm, release, revision(1, "deployed", {}), sleep={"upgrade": 60}, ignore_sigterm=True)
    with pytest.raises(HelmTimeout) as caught:
        upgrade_release(release.model_copy(update={"timeout_seconds": 1}), installable(CHART), VALUES)
    message = str(caught.value)
    assert "(SIGTERM, then SIGKILL 1 s later)" in message
    assert f"rolled release {key} back from the interrupted pending-upgrade revision 2 to revision 1" in message
    assert message.endswith(f"revision 3 of release {key} is deployed now (gitlab-runner-0.60.0)")
    assert statuses(helm, key) == ["superseded", "superseded", "deployed"]
    assert helm.revisions(key)[2]["description"] == "Rollback to 1"


def test_a_stale_pending_upgrade_is_rolled_back_then_upgraded(helm: FakeHelm, release: ReleaseSettings) -> None:
    key = seed(helm, release, revision(1, "deployed", {}), revision(2, "pending-upgrade", {"x": 1}))
    planned = upgrade_release(release, installable(CHART), VALUES, apply=False)
    assert planned.status == "planned" and planned.detail.startswith(
        f"would roll release {key} back from the interrupted pending-upgrade revision 2 to revision 1, then upgrade"
    )
    assert "rollback" not in helm.commands()
    result = upgrade_release(release, installable(CHART), VALUES)
    assert result.status == "changed" and result.data["previous_revision"] == 3 and result.data["revision"] == 4
    assert result.detail.startswith(
        f"rolled release {key} back from the interrupted pending-upgrade revision 2 to revision 1; upgraded release"
    )
    assert statuses(helm, key) == ["superseded", "superseded", "superseded", "deployed"]


def test_a_fresh_pending_upgrade_may_be_another_helm_and_is_left_alone(
    helm: FakeHelm, release: ReleaseSettings
) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    seed(helm, release, revision(1, "deployed", {}), revision(2, "pending-upgrade", updated=now))
    with pytest.raises(
        HelmError, match="pending-upgrade \\(revision 2\\) for \\d+ s: another helm operation"
    ) as caught:
        upgrade_release(release, installable(CHART), VALUES)
    assert f"helm rollback {release.release} 1 -n gitlab-runner" in str(caught.value)
    assert not {"rollback", "upgrade"} & set(helm.commands())


def test_a_pending_install_cannot_be_rolled_back_and_says_uninstall(helm: FakeHelm, release: ReleaseSettings) -> None:
    seed(helm, release, revision(1, "pending-install"))
    with pytest.raises(HelmError, match="nothing was ever deployed, so there is no revision to roll back to") as caught:
        upgrade_release(release, installable(CHART), VALUES)
    assert f"`helm uninstall {release.release} -n gitlab-runner`, then run again" in str(caught.value)
    assert not {"rollback", "upgrade", "uninstall"} & set(helm.commands())


# --- values ---------------------------------------------------------------------------------------------------------


def test_values_are_compared_with_the_last_deployed_revision(helm: FakeHelm, release: ReleaseSettings) -> None:
    """helm reuses the last *deployed* revision's values (pkg/action/upgrade.go@v3.16.4 prepareUpgrade)."""
    key = seed(helm, release, revision(1, "deployed", VALUES), revision(2, "failed", {"broken": True}))
    result = upgrade_release(release, installable(CHART), VALUES)
    assert result.data["reasons"] == ["its latest revision 2 is failed"], "no values drift: revision 1 has ours"
    get_values = [r["argv"] for r in helm.records() if r["argv"][:2] == ["get", "values"]]
    assert get_values[0][get_values[0].index("--revision") + 1] == "1"
    assert "broken" not in helm.revisions(key)[-1]["values"], "what helm reused is revision 1's"


def test_dates_in_the_users_values_file(helm: FakeHelm, release: ReleaseSettings, tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text("podAnnotations:\n  since: 2024-01-31\n")
    mine = release.model_copy(update={"values_file": values_file})
    chart = installable(CHART, values_file=values_file)
    assert upgrade_release(mine, chart, VALUES).status == "changed"
    key = f"{release.namespace}/{release.release}"
    helm_stored = helm.revisions(key)[-1]["values"]["podAnnotations"]["since"]
    assert str(helm_stored) == "2024-01-31"
    assert upgrade_release(mine, chart, VALUES).status == "unchanged", "a date is not drift"


# --- the requests helm makes, against the documented RBAC ---------------------------------------------------------


@pytest.mark.parametrize("version", ["v3.16.4", "v4.1.4"])
def test_the_documented_role_covers_what_helm_does(
    helm: FakeHelm, release: ReleaseSettings, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    monkeypatch.setenv("FAKE_HELM_RBAC", "release")  # the namespaced Role only: no ClusterRole at all
    helm.set_state(version=version)
    upgrade_release(release, installable(CHART), VALUES)
    upgrade_release(release, installable(CHART), {**VALUES, "concurrent": 4})
    helm_module.rollback_release(release, 1, delay=0.01)
    calls = {(c["verb"], c["group"], c["resource"]) for r in helm.records() for c in r["api_calls"]}
    assert ("list", "apps", "replicasets") in calls, "--wait reads the Deployment's ReplicaSets"
    assert ("create", "", "secrets") in calls and ("update", "", "secrets") in calls, "helm's release records"
    assert not any(resource == "namespaces" for _, _, resource in calls)
    if version.startswith("v4"):
        assert ("watch", "apps", "deployments") in calls and ("list", "", "pods") in calls


def test_create_namespace_would_need_a_cluster_role(helm: FakeHelm, release: ReleaseSettings) -> None:
    """Why runner-cache dropped --create-namespace: on install helm CREATEs the namespace (pkg/action/install.go),
    which a namespaced Role can never allow, even when the namespace exists."""
    env = {**os.environ, "FAKE_HELM_RBAC": "release"}
    argv = ["helm", "upgrade", "x", str(CHART), "--install", "--create-namespace", "-n", "gitlab-runner"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 1
    assert 'cannot create resource "namespaces" in API group "" at the cluster scope' in done.stderr


def _chart_with_its_own_role(tmp_path: Path) -> Path:
    chart = tmp_path / "chart-with-rbac"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "role.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {{ .Release.Name }}\n"
        'rules:\n  - apiGroups: [""]\n    resources: ["*"]\n    verbs: ["*"]\n---\n'
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {{ .Release.Name }}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: '{{ .Release.Name }}'}\n"
        "subjects: [{kind: ServiceAccount, name: default, namespace: '{{ .Release.Namespace }}'}]\n"
    )
    return chart


def test_a_chart_with_its_own_role_needs_escalate_and_bind(
    helm: FakeHelm, release: ReleaseSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chart = _chart_with_its_own_role(tmp_path)
    monkeypatch.setenv("FAKE_HELM_RBAC", "release")
    with pytest.raises(HelmError) as caught:
        upgrade_release(release, installable(chart), VALUES)
    message = str(caught.value)
    assert 'cannot patch resource "roles" in API group "rbac.authorization.k8s.io"' in message
    assert "docs/deployments.md" in message, "the hint names the documented RBAC"
    monkeypatch.setenv("FAKE_HELM_RBAC", "release,chart-rbac")
    assert upgrade_release(release, installable(chart), VALUES).status == "changed"
    roles = [c for r in helm.records() for c in r["api_calls"] if c["resource"] in {"roles", "rolebindings"}]
    assert {c["verb"] for c in roles} >= {"patch", "create"}


def test_creating_roles_without_escalate_is_refused_like_the_api_server_does() -> None:
    """ConfirmNoEscalation (pkg/registry/rbac/validation/rule.go): `create roles` alone does not let one grant `*`."""
    rbac = Rbac.documented("release")
    writer = {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create"]}
    rbac.objects[0]["rules"].append(writer)
    role = {
        "kind": "Role",
        "metadata": {"name": "runner"},
        "rules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["*"]}],
    }
    assert rbac.allows(Request("create", "rbac.authorization.k8s.io", "roles", "gitlab-runner"))
    refused = rbac.refuse_escalation(role, "gitlab-runner")
    assert refused and "is attempting to grant RBAC permissions not currently held" in refused
    assert '{APIGroups:[""], Resources:["*"], Verbs:["*"]}' in refused
    binding = {"kind": "RoleBinding", "metadata": {"name": "runner"}, "roleRef": {"kind": "Role", "name": "runner"}}
    assert rbac.refuse_escalation(binding, "gitlab-runner", roles={("Role", "runner"): role})
    granted = Rbac.documented("release", "chart-rbac")
    assert granted.refuse_escalation(role, "gitlab-runner") is None
    assert granted.refuse_escalation(binding, "gitlab-runner", roles={("Role", "runner"): role}) is None
