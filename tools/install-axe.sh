#!/usr/bin/env bash
# axe-core (the accessibility audit the browser tests inject into the phone app) from npm, into
# ~/.cache/tinycl/axe-core-<version>/ once; prints the path of axe.min.js. Needs node + npm
# (Debian: apt-get install npm; installed here when missing).
set -euo pipefail
VERSION=4.14.1
DIR="${HOME}/.cache/tinycl/axe-core-${VERSION}"
JS="${DIR}/node_modules/axe-core/axe.min.js"
if [ ! -f "$JS" ]; then
  command -v npm >/dev/null || bash "$(dirname "$0")/apt-ensure.sh" install-axe npm >&2
  mkdir -p "$DIR"
  npm install --prefix "$DIR" --no-audit --no-fund --silent "axe-core@${VERSION}" >&2
fi
echo "$JS"
