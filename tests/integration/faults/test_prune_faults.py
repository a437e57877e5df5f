"""`runner-cache prune --json` as a user runs it (a subprocess) while its store is SIGKILLed, or while it is
sent SIGTERM/SIGINT: the report names exactly what the store confirmed, re-runs finish the job and nothing else.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from minio.error import S3Error

from runner_cache.blocks.store import StoreSettings
from runner_cache.tasks.prune.walk import BATCH_SIZE
from tests.integration.faults.conftest import (
    Seaweed,
    assert_clean_stderr,
    cli_env,
    fault_proxy,
    harness_api_url,
    names_in,
    problem_lines,
    read_json,
    run_cli,
    seed,
    start_cli,
    store_env,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("prefect_api")

JUST_WRITTEN = "1e-6"  # days: everything written more than ~0.09 s ago is old (SeaweedFS cannot backdate)


def doomed_names(count: int) -> list[str]:
    # project ids of one width keep listing order == this order: "object i is gone" means "batch i//BATCH_SIZE went"
    return [f"runner/abcdef123/project/{100_000 + n}/main-protected" for n in range(count)]


KEPT = [f"project/{n}/keep-{n}-protected" for n in range(1, 21)]  # kept by --keep, listed after every doomed one


def gone(store: StoreSettings, name: str) -> bool:
    try:
        store.client(retries=0).stat_object(store.bucket, name)
    except S3Error as error:
        return error.code in ("NoSuchKey", "NoSuchObject")
    except Exception:  # noqa: BLE001 - the store is being killed; not gone as far as we know
        return False
    return False


def check_report_against_store(document: dict, store: StoreSettings, doomed: set[str]) -> set[str]:
    """Every deletion the report claims is gone from the store; every object it does not claim (and does not
    call in doubt) is still there; nothing outside ``doomed`` was touched. Returns what is left of ``doomed``."""
    left = names_in(store)
    deleted = {entry["key"] for entry in document["deleted"]}
    in_doubt = {entry["key"] for entry in document["in_doubt"]}
    assert document["deleted_count"] == len(deleted) and document["in_doubt_count"] == len(in_doubt)
    assert not deleted & in_doubt
    assert deleted <= doomed and in_doubt <= doomed
    assert not deleted & left, "the report claims deletions the store did not make"
    assert (doomed - deleted - in_doubt) <= left, "objects went that the report does not account for"
    assert set(KEPT) <= left
    return left & doomed


def test_store_sigkilled_mid_prune_then_restarted_and_rerun(own_seaweed: Seaweed, tmp_path: Path) -> None:
    store = own_seaweed.store
    doomed = doomed_names(6_000)
    seed(store, doomed + KEPT)
    time.sleep(0.2)
    env = cli_env(store_env(store), harness_api_url())
    args = ["prune", "--json", "--max-age-days", JUST_WRITTEN, "--keep", "keep-*"]
    process, out, err = start_cli(args, env, tmp_path)
    try:
        wait_until(lambda: gone(store, doomed[1500]), 120, "a deletion well into the walk")
        os.kill(own_seaweed.pid, signal.SIGKILL)  # the fault: the store dies mid-prune
        code = process.wait(120)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = err.read_text()
    assert code == 1, stderr[-3000:]
    document = read_json(out)
    # the store had processed part of the batch of object 1500 when it was killed: confirmed, or in doubt if the
    # answer was lost on the way (seen both ways); never missing from the report
    assert document["deleted_count"] + document["in_doubt_count"] >= BATCH_SIZE
    assert document["complete"] is False
    lines = problem_lines(stderr)
    assert lines and all(line.startswith(f"runner-cache: S3 store: {store.endpoint}") for line in lines), lines
    assert_clean_stderr(stderr, store.secret_key.get_secret_value())
    assert all(store.endpoint in error["error"] for error in document["errors"])

    own_seaweed.start()  # the same data dir and ports
    left = check_report_against_store(document, store, set(doomed))
    assert left, "the kill stopped the prune before it finished"

    rerun = run_cli(args, env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    again = read_json_text(rerun.stdout)
    assert {entry["key"] for entry in again["deleted"]} == left, "the re-run deletes the rest and nothing else"
    assert again["complete"] is True and again["in_doubt_count"] == 0 and again["errors"] == []
    assert names_in(store) == set(KEPT)


def read_json_text(text: str) -> dict:
    import json

    return json.loads(text)


@pytest.mark.parametrize(("sig", "exit_code"), [(signal.SIGTERM, 1), (signal.SIGINT, 130)])
def test_signal_stops_listing_finishes_batches_and_reports(
    sig: signal.Signals, exit_code: int, seaweed_store: StoreSettings, tmp_path: Path
) -> None:
    """A proxy slows each listing page and each DeleteObjects, so the walk is still going when the signal comes."""
    doomed = doomed_names(3_000)
    seed(seaweed_store, doomed + KEPT)
    time.sleep(0.2)

    def slow(method: str, path: str, query: str, body: bytes) -> float | None:
        if method == "GET" and "list-type=2" in query:
            return 0.7
        if method == "POST" and "delete" in query:
            return 1.0
        return None

    with fault_proxy(seaweed_store) as proxy:
        proxy.rule = slow
        store = proxy.store(seaweed_store)
        env = cli_env(store_env(store), harness_api_url())
        args = ["prune", "--json", "--max-age-days", JUST_WRITTEN, "--keep", "keep-*"]
        process, out, err = start_cli(args, env, tmp_path)
        try:
            wait_until(lambda: proxy.count(1.0) >= 1, 120, "the first DeleteObjects")
            sent = time.monotonic()
            process.send_signal(sig)
            code = process.wait(60)
            took = time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
        stderr = err.read_text()
        assert code == exit_code, stderr[-3000:]
        assert took < 10, f"took {took:.1f} s to stop"
        document = read_json(out)
        assert document["complete"] is False
        assert BATCH_SIZE <= document["deleted_count"] < len(doomed), (
            "the batches in flight finished; the rest was not sent"
        )
        assert f"runner-cache: prune: stopped by {sig.name}" in stderr
        assert_clean_stderr(stderr, store.secret_key.get_secret_value())
        left = check_report_against_store(document, seaweed_store, set(doomed))
        assert left == set(doomed) - {entry["key"] for entry in document["deleted"]}

        proxy.rule = None
        rerun = run_cli(args, env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {entry["key"] for entry in read_json_text(rerun.stdout)["deleted"]} == left
    assert names_in(seaweed_store) == set(KEPT)


def test_artifact_event_result_and_deletions_file_agree_when_an_answer_is_lost(
    seaweed_store: StoreSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy swallows the second DeleteObjects it sees (the connection closes, no answer): its objects (one
    batch) are in doubt everywhere — never deleted, never zero — and every record of the run says the same numbers
    as the deletions file."""
    from runner_cache.flows.prune import prune_runner_cache
    from runner_cache.tasks.prune.walk import read_deletions
    from tests.support.prefect_records import events, flow_run_artifacts

    doomed = doomed_names(10 * BATCH_SIZE + BATCH_SIZE // 2)  # the last batch is a half one
    seed(seaweed_store, doomed)
    time.sleep(0.2)
    deletes = {"seen": 0}

    def lose_second_answer(method: str, path: str, query: str, body: bytes) -> str | None:
        if method == "POST" and "delete" in query:
            deletes["seen"] += 1
            return "drop" if deletes["seen"] == 2 else None
        return None

    with fault_proxy(seaweed_store) as proxy:
        proxy.rule = lose_second_answer
        for name, value in store_env(proxy.store(seaweed_store)).items():
            monkeypatch.setenv(name, value)
        deletions = tmp_path / "deletions.jsonl"
        state = prune_runner_cache(max_age_days=1e-6, deletions_file=str(deletions), return_state=True)
    assert state.is_failed()
    result = state.result(raise_on_failure=False)
    kinds = [line["kind"] for line in read_deletions(deletions)]
    deleted, doubt = kinds.count("deleted"), kinds.count("in_doubt")
    assert doubt in (BATCH_SIZE // 2, BATCH_SIZE) and deleted == len(doomed) - doubt and kinds.count("error") == 0
    assert (result["deleted_count"], result["in_doubt_count"], result["errors_count"]) == (deleted, doubt, 0)
    assert result["complete"] is True  # the walk went to the end; only the answer was lost
    assert len(names_in(seaweed_store)) == doubt, "the dropped request never reached the store"
    summary = " ".join(flow_run_artifacts(state.state_details.flow_run_id))
    assert f"**Deleted {deleted} cache objects" in summary and f"**{doubt} in doubt**" in summary
    found = events(
        "runner-cache.prune.failed",
        where=lambda event: event["resource"]["prefect.resource.name"] == seaweed_store.bucket,
    )
    assert found and found[0]["payload"]["deleted_count"] == deleted and found[0]["payload"]["in_doubt_count"] == doubt
    assert f"{doubt} objects are in doubt" in state.message and f"{deleted} deleted" in state.message


def test_a_batch_refused_with_slow_down_is_sent_again_and_counted_once_deleted(
    seaweed_store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3's SlowDown (503) refuses a request before doing any of it: the batch is sent again after a pause, and
    its objects count as deleted once the store confirms them — not in doubt, not failed."""
    from runner_cache.flows.prune import prune_runner_cache

    doomed = doomed_names(3 * BATCH_SIZE)
    seed(seaweed_store, doomed)
    time.sleep(0.2)
    refused = {"left": 2}

    def slow_down_twice(method: str, path: str, query: str, body: bytes) -> tuple[int, str] | None:
        if method == "POST" and "delete" in query and refused["left"] > 0:
            refused["left"] -= 1
            return 503, "SlowDown"
        return None

    with fault_proxy(seaweed_store) as proxy:
        proxy.rule = slow_down_twice
        for name, value in store_env(proxy.store(seaweed_store)).items():
            monkeypatch.setenv(name, value)
        state = prune_runner_cache(max_age_days=1e-6, return_state=True)
        assert proxy.count((503, "SlowDown")) == 2
        assert proxy.count(None) >= 3 + 1  # the listing and three accepted DeleteObjects
    assert state.is_completed()
    result = state.result()
    assert (result["deleted_count"], result["in_doubt_count"], result["errors_count"]) == (len(doomed), 0, 0)
    assert names_in(seaweed_store) == set()


def test_a_batch_refused_with_slow_down_every_time_fails_whole_and_nothing_is_in_doubt(
    seaweed_store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner_cache.flows.prune import prune_runner_cache

    doomed = doomed_names(BATCH_SIZE)
    seed(seaweed_store, doomed)
    time.sleep(0.2)
    with fault_proxy(seaweed_store) as proxy:
        proxy.rule = lambda method, path, query, body: (503, "SlowDown") if method == "POST" else None
        for name, value in store_env(proxy.store(seaweed_store)).items():
            monkeypatch.setenv(name, value)
        state = prune_runner_cache(max_age_days=1e-6, return_state=True)
        assert proxy.count((503, "SlowDown")) == 5  # the first try and four resends
    assert state.is_failed()
    result = state.result(raise_on_failure=False)
    assert (result["deleted_count"], result["in_doubt_count"], result["errors_count"]) == (0, 0, len(doomed))
    assert result["problems"] == [
        f"S3 store: {proxy.endpoint} refused a DeleteObjects request 5 times: SlowDown: injected by the test proxy "
        f"(check that the store is up, then run prune again: it deletes what is left) [{len(doomed)} objects]"
    ]
    assert names_in(seaweed_store) == set(doomed)
