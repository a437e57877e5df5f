"""The policy documents the store identities get, from bucket, Path and Shared (pure)."""

import pytest

from runner_cache.tasks.store.policy import grant, identity_name, policy_document, same_policy


@pytest.mark.parametrize(
    ("path", "shared", "prefix"),
    [
        ("", False, "runner/"),
        ("", True, "project/"),
        ("ci/cache", False, "ci/cache/runner/"),
        ("ci", True, "ci/project/"),
    ],
)
def test_runner_gets_get_and_put_under_its_one_layout_prefix_only(path: str, shared: bool, prefix: str) -> None:
    document = policy_document(grant("runner", "cache", path, shared))
    assert document["Statement"] == [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": [f"arn:aws:s3:::cache/{prefix}*"]}
    ]
    actions = {action for statement in document["Statement"] for action in statement["Action"]}
    assert not actions & {"s3:DeleteObject", "s3:ListBucket", "s3:*", "s3:PutBucketPolicy"}


def test_prune_lists_under_path_and_deletes_in_both_layouts() -> None:
    document = policy_document(grant("prune", "cache", "ci", False))
    listing, objects = document["Statement"]
    assert listing == {
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": ["arn:aws:s3:::cache"],
        "Condition": {"StringLike": {"s3:prefix": ["ci/", "ci/*"]}},
    }
    assert objects == {
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:DeleteObject"],
        "Resource": ["arn:aws:s3:::cache/ci/runner/*", "arn:aws:s3:::cache/ci/project/*"],
    }


def test_prune_without_path_lists_the_whole_bucket() -> None:
    listing = policy_document(grant("prune", "cache", "", True))["Statement"][0]
    assert "Condition" not in listing and listing["Resource"] == ["arn:aws:s3:::cache"]


def test_minio_dialect_denies_minting_keys() -> None:
    statements = policy_document(grant("runner", "cache", "", False), "minio")["Statement"]
    assert statements[-1] == {
        "Effect": "Deny",
        "Action": ["admin:CreateServiceAccount", "admin:UpdateServiceAccount"],
        "Resource": ["arn:aws:s3:::*"],
    }
    assert statements[0]["Effect"] == "Allow"


def test_same_policy_ignores_formatting_but_not_grants() -> None:
    wanted = policy_document(grant("runner", "cache", "", False))
    stored = {
        "Version": "2012-10-17",
        "Statement": [
            {"Resource": "arn:aws:s3:::cache/runner/*", "Action": ["s3:PutObject", "s3:GetObject"], "Effect": "Allow"}
        ],
    }
    assert same_policy(stored, wanted)
    assert not same_policy(policy_document(grant("runner", "other", "", False)), wanted)
    assert not same_policy(policy_document(grant("runner", "cache", "", True)), wanted)
    assert not same_policy(None, wanted)


def test_descriptions_say_what_is_refused() -> None:
    assert "no delete" in grant("runner", "cache", "", False).describe()
    assert "cache/ci/runner/…" in grant("prune", "cache", "ci", False).describe()
    assert identity_name("prune", "cache") == "rc-prune-cache"
    long = identity_name("runner", "b" * 63)
    assert len(long) == 64 and long.startswith("rc-runner-bbb") and long != identity_name("runner", "b" * 62 + "c")
