#!/usr/bin/env bash
# Debian's Chromium for the browser end-to-end tests (tests/e2e), driven by Playwright for Python
# with executable_path=/usr/bin/chromium (Playwright's own browser download is not used).
# Idempotent: does nothing when /usr/bin/chromium is already there; sudo only when not root.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
/usr/bin/chromium --version
