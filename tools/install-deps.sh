#!/usr/bin/env bash
# System packages the tests need: Debian's Cyclone DDS C library, headers and idlc (for the
# independent C subscriber check) and a C compiler. Idempotent: apt runs only if something is missing.
set -euo pipefail
PKGS=(cyclonedds-dev cyclonedds-tools gcc libc6-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all present (${PKGS[*]})"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
