#!/usr/bin/env bash
# Run the Kubernetes acceptance tests (tests/acceptance/test_kind_cluster.py) AS runner-cache's own service account,
# holding exactly the RBAC that docs/deployments.md documents (its `# runner-cache-rbac:` YAML blocks), on a
# throwaway kind or k3d cluster. See docs/acceptance.md.
#
#   scripts/acceptance-rbac.sh ADMIN_KUBECONFIG [FEATURES]      FEATURES: release,store (default) [,namespaces,chart-rbac]
#
# The admin kubeconfig only prepares (namespaces, the service account, the documented Roles, a short-lived token),
# port-forwards to MinIO and cleans up. Everything runner-cache and helm do runs with the service account's token:
# a request the documented Roles do not allow fails the run. (A kubeconfig `as:` impersonation would not do: the
# python kubernetes client ignores it, so the token of the service account itself is used.) The store namespace
# enforces the `restricted` Pod Security Standard, so MinIO is proven under it too.
set -euo pipefail

admin=${1:?usage: scripts/acceptance-rbac.sh ADMIN_KUBECONFIG [FEATURES]}
features=${2:-release,store}
root=$(cd "$(dirname "$0")/.." && pwd)
kubectl=${KUBECTL:-$(command -v kubectl || echo "$root/.tools/bin/kubectl")}
store_ns=runner-cache
runner_ns=gitlab-runner
work=$(mktemp -d)
chmod 700 "$work"
k() { "$kubectl" --kubeconfig "$admin" "$@"; }
cleanup() {
    k delete namespace -l runner-cache-acceptance=true --wait=false >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# 1. The documented RBAC, exactly as written in the doc (the blocks of the chosen features).
python3 - "$root/docs/deployments.md" "$features" >"$work/rbac.yaml" <<'PY'
import re, sys
doc, wanted = open(sys.argv[1], encoding="utf-8").read(), sys.argv[2].split(",")
blocks = {b.splitlines()[0].split(":", 1)[1].strip(): b for b in re.findall(r"```yaml\n(# runner-cache-rbac:.*?)```", doc, re.S)}
missing = [f for f in wanted if f not in blocks]
if missing:
    sys.exit(f"docs/deployments.md documents no RBAC feature {missing} (it has {sorted(blocks)})")
print("\n---\n".join(blocks[f] for f in wanted))
PY

# 2. Namespaces (labelled, so that cleanup removes only what this script made), the service account, the Roles.
for ns in "$store_ns" "$runner_ns"; do
    if ! k get namespace "$ns" >/dev/null 2>&1; then
        k create namespace "$ns"
        k label namespace "$ns" runner-cache-acceptance=true
    fi
done
k label --overwrite namespace "$store_ns" pod-security.kubernetes.io/enforce=restricted
k -n "$store_ns" get serviceaccount runner-cache >/dev/null 2>&1 || k -n "$store_ns" create serviceaccount runner-cache
k apply -f "$work/rbac.yaml"

# 3. A kubeconfig holding the service account's token (1 h), never on a command line.
server=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(k config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
token=$(k -n "$store_ns" create token runner-cache --duration=1h)
umask 077
cat >"$work/runner-cache.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: acceptance, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: runner-cache, user: {token: "$token"}}]
contexts: [{name: runner-cache, context: {cluster: acceptance, user: runner-cache}}]
current-context: runner-cache
EOF
unset token

# 4. What that identity may do, for the record (kubectl auth can-i asks the API server itself).
"$kubectl" --kubeconfig "$work/runner-cache.kubeconfig" auth can-i --list -n "$runner_ns" | head -n 20 || true

# 5. The acceptance tests, as the service account, in the namespaces the Roles are bound in.
cd "$root"
RUNNER_CACHE_ACCEPTANCE_KUBECONFIG="$work/runner-cache.kubeconfig" \
RUNNER_CACHE_ACCEPTANCE_ADMIN_KUBECONFIG="$admin" \
RUNNER_CACHE_ACCEPTANCE_NAMESPACES="$store_ns,$runner_ns" \
PATH="$root/.tools/bin:$PATH" \
    .venv/bin/pytest -m acceptance tests/acceptance/test_kind_cluster.py -v
