"""A fake MinIO admin API: the user and policy endpoints runner-cache calls, checked the way MinIO checks them.

Written from MinIO's admin API as madmin-go (``user-commands.go``, ``policy-commands.go``, ``encrypt.go``) and
minio-py (``minio/minioadmin.py``) speak it, so that the real ``minio.MinioAdmin`` talks to it unchanged:

- every request must carry a valid AWS SigV4 signature (service ``s3``) by the root key, else 403
  ``SignatureDoesNotMatch`` / ``InvalidAccessKeyId``;
- bodies MinIO expects encrypted (``add-user``, ``idp/builtin/policy/attach``) are **decrypted here** with our
  own implementation of madmin's format — ``salt(32) | AEAD id(1) | nonce(8) | sio DARE chunks`` keyed by
  Argon2id(root secret) — and a plaintext body is refused with 400 ``XMinioAdminConfigBadJSON``;
- ``list-users`` and the attach answer are encrypted the same way, so the client must decrypt them;
- MinIO's semantics: add-user replaces an existing user's secret, attaching an attached policy answers 400
  ``XMinioAdminPolicyChangeAlreadyApplied``, unknown users/policies 404 ``XMinioAdminNoSuchUser``/``…Policy``.

What was sent is kept in ``calls`` (with the decrypted body) for tests to assert on; ``fail`` makes the next
request to a command answer an error, to inject failures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from argon2.low_level import Type, hash_secret_raw
from Crypto.Cipher import AES, ChaCha20_Poly1305
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

PREFIX = "/minio/admin/v3/"
_CHUNK = 16 * 1024
_TAG = 16


# --- madmin's encrypted payload (encrypt.go) over sio-go's DARE stream --------------------------------------------
def _key(password: str, salt: bytes) -> bytes:
    # madmin-go encrypt.go: argon2.IDKey(password, salt, time=1, memory=64*1024 KiB, threads=4, 32 bytes)
    return hash_secret_raw(
        password.encode(), salt, time_cost=1, memory_cost=64 * 1024, parallelism=4, hash_len=32, type=Type.ID
    )


def _cipher(aead: int, key: bytes, nonce: bytes) -> Any:
    if aead == 0:
        return AES.new(key, AES.MODE_GCM, nonce=nonce)
    if aead == 1:
        return ChaCha20_Poly1305.new(key=key, nonce=nonce)
    raise ValueError(f"unknown AEAD id {aead}")


def _associated_data(aead: int, key: bytes, nonce8: bytes) -> bytes:
    # sio-go: the stream's associated data is the tag of sealing nothing under nonce || 0, prefixed by 0x00
    return b"\x00" + _cipher(aead, key, nonce8 + bytes(4)).digest()


def decrypt(data: bytes, password: str) -> bytes:
    """Plaintext of a madmin-encrypted payload; ``ValueError`` when it is not one or the password is wrong."""
    if len(data) < 41 + _TAG:
        raise ValueError("too short to be an encrypted payload")
    salt, aead, nonce8, body = data[:32], data[32], data[33:41], data[41:]
    key = _key(password, salt)
    extra = _associated_data(aead, key, nonce8)
    chunks = [body[i : i + _CHUNK + _TAG] for i in range(0, len(body), _CHUNK + _TAG)]
    plain = b""
    for seq, chunk in enumerate(chunks, start=1):
        if seq == len(chunks):
            extra = b"\x80" + extra[1:]
        cipher = _cipher(aead, key, nonce8 + seq.to_bytes(4, "little"))
        cipher.update(extra)
        plain += cipher.decrypt_and_verify(chunk[:-_TAG], chunk[-_TAG:])
    return plain


def encrypt(plain: bytes, password: str, aead: int = 0) -> bytes:
    """``plain`` as madmin's EncryptData would send it."""
    salt, nonce8 = os.urandom(32), os.urandom(8)
    key = _key(password, salt)
    extra = _associated_data(aead, key, nonce8)
    parts = [plain[i : i + _CHUNK] for i in range(0, len(plain), _CHUNK)] or [b""]
    out = salt + bytes([aead]) + nonce8
    for seq, part in enumerate(parts, start=1):
        if seq == len(parts):
            extra = b"\x80" + extra[1:]
        cipher = _cipher(aead, key, nonce8 + seq.to_bytes(4, "little"))
        cipher.update(extra)
        sealed, tag = cipher.encrypt_and_digest(part)
        out += sealed + tag
    return out


# --- SigV4 as MinIO verifies it ----------------------------------------------------------------------------------
def _signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _canonical_query(request: Request) -> str:
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in request.args.items(multi=True))
    return "&".join(f"{k}={v}" for k, v in pairs)


@dataclass
class AdminCall:
    method: str
    command: str
    query: dict[str, str]
    encrypted: bool
    body: Any  # decrypted (and JSON-decoded when it is JSON) request body


@dataclass
class AdminError(Exception):
    status: int
    code: str
    message: str = ""


@dataclass
class FakeMinioAdmin:
    root_access: str
    root_secret: str
    region: str = "us-east-1"
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # access key -> {secret, status, policies}
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[AdminCall] = field(default_factory=list)
    fail: dict[str, AdminError] = field(default_factory=dict)  # command -> the error its next request answers

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: Any = None

    # -- server --
    def start(self) -> FakeMinioAdmin:
        class Quiet(WSGIRequestHandler):
            def log(self, *args: object) -> None:  # keep test output clean
                pass

        self._server = make_server("127.0.0.1", 0, self, threaded=True, request_handler=Quiet)
        threading.Thread(target=self._server.serve_forever, name="fake-minio-admin", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self._handle(request)
        except AdminError as error:
            response = Response(
                json.dumps({"Code": error.code, "Message": error.message or error.code}),
                error.status,
                content_type="application/json",
            )
        return response(environ, start_response)

    # -- checks --
    def _authenticate(self, request: Request, body: bytes) -> None:
        header = request.headers.get("Authorization", "")
        try:
            algorithm, rest = header.split(" ", 1)
            fields = dict(part.strip().split("=", 1) for part in rest.split(","))
            access, day, region, service, _ = fields["Credential"].split("/")
            signed, signature = fields["SignedHeaders"].split(";"), fields["Signature"]
        except ValueError:
            raise AdminError(403, "AccessDenied", "missing or malformed Authorization") from None
        if algorithm != "AWS4-HMAC-SHA256" or service != "s3":
            raise AdminError(403, "AccessDenied", "MinIO admin requests are signed for service s3")
        if access != self.root_access:
            raise AdminError(403, "InvalidAccessKeyId")
        payload = request.headers.get("x-amz-content-sha256", "")
        if payload != hashlib.sha256(body).hexdigest():
            raise AdminError(400, "XAmzContentSHA256Mismatch")
        headers = "".join(f"{name}:{' '.join(request.headers.get(name, '').split())}\n" for name in signed)
        canonical = "\n".join(
            [
                request.method,
                quote(request.path, safe="/-_.~"),
                _canonical_query(request),
                headers,
                ";".join(signed),
                payload,
            ]
        )
        amz_date = request.headers.get("x-amz-date", "")
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                amz_date,
                f"{day}/{region}/{service}/aws4_request",
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        wanted = hmac.new(
            _signing_key(self.root_secret, day, region, service), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(wanted, signature):
            raise AdminError(403, "SignatureDoesNotMatch")

    def _encrypted_json(self, body: bytes) -> Any:
        try:
            return json.loads(decrypt(body, self.root_secret))
        except ValueError:
            raise AdminError(
                400, "XMinioAdminConfigBadJSON", "the body is not an encrypted payload for the root key"
            ) from None

    # -- endpoints --
    def _handle(self, request: Request) -> Response:
        body = request.get_data()
        self._authenticate(request, body)
        if not request.path.startswith(PREFIX):
            raise AdminError(404, "XMinioAdminAPINotFound")
        command = request.path[len(PREFIX) :]
        encrypted = command in {"add-user", "idp/builtin/policy/attach"}
        payload = self._encrypted_json(body) if encrypted else (json.loads(body) if body else None)
        with self._lock:
            self.calls.append(AdminCall(request.method, command, dict(request.args), encrypted, payload))
            if command in self.fail:
                raise self.fail.pop(command)
            return self._dispatch(request.method, command, request.args, payload)

    def _user(self, access: str) -> dict[str, Any]:
        if access not in self.users:
            raise AdminError(404, "XMinioAdminNoSuchUser", "The specified user does not exist.")
        return self.users[access]

    def _dispatch(self, method: str, command: str, args: Any, payload: Any) -> Response:
        if (method, command) == ("PUT", "add-user"):
            access = args.get("accessKey", "")
            if not 3 <= len(access) <= 20 or len(payload.get("secretKey", "")) < 8:
                raise AdminError(400, "XMinioAdminInvalidArgument")
            previous = self.users.get(access, {})
            self.users[access] = {
                "secret": payload["secretKey"],
                "status": payload.get("status", "enabled"),
                "policies": previous.get("policies", []),
            }
            return Response(b"", 200)
        if (method, command) == ("GET", "list-users"):
            listing = {
                access: {"policyName": ",".join(user["policies"]), "status": user["status"]}
                for access, user in self.users.items()
            }
            return Response(encrypt(json.dumps(listing).encode(), self.root_secret), 200)
        if (method, command) == ("GET", "user-info"):
            user = self._user(args.get("accessKey", ""))
            return Response(json.dumps({"policyName": ",".join(user["policies"]), "status": user["status"]}), 200)
        if (method, command) == ("DELETE", "remove-user"):
            self._user(args.get("accessKey", ""))
            del self.users[args["accessKey"]]
            return Response(b"", 200)
        if (method, command) == ("PUT", "add-canned-policy"):
            if not isinstance(payload, dict) or "Statement" not in payload:
                raise AdminError(400, "XMinioMalformedPolicy")
            self.policies[args.get("name", "")] = payload
            return Response(b"", 200)
        if (method, command) == ("GET", "info-canned-policy"):
            if args.get("name") not in self.policies:
                raise AdminError(404, "XMinioAdminNoSuchPolicy", "The canned policy does not exist.")
            return Response(json.dumps(self.policies[args["name"]]), 200)
        if (method, command) == ("POST", "idp/builtin/policy/attach"):
            user = self._user(payload.get("user", ""))
            missing = [name for name in payload.get("policies", []) if name not in self.policies]
            if missing:
                raise AdminError(404, "XMinioAdminNoSuchPolicy")
            added = [name for name in payload["policies"] if name not in user["policies"]]
            if not added:
                raise AdminError(
                    400, "XMinioAdminPolicyChangeAlreadyApplied", "The specified policy change is already in effect."
                )
            user["policies"] += added
            answer = {"policiesAttached": added, "updatedAt": datetime.now(UTC).isoformat()}
            return Response(encrypt(json.dumps(answer).encode(), self.root_secret), 200)
        raise AdminError(404, "XMinioAdminAPINotFound", f"{method} {command} is not part of this fake")
