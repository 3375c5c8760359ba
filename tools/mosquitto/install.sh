#!/usr/bin/env bash
# The mosquitto broker (Debian package; mosquitto_passwd comes with it), openssl, and iproute2
# (`ip netns`: the tests' and demo-fleet's hosts, tinycl_nodes/netns.py), used by
# tools/mosquitto/setup.sh and by the fleet tests. The Debian service is NOT enabled or started
# by us: tinycl runs its own broker instances with a generated configuration (setup.sh / start.sh).
set -euo pipefail
exec bash "$(dirname "$0")/../apt-ensure.sh" mosquitto/install mosquitto openssl iproute2
