"""The automation that verifies the cache after every runner upgrade: ``runner-cache.release.upgraded`` → verify.

It cannot trigger itself: it reacts to exactly one event name, which only a release upgrade emits (the verify
flow emits ``runner-cache.verify.*``), and only for the one release this configuration manages.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.tasks.events import release_resource

UPGRADED_EVENT = "runner-cache.release.upgraded"


def automation_name(release: ReleaseSettings) -> str:
    return f"runner-cache: verify after upgrade of {release.namespace}/{release.release}"


def verify_after_upgrade(release: ReleaseSettings, verify_deployment_id: UUID) -> AutomationCore:
    """What the automation should be: one upgrade event of this release → one run of the verify deployment."""
    return AutomationCore(
        name=automation_name(release),
        description=f"Runs verify-runner-cache/on-demand when {UPGRADED_EVENT} is emitted for this release. "
        "Managed by `runner-cache serve`; edits are put back on its next start.",
        enabled=True,
        trigger=EventTrigger(
            expect={UPGRADED_EVENT},
            match={"prefect.resource.id": release_resource(release)["prefect.resource.id"]},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[RunDeployment(source="selected", deployment_id=verify_deployment_id)],
    )


def _spec(automation: AutomationCore) -> dict:
    return automation.model_dump(mode="json", include={"name", "description", "enabled", "trigger", "actions"})


def ensure_automation(wanted: AutomationCore) -> tuple[Literal["created", "updated", "unchanged"], UUID]:
    """Create the automation, or put the existing one of that name back to ``wanted`` (and drop duplicates)."""
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(wanted.name)
        for duplicate in found[1:]:
            client.delete_automation(duplicate.id)
        if not found:
            return "created", client.create_automation(wanted)
        current = found[0]
        if _spec(current) == _spec(wanted) and len(found) == 1:
            return "unchanged", current.id
        client.update_automation(current.id, wanted)
        return "updated", current.id
