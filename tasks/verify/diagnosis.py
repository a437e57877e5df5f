"""Why two jobs did or did not share the runner cache, named from what the runner itself wrote.

Pure logic, no I/O. The inputs are two job logs normalised by :mod:`runner_cache.tasks.verify.trace` (what a
user downloads from GitLab, or what the verification pipeline left), optionally what GitLab's API said about the
jobs, the verification's nonce, and what the bucket held. Cache facts are read only inside the runner's
``restore_cache`` / ``archive_cache`` sections, so an image-pull x509 error or a git failure elsewhere is never
blamed on the store.

Every line matched here is gitlab-runner's own wording; where each comes from (``file@tag`` in the runner's
repository, ``gitlabhq/gitlab-runner`` on GitHub):

- header ``Running with gitlab-runner <v> (<rev>)``, ``  on <name> <short token>, system ID: <id>``,
  ``  feature flags: FF_X:true, …`` — ``common/build.go@v17.0.0:1557`` ``printRunningWithHeader``;
- ``Running on <pod> via <manager>...`` — ``shells/bash.go@v17.0.0:416``;
- ``Checking cache for <key>...``, ``Successfully extracted cache``, ``Failed to extract cache``,
  ``Creating cache <key>...``, ``Created cache``, ``Failed to create cache`` — ``shells/abstract.go@v17.0.0:192,886``
  (``@v19.3.0:352,1640``);
- ``Uploading cache.zip to <url>``, ``Downloading cache from <url>``, ``No URL provided, cache will not be …``,
  ``Cache archive size (N) is too big …`` — ``commands/helpers/cache_archiver.go`` / ``cache_extractor.go``
  (``@v17.0.0:81,94,159,244,250``);
- ``received: <status>[. Request failed with code: <S3 code>, message: <text>]`` — ``commands/helpers/retry_helper.go``
  (the S3 code from v18.0.0; only 5xx and transport errors are retried, a 4xx fails at once);
- ``ERROR: Job failed: <reason>`` — ``common/build.go@v17.0.0:889`` ``setTraceStatus``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from runner_cache.tasks.verify.trace import Trace, TraceLine, normalize

# The verification pipeline's job names (unusual, so jobs a pipeline policy injects cannot be mistaken for them).
BUILD_JOB = "runner-cache-verify-build"
TEST_JOB = "runner-cache-verify-test"

CACHE_SECTIONS = ("restore_cache",)
SAVE_SECTIONS = ("archive_cache", "archive_cache_on_failure")

# Lines the verification jobs print; the test job can print the build job's nonce only from the restored cache.
NONCE_LINE = re.compile(r"^runner-cache-verify nonce=(?P<nonce>\S+) build-host=(?P<host>\S*)$")

_RUNNING_WITH = re.compile(r"^Running with gitlab-runner (?P<version>\S+) \((?P<revision>[0-9a-f]+)\)")
_ON = re.compile(r"^  on (?P<name>.*?) ?(?P<token>[^\s,]+)(?:, system ID: (?P<system_id>[sr]_[0-9A-Za-z]{12}))?$")
_FLAGS = re.compile(r"^  feature flags: (?P<flags>.+)$")
_RUNNING_ON = re.compile(r"^Running on (?P<pod>\S+)(?: via (?P<manager>\S+?))?\.\.\.$")
_CHECKING = re.compile(r"^Checking cache for (?P<key>.+?)\.\.\.$")
_CREATING = re.compile(r"^Creating cache (?P<key>.+?)\.\.\.$")
_UPLOADING = re.compile(r"^Uploading cache\.\S* to (?P<url>\S+)")
_DOWNLOADING = re.compile(r"^Downloading cache from (?P<url>\S+)")
_UP_TO_DATE = re.compile(r"^cache\.\S+ is up to date")
_NO_URL = "No URL provided, cache will not be"
_TOO_BIG = re.compile(r"^Cache archive size \(\d+\) is too big")
_NOTHING = re.compile(r"^(?:WARNING: )?(?:No files to cache\.|.+: no matching files)")
_RECEIVED = re.compile(
    r"received: (?P<status>\d{3})(?: [^.]*)?(?:\. Request failed with code: (?P<code>\w+))?", re.IGNORECASE
)
_JOB_FAILED = re.compile(r"^ERROR: Job failed(?: \(system failure\))?: ")
_FATAL = ("FATAL: ", "WARNING: ")

# S3 error codes (AWS "Error responses", MinIO/SeaweedFS use the same) → cause.
_S3_CODES = {
    "NoSuchBucket": "no_such_bucket",
    "AccessDenied": "access_denied",
    "InvalidAccessKeyId": "access_denied",
    "AllAccessDisabled": "access_denied",
    "ExpiredToken": "access_denied",
    "InvalidToken": "access_denied",
    "SignatureDoesNotMatch": "signature_mismatch",
    "AuthorizationHeaderMalformed": "wrong_region",
    "InvalidRegion": "wrong_region",
    "PermanentRedirect": "wrong_region",
    "IllegalLocationConstraintException": "wrong_region",
    "RequestTimeTooSkewed": "clock_skew",
    "EntityTooLarge": "archive_too_big",
    "InternalError": "store_unreachable",
    "ServiceUnavailable": "store_unreachable",
    "SlowDown": "store_unreachable",
}
# Go's net/http and crypto/tls wording for transport errors (the runner prints err.Error()).
_UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "Client.Timeout exceeded", "network is unreachable",
                "connection reset by peer", "no route to host", "context deadline exceeded", "EOF")  # fmt: skip
_HTTPS_TO_HTTP = "server gave HTTP response to HTTPS client"
_TLS = ("x509: ", "tls: ")

# What to do, per cause. The message says what happened; the fix says what to change.
FIXES: dict[str, str] = {
    "ok": "",
    "no_cache_config": (
        "The runner got no cache URL, so it kept the cache on its own disk. Look in the runner manager's log "
        "(kubectl logs deploy/<release>) around the job: no [runners.cache] section (or no Type) prints nothing; "
        "'Could not create cache adapter' means an unknown Type or a missing [runners.cache.s3] section; 'error "
        "while generating S3 pre-signed URL' usually means the credentials are missing — with an empty AccessKey or "
        "SecretKey the runner silently switches to IAM authentication. Check that runners.cache.secretName names a "
        "Secret in the runner's namespace with the keys accesskey and secretkey, then re-run setup."
    ),
    "no_such_bucket": "Create the bucket (runner-cache setup does) or make BucketName match RUNNER_CACHE_STORE__BUCKET.",
    "access_denied": (
        "Check the access key in the runner's cache Secret and the bucket policy: the user needs s3:GetObject and "
        "s3:PutObject on the bucket's objects."
    ),
    "signature_mismatch": "The secret key in the runner's cache Secret does not belong to its access key: fix the Secret.",
    "wrong_region": (
        "Set BucketLocation (RUNNER_CACHE_STORE__REGION) to the bucket's real region: presigned URLs are signed "
        "for one region."
    ),
    "http_to_https": (
        "The runner speaks plain HTTP (Insecure = true) to a store that only answers HTTPS: set Insecure = false "
        "(an https:// endpoint in RUNNER_CACHE_STORE__ENDPOINT) and re-run setup."
    ),
    "https_to_http": (
        "The runner speaks HTTPS (Insecure = false) to a store that answers plain HTTP: set Insecure = true "
        "(an http:// endpoint in RUNNER_CACHE_STORE__ENDPOINT) and re-run setup."
    ),
    "tls_untrusted": (
        "The runner does not trust the store's certificate: give it the CA (certsSecretName in the chart values) "
        "or use a certificate from a public CA."
    ),
    "store_unreachable": (
        "Check ServerAddress, DNS and network policies between the job pods and the store, and that the store is up."
    ),
    "clock_skew": "Fix the clock of the runner's nodes (NTP): the store refuses signatures more than 15 minutes off.",
    "archive_too_big": "Raise MaxUploadedArchiveSize (or the store's object size limit), or cache less.",
    "nothing_to_cache": "The job's cache paths matched no files: check cache:paths against what the script writes.",
    "upload_failed": "Read the runner's error line quoted below; the runner could not store the archive.",
    "different_runners_not_shared": (
        "Set Shared = true on every runner that should share the cache (RUNNER_CACHE_CACHE__SHARED=true, then "
        "re-run setup), or route both jobs to one runner with tags."
    ),
    "stores_differ": (
        "Give every runner manager the same ServerAddress, BucketName and Path (re-run setup for each release)."
    ),
    "object_missing": (
        "Something removed the object between the jobs (a lifecycle rule, a prune run, another bucket): run the "
        "verification again and check lifecycle rules on the bucket."
    ),
    "key_mismatch": "Give both jobs the same cache:key (and the same protected/unprotected branch state).",
    "job_failed_before_cache": "Fix the job failure quoted below; the cache store is not involved yet.",
    "test_job_failed": "The test job restored the cache but failed afterwards: read its error line.",
    "no_upload": "The build job saved no cache: give it a cache: section with policy push or pull-push.",
    "no_download": "The test job restored no cache: give it a cache: section with policy pull or pull-push.",
    "stale_cache": "Run the verification again; if it repeats, the key is being written by another pipeline.",
    "local_cache_only": "The test job read a copy on its own node: run it on another node or runner manager.",
    "incomplete_trace": "Download the complete raw log (the trace was cut or the job had not finished).",
    # the verification pipeline only
    "gitlab_refused": "Fix what GitLab refused, as quoted; no verification job ran.",
    "jobs_pending": (
        "Register, unpause or enable for this project a runner with exactly these tags (a protected runner only "
        "takes protected branches), or set RUNNER_CACHE_GITLAB__RUNNER_TAGS to your runner's tags."
    ),
    "job_timed_out": "Look at the job in GitLab: it was still running when the verification gave up.",
    "jobs_missing": (
        "GitLab did not create the verification jobs: a compliance framework, pipeline execution policy or "
        "workflow:rules replaced or filtered them. Use a project without such rules for verification."
    ),
    "object_not_in_bucket": (
        "Make the runner's ServerAddress and BucketName match RUNNER_CACHE_STORE__ENDPOINT and "
        "RUNNER_CACHE_STORE__BUCKET (re-run setup)."
    ),
    "layout_mismatch": (
        "The runner's Path or Shared setting differs from RUNNER_CACHE_CACHE__PATH / __SHARED, so pruning and the "
        "lifecycle rule miss its objects: re-run setup so the runner gets runner-cache's settings."
    ),
}


@dataclass(frozen=True)
class RunnerIdentity:
    """Who ran a job: the registration (name, short token) and the runner manager (system ID, its pod)."""

    version: str | None = None
    name: str | None = None
    short_token: str | None = None
    system_id: str | None = None
    manager: str | None = None
    pod: str | None = None
    feature_flags: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class JobInfo:
    """What GitLab's jobs API says about a job (all optional: ``runner-cache diagnose`` only has the logs)."""

    name: str = ""
    status: str | None = None
    failure_reason: str | None = None
    system_id: str | None = None  # runner_manager.system_id: the same runner manager as the trace's "system ID"


@dataclass
class JobFacts:
    """The cache facts of one trace, read only inside its cache sections."""

    identity: RunnerIdentity
    created_keys: list[str] = field(default_factory=list)
    checked_keys: list[str] = field(default_factory=list)
    upload_urls: list[str] = field(default_factory=list)
    download_urls: list[str] = field(default_factory=list)
    lines: dict[str, TraceLine] = field(default_factory=dict)  # the first check, the last of each other kind
    uploaded: bool = False
    extracted: bool = False
    up_to_date: bool = False
    no_url: TraceLine | None = None
    too_big: TraceLine | None = None
    nothing: TraceLine | None = None
    errors: list[TraceLine] = field(default_factory=list)
    failed: TraceLine | None = None
    succeeded: bool = False
    saved: bool = False  # an archive_cache section ran
    restored: bool = False  # a restore_cache section ran


class Diagnosis(BaseModel):
    """The verdict on two jobs: ``passed``, the ``cause`` code, a ``message`` with the fix, and the trace lines."""

    passed: bool
    cause: str
    message: str
    fix: str = ""
    evidence: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    proven_across_managers: bool = False
    facts: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- reading


def runner_identity(trace: Trace) -> RunnerIdentity:
    """The header lines of a trace (the first ones, outside any section) and the ``Running on`` line."""
    values: dict[str, Any] = {}
    flags: dict[str, bool] = {}
    for line in trace.lines:
        text = line.text
        if match := _RUNNING_WITH.match(text):
            values["version"] = match.group("version")
        elif (match := _ON.match(text)) and "version" in values and "short_token" not in values:
            values.update(
                name=match.group("name") or None, short_token=match.group("token"), system_id=match.group("system_id")
            )
        elif match := _FLAGS.match(text):
            for item in match.group("flags").split(","):
                name, _, value = item.strip().partition(":")
                flags[name] = value.strip().lower() == "true"
        elif match := _RUNNING_ON.match(text):
            values.update(pod=match.group("pod"), manager=match.group("manager"))
            break
    return RunnerIdentity(**values, feature_flags=flags)


def read_job(trace: Trace) -> JobFacts:
    """What one job did with the cache, and how it ended."""
    facts = JobFacts(identity=runner_identity(trace), saved=any(trace.has_section(s) for s in SAVE_SECTIONS),
                     restored=any(trace.has_section(s) for s in CACHE_SECTIONS))  # fmt: skip
    for line in trace.section(*CACHE_SECTIONS, *SAVE_SECTIONS):
        text = line.text
        restoring = line.inside(*CACHE_SECTIONS)
        if match := _CHECKING.match(text):
            facts.checked_keys.append(match.group("key"))
            facts.lines.setdefault("checking", line)
        elif match := _CREATING.match(text):
            facts.created_keys.append(match.group("key"))
            facts.lines["creating"] = line
        elif match := _UPLOADING.match(text):
            facts.upload_urls.append(match.group("url"))
            facts.lines["uploading"] = line
        elif match := _DOWNLOADING.match(text):
            facts.download_urls.append(match.group("url"))
            facts.lines["downloading"] = line
        elif text == "Successfully extracted cache":
            facts.extracted = True
            facts.lines["extracted"] = line
        elif text == "Created cache":
            facts.lines["created"] = line
            facts.uploaded = bool(facts.upload_urls) and not any(e.inside(*SAVE_SECTIONS) for e in facts.errors)
        elif _UP_TO_DATE.match(text) and restoring:
            facts.up_to_date = True
        elif text.startswith(_NO_URL):
            facts.no_url = facts.no_url or line
        elif _TOO_BIG.match(text):
            facts.too_big = line
        elif _NOTHING.match(text):
            facts.nothing = line
        elif text.startswith(_FATAL) and not text.startswith("WARNING: Retrying"):
            facts.errors.append(line)
    for line in trace.lines:
        if _JOB_FAILED.match(line.text):
            facts.failed = line
        elif line.text == "Job succeeded":
            facts.succeeded = True
    return facts


def classify(line: str, *, uploading: bool) -> str | None:
    """The cause a runner error line names: S3 code first, then HTTP status, then Go's transport error."""
    if match := _RECEIVED.search(line):
        code, status = match.group("code"), int(match.group("status"))
        if code == "AuthorizationQueryParametersError":
            return "wrong_region" if "region" in line else "signature_mismatch"
        if code in _S3_CODES:
            return _S3_CODES[code]
        if status >= 500:
            return "store_unreachable"
        if status == 400 and not code:
            return "http_to_https"  # Go's HTTPS server answers plain HTTP with a 400 and a text body
        if status == 403:
            return "access_denied"  # runners before 18.0 print no S3 code: keys or policy
        if status == 404 and uploading:
            return "no_such_bucket"  # a PUT only 404s when the bucket is missing
        if status == 301:
            return "wrong_region"
        return "upload_failed" if uploading else None
    if _HTTPS_TO_HTTP in line:
        return "https_to_http"
    if any(marker in line for marker in _TLS):
        return "tls_untrusted"
    if any(marker in line for marker in _UNREACHABLE):
        return "store_unreachable"
    return None


def object_from_url(url: str, bucket: str) -> str | None:
    """The object name in an ``Uploading cache.zip to`` URL: path style ``/<bucket>/<name>`` or virtual-host style."""
    parts = urlsplit(url)
    path = parts.path.lstrip("/")
    if (parts.hostname or "").startswith(bucket + "."):
        return path or None
    head, _, rest = path.partition("/")
    return rest if head == bucket and rest else None


def _namespace_token(url: str | None) -> str | None:
    """The ``runner/<short token>/`` segment of an object URL: present exactly when ``Shared = false``."""
    if not url:
        return None
    match = re.search(r"/runner/([^/]+)/project/\d+/", urlsplit(url).path)
    return match.group(1) if match else None


# --------------------------------------------------------------------------------------------------- verdict


_STAGES = {
    "prepare_executor": "while preparing the executor",
    "prepare_script": "while starting its pod (image pull, scheduling, helper image)",
    "get_sources": "while fetching the Git repository",
    "download_artifacts": "while downloading artifacts",
    "step_script": "in its script",
    "resolve_secrets": "while resolving secrets",
}


def _failed_before_cache(who: str, trace: Trace, facts: JobFacts, info: JobInfo | None) -> Diagnosis:
    stage = next((name for name in reversed(trace.sections) if name in _STAGES), None)
    where = _STAGES.get(stage or "", "before its cache step")
    reason = f" (GitLab: failure_reason {info.failure_reason})" if info and info.failure_reason else ""
    evidence = [facts.failed.text] if facts.failed else []
    image = [line.text for line in trace.lines if "image pull failed" in line.text or "ErrImagePull" in line.text]
    message = f"The {who} job failed {where}, before any cache step{reason}; the cache store is not to blame."
    return _verdict("job_failed_before_cache", message, evidence + [t for t in image if t not in evidence][:1])


def _quote(facts: JobFacts, *kinds: str) -> list[str]:
    """The job's own lines of these kinds (``uploading``, ``checking``…), for evidence."""
    return [facts.lines[kind].text for kind in kinds if kind in facts.lines]


def _verdict(cause: str, message: str, evidence: list[str], **extra: Any) -> Diagnosis:
    return Diagnosis(
        passed=cause == "ok", cause=cause, message=message, fix=FIXES.get(cause, ""), evidence=evidence, **extra
    )


def _transfer(who: str, facts: JobFacts, *, uploading: bool, url: str | None) -> Diagnosis | None:
    """A named store error in one job's cache section, quoting the runner's line."""
    for line in facts.errors:
        cause = classify(line.text, uploading=uploading)
        if cause is None:
            continue
        where = f" ({_plain_url(url)})" if url else ""
        verb = "upload its cache to" if uploading else "download the cache from"
        what = {
            "no_such_bucket": "the bucket does not exist",
            "access_denied": "the store refused the credentials or a policy denied the request",
            "signature_mismatch": "the store computed another signature: the secret key is wrong",
            "wrong_region": "the request was signed for another region than the bucket's",
            "http_to_https": "the store answered a plain-HTTP request with 400: it only speaks HTTPS",
            "https_to_http": "the store answered an HTTPS request in plain HTTP",
            "tls_untrusted": "the store's TLS certificate is not trusted by the job's pod",
            "store_unreachable": "the store could not be reached (after the runner's retries)",
            "clock_skew": "the request time was too far from the store's clock",
            "archive_too_big": "the store refused the archive's size",
            "upload_failed": "the store refused the upload",
        }[cause]
        message = f"The {who} job could not {verb} the store{where}: {what}. The runner said: {line.text!r}."
        return _verdict(cause, message, [line.text])
    return None


def _plain_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def diagnose(
    build_trace: Trace,
    test_trace: Trace,
    *,
    build_job: JobInfo | None = None,
    test_job: JobInfo | None = None,
    nonce: str | None = None,
) -> Diagnosis:
    """Did the test job restore what the build job saved, through the shared store? If not, the first true cause.

    ``nonce`` (the verification pipeline's) must then appear in the test job's output; without it (a user's own
    logs) the cache steps alone decide.
    """
    build, test = read_job(build_trace), read_job(test_trace)
    verdict = _diagnose(build_trace, test_trace, build, test, build_job, test_job, nonce)
    verdict.facts = _facts(build, test, build_job, test_job) | verdict.facts
    return verdict


def _diagnose(
    build_trace: Trace, test_trace: Trace, build: JobFacts, test: JobFacts,
    build_job: JobInfo | None, test_job: JobInfo | None, nonce: str | None,
) -> Diagnosis:  # fmt: skip
    build_failed = build.failed is not None or (build_job is not None and build_job.status == "failed")
    if not build.saved:
        if build_failed:
            return _failed_before_cache("build", build_trace, build, build_job)
        if not build.succeeded and not build_trace.lines:
            return _verdict("incomplete_trace", "The build job's log is empty.", [])
        if not build.succeeded:
            return _verdict(
                "incomplete_trace", "The build job's log ends before its cache step.", [build_trace.lines[-1].text]
            )
        return _verdict("no_upload", "The build job succeeded without a cache step (no archive_cache section).", [])
    if build.no_url:
        message = (
            'The build job\'s runner has no usable cache configuration: it said "No URL provided" and kept the '
            "cache on its own disk, so no other pod can restore it."
        )
        return _verdict("no_cache_config", message, [build.no_url.text])
    if (found := _transfer("build", build, uploading=True, url=(build.upload_urls or [None])[-1])) is not None:
        return found
    if build.too_big:
        return _verdict(
            "archive_too_big",
            "The build job's archive exceeded MaxUploadedArchiveSize and stayed local.",
            [build.too_big.text],
        )
    if not build.uploaded:
        if build.nothing:
            return _verdict("nothing_to_cache", "The build job's cache paths matched no files.", [build.nothing.text])
        evidence = [line.text for line in build.errors] or [
            line.text for line in build_trace.section(*SAVE_SECTIONS) if line.text == "Failed to create cache"
        ]
        return _verdict("upload_failed", "The build job did not upload its cache.", evidence[:3])

    if not test.restored:
        if test.failed is not None or (test_job is not None and test_job.status == "failed"):
            return _failed_before_cache("test", test_trace, test, test_job)
        if not test.succeeded:
            if test_job is not None and test_job.status in {"skipped", "canceled", "manual", "created"}:
                return _verdict("incomplete_trace", f"The test job did not run (status {test_job.status}).", [])
            return _verdict("incomplete_trace", "The test job's log ends before its cache step.", [])
        return _verdict(
            "no_download", "The test job succeeded without restoring a cache (no restore_cache section).", []
        )
    if test.no_url:
        message = (
            "The build job uploaded its cache, but the test job's runner has no usable cache configuration (\"No URL "
            'provided"): the two jobs ran on runner managers configured differently.'
        )
        return _verdict("no_cache_config", message, [test.no_url.text, *_quote(build, "uploading")])
    if (found := _transfer("test", test, uploading=False, url=None)) is not None:
        return found
    if not test.extracted:
        return _not_restored(build, test)

    # Restored. From the store, with this run's content?
    warnings = []
    if not test.download_urls:
        if test.up_to_date:
            warnings.append("the test job found its local copy up to date and did not download the archive")
        else:
            return _verdict(
                "local_cache_only",
                "The test job extracted a cache without downloading it from the store: it read a copy local to its "
                "node or runner manager, which proves nothing about the shared store.",
                _quote(test, "checking", "extracted"),
            )
    if nonce is not None and not any(
        (m := NONCE_LINE.match(line.text)) and m.group("nonce") == nonce for line in test_trace.section("step_script")
    ):
        return _verdict(
            "stale_cache",
            "The test job restored a cache that does not hold this run's nonce (an older archive under the same key).",
            _quote(test, "checking", "downloading"),
        )
    if test.failed is not None or (test_job is not None and test_job.status == "failed"):
        return _verdict(
            "test_job_failed",
            "The test job restored the cache, then failed.",
            [test.failed.text] if test.failed else [],
        )
    b, t = build.identity, test.identity
    build_manager = (build_job.system_id if build_job else None) or b.system_id
    test_manager = (test_job.system_id if test_job else None) or t.system_id
    across = bool(build_manager and test_manager and build_manager != test_manager)
    if build_manager and build_manager == test_manager:
        warnings.append(
            f"partial proof: one runner manager (system ID {build_manager}) ran both jobs, so this does not show that "
            "other managers or registrations reach the same objects (Shared = false with several registrations "
            "would still fail for them); run it again with more managers online, or check each runner"
        )
    if b.pod and b.pod == t.pod:
        warnings.append(f"both jobs ran in the same pod ({b.pod}): the archive may have come from its disk")
    key = test.checked_keys[0] if test.checked_keys else "?"
    message = f"The test job restored the build job's cache {key!r} from the store"
    message += f" ({_plain_url(test.download_urls[-1])})." if test.download_urls else "."
    evidence = _quote(build, "uploading", "created") + _quote(test, "checking", "downloading", "extracted")
    return _verdict("ok", message, evidence, warnings=warnings, proven_across_managers=across)


def _not_restored(build: JobFacts, test: JobFacts) -> Diagnosis:
    """The build job uploaded, the test job found nothing: different keys, runners or stores."""
    written, wanted = (build.created_keys or [None])[-1], (test.checked_keys or [None])[0]
    missing = [line.text for line in test.errors][:1] or ["Failed to extract cache"]
    if written and wanted and written not in test.checked_keys:
        hint = ""
        if written.rsplit("-", 1)[0] == wanted.rsplit("-", 1)[0] and {
            written.rsplit("-", 1)[-1],
            wanted.rsplit("-", 1)[-1],
        } == {"protected", "non_protected"}:
            hint = (" GitLab appended different protected-branch suffixes: one job ran for a protected ref, or "
                    "'Use separate caches for protected branches' changed between them.")  # fmt: skip
        message = f"The build job saved the cache as {written!r} but the test job looked for {wanted!r}.{hint}"
        return _verdict("key_mismatch", message, [*_quote(build, "creating"), *_quote(test, "checking"), *missing])
    b, t = build.identity, test.identity
    url = (build.upload_urls or [None])[-1]
    namespace = _namespace_token(url)
    if b.short_token and t.short_token and b.short_token != t.short_token:
        if namespace is not None:
            message = (
                f"Not shared across runners: the build job ran on runner {b.name!r} (token {b.short_token}, system ID "
                f"{b.system_id}) and wrote under runner/{namespace}/; the test job ran on {t.name!r} (token "
                f"{t.short_token}, system ID {t.system_id}), which with Shared = false reads only under "
                f"runner/{t.short_token}/."
            )
            return _verdict("different_runners_not_shared", message, [*_quote(build, "uploading"), *missing])
        message = (
            f"The jobs ran on different runners ({b.short_token} and {t.short_token}) that both write shared objects, "
            "yet the test job's runner found nothing: they use different stores, buckets or Path settings."
        )
        return _verdict("stores_differ", message, [*_quote(build, "uploading"), *missing])
    if b.system_id and t.system_id and b.system_id != t.system_id:
        message = (
            f"The same registration ran both jobs on two runner managers (system IDs {b.system_id} and {t.system_id}); "
            "the test job's manager found nothing where the build job's manager wrote: their cache settings differ."
        )
        return _verdict("stores_differ", message, [*_quote(build, "uploading"), *missing])
    message = (
        f"The build job uploaded {_plain_url(url) if url else 'its cache'}, but the test job found no object there."
    )
    return _verdict("object_missing", message, [*_quote(build, "uploading"), *missing])


def _facts(build: JobFacts, test: JobFacts, build_job: JobInfo | None, test_job: JobInfo | None) -> dict[str, Any]:
    def one(facts: JobFacts, info: JobInfo | None) -> dict[str, Any]:
        identity = facts.identity
        return {
            "runner": identity.name, "short_token": identity.short_token,
            "system_id": (info.system_id if info and info.system_id else identity.system_id),
            "runner_version": identity.version, "manager": identity.manager, "pod": identity.pod,
            "feature_flags": identity.feature_flags, "status": info.status if info else None,
            "failure_reason": info.failure_reason if info else None,
            "created_key": (facts.created_keys or [None])[-1], "checked_key": (facts.checked_keys or [None])[0],
            "upload_url": (facts.upload_urls or [None])[-1], "download_url": (facts.download_urls or [None])[-1],
            "uploaded": facts.uploaded, "extracted": facts.extracted,
        }  # fmt: skip

    return {"build": one(build, build_job), "test": one(test, test_job)}


# --------------------------------------------------------------------------------------------------- the pipeline


class JobEvidence(BaseModel):
    """One verification job as GitLab's jobs API reports it, with its raw trace (token redacted)."""

    id: int
    name: str
    status: str
    failure_reason: str | None = None
    runner: str | None = None
    runner_type: str | None = None
    system_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    started_at: str | None = None
    finished_at: str | None = None
    web_url: str | None = None
    trace: str = ""

    def info(self) -> JobInfo:
        return JobInfo(self.name, self.status, self.failure_reason, self.system_id)


class PipelineEvidence(BaseModel):
    """What the verification run left behind: its jobs and traces, how long it waited, what was cleaned up."""

    project: str
    project_id: int | None = None
    branch: str | None = None
    ci_path: str | None = None
    cache_key: str
    nonce: str
    tags: list[str] = Field(default_factory=list)
    timeout_seconds: float
    pipeline_id: int | None = None
    pipeline_url: str | None = None
    status: str | None = None
    jobs: list[JobEvidence] = Field(default_factory=list)
    waited_seconds: float = 0.0
    timed_out: bool = False
    cancelled: bool = False
    branch_deleted: bool = False
    deleted_pipelines: list[int] = Field(default_factory=list)
    kept_pipelines: list[int] = Field(default_factory=list)
    runner_notes: list[str] = Field(default_factory=list)
    setup_error: str | None = None
    cleanup_errors: list[str] = Field(default_factory=list)

    def job(self, name: str) -> JobEvidence | None:
        return next((job for job in self.jobs if job.name == name), None)


class ObjectCheck(BaseModel):
    """Whether the build job's cache object is where runner-cache computes it, and where else it turned up."""

    expected: str
    bucket: str
    found: bool
    size: int | None = None
    elsewhere: list[str] = Field(default_factory=list)
    searched: int = 0
    deleted: list[str] = Field(default_factory=list)


class StoreView(BaseModel):
    """What runner-cache is configured with, to compare against what the runner did."""

    endpoint: str
    bucket: str
    path: str = ""
    shared: bool = False


def diagnose_pipeline(evidence: PipelineEvidence, store: StoreView, check: ObjectCheck | None) -> Diagnosis:
    """The verification's verdict: GitLab refusals and timeouts first, then the two traces, then the bucket.

    Cleanup problems never change the verdict; they (and pipelines that could not be deleted) become warnings.
    """
    verdict = _pipeline_verdict(evidence, store, check)
    verdict.warnings += [f"cleanup: {problem}" for problem in evidence.cleanup_errors]
    if evidence.kept_pipelines:
        kept = ", ".join(str(number) for number in evidence.kept_pipelines)
        verdict.warnings.append(f"pipelines {kept} stay in the project: deleting pipelines needs the Owner role")
    verdict.facts.update(pipeline_id=evidence.pipeline_id, pipeline_status=evidence.status, branch=evidence.branch)
    return verdict


def _pipeline_verdict(evidence: PipelineEvidence, store: StoreView, check: ObjectCheck | None) -> Diagnosis:
    if evidence.setup_error:
        return _verdict("gitlab_refused", evidence.setup_error, [])
    build, test = evidence.job(BUILD_JOB), evidence.job(TEST_JOB)
    waited = f"{evidence.timeout_seconds:g} s"
    if evidence.timed_out:
        stuck = [job for job in (build, test) if job is not None and job.status not in _ENDED]
        running = [job for job in stuck if job.status == "running"]
        if running:
            job = running[0]
            lines = [line.text for line in normalize(job.trace).lines]
            last = lines[-1] if lines else "(no output)"
            return _verdict(
                "job_timed_out",
                f"The {job.name} job was still running after {waited}. Its last line: {last!r}.",
                [last],
            )
        if stuck:
            job = stuck[0]
            tags = ", ".join(evidence.tags)
            notes = "; ".join(evidence.runner_notes)
            message = f"No runner took the {job.name} job within {waited} (status {job.status}, tags [{tags}])."
            return _verdict("jobs_pending", message + (f" {notes}." if notes else ""), [])
    if build is None or test is None:
        missing = " and ".join(name for name, job in ((BUILD_JOB, build), (TEST_JOB, test)) if job is None)
        if build is not None and build.status != "success":
            test = JobEvidence(id=0, name=TEST_JOB, status="skipped")
        else:
            return _verdict("jobs_missing", f"The pipeline has no {missing} job.", [])
    verdict = diagnose(
        normalize(build.trace),
        normalize(test.trace),
        build_job=build.info(),
        test_job=test.info(),
        nonce=evidence.nonce,
    )
    for job in (build, test):
        if job.runner_type == "instance_type":
            verdict.warnings.append(f"the {job.name} job ran on an instance runner ({job.runner}): check it is yours")
    if not verdict.passed or check is None:
        return verdict
    upload = verdict.facts.get("build", {}).get("upload_url")
    uploads = [line for line in verdict.evidence if line.startswith("Uploading cache")]
    if not check.found and check.elsewhere:
        message = (
            f"The runner wrote {check.elsewhere[0]!r} but runner-cache expects {check.expected!r} in bucket "
            f"{check.bucket!r} (RUNNER_CACHE_CACHE__PATH={store.path!r}, __SHARED={str(store.shared).lower()})."
        )
        return _verdict("layout_mismatch", message, uploads, facts=verdict.facts)
    if not check.found:
        searched = f" (searched {check.searched} objects)" if check.searched else ""
        message = (
            f"The build job uploaded to {_plain_url(upload) if upload else 'its store'}, but bucket {check.bucket!r} at "
            f"{store.endpoint} has no such object{searched}: the runner uses another store or bucket than runner-cache manages."
        )
        return _verdict("object_not_in_bucket", message, uploads, facts=verdict.facts)
    return verdict


_ENDED = {"success", "failed", "canceled", "skipped", "manual"}
