#!/usr/bin/env bash
# install-kit.sh: the ROS 2 Humble kit from ../shared/kits/ros2-humble, unpacked into a cache, and a
# venv on Debian's python for tinycl's PyPI dependencies beside it. Idempotent: a cache entry is
# keyed by the kit's checksum and by pyproject.toml, so it is rebuilt only when either changes.
# Where the kit has no diagnostic_msgs (the nodes publish /diagnostics), the vendored one
# (tools/ros2/diagnostic_msgs) is built with colcon as an overlay, <cache entry>/overlay/install,
# keyed by the vendored files' hash; source it after the kit (tests/ros2_env.py does).
#
#   tools/ros2/install-kit.sh            # prints the folder to use as TINYCL_ROS2_CACHE
#
# Environment: TINYCL_ROS2_KIT (default ../shared/kits/ros2-humble beside the repository),
# TINYCL_CACHE (default ~/.cache/tinycl). Fails, naming the path it looked in, if the kit is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
kit=${TINYCL_ROS2_KIT:-$root/../shared/kits/ros2-humble}
tarball=$kit/ros2-humble-debian12-py311.tar.zst
if [ ! -f "$tarball" ]; then
  echo "install-kit: ROS 2 kit not found: $tarball (set TINYCL_ROS2_KIT)" >&2
  exit 1
fi
bash "$root/tools/apt-ensure.sh" ros2-kit build-essential cmake git pkg-config zstd python3-dev python3-venv \
  python3-empy python3-numpy python3-lark python3-yaml python3-catkin-pkg python3-argcomplete \
  python3-packaging python3-psutil python3-netifaces python3-rosdistro python3-setuptools \
  libyaml-dev libtinyxml2-dev libspdlog-dev libssl-dev cyclonedds-dev libiceoryx-binding-c-dev >&2

cache=${TINYCL_CACHE:-$HOME/.cache/tinycl}
sum=$(sha256sum "$tarball" | cut -c1-16)
dest=$cache/ros2-humble-$sum
if [ ! -f "$dest/install/setup.bash" ]; then
  echo "install-kit: unpacking $tarball into $dest" >&2
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  tar --zstd -xf "$tarball" -C "$dest.tmp"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi

# The venv: Debian's python (the one ROS 2 was built for), system site packages visible (rclpy's
# Debian dependencies), tinycl's PyPI dependencies on top. numpy stays below 2: the kit's and
# colcon's generated message extensions are compiled against Debian's numpy 1.24 C API.
venv=$dest/venv
deps_key=$(cat "$root/pyproject.toml" "$0" | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.deps" 2>/dev/null)" != "$deps_key" ]; then
  echo "install-kit: python venv $venv (Debian python, --system-site-packages)" >&2
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
  deps=$(/usr/bin/python3 - "$root/pyproject.toml" <<'EOF'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))
EOF
)
  echo "numpy<2" > "$venv/constraints.txt"
  mapfile -t reqs <<< "$deps"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -c "$venv/constraints.txt" "${reqs[@]}" >&2
  echo "$deps_key" > "$venv/.deps"
fi
# diagnostic_msgs, where the kit lacks it: an overlay built in place (colcon's install is not moved
# after a build), complete once its .key is written; a lock keeps two runs from building it at once.
overlay=$dest/overlay
if [ ! -d "$dest/install/share/diagnostic_msgs" ]; then
  vendored=$root/tools/ros2/diagnostic_msgs
  ov_key=$(cd "$vendored" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
  exec 9>"$dest/.overlay.lock"
  flock 9
  if [ "$(cat "$overlay/.key" 2>/dev/null)" != "$ov_key" ]; then
    echo "install-kit: building diagnostic_msgs (vendored, $vendored) as an overlay in $overlay" >&2
    rm -rf "$overlay" && mkdir -p "$overlay"
    if ! (cd "$overlay" && env -i HOME="$HOME" PATH=/usr/bin:/bin bash -c \
          'source "$1/install/setup.bash" && colcon build --merge-install --base-paths "$2" \
             --build-base build --install-base install --cmake-args -DPython3_EXECUTABLE=/usr/bin/python3 \
             -DBUILD_TESTING=OFF' _ "$dest" "$vendored") > "$overlay/build.log" 2>&1; then
      echo "install-kit: colcon build of diagnostic_msgs failed; last lines of $overlay/build.log:" >&2
      tail -n 30 "$overlay/build.log" >&2
      exit 1
    fi
    rm -rf "$overlay/build" "$overlay/log"
    echo "$ov_key" > "$overlay/.key"
  fi
  exec 9>&-
fi
echo "$dest"
