#!/usr/bin/env bash
# Run mosquitto in the foreground on a directory made by setup.sh (Ctrl-C / SIGTERM to stop;
# it saves retained heads and sessions to DIR/data on the way out).
#   tools/mosquitto/start.sh DIR
set -euo pipefail
if [ $# -ne 1 ] || [ ! -f "$1/mosquitto.conf" ]; then
  echo "usage: $0 DIR   (DIR made by tools/mosquitto/setup.sh, with mosquitto.conf)" >&2
  exit 2
fi
MOSQ="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
exec "$MOSQ" -c "$(cd "$1" && pwd)/mosquitto.conf"
