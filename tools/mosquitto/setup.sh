#!/usr/bin/env bash
# Generate a secured mosquitto for a fleet: CA + server cert + one client cert and password per
# device (and the aggregator), ACL, mosquitto.conf with a TLS listener on 127.0.0.1, or on the
# broker's real name and address with BROKER_HOST / BROKER_IP set (same as `tinycl fleet setup
# DIR --fleet F --devices ... --host NAME --ip ADDR`).
#
#   [BROKER_HOST=edge1 BROKER_IP=192.168.1.10] tools/mosquitto/setup.sh DIR FLEET DEV1,DEV2,... [TLS_PORT] [PLAINTEXT_PORT]
#
# As root, the broker will run as the user mosquitto, which must be able to reach DIR (e.g. under
# /srv or /var/lib, not /root); BROKER_USER=NAME picks another account (= --user; root keeps it root).
# PLAINTEXT_PORT (development only, loopback, passwords still required) is off unless given. On a re-run, a port or
# BROKER_* left unset keeps DIR's value.
# Installs mosquitto first if missing (tools/mosquitto/install.sh). Re-running on DIR with the
# full device list adds and removes devices (a removed one is revoked), keeping the CA and the
# others' keys: their bundles stay valid (`tinycl fleet setup --rotate/--new-ca` for the rest).
# Then: tools/mosquitto/start.sh DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PY="${PYTHON:-$root/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if [ $# -lt 3 ]; then
  echo "usage: $0 DIR FLEET DEV1,DEV2,... [TLS_PORT] [PLAINTEXT_PORT]" >&2
  exit 2
fi
bash "$here/install.sh"
args=(setup "$1" --fleet "$2" --devices "$3")
# left off, each keeps DIR's value when it holds a fleet (8883, no plaintext port, localhost for a new one)
if [ -n "${4:-}" ]; then args+=(--port "$4"); fi
if [ -n "${5:-}" ]; then args+=(--plaintext-port "$5"); fi
if [ -n "${BROKER_HOST:-}" ]; then args+=(--host "$BROKER_HOST"); fi
if [ -n "${BROKER_IP:-}" ]; then args+=(--ip "$BROKER_IP"); fi
if [ -n "${BROKER_USER:-}" ]; then args+=(--user "$BROKER_USER"); fi
cd "$root" && exec "$PY" -m tinycl_nodes.fleet.broker "${args[@]}"
