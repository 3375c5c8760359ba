#!/usr/bin/env bash
# build-uros.sh: the micro-ROS humble agent (MicroXRCEAgent) and libmicroros.a for the Cortex-M7, built
# from the kit in ../shared/kits/microros with the kit's own scripts, into cache folders keyed by their
# inputs (rebuilt only when an input changes):
#   $CACHE/microros-src-<h>     the unpacked sources                  h = sources tarball
#   $CACHE/microros-venv-<h>    colcon venv (setup_host.sh)            h = setup_host.sh
#   $CACHE/microros-agent-<h>   install/bin/MicroXRCEAgent             h = tarball + build_agent.sh
#   $CACHE/libmicroros-<h>      libmicroros/{libmicroros.a,include/}   h = kit (tarball, scripts) + tinycl.meta
#                                                                          + the message package (stage_msgs.py, msg/*.msg)
# Prints two lines on stdout, AGENT=<MicroXRCEAgent> and LIBMICROROS=<folder of libmicroros.a>; progress on
# stderr. Builds run under `nice -n 10` with JOBS (default 2) workers; a lock serialises builds (a caller whose
# outputs are all built takes none: it does not wait for a build of a library it does not use).
# Environment: TINYCL_MICROROS_KIT (default ../shared/kits/microros beside the repository),
# TINYCL_CACHE (default ~/.cache/tinycl), JOBS, TINYCL_MICROROS_META (default app/tinycl.meta: another colcon meta,
# e.g. a library built for fewer publishers and subscriptions, as an older firmware's).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
kit=${TINYCL_MICROROS_KIT:-$root/../shared/kits/microros}
cache=${TINYCL_CACHE:-$HOME/.cache/tinycl}
export JOBS=${JOBS:-2}
say() { echo "build-uros: $*" >&2; }
die() { echo "build-uros: error: $*" >&2; exit 1; }
tarball=$kit/sources/microros-humble-src.tar.xz
[ -f "$tarball" ] || die "micro-ROS kit not found: $tarball (set TINYCL_MICROROS_KIT)"
meta=${TINYCL_MICROROS_META:-$root/micro_ros_firmware/app/tinycl.meta}
[ -f "$meta" ] || die "colcon meta not found: $meta"
mkdir -p "$cache"
key() { cat "$@" | sha256sum | cut -c1-16; }
elapsed() { local s=$(( $(date +%s) - $1 )); echo "$((s / 60)) min $((s % 60)) s"; }
# The message package is staged with only what its build reads (app/tools/stage_msgs.py, also PlatformIO's
# pre-script), so the key covers every input.
pkg_files=("$root/micro_ros_firmware/app/tools/stage_msgs.py" "$root"/msg/*.msg)
src=$cache/microros-src-$(key "$tarball")
venv=$cache/microros-venv-$(key "$kit/setup_host.sh")
agent=$cache/microros-agent-$(key "$tarball" "$kit/build_agent.sh")
lib=$cache/libmicroros-$(key "$tarball" "$kit/build_libmicroros.sh" "$kit/setup_host.sh" "$meta" "${pkg_files[@]}" \
  <(cd "$root" && ls msg/*.msg))
say_built() { echo "AGENT=$agent/install/bin/MicroXRCEAgent"; echo "LIBMICROROS=$lib/libmicroros"; }
# all built: no lock (a caller does not wait for another's build of a library it does not need)
if [ -f "$src/microros-humble-src/repos.lock" ] && [ -f "$venv/.complete" ] && [ -f "$agent/.complete" ] \
   && [ -x "$agent/install/bin/MicroXRCEAgent" ] && [ -f "$lib/.complete" ]; then
  say_built
  exit 0
fi
exec 9> "$cache/microros.lock"
flock 9

# ---- sources + host packages + colcon venv (the kit's setup_host.sh) ----
if [ ! -f "$src/microros-humble-src/repos.lock" ]; then
  say "unpacking $tarball -> $src"
  rm -rf "$src.tmp" && mkdir -p "$src.tmp" && tar -xJf "$tarball" -C "$src.tmp"
  rm -rf "$src" && mv "$src.tmp" "$src"
fi
SRC=$src/microros-humble-src
if [ ! -f "$venv/.complete" ]; then
  bash "$kit/setup_host.sh" "$venv" >&2
  touch "$venv/.complete"
fi

# ---- the agent ----
if [ ! -x "$agent/install/bin/MicroXRCEAgent" ] || [ ! -f "$agent/.complete" ]; then
  t0=$(date +%s)
  nice -n 10 bash "$kit/build_agent.sh" "$SRC" "$agent" >&2
  touch "$agent/.complete"
  echo "agent_build_s $(( $(date +%s) - t0 ))" > "$agent/timing_total.txt"
  say "agent built in $(elapsed "$t0")"
fi

# ---- libmicroros.a with the tinycl_nodes messages ----
if [ ! -f "$lib/.complete" ]; then
  t0=$(date +%s)
  rm -rf "$lib/pkg" && mkdir -p "$lib/pkg"
  stage=$(python3 "$root/micro_ros_firmware/app/tools/stage_msgs.py" "$lib/pkg")
  nice -n 10 bash "$kit/build_libmicroros.sh" "$SRC" "$lib" "$venv" "$meta" "$stage" >&2
  rm -rf "$lib/mcu/build" "$lib/mcu/src"   # ~250 MB of objects and copied sources; install/ and logs stay
  touch "$lib/.complete"
  echo "libmicroros_build_s $(( $(date +%s) - t0 ))" > "$lib/timing_total.txt"
  say "libmicroros.a built in $(elapsed "$t0")"
fi
say_built
