"""Transient errors are retried with backoff; bad credentials and bad settings are not."""

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from pydantic import SecretStr

from runner_cache.blocks.store import StoreSettings
from runner_cache.tasks.store import ensure_store_task
from tests.support.servers import free_port

pytestmark = pytest.mark.usefixtures("prefect_api")


def _attempts(store: StoreSettings) -> int:
    """Run the real provisioning task (retry delays shortened) in a flow; how often the task ran."""

    @flow
    def provision_once() -> None:
        ensure_store_task.with_options(retry_delay_seconds=0)(store)

    state = provision_once(return_state=True)
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    return runs[0].run_count


def test_unreachable_store_is_retried() -> None:
    store = StoreSettings(
        backend="external",
        endpoint=f"http://127.0.0.1:{free_port()}",
        access_key=SecretStr("abc"),
        secret_key=SecretStr("abcdefgh"),
    )
    assert _attempts(store) == 4


def test_wrong_credentials_are_not_retried(seaweed_server: StoreSettings) -> None:
    wrong = seaweed_server.model_copy(update={"secret_key": SecretStr("wrong-secret-value")})
    assert _attempts(wrong) == 1
