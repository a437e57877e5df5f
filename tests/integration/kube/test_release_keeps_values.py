"""setup, rebuild and plan against a release a team installed with its own values: what reaches ``helm upgrade``.

The release runs the ``modern`` fixture chart with the team's own ``runners.config`` (kubernetes settings, an action
in a string with inner quotes, a conditional section, a stale gcs cache), a private image registry and a
``fullnameOverride``. Only the cache section and the keys runner-cache owns may change; rendering is real, the
cluster is the fake API server and the fake helm (which merges values as ``--reset-then-reuse-values`` does).
"""

from __future__ import annotations

import json

import pytest

from runner_cache.blocks.store import StoreSettings
from runner_cache.cli import main
from runner_cache.flows.rebuild import RebuildParameters, rebuild_runner
from runner_cache.flows.setup import setup_runner_cache
from runner_cache.tasks.chart.runners_config import cache_section, outside_cache_section
from tests.fakes.fake_helm import installed_by_hand
from tests.integration.kube.conftest import Cluster, FakeHelm, runner_deployment

pytestmark = pytest.mark.usefixtures("prefect_api")

TEAM_CONFIG = """\
# team A: tuned by hand
[[runners]]
  output_limit = 16384
  [runners.kubernetes]
    namespace = "{{.Release.Namespace}}-jobs"
    image = "{{ printf "%s/%s:%s" .Values.runners.job.registry .Values.runners.job.repository .Values.runners.job.tag }}"
    privileged = {{ .Values.runners.privileged }}
    cpu_limit = "2"
  {{- if .Values.runners.gpu }}
  [runners.kubernetes.node_selector]
    "nvidia.com/gpu" = "true"
  {{- end }}
  [runners.cache]
    Type = "gcs"
    MaxUploadedArchiveSize = 104857600
    [runners.cache.gcs]
      BucketName = "old-cache"
"""
TOKEN = "glrt-team-token-0042"
TEAM_VALUES = {
    "gitlabUrl": "https://gitlab.example.com",
    "runnerToken": TOKEN,
    "fullnameOverride": "team-runner",
    "image": {"registry": "registry.team.example", "image": "mirror/gitlab-runner", "tag": "alpine-v16.7.0"},
    "runners": {
        "privileged": True,
        "gpu": False,
        "job": {"registry": "registry.team.example", "repository": "ci/ubuntu", "tag": "22.04"},
        "config": TEAM_CONFIG,
    },
}


@pytest.fixture
def team_release(
    configured: StoreSettings, helm: FakeHelm, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> StoreSettings:
    """The team's release, installed by hand (revision 1), and its Deployment under the overridden name."""
    monkeypatch.setenv("RUNNER_CACHE_STORE__IDENTITIES__VERIFY", "false")  # moto does not enforce key policies
    helm.set_state(releases={"gitlab-runner/gitlab-runner": [installed_by_hand(TEAM_VALUES)]})
    deployment = runner_deployment()
    deployment["metadata"]["name"] = "team-runner"
    cluster.api.put(deployment)
    return configured


def _our_values(helm: FakeHelm) -> dict:
    """The values file runner-cache passed to the (last) ``helm upgrade``: ours only."""
    upgrade = [record for record in helm.records() if record["argv"][0] == "upgrade"][-1]
    assert "--reset-then-reuse-values" in upgrade["argv"]
    return json.loads(upgrade["values_files"][-1]["content"])


def _assert_team_settings_kept(values: dict) -> None:
    for key in ("gitlabUrl", "runnerToken", "fullnameOverride"):
        assert values[key] == TEAM_VALUES[key]
    assert values["runners"]["job"] == TEAM_VALUES["runners"]["job"]
    config = values["runners"]["config"]
    assert outside_cache_section(config) == outside_cache_section(TEAM_CONFIG), "byte for byte outside the cache"
    cache = cache_section(config)
    assert cache is not None and cache["Type"] == "s3" and "gcs" not in cache
    assert cache["MaxUploadedArchiveSize"] == 104857600


def test_setup_keeps_the_teams_runners_config_and_waits_for_its_deployment(
    team_release: StoreSettings, helm: FakeHelm
) -> None:
    result = setup_runner_cache(return_state=True).result()
    release = next(step for step in result["steps"] if step["step"] == "release")
    assert release["status"] == "changed", release["detail"]
    assert "deployment gitlab-runner/team-runner is rolled out" in release["detail"], "the release's own name"

    ours = _our_values(helm)
    assert set(ours) == {"runners", "podAnnotations"}, "nothing but what runner-cache owns"
    assert set(ours["runners"]) == {"config", "cache"} and ours["runners"]["cache"] == {"secretName": "runner-cache-s3"}
    assert ours["runners"]["config"].startswith(TEAM_CONFIG.split("  [runners.cache]")[0])
    assert cache_section(ours["runners"]["config"])["s3"]["ServerAddress"] == "minio.runner-cache.svc:9000"
    assert TOKEN not in json.dumps(ours)

    deployed = helm.revisions()[-1]["values"]
    _assert_team_settings_kept(deployed)
    assert deployed["image"] == TEAM_VALUES["image"]

    again = setup_runner_cache(return_state=True).result()
    release = next(step for step in again["steps"] if step["step"] == "release")
    assert release["status"] == "unchanged" and len(helm.revisions()) == 2, "the merge is stable: no new revision"


def test_rebuild_sets_the_image_tag_only(team_release: StoreSettings, helm: FakeHelm) -> None:
    team_release.client().make_bucket(team_release.bucket)
    state = rebuild_runner(parameters=RebuildParameters(runner_image_tag="alpine-v16.8.0"), return_state=True)
    assert state.is_completed(), state.message
    assert _our_values(helm)["image"] == {"tag": "alpine-v16.8.0"}
    deployed = helm.revisions()[-1]["values"]
    assert deployed["image"] == {**TEAM_VALUES["image"], "tag": "alpine-v16.8.0"}, "the private registry stays"
    _assert_team_settings_kept(deployed)


def test_plan_says_what_would_change_in_words(
    team_release: StoreSettings, helm: FakeHelm, capsys: pytest.CaptureFixture
) -> None:
    assert main(["plan", "--json"]) == 0
    out = capsys.readouterr().out
    release = next(step for step in json.loads(out)["steps"] if step["step"] == "release")
    assert release["status"] == "planned"
    detail = release["detail"]
    assert 'runners.config [runners.cache] Type: "gcs" → "s3"' in detail
    assert "runners.config [runners.cache.gcs] removed" in detail
    assert "the rest of runners.config unchanged" in detail
    assert 'runners.cache.secretName: (unset) → "runner-cache-s3"' in detail
    assert TOKEN not in out and "upgrade" not in [record["argv"][0] for record in helm.records()]
