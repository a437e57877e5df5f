"""Connection settings of the S3-compatible store and of the backend that provisions it."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from runner_cache.blocks.validators import DnsDomain, DnsLabel, ImageReference
from runner_cache.errors import ConfigError

if TYPE_CHECKING:  # the clients are imported where they are built: settings alone must stay cheap to import
    import urllib3
    from minio import Minio

# Upstream MinIO stopped publishing images in Oct 2025; this is a community rebuild of the last release
# (RELEASE.2025-10-15T17-29-55Z, which fixes CVE-2025-62506), pinned by digest. See docs/decisions.md.
DEFAULT_MINIO_IMAGE = (
    "ghcr.io/coollabsio/minio:RELEASE.2025-10-15T17-29-55Z"
    "@sha256:69b55a1c1c5dc285ce04db96689f5b2102317fc77a50680a1874ca6efd1c87f9"
)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost: reachable only from this machine (not from a runner's pod)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def default_state_dir() -> Path:
    """Where the local store keeps its data, pid and generated credentials (XDG data dir)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "runner-cache"


class DockerStoreSettings(BaseModel):
    """The ``docker`` backend: a MinIO container managed through the Docker Engine API."""

    image: ImageReference = Field(DEFAULT_MINIO_IMAGE, description="MinIO image; pin it by digest.")
    container_name: str = "runner-cache-minio"
    volume: str = Field("runner-cache-minio-data", description="A named volume, or an absolute host path.")
    host: str | None = Field(None, description="Docker Engine URL; defaults to DOCKER_HOST / the local socket.")
    api_version: str = Field(
        "auto",
        description="Engine API version: 'auto' asks the engine for the one it speaks (Docker 20.10: up to 1.41; "
        "Docker 29: 1.44 or later); a pinned one such as 1.41 is spoken as is.",
    )
    timeout: float = Field(30.0, gt=0, description="Seconds for each Engine API call.")

    @staticmethod
    def _is_docker_name(value: str) -> bool:
        """Docker's rule for container and volume names."""
        return re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", value) is not None

    @field_validator("container_name")
    @classmethod
    def _container_name_follows_docker_rules(cls, value: str) -> str:
        if not cls._is_docker_name(value):
            raise ValueError("must be 2+ characters of a-z, A-Z, 0-9, '_', '.', '-', starting with a letter or digit")
        return value

    @field_validator("volume")
    @classmethod
    def _volume_is_a_name_or_absolute_path(cls, value: str) -> str:
        if value.startswith("/"):
            if ":" in value or "," in value:
                raise ValueError("a host path must not contain ':' or ','")
            return value
        if not cls._is_docker_name(value):
            raise ValueError("must be a volume name (a-z, A-Z, 0-9, '_', '.', '-') or an absolute host path")
        return value

    @field_validator("host")
    @classmethod
    def _host_is_an_engine_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("unix://", "tcp://", "ssh://", "npipe://", "http://", "https://")
        ):
            raise ValueError("must be an engine URL such as unix:///var/run/docker.sock or tcp://host:2376")
        return value

    @field_validator("api_version")
    @classmethod
    def _api_version_is_pinned_or_auto(cls, value: str) -> str:
        if value != "auto" and not re.fullmatch(r"1\.\d{2}", value):
            raise ValueError("must be an Engine API version such as 1.44, or 'auto'")
        return value


class KubeStoreSettings(BaseModel):
    """The ``kubernetes`` backend: MinIO inside the cluster (Secret, PVC, Deployment and Service named ``name``)."""

    namespace: DnsLabel = "runner-cache"
    name: str = Field(
        "runner-cache-minio", description="Name of the Deployment and Service (and prefix of the Secret and PVC)."
    )
    image: ImageReference = Field(DEFAULT_MINIO_IMAGE, description="MinIO image; pin it by digest.")
    storage_size: str = Field(
        "10Gi", description="The PVC's size; it can grow later (if the storage class allows), never shrink."
    )
    storage_class: str | None = Field(None, description="The PVC's storage class; the cluster's default when unset.")
    kubeconfig: Path | None = Field(
        None, description="Kubeconfig file; default: in-cluster service account, else KUBECONFIG / ~/.kube/config."
    )
    context: str | None = Field(None, description="Kubeconfig context; default: its current context.")
    cluster_domain: DnsDomain = Field(
        "cluster.local", description="The cluster's DNS domain, for the in-cluster endpoint."
    )
    rollout_timeout: float = Field(300.0, gt=0, description="Seconds to wait for MinIO's pod to become ready.")

    @field_validator("name")
    @classmethod
    def _name_is_a_service_name(cls, value: str) -> str:
        # Service names are DNS-1035 labels; 52 leaves room for the "-credentials" suffix of the Secret.
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,50}[a-z0-9])?", value):
            raise ValueError(
                "must be up to 52 characters of a-z, 0-9, '-', starting with a letter and ending with a letter or digit"
            )
        return value

    @field_validator("storage_size")
    @classmethod
    def _storage_size_is_a_quantity(cls, value: str) -> str:
        if not re.fullmatch(r"[1-9]\d*(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?", value):
            raise ValueError("must be a Kubernetes quantity such as 10Gi or 500Mi")
        return value

    def service_endpoint(self) -> str:
        """The URL pods in the cluster reach MinIO at: the Service's DNS name, plain HTTP on port 9000."""
        return f"http://{self.name}.{self.namespace}.svc.{self.cluster_domain}:9000"


class IdentitySettings(BaseModel):
    """Keys besides the admin one: setup creates a ``runner`` identity (get/put under the runner's prefix, nothing
    else) and a ``prune`` identity (list, get, delete under ``Path``) on the store, unless their keys are set here
    (for stores whose admin or IAM API runner-cache cannot use: ``runner-cache plan`` prints the policies)."""

    runner_access_key: SecretStr | None = Field(
        None, description="The runner's key, when made by hand; setup then only checks it."
    )
    runner_secret_key: SecretStr | None = Field(None, description="Its secret.")
    prune_access_key: SecretStr | None = Field(None, description="Prune's and verify's key, when made by hand.")
    prune_secret_key: SecretStr | None = Field(None, description="Its secret.")
    prune_uses_admin: bool = Field(
        False, description="Prune and verify use the admin key instead of the prune identity."
    )
    verify: bool = Field(
        True, description="Prove the runner key cannot delete or list; off only for stores that ignore policies (moto)."
    )
    iam_endpoint: str | None = Field(
        None, description="The store's IAM API when it is not at the endpoint (AWS: https://iam.amazonaws.com)."
    )

    @model_validator(mode="after")
    def _pairs(self) -> IdentitySettings:
        for role in ("runner", "prune"):
            if (getattr(self, f"{role}_access_key") is None) != (getattr(self, f"{role}_secret_key") is None):
                raise ValueError(f"set both {role}_access_key and {role}_secret_key, or neither")
        return self

    @field_validator("iam_endpoint")
    @classmethod
    def _iam_endpoint_is_a_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("must be a URL with scheme, e.g. https://iam.amazonaws.com")
        return value


class StoreSettings(BaseModel):
    """The S3 endpoint the runner's cache lives in, its credentials, and how to provision it."""

    backend: Literal["local", "docker", "kubernetes", "external"] = "local"
    endpoint: str = Field(
        "http://127.0.0.1:9000", description="URL with scheme; http:// means the runner's Insecure=true."
    )
    access_key: SecretStr | None = Field(None, description="Generated for the local backend when unset.")
    secret_key: SecretStr | None = Field(None, description="Generated for the local backend when unset.")
    bucket: str = "runner"
    region: str = "us-east-1"
    runner_url: str | None = Field(
        None,
        description="Where runner pods reach the store, when not at the endpoint (e.g. a NodePort or ingress URL).",
    )
    state_dir: Path = Field(default_factory=default_state_dir, description="Local backend: data, pid, credentials.")
    ready_timeout: float = Field(60.0, gt=0, description="Seconds to wait for a provisioned store to answer.")
    docker: DockerStoreSettings = DockerStoreSettings()
    kubernetes: KubeStoreSettings = KubeStoreSettings()
    identities: IdentitySettings = IdentitySettings()

    @field_validator("endpoint", "runner_url")
    @classmethod
    def _endpoint_is_a_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or "://" not in value:
            raise ValueError("must be a URL with scheme, e.g. http://127.0.0.1:9000 or https://minio.example.com")
        if not parts.hostname:
            raise ValueError("has no host")
        if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must be scheme://host[:port] only (no path, query or credentials)")
        try:
            _ = parts.port  # raises on a port out of range or not a number
        except ValueError:
            raise ValueError("has an invalid port") from None
        return value.rstrip("/")

    @field_validator("bucket")
    @classmethod
    def _bucket_follows_s3_rules(cls, value: str) -> str:
        if not _BUCKET.match(value):
            raise ValueError(
                "must be 3-63 characters of a-z, 0-9, '.', '-', starting and ending with a letter or digit"
            )
        if ".." in value or ".-" in value or "-." in value:
            raise ValueError("must not contain '..', '.-' or '-.'")
        if value.startswith(("xn--", "sthree-")) or value.endswith(("-s3alias", "--ol-s3")):
            raise ValueError("uses a prefix or suffix S3 reserves")
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            return value
        raise ValueError("must not look like an IP address")

    @field_validator("access_key")
    @classmethod
    def _access_key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 3:
            raise ValueError("must be at least 3 characters (MinIO's minimum)")
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 8:
            raise ValueError("must be at least 8 characters (MinIO's minimum)")
        return value

    @model_validator(mode="after")
    def _credentials_present(self) -> StoreSettings:
        if self.backend != "local" and (self.access_key is None or self.secret_key is None):
            raise ValueError(f"the {self.backend} backend needs access_key and secret_key")
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("set both access_key and secret_key, or neither (local backend generates them)")
        return self

    @property
    def secure(self) -> bool:
        """TLS or not, from the endpoint's scheme; the runner's ``Insecure`` is its negation."""
        return urlsplit(self.endpoint).scheme == "https"

    @property
    def runner_endpoint(self) -> str:
        """Where the runner's pods reach the store: ``runner_endpoint`` when set, the in-cluster Service for the
        ``kubernetes`` backend (the endpoint may then be a port-forward only this tool uses), else the endpoint."""
        if self.runner_url:
            return self.runner_url
        return self.kubernetes.service_endpoint() if self.backend == "kubernetes" else self.endpoint

    @property
    def server_address(self) -> str:
        """``host:port`` as the runner's ``ServerAddress`` wants it (no scheme)."""
        return urlsplit(self.endpoint).netloc

    @property
    def port(self) -> int:
        parts = urlsplit(self.endpoint)
        return parts.port or (443 if parts.scheme == "https" else 80)

    def credentials(self, *, create: bool = False) -> tuple[SecretStr, SecretStr]:
        """Configured credentials, or the local store's generated ones (made on first use when ``create``)."""
        if self.access_key is not None and self.secret_key is not None:
            return self.access_key, self.secret_key
        found = local_credentials(self.state_dir, create=create)
        if found is None:
            raise ConfigError(
                f"the local store has no credentials yet (none in {self.state_dir}): run `runner-cache setup` first, "
                "or set RUNNER_CACHE_STORE__ACCESS_KEY and RUNNER_CACHE_STORE__SECRET_KEY"
            )
        return found

    def client(
        self, *, pool_size: int = 10, connect_timeout: float = 5.0, read_timeout: float = 60.0, retries: int = 3
    ) -> Minio:
        """An S3 client for this store with bounded timeouts; urllib3 retries 5xx answers ``retries`` times."""
        import urllib3
        from minio import Minio

        access, secret = self.credentials()
        http = http_pool(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            pool_size=pool_size,
            retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        return Minio(
            self.server_address,
            access_key=access.get_secret_value(),
            secret_key=secret.get_secret_value(),
            secure=self.secure,
            region=self.region,
            http_client=http,
        )


def http_pool(
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    pool_size: int = 10,
    retries: urllib3.Retry | bool = False,
) -> urllib3.PoolManager:
    """HTTP connections to the store: bounded timeouts, verified TLS (``SSL_CERT_FILE`` or certifi's bundle)."""
    import certifi
    import urllib3

    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        maxsize=pool_size,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=retries,
    )


def local_credentials(state_dir: Path, *, create: bool) -> tuple[SecretStr, SecretStr] | None:
    """The local store's generated credentials, kept 0600 in its state dir; made once when ``create``."""
    file = state_dir / "credentials.json"
    if file.is_file():
        data = json.loads(file.read_text())
        return SecretStr(data["access_key"]), SecretStr(data["secret_key"])
    if not create:
        return None
    state_dir.mkdir(parents=True, exist_ok=True)
    data = {"access_key": "runner-cache-" + secrets.token_hex(4), "secret_key": secrets.token_urlsafe(30)}
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    return SecretStr(data["access_key"]), SecretStr(data["secret_key"])
