"""In a real browser: Debian's headless Chromium, driven by Playwright, starts a deployment from the Prefect UI.

No browser is downloaded: Playwright is pointed at ``/usr/bin/chromium`` (``scripts/get-chromium.sh``). The
classic UI (``/deployments``) is used; requests to anything but the loopback server are refused, so the UI's
analytics calls cannot leave the machine. The screenshot lands in ``artifacts/ui/`` (CI keeps it).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client

from tests.e2e.conftest import CHART, REPO, Cluster, PrefectServer, Served

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "artifacts" / "ui"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
RUN_URL = re.compile(r"/runs/flow-run/([0-9a-f-]{36})")
CHART_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/get-chromium.sh` (Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, prefect_server: PrefectServer) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    loopback = re.compile(rf"^http://127\.0\.0\.1:{prefect_server.port}/")
    context.route(lambda url: not loopback.match(url), lambda route: route.abort())
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def _fill_nullable(page, title: str, value: str) -> None:
    """Type into a ``str | None`` field of the classic UI's form: its textarea appears once "str" is chosen."""
    field = page.locator("div.schema-form-property").filter(has=page.get_by_text(title, exact=True)).last
    field.get_by_role("button", name="str", exact=True).click()
    field.locator("textarea").fill(value)


def test_rebuild_started_from_the_deployment_page_completes(
    page, prefect_server: PrefectServer, served: Served, cluster: Cluster
) -> None:
    """The user's path after a runner upgrade: deployment page → Run → Custom run → chart version and image tag."""
    from playwright.sync_api import expect

    tag = f"alpine-v18.6.{uuid.uuid4().int % 1000}"
    revisions_before = len(cluster.revisions())
    with prefect_server.client_settings(), get_client(sync_client=True) as client:
        verify = client.read_deployment_by_name("verify-runner-cache/on-demand")
    verify_runs_before = {run.id for run in prefect_server.runs_of(verify.id)}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(f"{prefect_server.ui_url}/deployments")
        page.get_by_role("row", name=re.compile(r"after-upgrade rebuild-runner")).get_by_role(
            "link", name="after-upgrade"
        ).click()
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run").click()
        _fill_nullable(page, "Chart Version (Optional)", CHART_VERSION)
        _fill_nullable(page, "Runner Image Tag (Optional)", tag)
        page.get_by_role("button", name="Submit").click()
        page.get_by_role("button", name="View run").last.click()  # the toast is rendered twice

        expect(page).to_have_url(RUN_URL)
        run_id = RUN_URL.search(page.url).group(1)
        badge = page.locator(".page-heading .state-badge")
        expect(badge).to_have_text(re.compile("Completed|Failed|Crashed"), timeout=120_000)
        page.get_by_text("Parameters", exact=True).click()
        expect(page.get_by_text(tag).first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "rebuild-custom-run.png"), full_page=True)
        expect(badge).to_have_text("Completed")
    except Exception:
        page.screenshot(path=str(SCREENSHOTS / "rebuild-custom-run-failure.png"), full_page=True)
        raise

    # the form's values reached helm: one new revision of the chart version asked for, with the image tag typed
    revisions = cluster.revisions()
    assert len(revisions) == revisions_before + 1
    assert (revisions[-1]["version"], revisions[-1]["values"]["image"]["tag"], revisions[-1]["status"]) == (
        CHART_VERSION,
        tag,
        "deployed",
    )
    history = prefect_server.run("runner-cache", "history", "--flow", "rebuild-runner", "--json")
    mine = next(run for run in json.loads(history.stdout)["runs"] if run["id"] == run_id)
    assert mine["state"] == "Completed" and mine["summary"] == "Changes made."
    assert mine["parameters"]["parameters"]["runner_image_tag"] == tag
    assert any(change.startswith("release: ") for change in mine["changes"])
    # the upgrade emitted runner-cache.release.upgraded: the automation verified the cache once more
    triggered = prefect_server.wait_for_new_final_run(verify.id, verify_runs_before)
    assert triggered.state.name == "Completed"
