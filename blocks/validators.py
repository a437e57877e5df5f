"""Field types for names that Kubernetes, Helm and registries constrain, checked once, named in plain words."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            "must be a DNS label: up to 63 characters of a-z, 0-9, '-', starting and ending with a letter or digit"
        )
    return value


def _object_name(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            "must be a Kubernetes object name: a-z, 0-9, '-', '.', starting and ending with a letter or digit"
        )
    return value


def _helm_release(value: str) -> str:
    if len(value) > 53 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            "must be a Helm release name: up to 53 characters of a-z, 0-9, '-', '.', starting and ending with a letter or digit"
        )
    return value


def _domain(value: str) -> str:
    if not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError("must be a DNS domain such as cluster.local")
    return value


def _image(value: str) -> str:
    if not value or any(char.isspace() for char in value) or "://" in value:
        raise ValueError("must be one image reference without spaces or scheme, e.g. minio/minio:TAG@sha256:DIGEST")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
ObjectName = Annotated[str, AfterValidator(_object_name)]
HelmReleaseName = Annotated[str, AfterValidator(_helm_release)]
DnsDomain = Annotated[str, AfterValidator(_domain)]
ImageReference = Annotated[str, AfterValidator(_image)]
