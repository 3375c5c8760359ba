#!/usr/bin/env bash
# System packages the tests need: Debian's Cyclone DDS C library, headers and idlc (for the
# independent C subscriber check), a C compiler, and libfaketime (a node's wall clock stepped
# while it runs: tests/nodes/test_labeler_clock_step.py).
set -euo pipefail
exec bash "$(dirname "$0")/apt-ensure.sh" install-deps cyclonedds-dev cyclonedds-tools gcc libc6-dev faketime
