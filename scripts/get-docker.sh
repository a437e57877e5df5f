#!/usr/bin/env bash
# Debian's Docker Engine (docker.io: dockerd 20.10, API 1.41) and a static busybox, for the tests that run the
# docker backend against a real engine. Idempotent: does nothing when both are installed.
set -euo pipefail
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
missing=()
installed docker.io || missing+=(docker.io)
installed busybox-static || missing+=(busybox-static)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "get-docker: ${missing[*]} missing; install them as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
