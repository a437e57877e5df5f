"""The concurrency guard against a real Prefect API: limits made on demand, runs that really wait for each other."""

from __future__ import annotations

import threading
import time

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.flows.locks import LockTimeout, bucket_lock_name, ensure_limit, exclusive, release_lock_name
from tests.support.prefect_records import flow_run_logs

pytestmark = pytest.mark.usefixtures("prefect_api")

# A holder keeps its lock until the other run is trying to take its own, then GRACE seconds more for it to
# succeed: runs that can overlap then do, runs that cannot are seen not to, however slowly each one starts.
GRACE = 3.0
TRYING: dict[str, threading.Event] = {}
HOLDING: dict[str, threading.Event] = {}


def _store(bucket: str, endpoint: str = "http://MinIO.example:9000") -> StoreSettings:
    return StoreSettings(
        backend="external",
        endpoint=endpoint,
        access_key=SecretStr("abc"),
        secret_key=SecretStr("abcdefgh"),
        bucket=bucket,
    )


def _release(name: str, namespace: str = "gitlab-runner") -> ReleaseSettings:
    return ReleaseSettings(release=name, namespace=namespace)


@flow(name="lock-holder", persist_result=False)
def hold_flow(release: ReleaseSettings | None, store: StoreSettings | None, me: str, other: str) -> tuple[float, float]:
    """A stand-in for a flow body: when it held the lock."""
    TRYING[me].set()
    with exclusive(release=release, store=store, wait_seconds=60):
        started = time.monotonic()
        HOLDING[me].set()
        TRYING[other].wait(30)
        HOLDING[other].wait(GRACE)
        return started, time.monotonic()


def _run_two(first: dict, second: dict) -> list[tuple[float, float]]:
    for events in (TRYING, HOLDING):
        events.update(first=threading.Event(), second=threading.Event())
    spans: list[tuple[float, float]] = []
    threads = [
        threading.Thread(
            target=lambda kwargs=kwargs, me=me, other=other: spans.append(hold_flow(**kwargs, me=me, other=other))
        )
        for kwargs, me, other in ((first, "first", "second"), (second, "second", "first"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(spans) == 2, "both runs must finish"
    return sorted(spans)


def _overlap(spans: list[tuple[float, float]]) -> bool:
    (_, first_end), (second_start, _) = spans
    return second_start < first_end


def test_lock_names_are_stable() -> None:
    assert release_lock_name(_release("gitlab-runner")) == "runner-cache:release:gitlab-runner:gitlab-runner"
    # the endpoint's scheme does not matter, its host is case-insensitive, its port does matter
    assert bucket_lock_name(_store("runner")) == "runner-cache:bucket:minio.example:9000:runner"
    assert bucket_lock_name(_store("runner", "https://minio.example:9000")) == bucket_lock_name(_store("runner"))
    assert bucket_lock_name(_store("runner", "http://minio.example:9001")) != bucket_lock_name(_store("runner"))


def test_two_runs_for_the_same_release_never_overlap() -> None:
    release = _release("serial-release")
    spans = _run_two({"release": release, "store": None}, {"release": release, "store": None})
    assert not _overlap(spans), f"runs overlapped: {spans}"


def test_prune_and_setup_on_the_same_bucket_never_overlap() -> None:
    """Setup holds release + bucket; prune holds the bucket only: they still exclude each other."""
    store = _store("serial-bucket")
    spans = _run_two({"release": _release("setup-release"), "store": store}, {"release": None, "store": store})
    assert not _overlap(spans), f"runs overlapped: {spans}"


def test_runs_on_different_targets_run_side_by_side() -> None:
    """The control: without a shared lock the same two runs do overlap, so the tests above can fail."""
    spans = _run_two(
        {"release": _release("parallel-a"), "store": _store("parallel-a")},
        {"release": _release("parallel-b"), "store": _store("parallel-b")},
    )
    assert _overlap(spans), f"runs did not overlap: {spans}"


def test_missing_limit_is_created_and_a_loosened_one_is_restored() -> None:
    name = release_lock_name(_release("made-on-demand"))
    with get_client(sync_client=True) as client:
        with pytest.raises(ObjectNotFound):
            client.read_global_concurrency_limit_by_name(name)
        assert ensure_limit(name) == "created"
        assert ensure_limit(name) == "unchanged"
        limit = client.read_global_concurrency_limit_by_name(name)
        assert (limit.limit, limit.active) == (1, True)
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=5, active=False))
        assert ensure_limit(name) == "updated"
        limit = client.read_global_concurrency_limit_by_name(name)
        assert (limit.limit, limit.active) == (1, True)


def test_a_waiting_run_says_so_and_gives_up_with_a_clear_error() -> None:
    release = _release("held-too-long")
    for events in (TRYING, HOLDING):
        events.update(holder=threading.Event(), waiter=threading.Event())
    spans: list = []
    holder = threading.Thread(target=lambda: spans.append(hold_flow(release, None, me="holder", other="waiter")))
    holder.start()
    assert HOLDING["holder"].wait(30), "the holder got its lock"

    @flow(name="lock-waiter", persist_result=False)
    def waiter() -> None:
        TRYING["waiter"].set()  # the holder keeps its lock until GRACE seconds after this
        with exclusive(release=release, wait_seconds=0.3):
            raise AssertionError("must not get the lock while another run holds it")

    state = waiter(return_state=True)
    holder.join(30)
    assert state.is_failed() and state.name == "Failed"
    with pytest.raises(
        LockTimeout, match=r"gave up after 0.3 s waiting for runner-cache:release:gitlab-runner:held-too-long"
    ):
        state.result()
    logs = " ".join(flow_run_logs(state.state_details.flow_run_id))
    assert "waiting for runner-cache:release:gitlab-runner:held-too-long: another run holds it" in logs
    assert len(spans) == 1, "the holder finished normally"


def test_exclusive_needs_a_target() -> None:
    with pytest.raises(ValueError, match="needs a release, a store, or both"):
        with exclusive():
            pass
