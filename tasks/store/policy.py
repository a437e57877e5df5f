"""Least-privilege policy documents for the store identities, built from the bucket and the runner's layout.

PURE: no prefect, minio or network. Two roles besides the store's admin (root) key:

- ``runner``: what GitLab Runner does with the cache (gitlab-runner@v19.3.0 ``cache/s3/adapter.go``,
  ``cache/s3v2/adapter.go``: presigned GET, HEAD and PUT of one object) — ``s3:GetObject`` (covers HEAD) and
  ``s3:PutObject`` under the layout prefix its ``Shared`` setting selects, and nothing else.
- ``prune``: what prune and verify do — list under ``Path``, get and delete under both layout prefixes.

SeaweedFS authorises an identity with attached policies by the policy alone (``evaluateIAMPolicies`` in
seaweedfs ``weed/s3api/auth_credentials.go``), which tells s3:DeleteObject from s3:PutObject; its legacy
``Write`` action would include delete. MinIO lets every user create access keys for itself unless a policy
explicitly denies it (minio/minio#13657), hence the extra Deny statement in the MinIO dialect.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from runner_cache.tasks.keys.layout import layout_prefix

Role = Literal["runner", "prune"]
Dialect = Literal["aws", "minio"]
ROLES: tuple[Role, ...] = ("runner", "prune")

RUNNER_ACTIONS = ("s3:GetObject", "s3:PutObject")
PRUNE_OBJECT_ACTIONS = ("s3:GetObject", "s3:DeleteObject")
# MinIO only: a user may mint its own access keys unless this is denied explicitly.
MINIO_SELF_SERVICE_DENY = ("admin:CreateServiceAccount", "admin:UpdateServiceAccount")


@dataclass(frozen=True)
class Grant:
    """What one role may do, in words and as the resources a policy names."""

    role: Role
    bucket: str
    object_prefixes: tuple[str, ...]
    list_prefix: str | None  # None: no listing at all; "": the whole bucket

    def describe(self) -> str:
        where = " and ".join(f"{self.bucket}/{prefix}…" for prefix in self.object_prefixes)
        if self.role == "runner":
            return f"get and put objects under {where}; no delete, no listing, no other bucket, no policy changes"
        listed = f"{self.bucket}/{self.list_prefix}…" if self.list_prefix else f"all of {self.bucket}"
        return f"list {listed}; get and delete objects under {where}; no put, no other bucket, no policy changes"


def identity_name(role: Role, bucket: str) -> str:
    """The user (IAM API) or canned policy (MinIO) of ``role`` for ``bucket``: one per bucket, so setups of two
    buckets on one store never rewrite each other's policy or revoke each other's keys. IAM user names are at
    most 64 characters."""
    name = f"rc-{role}-{bucket}"
    if len(name) <= 64:
        return name
    return f"{name[:55]}-{hashlib.sha256(bucket.encode()).hexdigest()[:8]}"


def grant(role: Role, bucket: str, path: str, shared: bool) -> Grant:
    """The grant of ``role`` for a runner configured with ``Path``/``Shared`` writing to ``bucket``."""
    if role == "runner":
        return Grant(role, bucket, (layout_prefix(path, shared),), None)
    both = tuple(dict.fromkeys((layout_prefix(path, False), layout_prefix(path, True))))
    return Grant(role, bucket, both, f"{path}/" if path else "")


def policy_document(role_grant: Grant, dialect: Dialect = "aws") -> dict[str, Any]:
    """The IAM policy document for ``role_grant``; ``dialect="minio"`` adds MinIO's self-service deny."""
    actions = RUNNER_ACTIONS if role_grant.role == "runner" else PRUNE_OBJECT_ACTIONS
    objects = [f"arn:aws:s3:::{role_grant.bucket}/{prefix}*" for prefix in role_grant.object_prefixes]
    statements: list[dict[str, Any]] = []
    if role_grant.list_prefix is not None:
        listing: dict[str, Any] = {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{role_grant.bucket}"],
        }
        if role_grant.list_prefix:
            listing["Condition"] = {"StringLike": {"s3:prefix": [role_grant.list_prefix, f"{role_grant.list_prefix}*"]}}
        statements.append(listing)
    statements.append({"Effect": "Allow", "Action": list(actions), "Resource": objects})
    if dialect == "minio":
        statements.append({"Effect": "Deny", "Action": list(MINIO_SELF_SERVICE_DENY), "Resource": ["arn:aws:s3:::*"]})
    return {"Version": "2012-10-17", "Statement": statements}


def _normalise(value: Any) -> Any:
    """Order-insensitive form of a policy: stores reorder keys, and turn one-item lists into strings."""
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in sorted(value.items()) if key not in {"Sid"}}
    if isinstance(value, list):
        items = [_normalise(item) for item in value]
        return items[0] if len(items) == 1 else sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return value


def same_policy(live: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """True when the store's copy of a policy grants what ``wanted`` grants (formatting aside)."""
    return live is not None and _normalise(live.get("Statement")) == _normalise(wanted.get("Statement"))


def policy_json(document: dict[str, Any]) -> str:
    """Compact JSON as sent to a store, and as printed for people applying it by hand."""
    return json.dumps(document, separators=(",", ":"), sort_keys=False)
