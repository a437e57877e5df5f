"""Pruning real S3 servers (SeaweedFS and moto) through the flow, the task and the CLI."""

from __future__ import annotations

import json
import time

import pytest

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.gitlab import GitLabSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.cli import main
from runner_cache.flows.prune import prune_runner_cache
from runner_cache.tasks.prune.rules import PruneOptions
from runner_cache.tasks.prune.walk import prune_cache_task
from tests.integration.prune.conftest import names_in, seed, seed_backdated
from tests.support.prefect_records import events, flow_run_artifacts, flow_run_logs

pytestmark = pytest.mark.usefixtures("prefect_api")

# max-age for servers that cannot backdate: everything written more than ~0.09 s ago is old
JUST_WRITTEN = 1e-6

CACHE = [
    "ci/runner/abcdef123/project/1/main-protected",
    "ci/runner/abcdef123/project/1/feature-x-non_protected",
    "ci/runner/zz9876543/project/2/main-3-protected",
    "ci/project/3/main-protected",  # shared layout
    "ci/project/3/" + "ab" + "/" + "ab" + "c" * 62,  # hashed and sharded key (runner >= 19.0)
]
NON_CACHE = [
    "ci/README.txt",
    "ci/runner/abcdef123/notes.txt",
    "ci/project/3/ad/ab" + "c" * 62,  # a shard that is not the hash's own first two digits (docs/cache-keys.md)
    "ci/runner/abcdef123/project/not-a-number/main",
]
OUTSIDE = ["other/runner/abcdef123/project/1/main-protected", "project/1/main-protected", "ci-old/project/1/main"]


def logs_with(flow_run_id, needle: str, timeout: float = 15.0) -> str:
    """The flow run's logs once ``needle`` arrived (log shipping to the API is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = " ".join(flow_run_logs(flow_run_id))
        if needle in logs or time.monotonic() > deadline:
            return logs
        time.sleep(0.5)


def completed_event(bucket: str, timeout: float = 15.0) -> list[dict]:
    """The ``runner-cache.prune.completed`` events of ``bucket`` (events arrive asynchronously, among other runs')."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in events("runner-cache.prune.completed") if e["resource"]["prefect.resource.name"] == bucket]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def run_json(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict]:
    code = main(["prune", "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_both_layouts_every_token_and_only_cache_objects(
    s3_store: StoreSettings, configure, capsys: pytest.CaptureFixture
) -> None:
    seed(s3_store, CACHE + NON_CACHE + OUTSIDE)
    configure(s3_store, path="ci")
    time.sleep(0.2)
    code, document = run_json(capsys, "--max-age-days", str(JUST_WRITTEN))
    assert code == 0
    assert list(document) == [
        "dry_run",
        "deleted",
        "deleted_count",
        "bytes_freed",
        "in_doubt_count",
        "kept_count",
        "in_doubt",
        "complete",
        "errors",
    ]
    assert document["dry_run"] is False and document["errors"] == []
    assert sorted(entry["key"] for entry in document["deleted"]) == sorted(CACHE)
    assert all(
        entry["reason"].startswith("max-age: last written") and entry["size"] == 22 for entry in document["deleted"]
    )
    assert (
        document["deleted_count"] == len(CACHE)
        and document["bytes_freed"] == 22 * len(CACHE)
        and document["kept_count"] == 0
    )
    assert names_in(s3_store) == set(NON_CACHE + OUTSIDE)

    code, again = run_json(capsys, "--max-age-days", str(JUST_WRITTEN))
    assert code == 0 and again["deleted"] == [] and again["deleted_count"] == 0


def test_text_output_counts_non_cache_and_says_nothing_changed(
    seaweed_store: StoreSettings, configure, capsys: pytest.CaptureFixture
) -> None:
    seed(seaweed_store, NON_CACHE + OUTSIDE)
    configure(seaweed_store, path="ci")
    assert main(["prune", "--max-age-days", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("prune: deleted 0 cache objects (0 B), kept 0, skipped 4 non-cache objects, 0 errors")
    assert names_in(seaweed_store) == set(NON_CACHE + OUTSIDE)


def test_dry_run_names_what_would_go_and_deletes_nothing(
    seaweed_store: StoreSettings, configure, capsys: pytest.CaptureFixture
) -> None:
    seed(seaweed_store, CACHE)
    configure(seaweed_store, path="ci")
    time.sleep(0.2)
    code, document = run_json(capsys, "--dry-run", "--max-age-days", str(JUST_WRITTEN))
    assert code == 0 and document["dry_run"] is True
    assert sorted(entry["key"] for entry in document["deleted"]) == sorted(CACHE)
    assert names_in(seaweed_store) == set(CACHE)
    assert main(["prune", "--dry-run", "--max-age-days", str(JUST_WRITTEN)]) == 0
    assert capsys.readouterr().out.startswith("prune (dry run): would delete 5 cache objects")


def test_keep_globs_protect_keys_and_names(
    seaweed_store: StoreSettings, configure, capsys: pytest.CaptureFixture
) -> None:
    seed(seaweed_store, CACHE)
    configure(seaweed_store, path="ci")
    time.sleep(0.2)
    code, document = run_json(
        capsys, "--max-age-days", str(JUST_WRITTEN), "--keep", "main-*", "--keep", "ci/project/3/*"
    )
    assert code == 0
    assert [entry["key"] for entry in document["deleted"]] == ["ci/runner/abcdef123/project/1/feature-x-non_protected"]
    assert document["kept_count"] == 4
    assert names_in(seaweed_store) == set(CACHE) - {"ci/runner/abcdef123/project/1/feature-x-non_protected"}


def test_max_deletions_stops_and_says_so(
    seaweed_store: StoreSettings, configure, capsys: pytest.CaptureFixture
) -> None:
    seed(seaweed_store, CACHE)
    configure(seaweed_store, path="ci")
    time.sleep(0.2)
    assert main(["prune", "--max-age-days", str(JUST_WRITTEN), "--max-deletions", "2"]) == 0
    out = capsys.readouterr().out
    assert "deleted 2 cache objects" in out and "kept 3" in out
    assert "stopped after --max-deletions 2: 3 more objects matched and were kept" in out
    assert len(names_in(seaweed_store)) == 3


def test_failing_batch_is_reported_and_the_rest_is_deleted(failing_delete_proxy, tmp_path) -> None:
    direct, proxied, marker = failing_delete_proxy
    names = [f"runner/abcdef123/project/{n}/main-protected" for n in range(1, 10)] + [f"project/5/{marker}"]
    seed(direct, names)
    time.sleep(0.2)
    deletions = tmp_path / "deletions.jsonl"
    report = prune_cache_task(
        proxied,
        CacheSettings(),
        GitLabSettings(),
        PruneOptions(max_age_days=JUST_WRITTEN),
        deletions_file=str(deletions),
        batch_size=3,
        concurrency=2,
    )
    left = names_in(direct)
    # listing order puts project/5/poisoned-key first, in a batch of 3 with two runner/ objects
    assert f"project/5/{marker}" in left and len(left) == 3
    assert report.deleted_count == 7 and report.errors_count == 3
    assert {error.key for error in report.errors} == left
    assert all(
        error.error == f"S3 store: {proxied.endpoint} refused a DeleteObjects request: AccessDenied: Access Denied."
        for error in report.errors
    )
    assert report.in_doubt_count == 0 and report.complete
    lines = [json.loads(line) for line in deletions.read_text().splitlines()]
    assert sorted(line["kind"] for line in lines) == ["deleted"] * 7 + ["error"] * 3


def test_failing_batch_through_the_cli_exits_1_with_errors(
    failing_delete_proxy, configure, capsys: pytest.CaptureFixture
) -> None:
    direct, proxied, marker = failing_delete_proxy
    seed(direct, ["runner/abcdef123/project/1/main-protected", f"project/5/{marker}"])
    configure(proxied)
    time.sleep(0.2)
    code, document = run_json(capsys, "--max-age-days", str(JUST_WRITTEN))
    assert code == 1
    assert document["deleted_count"] == 0
    assert {error["key"] for error in document["errors"]} == {
        "runner/abcdef123/project/1/main-protected",
        f"project/5/{marker}",
    }
    assert "AccessDenied" in document["errors"][0]["error"]


def test_max_age_on_moto_with_backdated_objects(
    moto_store: StoreSettings, configure, capsys: pytest.CaptureFixture
) -> None:
    seed_backdated(
        moto_store,
        {
            "runner/abcdef123/project/1/main-protected": 45,
            "runner/abcdef123/project/1/feature-non_protected": 5,
            "project/2/main-protected": 31,
            "project/2/dev-protected": 29,
            "projects/2/notes/old.txt": 400,  # not a cache object (look-alike prefix): never deleted
        },
    )
    configure(moto_store)
    code, document = run_json(capsys, "--max-age-days", "30")
    assert code == 0
    reasons = {entry["key"]: entry["reason"] for entry in document["deleted"]}
    assert set(reasons) == {"runner/abcdef123/project/1/main-protected", "project/2/main-protected"}
    assert reasons["runner/abcdef123/project/1/main-protected"] == "max-age: last written 45.0 days ago (limit 30)"
    assert document["kept_count"] == 2
    assert names_in(moto_store) == {
        "runner/abcdef123/project/1/feature-non_protected",
        "project/2/dev-protected",
        "projects/2/notes/old.txt",
    }


def test_superseded_on_moto(moto_store: StoreSettings, configure, capsys: pytest.CaptureFixture) -> None:
    seed_backdated(
        moto_store,
        {
            "runner/abcdef123/project/1/main-protected": 20,
            "runner/abcdef123/project/1/main-1-protected": 3,
            "runner/abcdef123/project/1/old-branch-protected": 25,  # no newer index of this key: kept
            "runner/abcdef123/project/1/feature-1-non_protected": 2,
            # project 2: branches that end in numbers, written in turns: nothing is superseded
            "project/2/release-1-protected": 1,
            "project/2/release-2-protected": 4,
            "project/2/main-protected": 2,
        },
    )
    configure(moto_store)
    code, document = run_json(capsys, "--superseded")
    assert code == 0
    assert document["deleted"] == [
        {
            "key": "runner/abcdef123/project/1/main-protected",
            "reason": "superseded: project 1 was cleared to cache index 1 and this key has a newer object",
            "size": 22,
        }
    ]
    assert document["kept_count"] == 6


def test_max_total_size_deletes_oldest_first(
    moto_store: StoreSettings, configure, capsys: pytest.CaptureFixture
) -> None:
    ages = {f"project/{n}/main-protected": float(n) for n in range(1, 11)}  # project/10 is the oldest
    seed_backdated(moto_store, ages | {"project/99/keep-me": 500.0}, size=100)
    configure(moto_store)
    code, document = run_json(capsys, "--max-total-size", "750", "--keep", "keep-*")
    assert code == 0
    # 1100 bytes, budget 750: the four oldest (10, 9, 8, 7) go, keep-me is older but protected
    assert sorted(entry["key"] for entry in document["deleted"]) == sorted(
        f"project/{n}/main-protected" for n in (7, 8, 9, 10)
    )
    assert document["bytes_freed"] == 400 and document["kept_count"] == 7
    assert "over the 750 B budget" in document["deleted"][0]["reason"]


def test_flow_leaves_artifacts_logs_and_an_event(seaweed_store: StoreSettings, configure) -> None:
    seed(seaweed_store, CACHE + NON_CACHE)
    configure(seaweed_store, path="ci")
    time.sleep(0.2)
    state = prune_runner_cache(max_age_days=JUST_WRITTEN, keep=["feature-*"], return_state=True)
    result = state.result()
    assert result["deleted_count"] == 4 and result["kept_count"] == 1 and result["skipped_non_cache"] == 4
    flow_run_id = state.state_details.flow_run_id
    artifacts = " ".join(flow_run_artifacts(flow_run_id))
    assert "prune-runner-cache-objects" in artifacts and '"reason": "max-age: last written' in artifacts
    assert '"key": "main-3-protected"' in artifacts and '"project": 2' in artifacts
    assert "**Deleted 4 cache objects (88 B).**" in artifacts
    assert "prune-runner-cache-progress" in artifacts and "100" in artifacts
    logs = logs_with(flow_run_id, "prune finished in")
    assert "deleted 4 cache objects (88 bytes) under 'ci/', kept 1, skipped 4 non-cache objects, 0 errors" in logs
    secret = seaweed_store.secret_key.get_secret_value()
    assert secret not in artifacts and secret not in logs
    found = completed_event(seaweed_store.bucket)
    assert found and found[0]["payload"]["deleted_count"] == 4 and found[0]["payload"]["skipped_non_cache"] == 4
    assert found[0]["payload"]["by_reason"] == {"max-age": 4}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "choose at least one rule"),
        (["--max-total-size", "huge"], "--max-total-size: not a size"),
        (["--max-age-days", "-1"], "--max-age-days: Input should be greater than 0"),
        (["--deleted-refs"], "--deleted-refs needs GitLab"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_error(
    args: list[str], message: str, moto_store: StoreSettings, configure, capsys: pytest.CaptureFixture
) -> None:
    configure(moto_store)
    assert main(["prune", "--json", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


def test_unreachable_store_fails_with_json(configure, capsys: pytest.CaptureFixture) -> None:
    from tests.support.servers import free_port

    store = StoreSettings(
        backend="external", endpoint=f"http://127.0.0.1:{free_port()}", access_key="nobody", secret_key="nobody-secret"
    )
    configure(store)
    code, document = run_json(capsys, "--max-age-days", "1")
    assert code == 1 and document["deleted"] == [] and document["deleted_count"] == 0
    error = document["errors"][0]["error"]
    assert document["errors"][0]["key"] is None and error.startswith(f"S3 store: {store.endpoint} stopped answering")
    assert "MaxRetryError" not in error and "Traceback" not in capsys.readouterr().err


def test_superseded_and_size_together_plan_first_then_delete(moto_store: StoreSettings, configure) -> None:
    seed_backdated(
        moto_store,
        {
            "project/1/main-protected": 20,  # superseded by main-1 after the clear
            "project/1/main-1-protected": 3,
            "project/2/a-protected": 10,  # the two oldest of what is left go for the budget
            "project/2/b-protected": 5,
            "project/2/c-protected": 1,
        },
        size=100,
    )
    configure(moto_store)
    state = prune_runner_cache(superseded=True, max_total_size="250", return_state=True)
    result = state.result()
    reasons = {row["key"]: row["reason"].split(":")[0] for row in result["rows"]}
    assert reasons == {
        "project/1/main-protected": "superseded",
        "project/2/a-protected": "max-total-size",
        "project/2/b-protected": "max-total-size",
    }
    assert result["passes"] == 3 and result["kept_count"] == 2
    assert names_in(moto_store) == {"project/1/main-1-protected", "project/2/c-protected"}
    artifacts = " ".join(flow_run_artifacts(state.state_details.flow_run_id))
    assert "superseded 1" in artifacts and "max-total-size 2" in artifacts
