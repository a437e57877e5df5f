"""The Prefect event resources runner-cache acts on: flows and automations on the same bucket or release share them."""

from __future__ import annotations

from runner_cache.blocks.release import ReleaseSettings
from runner_cache.blocks.store import StoreSettings


def bucket_resource(store: StoreSettings) -> dict[str, str]:
    """The event resource for a bucket: flows acting on the same bucket share it."""
    return {
        "prefect.resource.id": f"runner-cache.bucket.{store.bucket}",
        "prefect.resource.name": store.bucket,
        "endpoint": store.endpoint,
    }


def release_resource(release: ReleaseSettings) -> dict[str, str]:
    """The event resource for a Helm release: the upgrade event and the automation that verifies after it share it."""
    return {
        "prefect.resource.id": f"runner-cache.release.{release.namespace}.{release.release}",
        "prefect.resource.name": release.release,
    }
