#!/usr/bin/env bash
# Debian packages the firmware tests and `make bench-firmware` need: host C toolchain + CMake,
# the Cortex-M7 cross compiler with newlib, and QEMU (mps2-an500 board). Idempotent: apt runs
# only when one of them is missing; sudo only when not root.
set -euo pipefail
PKGS=(cmake gcc libc6-dev gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-toolchain: all present (${PKGS[*]})"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-toolchain: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
