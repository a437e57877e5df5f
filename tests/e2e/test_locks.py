"""The locks against a real Prefect API: limits made on demand, and the real flows (prune, setup) really waiting
for each other on one bucket while runs on different buckets go side by side."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from uuid import UUID, uuid4

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.flows.locks import LockTimeout, bucket_lock_name, ensure_limit, exclusive, release_lock_name
from tests.integration.faults.conftest import BIN, fault_proxy, seed
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
    (_, first_end), (second_start, _) = sorted(spans)
    return second_start < first_end


def test_lock_names_are_stable() -> None:
    assert release_lock_name(_release("gitlab-runner")) == "runner-cache:release:gitlab-runner:gitlab-runner"
    # the endpoint's scheme does not matter, its host is case-insensitive, its port does matter
    assert bucket_lock_name(_store("runner")) == "runner-cache:bucket:minio.example:9000:runner"
    assert bucket_lock_name(_store("runner", "https://minio.example:9000")) == bucket_lock_name(_store("runner"))
    assert bucket_lock_name(_store("runner", "http://minio.example:9001")) != bucket_lock_name(_store("runner"))


def test_two_holders_of_one_release_lock_never_overlap() -> None:
    """The release lock with the stand-in (a real setup with a release needs a cluster: tests/integration/kube)."""
    release = _release("serial-release")
    spans = _run_two({"release": release, "store": None}, {"release": release, "store": None})
    assert not _overlap(spans), f"runs overlapped: {spans}"


# The real flows, run as a user runs them (`runner-cache prune|setup` subprocesses against the Prefect API), on a
# SeaweedFS bucket behind a proxy that slows every listing and bucket request: each run's locked part lasts
# seconds, so two runs that could overlap would. When they held their locks is read back from Prefect: the
# start and end of each flow run's task runs (everything the flows do under their lock is a task).
SLOW = 1.5


def _slow(method: str, path: str, query: str, body: bytes) -> float | None:
    return SLOW if method in ("GET", "HEAD", "PUT") and path.count("/") == 1 else None


def _flow_run_id(stderr: str) -> UUID:
    found = re.search(r"/runs/flow-run/([0-9a-f-]{36})", stderr)
    assert found, f"no flow run in:\n{stderr[-2000:]}"
    return UUID(found.group(1))


def _locked_span(flow_run_id: UUID) -> tuple[float, float]:
    """From the first task run's start to the last one's end: the part of the flow run under its locks."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    assert runs, f"flow run {flow_run_id} ran no task"
    starts = [run.start_time.timestamp() for run in runs if run.start_time]
    ends = [run.end_time.timestamp() for run in runs if run.end_time]
    return min(starts), max(ends)


def _run_real(commands: list[tuple[list[str], StoreSettings]], proxy_endpoint: str) -> list[tuple[float, float]]:
    """Start every ``runner-cache`` command at once; the locked span of each one's flow run."""
    from prefect.settings import PREFECT_API_URL

    processes = []
    for args, store in commands:
        env = {name: value for name, value in os.environ.items() if not name.startswith("RUNNER_CACHE_")}
        env.update(
            PREFECT_API_URL=PREFECT_API_URL.value(),
            RUNNER_CACHE_STORE__BACKEND="external",
            RUNNER_CACHE_STORE__ENDPOINT=proxy_endpoint,
            RUNNER_CACHE_STORE__ACCESS_KEY=store.access_key.get_secret_value(),
            RUNNER_CACHE_STORE__SECRET_KEY=store.secret_key.get_secret_value(),
            RUNNER_CACHE_STORE__BUCKET=store.bucket,
        )
        processes.append(
            subprocess.Popen(
                [str(BIN / "runner-cache"), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    spans = []
    for process in processes:
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, f"{process.args} exited {process.returncode}:\n{err[-3000:]}\n{out[-2000:]}"
        spans.append(_locked_span(_flow_run_id(err)))
    return spans


PRUNE = ["prune", "--json", "--max-age-days", "1e-6"]
SETUP = ["setup", "--json"]


@pytest.fixture
def slow_store(seaweed_server: StoreSettings) -> Iterator[tuple[StoreSettings, StoreSettings, str]]:
    """Two fresh buckets with a cache object each, and the endpoint of a proxy that slows requests to them."""
    first, second = (seaweed_server.model_copy(update={"bucket": f"lock-{uuid4().hex[:10]}"}) for _ in range(2))
    for store in (first, second):
        seed(store, ["runner/abcdef123/project/1/main-protected"])
    with fault_proxy(seaweed_server) as proxy:
        proxy.rule = _slow
        yield first, second, proxy.endpoint


def test_two_real_prunes_of_one_bucket_never_overlap(slow_store) -> None:
    store, _, endpoint = slow_store
    spans = _run_real([(PRUNE, store), (PRUNE, store)], endpoint)
    assert not _overlap(spans), f"prunes of one bucket overlapped: {spans}"


def test_real_prune_and_setup_on_one_bucket_never_overlap(slow_store) -> None:
    store, _, endpoint = slow_store
    spans = _run_real([(SETUP, store), (PRUNE, store)], endpoint)
    assert not _overlap(spans), f"setup and prune of one bucket overlapped: {spans}"


def test_real_runs_on_different_buckets_run_side_by_side(slow_store) -> None:
    """The control: the same runs on two buckets do overlap, so the two tests above can fail."""
    first, second, endpoint = slow_store
    spans = _run_real([(SETUP, first), (PRUNE, second)], endpoint)
    assert _overlap(spans), f"runs on different buckets did not overlap: {spans}"


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
