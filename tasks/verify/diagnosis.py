"""Why the verification pipeline passed or failed, in plain words, from what GitLab and the bucket show.

Pure logic, no I/O: the inputs are the two jobs' states and traces (as GitLab returns them), the run's nonce and
cache key, and what the bucket held at the key the layout module computes. Trace wording is gitlab-runner's own
(``Checking cache for …``, ``Uploading cache.zip to …``, ``No URL provided …``, ``FATAL: received: 403 Forbidden``),
so the same rules read a real runner's traces.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from runner_cache.tasks.keys.layout import split_key

# Lines the job scripts print; the test job's copy of the nonce can only come from the restored cache.
NONCE_LINE = re.compile(r"^runner-cache-verify nonce=(?P<nonce>\S+) build-host=(?P<host>\S*)\s*$", re.MULTILINE)
TEST_HOST_LINE = re.compile(r"^runner-cache-verify test-host=(?P<host>\S*)\s*$", re.MULTILINE)

_RUNNER_LINE = re.compile(r"^\s*on (?P<name>.+?) (?P<token>[A-Za-z0-9_-]+)(?:, system ID: \S+)?\s*$")
_RUNNING_WITH = re.compile(r"^Running with gitlab-runner (?P<version>\S+)")
_RUNNING_ON = re.compile(r"^Running on (?P<host>\S+) via ", re.MULTILINE)
_CHECKING = re.compile(r"Checking cache for (?P<key>.+?)(?: \(fallback\))?\.\.\.\s*$", re.MULTILINE)
_CREATING = re.compile(r"Creating cache (?P<key>.+?)\.\.\.\s*$", re.MULTILINE)
_UPLOADING = re.compile(
    r"Uploading cache\.[a-z.]+ to (?P<url>\S+)"
)  # cache.zip, cache.tar.zst … (CACHE_COMPRESSION_FORMAT)
_DOWNLOADING = re.compile(r"Downloading cache(?:\.[a-z.]+)? from (?P<url>\S+)")

_SCHEME_ERRORS = (
    "server gave HTTP response to HTTPS client",
    "Client sent an HTTP request to an HTTPS server",
    "first record does not look like a TLS handshake",
    "malformed HTTP response",
)
_CERT_ERRORS = ("x509:", "certificate signed by unknown authority", "certificate is not valid")
_FORBIDDEN = ("403 Forbidden", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId")
_UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "network is unreachable")
_NO_URL = "No URL provided"


class JobEvidence(BaseModel):
    """One job as GitLab reports it, with its trace (URL queries already stripped)."""

    id: int
    name: str
    status: str
    runner: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    web_url: str | None = None
    trace: str = ""


class PipelineEvidence(BaseModel):
    """What the pipeline run left behind: its jobs and traces, how long we waited, and what was cleaned up."""

    project: str
    project_id: int | None = None
    branch: str | None = None
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


class Verdict(BaseModel):
    """The outcome: ``passed``, one-line ``summary``, ``diagnosis`` sentences (on failure) and ``warnings``."""

    passed: bool
    summary: str
    proven_across_pods: bool = False
    diagnosis: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    facts: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- traces


def runner_identity(trace: str) -> tuple[str, str] | None:
    """``(runner name, short token)`` from the ``  on <name> <short-token>`` line after ``Running with gitlab-runner``."""
    lines = trace.splitlines()
    for index, line in enumerate(lines):
        if _RUNNING_WITH.match(line) and index + 1 < len(lines):
            match = _RUNNER_LINE.match(lines[index + 1])
            if match:
                return match.group("name"), match.group("token")
    return None


def _first(pattern: re.Pattern[str], trace: str, group: str) -> str | None:
    match = pattern.search(trace)
    return match.group(group) if match else None


def created_key(trace: str) -> str | None:
    return _first(_CREATING, trace, "key")


def checked_key(trace: str) -> str | None:
    return _first(_CHECKING, trace, "key")


def upload_url(trace: str) -> str | None:
    return _first(_UPLOADING, trace, "url")


def uploaded(trace: str) -> bool:
    """The cache went to the store: an upload line followed by ``Created cache`` and no FATAL in between."""
    match = _UPLOADING.search(trace)
    if not match:
        return False
    after = trace[match.end() :]
    created = after.find("Created cache")
    fatal = after.find("FATAL:")
    return created >= 0 and (fatal < 0 or fatal > created)


def extracted_from_store(trace: str) -> bool:
    """The cache came from the store: a download line followed by ``Successfully extracted cache``."""
    match = _DOWNLOADING.search(trace)
    return bool(match) and "Successfully extracted cache" in trace[match.end() :]


def _lines_with(trace: str, needles: tuple[str, ...]) -> list[str]:
    return [line.strip() for line in trace.splitlines() if any(needle in line for needle in needles)]


def excerpt(trace: str, limit: int = 30) -> str:
    """The lines of a trace that matter for the cache: runner, keys, transfers, errors and the script's output."""
    keep = (
        "Running with gitlab-runner", "  on ", "Running on ", "Checking cache", "Downloading cache",
        "Successfully extracted", "Failed to extract", "file does not exist", "Creating cache", "Uploading cache",
        "Created cache", "Failed to create", _NO_URL, "WARNING", "FATAL", "ERROR", "runner-cache-verify",
        "Job succeeded", "matching artifact",
    )  # fmt: skip
    lines = [line.rstrip() for line in trace.splitlines() if any(needle in line for needle in keep)]
    if len(lines) > limit:
        lines = lines[: limit // 2] + ["…"] + lines[-limit // 2 :]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- diagnosis


def _transfer_problems(jobs: list[JobEvidence], store: StoreView) -> list[str]:
    """Plain-words reasons for the cache transfer errors in the jobs' traces, one sentence per cause."""

    def who(matching: list[JobEvidence]) -> str:
        return "the " + " and ".join(job.name for job in matching) + (" jobs" if len(matching) > 1 else " job")

    def having(needles: tuple[str, ...]) -> list[JobEvidence]:
        return [job for job in jobs if _lines_with(job.trace, needles)]

    found = []
    if matching := having((_NO_URL,)):
        found.append(
            f'The runner of {who(matching)} has no S3 credentials ("No URL provided": the cache stayed inside the '
            "pod): the cache Secret is not mounted or misnamed. Check that runners.cache.secretName in the chart "
            "values names a Secret in the runner's namespace with the keys accesskey and secretkey."
        )
    if matching := having(_SCHEME_ERRORS):
        lines = " ".join(line for job in matching for line in _lines_with(job.trace, _SCHEME_ERRORS))
        runner_scheme = "https" if "https://" in lines else "http"
        store_scheme = "http" if runner_scheme == "https" else "https"
        insecure = "true" if store_scheme == "http" else "false"
        found.append(
            f"The runner of {who(matching)} speaks {runner_scheme} to a store that answers {store_scheme}: its "
            f"Insecure setting does not match the endpoint ({store.endpoint}). Insecure = true means plain HTTP; it "
            f"must be {insecure} here (re-run setup, which derives it from the endpoint's scheme)."
        )
    if matching := having(_CERT_ERRORS):
        found.append(
            f"The runner of {who(matching)} does not trust the store's TLS certificate: give the runner the CA "
            "(certsSecretName in the chart values) or use a certificate from a public CA."
        )
    if matching := having(_FORBIDDEN):
        lines = " ".join(line for job in matching for line in _lines_with(job.trace, _FORBIDDEN))
        code = next((c for c in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied") if c in lines), None)
        found.append(
            f"The store refused the cache requests of {who(matching)} with 403 Forbidden"
            f"{f' ({code})' if code else ''}: the access key or secret key in the cache Secret is wrong, or a bucket "
            f"policy does not let that user read and write bucket {store.bucket!r}."
        )
    if (matching := having(_UNREACHABLE)) and not having(_SCHEME_ERRORS):
        line = next(line for job in matching for line in _lines_with(job.trace, _UNREACHABLE))
        found.append(
            f"The runner of {who(matching)} cannot reach the store ({_reason(line)}): check ServerAddress, DNS and "
            "network policies between the runner's pods and the store."
        )
    return found


def _reason(line: str) -> str:
    for needle in _UNREACHABLE:
        if needle in line:
            return needle
    return "connection error"


def _where(url: str | None) -> str:
    if not url:
        return "an unknown location"
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def _nothing_restored(build: JobEvidence, test: JobEvidence, store: StoreView) -> list[str]:
    """Why the test job found no cache although the build job uploaded one."""
    written, wanted = created_key(build.trace), checked_key(test.trace)
    if written and wanted and written != wanted:
        w, t = split_key(written), split_key(wanted)
        if w.base == t.base and w.index == t.index and w.protection != t.protection:
            return [
                f"Protected-branch suffix mismatch: the build job saved the cache as {written!r} but the test job looked "
                f"for {wanted!r}. The two jobs ran with different ref protection (a protected-branch rule matched one "
                "of them, or 'Use separate caches for protected branches' changed between them)."
            ]
        if w.base == t.base and w.index != t.index:
            return [
                f"The project's cache index changed between the jobs ({written!r} vs {wanted!r}): someone cleared the "
                "runner caches while the pipeline ran. Run the verification again."
            ]
        return [f"The two jobs used different cache keys ({written!r} and {wanted!r}), so nothing could be restored."]
    build_runner, test_runner = runner_identity(build.trace), runner_identity(test.trace)
    build_url = upload_url(build.trace)
    non_shared = (build_url is not None and "/runner/" in urlsplit(build_url).path) or not store.shared
    if build_runner and test_runner and build_runner[1] != test_runner[1] and non_shared:
        return [
            f"Not shared across runners: the build job ran on runner {build_runner[0]!r} (token {build_runner[1]}) and "
            f"the test job on {test_runner[0]!r} (token {test_runner[1]}). With Shared = false each runner reads and "
            "writes only under runner/<its short token>/, so one runner never sees another's cache. Set Shared = true "
            "(RUNNER_CACHE_CACHE__SHARED=true, then re-run setup) or route both jobs to one runner."
        ]
    return [
        f"The test job found no cache where the build job wrote it ({_where(build_url)}): the runners differ in "
        "bucket, Path or store. Make every runner use the same BucketName and Path (runner-cache renders both from "
        f"RUNNER_CACHE_STORE__BUCKET={store.bucket!r} and RUNNER_CACHE_CACHE__PATH={store.path!r})."
    ]


def _object_missing(check: ObjectCheck, build: JobEvidence, store: StoreView) -> str:
    if check.elsewhere:
        return (
            f"The runner writes cache objects to {check.elsewhere[0]!r} but runner-cache expects {check.expected!r} "
            f"in bucket {check.bucket!r}: the runner's Path or Shared setting differs from RUNNER_CACHE_CACHE__PATH="
            f"{store.path!r} / RUNNER_CACHE_CACHE__SHARED={str(store.shared).lower()}, so the pruner and lifecycle "
            "rule would miss these objects. Re-run setup so the runner gets runner-cache's settings."
        )
    searched = f" (searched {check.searched} objects)" if check.searched else ""
    return (
        f"The build job uploaded its cache to {_where(upload_url(build.trace))}, but bucket {check.bucket!r} at "
        f"{store.endpoint} has no such object{searched}: the runner uses a different bucket or store than "
        "runner-cache manages. Make the runner's BucketName and ServerAddress match RUNNER_CACHE_STORE__BUCKET and "
        "RUNNER_CACHE_STORE__ENDPOINT."
    )


def _timed_out(evidence: PipelineEvidence) -> list[str]:
    tags = ", ".join(evidence.tags) if evidence.tags else "no tags (untagged jobs)"
    waited = f"{evidence.timeout_seconds:g} s"
    pending = [
        job for job in evidence.jobs if job.status in {"pending", "created", "waiting_for_resource", "preparing"}
    ]
    running = [job for job in evidence.jobs if job.status == "running"]
    lines = []
    if running:
        names = " and ".join(job.name for job in running)
        last = [line for line in running[0].trace.splitlines() if line.strip()][-1:] or ["(no output)"]
        lines.append(
            f"The {names} job was still running after {waited}; the pipeline was cancelled. Its last trace line: "
            f"{last[0].strip()!r}."
        )
    elif pending:
        job = pending[0]
        if job.runner is None:
            lines.append(
                f"No online runner with the tags [{tags}] picked up the {job.name} job within {waited} (it stayed "
                "pending): register or unpause a runner with these tags, or set RUNNER_CACHE_GITLAB__RUNNER_TAGS to "
                "your runner's tags."
            )
        else:
            lines.append(f"The {job.name} job was still {job.status} after {waited}; the pipeline was cancelled.")
    else:
        lines.append(f"The pipeline did not finish within {waited} (status {evidence.status}); it was cancelled.")
    return lines


def diagnose(evidence: PipelineEvidence, store: StoreView, check: ObjectCheck | None) -> Verdict:
    """The verdict: pass only with both jobs green, the nonce in the test trace, upload + extraction seen, and the object found.

    Cleanup problems (a branch that could not be deleted) never change the verdict; they become warnings.
    """
    verdict = _verdict(evidence, store, check)
    verdict.warnings += [f"cleanup: {problem}" for problem in evidence.cleanup_errors]
    return verdict


def _verdict(evidence: PipelineEvidence, store: StoreView, check: ObjectCheck | None) -> Verdict:
    facts: dict[str, Any] = {"pipeline_id": evidence.pipeline_id, "status": evidence.status}
    if evidence.setup_error:
        return Verdict(
            passed=False,
            summary="the verification pipeline could not be started",
            diagnosis=[evidence.setup_error],
            facts=facts,
        )
    if evidence.timed_out:
        return Verdict(
            passed=False,
            summary=f"the pipeline timed out after {evidence.timeout_seconds:g} s",
            diagnosis=_timed_out(evidence),
            facts=facts,
        )
    build, test = evidence.job("build"), evidence.job("test")
    if test is None and build is not None and build.status != "success":
        test = JobEvidence(id=0, name="test", status="not created")
    if build is None or test is None:
        return Verdict(passed=False, summary="the pipeline lacks the build or test job", diagnosis=["GitLab did not create both verification jobs; check the project's CI settings (a CI/CD configuration file override or compliance pipeline may replace .gitlab-ci.yml)."], facts=facts)  # fmt: skip

    build_runner, test_runner = runner_identity(build.trace), runner_identity(test.trace)
    nonce = next((m for m in NONCE_LINE.finditer(test.trace) if m.group("nonce") == evidence.nonce), None)
    test_host = _first(TEST_HOST_LINE, test.trace, "host")
    facts.update(
        build_runner=build_runner[0] if build_runner else None, build_short_token=build_runner[1] if build_runner else None,
        test_runner=test_runner[0] if test_runner else None, test_short_token=test_runner[1] if test_runner else None,
        created_key=created_key(build.trace), checked_key=checked_key(test.trace),
        build_host=nonce.group("host") if nonce else _first(_RUNNING_ON, build.trace, "host"),
        test_host=test_host or _first(_RUNNING_ON, test.trace, "host"), nonce_restored=nonce is not None,
        uploaded=uploaded(build.trace), extracted=extracted_from_store(test.trace),
    )  # fmt: skip

    diagnosis = _transfer_problems([build, test], store)
    if build.status != "success":
        diagnosis.append(f"The build job {build.status} before it could save the cache{_last_error(build)}.")
    elif not diagnosis and not facts["uploaded"]:
        diagnosis.append(
            'The build job succeeded but its trace shows no cache upload: check that the runner has [runners.cache] Type = "s3".'
        )
    if not diagnosis and build.status == "success" and (test.status != "success" or nonce is None):
        if "file does not exist" in test.trace or "Failed to extract cache" in test.trace:
            diagnosis += _nothing_restored(build, test, store)
        elif test.status != "success":
            diagnosis.append(f"The test job {test.status}{_last_error(test)}.")
        else:
            diagnosis.append(
                "The test job restored a cache that does not hold this run's nonce (a stale cache under the same key)."
            )
    if not diagnosis and not facts["extracted"]:
        diagnosis.append(
            "The test job printed the nonce without downloading the cache from the store: it read a copy local to its node, which proves nothing about the shared cache."
        )
    if not diagnosis and check is not None and not check.found:
        diagnosis.append(_object_missing(check, build, store))
    if not diagnosis and check is None:
        diagnosis.append(
            "The build job's trace does not say which runner token and cache key it used, so the object in the bucket could not be checked."
        )
    if diagnosis:
        return Verdict(passed=False, summary=_summary(build, test), diagnosis=diagnosis, facts=facts)

    assert check is not None  # no diagnosis means the object was found
    same_pod = facts["build_host"] == facts["test_host"]  # the build host as written into the restored file
    warnings = [f"not proven across pods: both jobs ran on {facts['test_host']!r}"] if same_pod else []
    summary = f"the test job restored the build job's cache from {check.expected!r}"
    return Verdict(passed=True, summary=summary, proven_across_pods=not same_pod, warnings=warnings, facts=facts)


def _summary(build: JobEvidence, test: JobEvidence) -> str:
    return f"the cache was not shared (build {build.status}, test {test.status})"


def _last_error(job: JobEvidence) -> str:
    errors = [line.strip() for line in job.trace.splitlines() if line.strip().startswith(("ERROR:", "FATAL:"))]
    return f" ({errors[-1]})" if errors else ""
