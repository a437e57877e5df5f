#!/usr/bin/env bash
# Check the layer contracts in .importlinter against the package as it is installed (runner_cache.flows, …).
#
# The folders live at the top of the repository and are mapped into runner_cache by setuptools' package-dir,
# which import-linter cannot follow; so this builds the installed tree as symlinks in a temp dir and checks that.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lint="${LINT_IMPORTS:-$repo/.venv/bin/lint-imports}"
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/runner_cache"
for entry in "$repo"/runner_cache/*; do ln -s "$entry" "$tree/runner_cache/"; done
for folder in flows tasks blocks deployments; do ln -s "$repo/$folder" "$tree/runner_cache/$folder"; done
cd "$tree"
PYTHONPATH="$tree" "$lint" --no-cache "$repo/.importlinter"
