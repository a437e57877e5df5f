"""The pure verdict rules, on traces worded like a real gitlab-runner's (including what the fake cannot produce:
an https store reached over http, an untrusted certificate, an unreachable store, a cleared cache index)."""

from __future__ import annotations

import pytest
import yaml

from runner_cache.blocks.gitlab import GitLabSettings
from runner_cache.blocks.settings import load_settings
from runner_cache.errors import ConfigError
from runner_cache.redaction import redact
from runner_cache.tasks.verify.diagnosis import (
    JobEvidence,
    ObjectCheck,
    PipelineEvidence,
    StoreView,
    diagnose,
    excerpt,
    runner_identity,
)
from runner_cache.tasks.verify.pipeline import verification_ci

NONCE = "0123456789abcdef01234567"
KEY = "runner-cache-verify-abcd1234"
STORE = StoreView(endpoint="https://minio.example.com", bucket="runner")
URL = "https://minio.example.com/runner/runner/t3AbCdEfG/project/42/" + KEY + "-non_protected"


def header(name: str = "k8s-runner", token: str = "t3AbCdEfG", host: str = "runner-a") -> list[str]:
    return [
        "Running with gitlab-runner 18.5.0 (bda84871)",
        f"  on {name} {token}, system ID: s_0123456789ab",
        f"Running on {host} via gitlab-runner-abc...",
    ]


def build_trace(*transfer: str, key: str = KEY + "-non_protected", **who: str) -> str:
    host = who.get("host", "runner-a")
    lines = header(**who) + [
        '$ echo "runner-cache-verify nonce=$RC_VERIFY_NONCE build-host=$HOSTNAME" | tee vendor/hello.txt',
        f"runner-cache-verify nonce={NONCE} build-host={host}",
        "Saving cache for successful job",
        f"Creating cache {key}...",
        "vendor/: found 2 matching artifact files and directories",
        *(transfer or (f"Uploading cache.zip to {URL}", "Created cache")),
        "Job succeeded",
    ]
    return "\n".join(lines) + "\n"


def job_trace(
    *restore: str, key: str = KEY + "-non_protected", ok: bool = True, build_host: str = "runner-a", **who: str
) -> str:
    host = who.get("host", "runner-b")
    who = {"host": host, **{k: v for k, v in who.items() if k != "host"}}
    output = [
        f"runner-cache-verify nonce={NONCE} build-host={build_host}",
        f"runner-cache-verify test-host={host}",
        "Job succeeded",
    ]
    failure = [
        "cat: can't open 'vendor/hello.txt': No such file or directory",
        "ERROR: Job failed: command terminated with exit code 1",
    ]
    lines = header(**who) + [
        "Restoring cache",
        f"Checking cache for {key}...",
        *(restore or (f'Downloading cache from {URL}  ETag="abc"', "Successfully extracted cache")),
        "$ cat vendor/hello.txt",
        *(output if ok else failure),
    ]
    return "\n".join(lines) + "\n"


def evidence(build: str, test: str | None, *, test_status: str | None = None, **extra: object) -> PipelineEvidence:
    jobs = [JobEvidence(id=1, name="build", status="success", runner="k8s-runner", trace=build)]
    if test is not None:
        status = test_status or ("success" if "Job succeeded" in test else "failed")
        jobs.append(JobEvidence(id=2, name="test", status=status, runner="k8s-runner", trace=test))
    data = {
        "project": "qa/verify",
        "project_id": 42,
        "cache_key": KEY,
        "nonce": NONCE,
        "tags": ["k8s"],
        "timeout_seconds": 60.0,
        "jobs": jobs,
        "status": "success",
    }
    return PipelineEvidence(**{**data, **extra})


FOUND = ObjectCheck(
    expected="runner/t3AbCdEfG/project/42/" + KEY + "-non_protected", bucket="runner", found=True, size=200
)


def test_pass_needs_every_piece_of_evidence() -> None:
    verdict = diagnose(evidence(build_trace(), job_trace()), STORE, FOUND)
    assert verdict.passed and verdict.proven_across_pods and verdict.warnings == [] and verdict.diagnosis == []
    assert verdict.facts["build_short_token"] == "t3AbCdEfG" and verdict.facts["build_runner"] == "k8s-runner"
    assert (verdict.facts["build_host"], verdict.facts["test_host"]) == ("runner-a", "runner-b")


def test_same_hostname_passes_with_warning() -> None:
    verdict = diagnose(evidence(build_trace(), job_trace(host="runner-a")), STORE, FOUND)
    assert verdict.passed and not verdict.proven_across_pods
    assert verdict.warnings == ["not proven across pods: both jobs ran on 'runner-a'"]


def test_the_nonce_must_come_from_this_run() -> None:
    stale = job_trace().replace(f"nonce={NONCE}", "nonce=ffffffffffffffffffffffff")
    verdict = diagnose(evidence(build_trace(), stale), STORE, FOUND)
    assert not verdict.passed and "does not hold this run's nonce" in verdict.diagnosis[0]


def test_a_local_copy_is_not_proof() -> None:
    local = job_trace(
        "No URL provided, cache will not be downloaded from shared cache server. Instead a local version of cache will be extracted.",
        "Successfully extracted cache",
    )
    verdict = diagnose(evidence(build_trace(), local), STORE, FOUND)
    assert (
        not verdict.passed
        and "has no S3 credentials" in verdict.diagnosis[0]
        and "the test job" in verdict.diagnosis[0]
    )


def test_missing_object_needs_a_check() -> None:
    verdict = diagnose(evidence(build_trace(), job_trace()), STORE, None)
    assert not verdict.passed and "could not be checked" in verdict.diagnosis[0]


@pytest.mark.parametrize(
    ("build", "test", "phrases"),
    [
        (  # http runner against an https store: TLS server answers plain HTTP with 400
            build_trace(
                f"Uploading cache.zip to {URL.replace('https', 'http')}",
                "WARNING: Retrying...  error=received: 400 Bad Request. Client sent an HTTP request to an HTTPS server.",
                "FATAL: received: 400 Bad Request",
                "Failed to create cache",
            ),
            job_trace(ok=False),
            ["speaks http to a store that answers https", "it must be false here"],
        ),
        (
            build_trace(
                f'FATAL: Put "{URL}?X-Amz-Credential=AKIA": tls: failed to verify certificate: x509: certificate signed by unknown authority',
                "Failed to create cache",
            ),
            job_trace(ok=False),
            ["does not trust the store's TLS certificate"],
        ),
        (
            build_trace(
                f'FATAL: Put "{URL}": dial tcp: lookup minio.example.com: no such host', "Failed to create cache"
            ),
            job_trace(ok=False),
            ["cannot reach the store (no such host)"],
        ),
        (
            build_trace(),
            job_trace(
                "WARNING: file does not exist", "Failed to extract cache", key=KEY + "-4-non_protected", ok=False
            ),
            ["cache index changed between the jobs", "cleared the runner caches"],
        ),
        (
            build_trace(),
            job_trace("WARNING: file does not exist", "Failed to extract cache", ok=False),
            ["runners differ in bucket, Path or store", "minio.example.com/runner/runner/t3AbCdEfG/project/42/"],
        ),
        (
            build_trace().replace("Job succeeded", "ERROR: Job failed: command terminated with exit code 2"),
            None,
            [
                "The build job failed before it could save the cache (ERROR: Job failed: command terminated with exit code 2)"
            ],
        ),
    ],
    ids=[
        "http-to-https",
        "untrusted-certificate",
        "unreachable",
        "index-changed",
        "other-bucket-or-path",
        "build-failed",
    ],
)
def test_failures_are_explained(build: str, test: str | None, phrases: list[str]) -> None:
    record = evidence(build, test)
    if "exit code 2" in build:
        record.jobs[0].status = "failed"
    verdict = diagnose(record, STORE, None)
    assert not verdict.passed
    text = " ".join(verdict.diagnosis)
    for phrase in phrases:
        assert phrase in text, (phrase, text)


def test_pending_job_with_runner_and_unfinished_pipeline() -> None:
    stuck = evidence(build_trace(), None, timed_out=True, status="running")
    stuck.jobs[0].status = "pending"
    assert diagnose(stuck, STORE, None).diagnosis == [
        "The build job was still pending after 60 s; the pipeline was cancelled."
    ]
    nothing = evidence(build_trace(), None, timed_out=True, status="created", jobs=[])
    assert "did not finish within 60 s (status created)" in diagnose(nothing, STORE, None).diagnosis[0]


def test_untagged_jobs_are_named_as_such() -> None:
    stuck = evidence("", None, timed_out=True, tags=[], status="pending")
    stuck.jobs[0].status, stuck.jobs[0].runner = "pending", None
    assert "No online runner with the tags [no tags (untagged jobs)]" in diagnose(stuck, STORE, None).diagnosis[0]


def test_cleanup_problems_are_warnings() -> None:
    verdict = diagnose(evidence(build_trace(), job_trace(), cleanup_errors=["could not delete branch x"]), STORE, FOUND)
    assert verdict.passed and verdict.warnings == ["cleanup: could not delete branch x"]


def test_runner_identity_reads_names_with_spaces_and_old_traces() -> None:
    assert runner_identity("Running with gitlab-runner 18.5.0 (x)\n  on my k8s runner t3AbCdEfG, system ID: s_1\n") == (
        "my k8s runner",
        "t3AbCdEfG",
    )
    assert runner_identity("Running with gitlab-runner 13.2.1 (efa30e33)\n  on docker-runner N1Bf5i3f\n") == (
        "docker-runner",
        "N1Bf5i3f",
    )
    assert runner_identity("no header here\n") is None


def test_redact_removes_presigned_queries_and_secrets() -> None:
    text = f'FATAL: Put "{URL}?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIAEXAMPLE%2F2025&X-Amz-Signature=deadbeef": boom token glpat-abc'
    masked = redact(text, ["glpat-abc", "", "x"])
    assert "AKIAEXAMPLE" not in masked and "deadbeef" not in masked and "glpat-abc" not in masked
    assert f'"{URL}?***"' in masked and masked.endswith("token ***")


def test_excerpt_keeps_the_cache_lines_only() -> None:
    lines = excerpt(build_trace()).splitlines()
    assert (
        lines[0].startswith("Running with gitlab-runner")
        and "Created cache" in lines
        and "Saving cache for successful job" not in lines
    )
    long = excerpt("\n".join(f"WARNING: {n}" for n in range(100)), limit=10).splitlines()
    assert len(long) == 11 and long[5] == "…"


# --------------------------------------------------------------------------------------------------- CI file + settings


def test_generated_ci_file() -> None:
    document = yaml.safe_load(verification_ci(KEY, NONCE, ["k8s", "cache"], "busybox:1.37"))
    assert document["stages"] == ["build", "test"]
    build, test = document["build"], document["test"]
    assert build["cache"] == {"key": KEY, "paths": ["vendor/"], "policy": "push"}
    assert test["cache"] == {"key": KEY, "paths": ["vendor/"], "policy": "pull"} and test["needs"] == ["build"]
    assert build["tags"] == test["tags"] == ["k8s", "cache"] and build["image"] == test["image"] == "busybox:1.37"
    assert build["variables"] == {"RC_VERIFY_NONCE": NONCE} and "variables" not in test
    assert NONCE not in " ".join(test["script"]) and "$HOSTNAME" in " ".join(build["script"] + test["script"])
    assert "tags" not in yaml.safe_load(verification_ci(KEY, NONCE, [], "busybox"))["build"]


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_GITLAB__URL", "https://gitlab.example.com/")
    monkeypatch.setenv("RUNNER_CACHE_GITLAB__TOKEN", "glpat-secret-value")
    monkeypatch.setenv("RUNNER_CACHE_GITLAB__PROJECT", "/qa/verify/")
    monkeypatch.setenv("RUNNER_CACHE_GITLAB__RUNNER_TAGS", "k8s, cache")
    gitlab = load_settings().gitlab
    assert (gitlab.url, gitlab.project, gitlab.runner_tags, gitlab.configured) == (
        "https://gitlab.example.com",
        "qa/verify",
        ["k8s", "cache"],
        True,
    )
    monkeypatch.setenv("RUNNER_CACHE_GITLAB__RUNNER_TAGS", '["k8s", "big cache"]')
    assert load_settings().gitlab.runner_tags == ["k8s", "big cache"]
    assert "glpat-secret-value" not in repr(load_settings().gitlab)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("URL", "gitlab.internal", "must be a URL with scheme and host"),
        ("URL", "https://user:pw@gitlab.example.com", "must not carry a query, fragment or credentials"),
        ("PROJECT", "qa//verify", "must be a numeric id or a path like group/project"),
        ("RUNNER_TAGS", '["k8s-x"', "is not a JSON list"),
        ("RUNNER_TAGS", '["a,b"]', "each tag must be 1-255 characters without commas"),
        ("IMAGE", "busybox latest", "must be one image reference without spaces"),
        ("TIMEOUT_SECONDS", "0", "greater than 0"),
        ("POLL_SECONDS", "-1", "greater than 0"),
        ("BRANCH_PREFIX", "Verify/Branch", "must be 1-60 characters"),
    ],
)
def test_bad_settings_are_named_without_their_value(
    field: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"RUNNER_CACHE_GITLAB__{field}", value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert f"RUNNER_CACHE_GITLAB__{field}: " in str(error.value) and message in str(error.value)
    if len(value) > 3:
        assert value not in str(error.value)


def test_unconfigured_gitlab_is_refused_by_the_pipeline_runner() -> None:
    from runner_cache.tasks.verify.pipeline import run_verification_pipeline

    with pytest.raises(ValueError, match="GitLab is not configured"):
        run_verification_pipeline(GitLabSettings(url="https://gitlab.example.com"))
