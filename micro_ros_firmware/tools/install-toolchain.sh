#!/usr/bin/env bash
# Debian packages the firmware tests and `make bench-firmware` need: host C toolchain + CMake,
# the Cortex-M7 cross compiler with newlib, and QEMU (mps2-an500 board).
set -euo pipefail
exec bash "$(dirname "$0")/../../tools/apt-ensure.sh" install-toolchain \
  cmake gcc libc6-dev gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
