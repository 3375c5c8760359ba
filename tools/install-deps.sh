#!/usr/bin/env bash
# System packages the tests need: Debian's Cyclone DDS C library, headers and idlc (for the
# independent C subscriber check) and a C compiler.
set -euo pipefail
exec bash "$(dirname "$0")/apt-ensure.sh" install-deps cyclonedds-dev cyclonedds-tools gcc libc6-dev
