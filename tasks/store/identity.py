"""Least-privilege identities on the store: the runner's key (get/put under its prefix) and prune's key.

Two admin APIs, one interface (:class:`IdentityAdmin`):

- :class:`IamApiAdmin`: the AWS IAM Query API (``POST /``, ``Action=…&Version=2010-05-08``, SigV4 service
  ``iam``). SeaweedFS serves it on its S3 port (``weed/s3api/s3api_embedded_iam.go``; ``weed mini`` needs
  ``-s3.iam.readOnly=false``); AWS and Ceph RGW serve the same API. One user per role, an inline policy, keys.
- :class:`MinioIdentityAdmin`: MinIO's admin API through ``minio.MinioAdmin`` (encrypted payloads). A MinIO user
  *is* its access key, so each key is a user ``rc-<role>-<hex>`` holding the canned policy ``runner-cache-<role>``.

Generated secrets are kept in a Prefect block (:class:`StoreIdentity`, encrypted by Prefect) and in the runner's
Kubernetes Secret; never in results, logs or errors (they are registered for redaction the moment they exist).

Rotation never leaves the runner without a working key: a new key is made and saved first, the old one goes to
the record's ``revoke`` list, and only :func:`revoke_pending` — run after the runner and the checks use the new
key — deletes it. Any key on the identity that we did not make (SeaweedFS lets a user create keys for itself,
``iamSelfServiceActions``) is revoked the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import unquote, urlencode, urlsplit

import urllib3
from minio import Minio, MinioAdmin
from minio.credentials import StaticProvider
from minio.error import MinioAdminException, S3Error
from prefect.blocks.core import Block
from pydantic import BaseModel, SecretStr

from runner_cache import redaction
from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.settings import RunnerCacheSections
from runner_cache.blocks.store import StoreSettings, http_pool
from runner_cache.errors import (
    ConfigError,
    ExternalSystemError,
    StoreAuthError,
    StoreError,
    StoreUnreachable,
    WorkFailed,
    innermost_cause,
)
from runner_cache.tasks.logs import run_logger
from runner_cache.tasks.policy import external_task
from runner_cache.tasks.results import StepResult, timed
from runner_cache.tasks.store.policy import (
    Dialect,
    Role,
    grant,
    identity_name,
    policy_document,
    policy_json,
    same_policy,
)

IAM_VERSION = "2010-05-08"
NOT_MINIO = "NotMinioAdmin"
_IAM_NS = "{https://iam.amazonaws.com/doc/2010-05-08/}"


class IdentityApiMissing(StoreError):
    """The store speaks neither MinIO's admin API nor an IAM API with these credentials."""


@dataclass(frozen=True)
class Credentials:
    """One access key of an identity; the secret stays a ``SecretStr`` everywhere."""

    access_key: str
    secret_key: SecretStr


@dataclass
class PrincipalState:
    """What the store holds for one role."""

    exists: bool
    policy_ok: bool
    keys: list[str] = field(default_factory=list)


class IdentityAdmin(Protocol):
    """What setup needs from a store's admin API, for one principal (:func:`identity_name`) at a time."""

    kind: str
    dialect: Dialect
    max_keys: int  # keys one principal may hold at once

    def state(self, name: str, document: dict[str, Any]) -> PrincipalState: ...
    def ensure_principal(self, name: str, document: dict[str, Any]) -> list[str]: ...
    def create_key(self, name: str) -> Credentials: ...
    def delete_key(self, name: str, access_key: str) -> None: ...


# --- AWS IAM Query API (SeaweedFS, AWS, Ceph RGW) ---------------------------------------------------------------
def sign_v4(
    method: str, url: str, body: bytes, access: str, secret: str, region: str, service: str, now: datetime | None = None
) -> dict[str, str]:
    """SigV4 headers for a request with no query string (the IAM Query API sends its parameters in the body)."""
    now = now or datetime.now(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    parts = urlsplit(url)
    payload = hashlib.sha256(body).hexdigest()
    headers = {
        "content-type": "application/x-www-form-urlencoded; charset=utf-8",
        "host": parts.netloc,
        "x-amz-content-sha256": payload,
        "x-amz-date": amz_date,
    }
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [method, parts.path or "/", "", *(f"{key}:{headers[key]}" for key in sorted(headers)), "", signed, payload]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return headers


class IamError(StoreError):
    """The IAM API answered with an error document; ``code`` is its ``<Code>``."""

    def __init__(self, message: str, code: str, status: int) -> None:
        super().__init__(message, transient=status >= 500)
        self.code, self.status = code, status


class IamApiAdmin:
    """One user per role (``runner-cache-<role>``) with an inline policy of the same name, and its keys."""

    kind = "IAM API"
    dialect: Dialect = "aws"
    max_keys = 2  # AWS IAM's limit per user (moto enforces it too)

    def __init__(self, store: StoreSettings) -> None:
        self.store = store
        self.url = (store.identities.iam_endpoint or store.endpoint).rstrip("/") + "/"
        self.http = http_pool(connect_timeout=5.0, read_timeout=30.0)

    def call(self, action: str, **params: str) -> ET.Element:
        access, secret = self.store.credentials()
        body = urlencode({"Action": action, **params, "Version": IAM_VERSION}).encode()
        headers = sign_v4(
            "POST", self.url, body, access.get_secret_value(), secret.get_secret_value(), self.store.region, "iam"
        )
        try:
            response = self.http.request("POST", self.url, body=body, headers=headers, retries=False)
        except urllib3.exceptions.HTTPError as error:
            raise StoreUnreachable(f"IAM API at {self.url} is not reachable: {innermost_cause(error)}") from None
        root = _xml(response.data)
        if response.status < 300 and root is not None:
            return root
        code = _text(root, "Code") or f"HTTP {response.status}"
        if response.status >= 500:
            raise IamError(f"IAM {action} answered HTTP {response.status} ({code})", code, response.status)
        if b"write operations are disabled" in response.data:  # seaweedfs s3api_embedded_iam.go, read-only mode
            raise StoreAuthError(
                f"IAM {action} was refused: the store's IAM API is read-only",
                hint="SeaweedFS: start it with -s3.iam.readOnly=false (the local backend does)",
            )
        if code in {"SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidClientTokenId", "AccessDenied"}:
            raise StoreAuthError(
                f"IAM {action} was refused ({code}): the store's admin key may not manage identities",
                hint="use the store's root/admin key, or set the runner identity by hand (RUNNER_CACHE_STORE__IDENTITIES__RUNNER_*)",
            )
        raise IamError(f"IAM {action} failed ({code})", code, response.status)

    def speaks(self) -> bool:
        """True when the endpoint answers IAM requests (an unknown user is a proper IAM answer)."""
        try:
            self.call("GetUser", UserName="rc-probe")
        except IamError as error:
            return error.code == "NoSuchEntity"
        return True

    def state(self, name: str, document: dict[str, Any]) -> PrincipalState:
        try:
            self.call("GetUser", UserName=name)
        except IamError as error:
            if error.code == "NoSuchEntity":
                return PrincipalState(False, False)
            raise
        try:
            text = _text(self.call("GetUserPolicy", UserName=name, PolicyName=name), "PolicyDocument") or ""
            live = json.loads(
                text if text.lstrip().startswith("{") else unquote(text)
            )  # AWS URL-encodes it, SeaweedFS does not
        except IamError as error:
            if error.code != "NoSuchEntity":
                raise
            live = None
        keys = [
            _text(member, "AccessKeyId") or ""
            for member in self.call("ListAccessKeys", UserName=name).iter(f"{_IAM_NS}member")
        ]
        return PrincipalState(True, same_policy(live, document), [key for key in keys if key])

    def ensure_principal(self, name: str, document: dict[str, Any]) -> list[str]:
        changes = []
        current = self.state(name, document)
        if not current.exists:
            self.call("CreateUser", UserName=name)
            changes.append(f"created user {name}")
        if not current.policy_ok:
            self.call("PutUserPolicy", UserName=name, PolicyName=name, PolicyDocument=policy_json(document))
            changes.append(f"{'set' if not current.exists else 'corrected'} its policy {name}")
        return changes

    def create_key(self, name: str) -> Credentials:
        key = self.call("CreateAccessKey", UserName=name)
        access, secret = _text(key, "AccessKeyId"), _text(key, "SecretAccessKey")
        if not access or not secret:
            raise StoreError("IAM CreateAccessKey answered without a key")
        redaction.register([secret])
        return Credentials(access, SecretStr(secret))

    def delete_key(self, name: str, access_key: str) -> None:
        try:
            self.call("DeleteAccessKey", UserName=name, AccessKeyId=access_key)
        except IamError as error:
            if error.code != "NoSuchEntity":
                raise


def _xml(data: bytes) -> ET.Element | None:
    try:
        return ET.fromstring(data)
    except ET.ParseError:
        return None


def _text(root: ET.Element | None, tag: str) -> str | None:
    """The first ``tag`` anywhere under ``root``, with or without the IAM namespace."""
    if root is None:
        return None
    for element in root.iter():
        if element.tag in {tag, f"{_IAM_NS}{tag}"}:
            return element.text
    return None


# --- MinIO admin API -------------------------------------------------------------------------------------------
class MinioIdentityAdmin:
    """A canned policy per principal; each key is a MinIO user ``rc-<hex>`` holding it (a user *is* its key)."""

    kind = "MinIO admin API"
    dialect: Dialect = "minio"
    max_keys = 1000  # no per-user limit: each key is a user

    def __init__(self, store: StoreSettings, admin: MinioAdmin | None = None) -> None:
        access, secret = store.credentials()
        self.admin = admin or MinioAdmin(
            endpoint=store.server_address,
            credentials=StaticProvider(access.get_secret_value(), secret.get_secret_value()),
            region=store.region,
            secure=store.secure,
            http_client=http_pool(retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[502, 503, 504])),
        )
        self.endpoint = store.endpoint

    def _run(self, what: str, call: Any) -> Any:
        try:
            return call()
        except MinioAdminException as error:
            status, body = int(getattr(error, "_code", 0) or 0), str(getattr(error, "_body", ""))
            code = _minio_code(body)
            if code is None and status < 500:  # an S3 error document: this is not MinIO's admin API
                raise IamError(f"{self.endpoint} does not answer MinIO's admin API", NOT_MINIO, status) from None
            if status >= 500:
                raise StoreUnreachable(f"MinIO admin {what} answered HTTP {status}") from None
            if status in {401, 403}:
                raise StoreAuthError(
                    f"MinIO admin {what} was refused ({code or status}): the store's key may not manage users"
                ) from None
            raise IamError(f"MinIO admin {what} failed ({code or status})", code or str(status), status) from None
        except urllib3.exceptions.HTTPError as error:
            raise StoreUnreachable(
                f"MinIO admin API at {self.endpoint} is not reachable: {innermost_cause(error)}"
            ) from None

    def speaks(self) -> bool:
        """True when the endpoint is a MinIO admin API (other S3 stores answer an XML S3 error)."""
        try:
            self._run("list-users", self.admin.user_list)
        except IamError:
            return False
        return True

    def _users(self, name: str) -> list[str]:
        """The MinIO users (keys) holding the canned policy ``name``: ours, whatever their access key."""
        users = json.loads(self._run("list-users", self.admin.user_list) or "{}")
        return sorted(user for user, info in users.items() if name in str(info.get("policyName", "")).split(","))

    def state(self, name: str, document: dict[str, Any]) -> PrincipalState:
        try:
            info = json.loads(self._run("info-canned-policy", lambda: self.admin.policy_info(name)))
        except IamError as error:
            if error.code != "XMinioAdminNoSuchPolicy" and error.status != 404:
                raise
            return PrincipalState(False, False)
        live = info.get("Policy", info) if isinstance(info, dict) else None
        return PrincipalState(True, same_policy(live, document), self._users(name))

    def ensure_principal(self, name: str, document: dict[str, Any]) -> list[str]:
        current = self.state(name, document)
        if current.exists and current.policy_ok:
            return []
        self._run("add-canned-policy", lambda: self.admin.policy_add(name, policy=document))  # replaces it
        return [f"{'corrected' if current.exists else 'created'} canned policy {name}"]

    def _attach(self, policy: str, user: str) -> None:
        try:
            self._run("policy attach", lambda: self.admin.attach_policy([policy], user=user))
        except IamError as error:
            if error.code != "XMinioAdminPolicyChangeAlreadyApplied":
                raise

    def create_key(self, name: str) -> Credentials:
        access = "rc-" + secrets.token_hex(8)  # 19 characters: MinIO access keys are at most 20
        secret = secrets.token_urlsafe(30)
        redaction.register([secret])
        self._run("add-user", lambda: self.admin.user_add(access, secret))
        self._attach(name, access)
        return Credentials(access, SecretStr(secret))

    def delete_key(self, name: str, access_key: str) -> None:
        try:
            info = json.loads(self._run("user-info", lambda: self.admin.user_info(access_key)))
        except IamError as error:
            if error.status == 404:
                return  # already gone
            raise
        if name not in str(info.get("policyName", "")).split(","):
            raise WorkFailed(f"refusing to remove MinIO user {access_key}: it does not hold policy {name}")
        self._run("remove-user", lambda: self.admin.user_remove(access_key))


def _minio_code(body: str) -> str | None:
    try:
        return json.loads(body).get("Code")
    except (ValueError, AttributeError):
        return None


def identity_admin(store: StoreSettings) -> IdentityAdmin:
    """The admin API this store's backend offers: MinIO's for docker/kubernetes (and an external MinIO), else IAM."""
    if store.backend == "local":
        return IamApiAdmin(store)
    minio = MinioIdentityAdmin(store)
    if minio.speaks():
        return minio
    iam = IamApiAdmin(store)
    if iam.speaks():
        return iam
    raise IdentityApiMissing(f"{store.endpoint} offers neither MinIO's admin API nor an IAM API to these credentials")


def by_hand(store: StoreSettings, cache: CacheSettings, role: Role) -> str:
    """What to do on a store whose identities runner-cache cannot create: the policy and the settings to fill."""
    document = policy_json(policy_document(grant(role, store.bucket, cache.path, cache.shared)))
    upper = role.upper()
    return (
        f"create a user on the store with this policy and an access key for it: {document} ; then set "
        f"RUNNER_CACHE_STORE__IDENTITIES__{upper}_ACCESS_KEY and RUNNER_CACHE_STORE__IDENTITIES__{upper}_SECRET_KEY"
        + (" (or RUNNER_CACHE_STORE__IDENTITIES__PRUNE_USES_ADMIN=true)" if role == "prune" else "")
    )


# --- where generated keys are kept ------------------------------------------------------------------------------
class IdentityRecord(BaseModel):
    """The key we made for a role, and older keys still to revoke once the new one is in use."""

    role: str
    access_key: str
    secret_key: SecretStr
    revoke: list[str] = []


class StoreIdentity(Block):
    """A store identity's key, kept by Prefect (secrets encrypted); written by setup, read by the runner release."""

    _block_type_name = "Runner Cache Store Identity"
    _block_type_slug = "runner-cache-store-identity"
    _description = "An access key setup created on the cache store (runner or prune role) and keys to revoke."

    role: str
    access_key: str
    secret_key: SecretStr
    revoke: list[str] = []


class Vault(Protocol):
    def load(self, store: StoreSettings, role: Role) -> IdentityRecord | None: ...
    def save(self, store: StoreSettings, record: IdentityRecord) -> None: ...


def block_name(store: StoreSettings, role: Role) -> str:
    """One block per store endpoint, bucket and role."""
    digest = hashlib.sha256(f"{store.endpoint}|{store.bucket}".encode()).hexdigest()[:12]
    return f"{role}-{digest}"


class BlockVault:
    """Records in Prefect blocks (the default)."""

    def load(self, store: StoreSettings, role: Role) -> IdentityRecord | None:
        try:
            block = StoreIdentity.load(block_name(store, role))
        except ValueError:  # no such block
            return None
        redaction.register([block.secret_key])
        return IdentityRecord(
            role=block.role, access_key=block.access_key, secret_key=block.secret_key, revoke=list(block.revoke)
        )

    def save(self, store: StoreSettings, record: IdentityRecord) -> None:
        StoreIdentity(**record.model_dump()).save(block_name(store, record.role), overwrite=True)  # type: ignore[arg-type]


# --- the steps --------------------------------------------------------------------------------------------------
def configured(store: StoreSettings, role: Role) -> Credentials | None:
    """Keys the user set by hand for ``role`` (``RUNNER_CACHE_STORE__IDENTITIES__<ROLE>_…``), if any."""
    access = getattr(store.identities, f"{role}_access_key")
    secret = getattr(store.identities, f"{role}_secret_key")
    return Credentials(access.get_secret_value(), secret) if access is not None and secret is not None else None


def ensure_identity(
    store: StoreSettings,
    cache: CacheSettings,
    role: Role = "runner",
    *,
    rotate: bool = False,
    apply: bool = True,
    vault: Vault | None = None,
    admin: IdentityAdmin | None = None,
) -> StepResult:
    """The role's principal and policy exist as the layout needs, and we hold one working key for it.

    ``rotate`` makes a new key and queues the current one for :func:`revoke_pending`. Keys on the principal that
    we do not hold are queued too. Nothing is revoked here, so the runner's current key keeps working — except
    when the store's limit of keys per user (AWS IAM: 2) leaves no room: then queued keys go first.
    """
    step = f"identity-{role}" if role != "runner" else "identity"
    role_grant = grant(role, store.bucket, cache.path, cache.shared)
    name = identity_name(role, store.bucket)
    if configured(store, role) is not None:
        return StepResult(
            step=step,
            status="unchanged",
            detail=f"the {role} key is set by hand; it must allow only: {role_grant.describe()}",
        )
    vault = vault or BlockVault()
    with timed() as timer:
        try:
            admin = admin or identity_admin(store)
        except IdentityApiMissing as error:
            raise IdentityApiMissing(str(error), hint=by_hand(store, cache, role)) from None
        document = policy_document(role_grant, admin.dialect)
        record = vault.load(store, role)
        current = admin.state(name, document)
        held = record is not None and record.access_key in current.keys
        unknown = [key for key in current.keys if not (record and (key == record.access_key or key in record.revoke))]
        new_key = not held or rotate
        wanted: list[str] = []
        if not current.exists:
            wanted.append(f"create identity {name} on the store ({admin.kind})")
        elif not current.policy_ok:
            wanted.append(f"correct the policy of {name}")
        if new_key:
            wanted.append(
                "create a new key"
                + (" (rotation: the old key stays valid until the new one is verified)" if held else "")
            )
        if unknown:
            wanted.append(f"queue {len(unknown)} key(s) this tool did not make for revocation")
        data = {"role": role, "identity": name, "api": admin.kind, "grant": role_grant.describe()}
        data["pending_revocations"] = len(record.revoke) if record else 0
        if not wanted:
            detail = f"identity {name} exists with its policy ({role_grant.describe()}) and the key we hold"
            return StepResult(step=step, status="unchanged", seconds=timer.seconds, data=data, detail=detail)
        if not apply:
            return StepResult(step=step, status="planned", detail="would " + "; ".join(wanted), data=data)
        changes = admin.ensure_principal(name, document)
        revoke = list(dict.fromkeys([*(record.revoke if record else []), *unknown]))
        if new_key:
            room = len(current.keys) - admin.max_keys + 1
            for access_key in [key for key in current.keys if key in revoke][: max(room, 0)]:
                admin.delete_key(name, access_key)
                revoke.remove(access_key)
                changes.append("revoked a queued key first (the store allows only two keys per user)")
            if record is not None and held:
                revoke.append(record.access_key)
            key = admin.create_key(name)
            record = IdentityRecord(role=role, access_key=key.access_key, secret_key=key.secret_key, revoke=revoke)
            changes.append("created a new key" + (" and queued the old one for revocation" if held else ""))
        else:
            assert record is not None
            record.revoke = revoke
        if unknown:
            changes.append(f"queued {len(unknown)} key(s) this tool did not make for revocation")
        vault.save(store, record)
        data["pending_revocations"] = len(record.revoke)
    return StepResult(step=step, status="changed", detail="; ".join(changes), seconds=timer.seconds, data=data)


def identity_credentials(store: StoreSettings, role: Role = "runner", vault: Vault | None = None) -> Credentials:
    """The key ``role`` uses: set by hand, or the one setup made; never the store's admin key."""
    by_hand = configured(store, role)
    if by_hand is not None:
        return by_hand
    record = (vault or BlockVault()).load(store, role)
    if record is None:
        raise ConfigError(
            f"no {role} identity yet for bucket {store.bucket!r} at {store.endpoint}: run `runner-cache setup` first"
        )
    return Credentials(record.access_key, record.secret_key)


def as_store(store: StoreSettings, credentials: Credentials) -> StoreSettings:
    """``store`` with ``credentials`` instead of the admin key (for clients and the runner's Secret)."""
    return store.model_copy(
        update={"access_key": SecretStr(credentials.access_key), "secret_key": credentials.secret_key}
    )


def prove_identity(store: StoreSettings, cache: CacheSettings, credentials: Credentials) -> StepResult:
    """Presigned PUT and GET under the prefix work with the runner key; DELETE and listing are refused.

    The probe object is removed with the admin key afterwards.
    """
    runner = as_store(store, credentials)
    prefix = grant("runner", store.bucket, cache.path, cache.shared).object_prefixes[0]
    name = f"{prefix}runner-cache-identity-check-{secrets.token_hex(6)}"
    client, http = runner.client(retries=0), http_pool()
    problems = []
    with timed() as timer:
        try:
            body = secrets.token_bytes(64)
            put = http.request(
                "PUT", client.presigned_put_object(store.bucket, name, expires=timedelta(minutes=5)), body=body
            )
            _server_failure(put, "PUT", store.endpoint)
            got = http.request("GET", client.presigned_get_object(store.bucket, name, expires=timedelta(minutes=5)))
            _server_failure(got, "GET", store.endpoint)
            if put.status != 200 or got.status != 200 or got.data != body:
                problems.append(f"put/get under {prefix!r} failed (HTTP {put.status}/{got.status})")
            deleted = http.request(
                "DELETE", client.get_presigned_url("DELETE", store.bucket, name, expires=timedelta(minutes=5))
            )
            if deleted.status < 300:
                problems.append("the key can delete objects")
            if _allowed(lambda: next(iter(client.list_objects(store.bucket, prefix=prefix)), None)):
                problems.append("the key can list the bucket")
        except urllib3.exceptions.HTTPError as error:
            raise StoreUnreachable(
                f"the identity check could not reach {store.endpoint}: {innermost_cause(error)}"
            ) from None
        finally:
            _remove_quietly(store.client(retries=0), store.bucket, name)
    if problems:
        raise WorkFailed(f"the runner identity is not what the runner needs: {'; '.join(problems)}")
    return StepResult(
        step="identity-check",
        status="unchanged",
        seconds=timer.seconds,
        detail=f"the runner key put and got an object under {prefix!r} by presigned URLs; delete and listing were refused",
    )


def _server_failure(response: urllib3.BaseHTTPResponse, method: str, endpoint: str) -> None:
    """A 5xx is the store failing (a full disk says ``InternalError``), not the identity being wrong: say so in the
    store's words. Not transient: a full disk stays full for the seconds a retry waits."""
    if response.status < 500:
        return
    code = re.search(rb"<Code>([^<]{1,100})</Code>", response.data or b"")
    message = re.search(rb"<Message>([^<]{1,300})</Message>", response.data or b"")
    words = ": ".join(part.group(1).decode(errors="replace") for part in (code, message) if part)
    raise StoreError(
        f"{endpoint} answered HTTP {response.status} to the identity check's {method}"
        + (f" ({words})" if words else ""),
        hint="check the store's own log and free space",
        transient=False,
    )


def _allowed(call: Any) -> bool:
    try:
        call()
    except S3Error as error:
        if error.code in {"AccessDenied", "AllAccessDisabled"}:
            return False
        raise
    return True


def _remove_quietly(client: Minio, bucket: str, name: str) -> None:
    try:
        client.remove_object(bucket, name)
    except (S3Error, urllib3.exceptions.HTTPError):
        pass


def revoke_pending(
    store: StoreSettings, role: Role = "runner", *, vault: Vault | None = None, admin: IdentityAdmin | None = None
) -> StepResult:
    """Delete the keys queued by :func:`ensure_identity`; run only after the new key is in use and verified."""
    step = "revoke" if role == "runner" else f"revoke-{role}"
    vault = vault or BlockVault()
    record = vault.load(store, role)
    if record is None or not record.revoke:
        return StepResult(step=step, status="unchanged", detail=f"no old {role} keys to revoke")
    count = len(record.revoke)
    with timed() as timer:
        admin = admin or identity_admin(store)
        for access_key in list(record.revoke):
            admin.delete_key(identity_name(role, store.bucket), access_key)
            record.revoke.remove(access_key)
            vault.save(store, record)  # progress survives a failure half-way
    return StepResult(
        step=step,
        status="changed",
        seconds=timer.seconds,
        detail=f"revoked {count} old {role} key(s); only the current one works now",
    )


ensure_identity_task = external_task(ensure_identity, "ensure-identity", delays=(2, 5))
prove_identity_task = external_task(prove_identity, "prove-identity", delays=(2,))
revoke_pending_task = external_task(revoke_pending, "revoke-old-keys", delays=(2, 5))


# --- how the flows use it ---------------------------------------------------------------------------------------
def runner_store(sections: RunnerCacheSections, *, planning: bool = False, vault: Vault | None = None) -> StoreSettings:
    """The store as the runner's Secret must name it: with the runner identity's key, never the admin key.

    Made on the spot when missing (``rebuild-runner`` runs without setup's identity step). ``planning``: nothing
    is made; a stand-in lets the plan say that the Secret would change (it is never written).
    """
    store = sections.store
    try:
        return as_store(store, identity_credentials(store, "runner", vault))
    except ConfigError:
        if planning:
            return as_store(
                store, Credentials("runner-key-setup-will-create", SecretStr("runner-secret-setup-will-create"))
            )
    ensure_identity(store, sections.cache, "runner", vault=vault)
    return as_store(store, identity_credentials(store, "runner", vault))


def prune_store(sections: RunnerCacheSections, vault: Vault | None = None) -> StoreSettings:
    """The store as prune and verify should use it: the prune identity's key, or the admin key when the
    user says so (``RUNNER_CACHE_STORE__IDENTITIES__PRUNE_USES_ADMIN``).

    Before the first ``setup`` there is no prune identity yet: the run then uses the admin key and says so in its
    log, rather than failing a nightly prune that worked before identities existed.
    """
    store = sections.store
    if store.identities.prune_uses_admin:
        return store
    by_hand = configured(store, "prune")
    record = None if by_hand else (vault or BlockVault()).load(store, "prune")
    if by_hand is None and record is None:
        run_logger(__name__).warning(
            "no prune identity for bucket %r yet: this run uses the store's admin key; `runner-cache setup` creates "
            "one (or set RUNNER_CACHE_STORE__IDENTITIES__PRUNE_USES_ADMIN=true to choose the admin key)",
            store.bucket,
        )
        return store
    return as_store(store, by_hand or Credentials(record.access_key, record.secret_key))


def identity_steps(sections: RunnerCacheSections, *, rotate: bool = False) -> list[tuple[str, Any]]:
    """Setup's steps after the bucket: the runner identity (rotated on request), its proof, prune's identity."""
    store, cache = sections.store, sections.cache
    steps: list[tuple[str, Any]] = [
        ("identity", lambda: ensure_identity_task(store, cache, "runner", rotate=rotate)),
        ("identity-check", lambda: check_identity(store, cache)),
    ]
    if not store.identities.prune_uses_admin:
        steps.append(("identity-prune", lambda: ensure_identity_task(store, cache, "prune")))
    return steps


def check_identity(store: StoreSettings, cache: CacheSettings) -> StepResult:
    """Setup's proof that the runner key is restricted, unless turned off for a store that cannot enforce it."""
    if not store.identities.verify:
        return StepResult(
            step="identity-check",
            status="skipped",
            detail="not checked (RUNNER_CACHE_STORE__IDENTITIES__VERIFY=false): nothing proves the runner key cannot delete",
        )
    return prove_identity_task(store, cache, identity_credentials(store, "runner"))


def defer_revoke(store: StoreSettings, vault: Vault | None = None) -> StepResult:
    """Without a release step the runners are configured by hand: revoking now would cut them off."""
    record = (vault or BlockVault()).load(store, "runner")
    if record is None or not record.revoke:
        return StepResult(step="revoke", status="unchanged", detail="no old runner keys to revoke")
    return StepResult(
        step="revoke",
        status="skipped",
        detail=f"{len(record.revoke)} old runner key(s) stay valid until your runners have the new one: "
        "`runner-cache runner-credentials --show-secret`, then `runner-cache rotate-runner-credentials --finish`",
    )


def revoke_steps(sections: RunnerCacheSections) -> list[tuple[str, Any]]:
    """Setup's last steps, run only when everything before them passed with the current keys."""
    store = sections.store
    steps: list[tuple[str, Any]] = [
        (
            "revoke",
            (lambda: revoke_pending_task(store, "runner"))
            if sections.release.configured
            else (lambda: defer_revoke(store)),
        )
    ]
    if not store.identities.prune_uses_admin:
        steps.append(("revoke-prune", lambda: revoke_pending_task(store, "prune")))
    return steps


def plan_identity(sections: RunnerCacheSections, *, store_running: bool) -> list[StepResult]:
    """The plan's identity rows: which identities exist and what setup would change; reads only."""
    store, cache = sections.store, sections.cache
    roles: list[Role] = ["runner"] if store.identities.prune_uses_admin else ["runner", "prune"]
    rows = []
    for role in roles:
        step = "identity" if role == "runner" else f"identity-{role}"
        if not store_running:
            rows.append(
                StepResult(
                    step=step,
                    status="planned",
                    detail=f"would create identity {identity_name(role, store.bucket)} "
                    f"({grant(role, store.bucket, cache.path, cache.shared).describe()}) once the store runs",
                )
            )
            continue
        try:
            rows.append(ensure_identity(store, cache, role, apply=False))
        except ExternalSystemError as error:
            rows.append(StepResult(step=step, status="failed", detail=f"{type(error).__name__}: {error}"))
    return rows
