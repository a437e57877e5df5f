#!/usr/bin/env bash
# Debian's Chromium for the Prefect UI test (Playwright drives it; no browser download).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "get-chromium: /usr/bin/chromium is missing; install Debian's chromium package (needs root)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
