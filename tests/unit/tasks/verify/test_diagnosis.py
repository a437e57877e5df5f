"""The diagnosis on golden traces (traces/README.md says where every line comes from): a healthy runner passes in
the 17.x, 18.x and 19.x formats with timestamps on and off, and each broken setup yields its true cause."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner_cache.tasks.verify.diagnosis import (
    BUILD_JOB,
    TEST_JOB,
    JobEvidence,
    JobInfo,
    ObjectCheck,
    PipelineEvidence,
    StoreView,
    classify,
    diagnose,
    diagnose_pipeline,
    object_from_url,
    runner_identity,
)
from runner_cache.tasks.verify.trace import normalize

TRACES = Path(__file__).parent / "traces"
NONCE = "9f1c2e3d4b5a69788796a5b4"  # what the golden build job wrote
KEY = "runner-cache-verify-1a2b3c4d-non_protected"
STORE = StoreView(endpoint="https://minio.example.com:9000", bucket="runner")


def raw(name: str) -> str:
    return (TRACES / name).read_bytes().decode()


def run(build: str, test: str, **options: object):
    return diagnose(normalize(raw(build)), normalize(raw(test)), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["v17.0.0", "v18.4.0", "v19.3.0"])
@pytest.mark.parametrize("stamps", ["plain", "ts"])
def test_a_healthy_runner_passes_in_every_format(version: str, stamps: str) -> None:
    verdict = run(f"{version}-{stamps}-ok-build.log", f"{version}-{stamps}-ok-test.log", nonce=NONCE)
    assert verdict.passed and verdict.cause == "ok", verdict.message
    assert f"Checking cache for {KEY}..." in verdict.evidence and "Successfully extracted cache" in verdict.evidence
    assert any(
        line.startswith("Downloading cache from https://minio.example.com:9000/runner/runner/t3_Hk9xQ/")
        for line in verdict.evidence
    )
    assert verdict.facts["build"]["created_key"] == verdict.facts["test"]["checked_key"] == KEY
    assert verdict.facts["build"]["runner_version"] == version[1:]
    # one runner manager ran both jobs: a pass, but a partial proof, said plainly
    assert not verdict.proven_across_managers
    assert any(
        "partial proof: one runner manager (system ID r_Uq5tW3pLx8Zc) ran both jobs" in w for w in verdict.warnings
    )


def test_two_runner_managers_prove_it_across_managers() -> None:
    verdict = run("v19.3.0-ts-ok-build.log", "v19.3.0-ts-ok-other-manager-test.log", nonce=NONCE)
    assert verdict.passed and verdict.proven_across_managers and verdict.warnings == []
    assert (verdict.facts["build"]["system_id"], verdict.facts["test"]["system_id"]) == (
        "r_Uq5tW3pLx8Zc",
        "r_Zk2mN7qW4eRt",
    )


def test_two_registrations_with_shared_true_pass() -> None:
    verdict = run("v19.3.0-ts-shared-build.log", "v19.3.0-ts-shared-other-runner-test.log")
    assert verdict.passed and verdict.proven_across_managers
    assert (verdict.facts["build"]["short_token"], verdict.facts["test"]["short_token"]) == ("t3_Hk9xQ", "t3_Pq7rZ")


@pytest.mark.parametrize("hashed", ["v18.4.0-plain-hashed", "v19.3.0-ts-hashed"])
def test_hashed_keys_pass_and_the_flag_is_read(hashed: str) -> None:
    verdict = run(f"{hashed}-build.log", f"{hashed}-test.log")
    assert verdict.passed
    assert verdict.facts["build"]["feature_flags"]["FF_HASH_CACHE_KEYS"] is True
    url = verdict.facts["build"]["upload_url"]
    name = object_from_url(url, "runner")
    assert name is not None and name.startswith("runner/t3_Hk9xQ/project/42/") and KEY not in name
    if hashed.startswith("v19"):  # sharded from 19.0: <first two hex digits>/<hash>
        shard, digest = name.rsplit("/", 2)[-2:]
        assert digest.startswith(shard) and len(digest) == 64


FAILURES = [
    # build trace, test trace, cause, a line of the evidence
    ("v19.3.0-ts-no_url-build.log", "v19.3.0-ts-no_url-test.log", "no_cache_config",
     "No URL provided, cache will not be uploaded to shared cache server. Cache will be stored only locally."),
    ("v19.3.0-ts-ok-build.log", "v19.3.0-ts-no_url-test.log", "no_cache_config",
     "No URL provided, cache will not be downloaded from shared cache server. Instead a local version of cache will be extracted."),
    ("v19.3.0-ts-no_such_bucket-build.log", "v19.3.0-ts-missing-test.log", "no_such_bucket",
     "FATAL: received: 404 Not Found. Request failed with code: NoSuchBucket, message: The specified bucket does not exist"),
    ("v19.3.0-ts-access_denied-build.log", "v19.3.0-ts-missing-test.log", "access_denied",
     "FATAL: received: 403 Forbidden. Request failed with code: AccessDenied, message: Access Denied."),
    ("v19.3.0-ts-invalid_access_key-build.log", "v19.3.0-ts-missing-test.log", "access_denied",
     "FATAL: received: 403 Forbidden. Request failed with code: InvalidAccessKeyId, message: The Access Key Id you provided does not exist in our records."),
    ("v17.0.0-plain-access_denied-build.log", "v17.0.0-plain-missing-test.log", "access_denied",
     "FATAL: received: 403 Forbidden"),
    ("v19.3.0-ts-signature_mismatch-build.log", "v19.3.0-ts-missing-test.log", "signature_mismatch",
     "FATAL: received: 403 Forbidden. Request failed with code: SignatureDoesNotMatch, message: The request signature we calculated does not match the signature you provided. Check your key and signing method."),
    ("v18.4.0-plain-signature_mismatch-build.log", "v17.0.0-plain-missing-test.log", "signature_mismatch",
     "FATAL: received: 403 Forbidden. Request failed with code: SignatureDoesNotMatch, message: The request signature we calculated does not match the signature you provided. Check your key and signing method."),
    ("v19.3.0-ts-wrong_region-build.log", "v19.3.0-ts-missing-test.log", "wrong_region",
     "FATAL: received: 400 Bad Request. Request failed with code: AuthorizationQueryParametersError, message: Error parsing the X-Amz-Credential parameter; the region 'us-east-1' is wrong; expecting 'eu-central-1'"),
    ("v19.3.0-ts-http_to_https-build.log", "v19.3.0-ts-missing-test.log", "http_to_https", "FATAL: received: 400 Bad Request"),
    ("v19.3.0-ts-https_to_http-build.log", "v19.3.0-ts-missing-test.log", "https_to_http",
     "http: server gave HTTP response to HTTPS client"),
    ("v19.3.0-ts-x509-build.log", "v19.3.0-ts-missing-test.log", "tls_untrusted",
     "x509: certificate signed by unknown authority"),
    ("v19.3.0-ts-refused-build.log", "v19.3.0-ts-missing-test.log", "store_unreachable", "connect: connection refused"),
    ("v19.3.0-ts-server_error-build.log", "v19.3.0-ts-missing-test.log", "store_unreachable",
     "FATAL: received: 503 Service Unavailable. Request failed with code: SlowDown, message: Please reduce your request rate."),
    ("v19.3.0-ts-ok-build.log", "v19.3.0-ts-access_denied-test.log", "access_denied",
     "WARNING: received: 403 Forbidden. Request failed with code: AccessDenied, message: Access Denied."),
    ("v19.3.0-ts-ok-build.log", "v19.3.0-ts-refused-test.log", "store_unreachable", "connect: connection refused"),
    ("v19.3.0-ts-ok-build.log", "v19.3.0-ts-other-runner-missing-test.log", "different_runners_not_shared",
     "Uploading cache.zip to https://minio.example.com:9000/runner/runner/t3_Hk9xQ/project/42/runner-cache-verify-1a2b3c4d-non_protected"),
    ("v19.3.0-ts-ok-build.log", "v19.3.0-ts-protected-key-test.log", "key_mismatch",
     "Checking cache for runner-cache-verify-1a2b3c4d-protected..."),
    ("v19.3.0-ts-ok-build.log", "v19.3.0-ts-missing-test.log", "object_missing", "WARNING: file does not exist"),
    ("v19.3.0-ts-image_pull-build.log", "v19.3.0-ts-missing-test.log", "job_failed_before_cache",
     'image pull failed: Back-off pulling image "busybox:1.37.0"'),
    ("v19.3.0-ts-script_fail-build.log", "v19.3.0-ts-missing-test.log", "job_failed_before_cache",
     "ERROR: Job failed: command terminated with exit code 1"),
    # 17.x: Sprintln leaves the message's newline before the colour reset (common/build.go@v17.0.0:889)
    ("v17.0.0-ts-image_pull-build.log", "v17.0.0-plain-missing-test.log", "job_failed_before_cache",
     'image pull failed: Back-off pulling image "busybox:1.37.0"'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "test", "cause", "line"), FAILURES, ids=[f"{c}:{b[:7]}:{t[8:-4]}" for b, t, c, _ in FAILURES]
)
def test_each_failure_yields_its_true_cause(build: str, test: str, cause: str, line: str) -> None:
    verdict = run(build, test, nonce=NONCE)
    assert not verdict.passed and verdict.cause == cause, verdict.message
    assert any(line in evidence for evidence in verdict.evidence), verdict.evidence
    assert verdict.fix and verdict.message


def test_messages_name_runners_keys_and_where_the_job_failed() -> None:
    shared = run("v19.3.0-ts-ok-build.log", "v19.3.0-ts-other-runner-missing-test.log")
    assert "token t3_Hk9xQ, system ID r_Uq5tW3pLx8Zc" in shared.message and "runner/t3_Pq7rZ/" in shared.message
    assert "Shared = true" in shared.fix
    keys = run("v19.3.0-ts-ok-build.log", "v19.3.0-ts-protected-key-test.log")
    assert f"saved the cache as {KEY!r}" in keys.message and "protected-branch suffixes" in keys.message
    pulled = run("v19.3.0-ts-image_pull-build.log", "v19.3.0-ts-missing-test.log")
    assert "while starting its pod" in pulled.message and "not to blame" in pulled.message
    no_url = run("v19.3.0-ts-no_url-build.log", "v19.3.0-ts-no_url-test.log")
    for cause in ("Could not create cache adapter", "error while generating S3 pre-signed URL", "IAM", "secretName"):
        assert cause in no_url.fix


def test_an_x509_error_outside_the_cache_sections_is_not_the_stores() -> None:
    """An image pull that fails on an untrusted registry certificate is a failure before the cache."""
    build = raw("v19.3.0-ts-image_pull-build.log").replace(
        "Back-off pulling image", "x509: certificate signed by unknown authority"
    )
    verdict = diagnose(normalize(build), normalize(raw("v19.3.0-ts-missing-test.log")))
    assert verdict.cause == "job_failed_before_cache"


def test_a_stale_cache_without_this_runs_nonce_fails() -> None:
    verdict = run("v19.3.0-ts-ok-build.log", "v19.3.0-ts-ok-test.log", nonce="another-run")
    assert verdict.cause == "stale_cache" and not verdict.passed


def test_gitlab_failure_reason_names_a_job_that_never_started() -> None:
    verdict = diagnose(
        normalize(""),
        normalize(""),
        build_job=JobInfo(name=BUILD_JOB, status="failed", failure_reason="stuck_or_timeout_failure"),
    )
    assert verdict.cause == "job_failed_before_cache" and "stuck_or_timeout_failure" in verdict.message


def test_runner_identity_reads_header_flags_and_manager() -> None:
    identity = runner_identity(normalize(raw("v19.3.0-ts-hashed-build.log")))
    assert (identity.version, identity.name, identity.short_token, identity.system_id) == (
        "19.3.0", "gitlab-runner", "t3_Hk9xQ", "r_Uq5tW3pLx8Zc",
    )  # fmt: skip
    assert identity.feature_flags == {"FF_HASH_CACHE_KEYS": True}
    assert identity.manager == "gitlab-runner-6d8f9b7c5-k2x9p" and identity.pod.startswith(
        "runner-t3-hk9xq-project-42-"
    )
    assert runner_identity(normalize(raw("v17.0.0-ts-ok-build.log"))).feature_flags == {"FF_TIMESTAMPS": True}


@pytest.mark.parametrize(
    ("line", "uploading", "cause"),
    [
        ("FATAL: received: 400 Bad Request. Request failed with code: AuthorizationHeaderMalformed, message: the region 'us-east-1' is wrong", True, "wrong_region"),
        ("FATAL: received: 301 Moved Permanently. Request failed with code: PermanentRedirect, message: use the endpoint", True, "wrong_region"),
        ("FATAL: received: 403 Forbidden. Request failed with code: RequestTimeTooSkewed, message: too skewed", True, "clock_skew"),
        ("FATAL: received: 400 Bad Request. Request failed with code: AuthorizationQueryParametersError, message: X-Amz-Expires must be less than a week", True, "signature_mismatch"),
        ('FATAL: Put "https://s3.internal/runner/x": dial tcp: lookup s3.internal on 10.0.0.10:53: no such host', True, "store_unreachable"),
        ('WARNING: Get "https://s3.internal/runner/x": context deadline exceeded (Client.Timeout exceeded while awaiting headers)', False, "store_unreachable"),
        ("FATAL: received: 404 Not Found", True, "no_such_bucket"),
        ("WARNING: file does not exist", False, None),
        ("WARNING: Cache file does not exist", False, None),
    ],
)  # fmt: skip
def test_classify_error_lines(line: str, uploading: bool, cause: str | None) -> None:
    assert classify(line, uploading=uploading) == cause


def test_object_from_url_in_both_addressing_styles() -> None:
    assert object_from_url("https://s3.example.com/runner/project/42/k-protected", "runner") == "project/42/k-protected"
    assert (
        object_from_url("https://runner.s3.eu-central-1.amazonaws.com/runner/t/project/1/k", "runner")
        == "runner/t/project/1/k"
    )
    assert object_from_url("https://s3.example.com/other/project/42/k", "runner") is None


# --------------------------------------------------------------------------------------------------- pipeline


def evidence(
    build: str | None = "v19.3.0-ts-ok-build.log", test: str | None = "v19.3.0-ts-ok-test.log", **fields: object
) -> PipelineEvidence:
    jobs = []
    if build:
        jobs.append(JobEvidence(id=1, name=BUILD_JOB, status="success", system_id="r_Uq5tW3pLx8Zc", trace=raw(build)))
    if test:
        jobs.append(JobEvidence(id=2, name=TEST_JOB, status="success", system_id="r_Zk2mN7qW4eRt", trace=raw(test)))
    values: dict = {"project": "qa/verify", "project_id": 42, "cache_key": "runner-cache-verify-1a2b3c4d", "nonce": NONCE,
                    "tags": ["k8s"], "timeout_seconds": 60, "jobs": jobs}  # fmt: skip
    return PipelineEvidence(**{**values, **fields})


def test_pipeline_passes_with_the_object_found_and_reports_what_stays() -> None:
    check = ObjectCheck(expected=f"runner/t3_Hk9xQ/project/42/{KEY}", bucket="runner", found=True, size=180)
    verdict = diagnose_pipeline(
        evidence(kept_pipelines=[7, 8], cleanup_errors=["GitLab: could not delete branch"]), STORE, check
    )
    assert verdict.passed and verdict.proven_across_managers  # the API's runner_manager.system_id differs
    assert "pipelines 7, 8 stay in the project: deleting pipelines needs the Owner role" in verdict.warnings
    assert "cleanup: GitLab: could not delete branch" in verdict.warnings


def test_pipeline_object_elsewhere_or_missing_fails() -> None:
    elsewhere = ObjectCheck(expected=f"runner/t3_Hk9xQ/project/42/{KEY}", bucket="runner", found=False,
                            elsewhere=[f"ci/runner/t3_Hk9xQ/project/42/{KEY}"])  # fmt: skip
    assert diagnose_pipeline(evidence(), STORE, elsewhere).cause == "layout_mismatch"
    missing = ObjectCheck(expected=f"runner/t3_Hk9xQ/project/42/{KEY}", bucket="runner", found=False, searched=12)
    verdict = diagnose_pipeline(evidence(), STORE, missing)
    assert verdict.cause == "object_not_in_bucket" and "(searched 12 objects)" in verdict.message
    assert verdict.evidence and verdict.evidence[0].startswith("Uploading cache.zip to ")


def test_pipeline_refusals_timeouts_and_missing_jobs() -> None:
    refused = diagnose_pipeline(
        evidence(None, None, setup_error="GitLab: project 'qa/verify' has an empty repository"), STORE, None
    )
    assert refused.cause == "gitlab_refused" and "empty repository" in refused.message
    pending = evidence(
        None,
        None,
        timed_out=True,
        runner_notes=["runner 3 (k8s) is protected: it runs jobs of protected branches only"],
    )
    pending.jobs = [
        JobEvidence(id=1, name=BUILD_JOB, status="pending"),
        JobEvidence(id=2, name=TEST_JOB, status="created"),
    ]
    verdict = diagnose_pipeline(pending, STORE, None)
    assert (
        verdict.cause == "jobs_pending"
        and "No runner took the runner-cache-verify-build job within 60 s" in verdict.message
    )
    assert "is protected" in verdict.message
    running = evidence(None, None, timed_out=True)
    running.jobs = [JobEvidence(id=1, name=BUILD_JOB, status="running", trace=raw("v19.3.0-ts-script_fail-build.log"))]
    assert diagnose_pipeline(running, STORE, None).cause == "job_timed_out"
    assert diagnose_pipeline(evidence(None, None), STORE, None).cause == "jobs_missing"
    skipped = evidence("v19.3.0-ts-image_pull-build.log", None)
    skipped.jobs[0].status, skipped.jobs[0].failure_reason = "failed", "runner_system_failure"
    verdict = diagnose_pipeline(skipped, STORE, None)
    assert verdict.cause == "job_failed_before_cache" and "runner_system_failure" in verdict.message


def test_an_instance_runner_is_pointed_out() -> None:
    found = evidence()
    found.jobs[0].runner_type, found.jobs[0].runner = "instance_type", "2-green.saas-linux-small-amd64"
    verdict = diagnose_pipeline(found, STORE, None)
    assert any("ran on an instance runner (2-green.saas-linux-small-amd64)" in w for w in verdict.warnings)
