#!/usr/bin/env bash
# Install the mosquitto broker (Debian package; mosquitto_passwd comes with it) and openssl, used by
# tools/mosquitto/setup.sh and by the fleet tests. Idempotent: apt runs only if something is missing;
# sudo is used only when not root. The Debian service is NOT enabled or started by us: tinycl runs its
# own broker instances with a generated configuration (see setup.sh / start.sh).
set -euo pipefail
PKGS=(mosquitto openssl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "mosquitto/install: all present (${PKGS[*]})"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "mosquitto/install: installing ${missing[*]}"
$SUDO apt-get update -q
# policy-rc.d-free: the package's postinst may try to start the system service; harmless either way.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
