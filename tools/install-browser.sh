#!/usr/bin/env bash
# Debian's Chromium for the browser end-to-end tests (tests/e2e), driven by Playwright for Python
# with executable_path=/usr/bin/chromium (Playwright's own browser download is not used), and
# NSS's certutil (libnss3-tools), with which a test makes Chromium trust the label app's certificate.
set -euo pipefail
exec bash "$(dirname "$0")/apt-ensure.sh" install-browser chromium libnss3-tools
