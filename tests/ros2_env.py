"""The environment of the ROS 2 Humble kit, for tests that run real `ros2` commands.

    env = ros2_env(41)
    subprocess.run(["ros2", "node", "list", "--no-daemon"], env=env, ...)

The kit folder is $TINYCL_ROS2_CACHE, else what `tools/ros2/install-kit.sh` prints (it unpacks the
kit into a cache once; fast when already done). A missing kit fails the test, naming where it looked. The kit has no
diagnostic_msgs: the overlay install-kit.sh builds of it (``<kit>/overlay``) is sourced after the kit.
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_KIT = ROOT / "tools" / "ros2" / "install-kit.sh"
LOOPBACK = ROOT / "config" / "cyclonedds-loopback.xml"
BASE_PATH = "/usr/bin:/bin"   # Debian's python first: the kit was built for it (not pyenv's)
_BASH_OWN = {"PWD", "OLDPWD", "SHLVL", "_"}


@lru_cache(maxsize=1)
def kit_dir() -> Path:
    """The unpacked kit (the folder holding install/setup.bash)."""
    env_dir = os.environ.get("TINYCL_ROS2_CACHE")
    if env_dir:
        kit = Path(env_dir)
        where = f"$TINYCL_ROS2_CACHE={env_dir}"
    else:
        if not INSTALL_KIT.is_file():
            pytest.fail(f"ROS 2 kit: {INSTALL_KIT} not found and $TINYCL_ROS2_CACHE not set")
        run = subprocess.run(["bash", str(INSTALL_KIT)], capture_output=True, text=True, timeout=1800)
        lines = run.stdout.strip().splitlines()
        if run.returncode != 0 or not lines:
            pytest.fail(f"ROS 2 kit: {INSTALL_KIT} failed (exit {run.returncode}): {run.stderr.strip()[-1500:]}")
        kit = Path(lines[-1])
        where = f"the output of {INSTALL_KIT}: {kit}"
    if not (kit / "install" / "setup.bash").is_file():
        pytest.fail(f"ROS 2 kit not found: no {kit / 'install' / 'setup.bash'} (looked in {where})")
    return kit


def env_after(script: str, base: dict[str, str]) -> dict[str, str]:
    """The environment a bash script (e.g. sourcing a setup.bash) leaves behind, started from ``base``."""
    run = subprocess.run(["bash", "-c", f"{script} >/dev/null && env -0"], env=base, capture_output=True, timeout=120)
    if run.returncode != 0:
        pytest.fail(f"ROS 2: `{script}` failed: {run.stderr.decode()[-1500:]}")
    pairs = (item.split("=", 1) for item in run.stdout.decode().split("\0") if "=" in item)
    return {k: v for k, v in pairs if k not in _BASH_OWN}


@lru_cache(maxsize=4)
def _sourced(kit: Path) -> tuple[tuple[str, str], ...]:
    """Everything activating the kit's venv and `source install/setup.bash` set, from a clean
    environment (computed once): `python3` is then the venv's, which has tinycl's dependencies."""
    env = env_after(f'source "{kit}/venv/bin/activate" && source "{kit}/install/setup.bash"{_overlay(kit)}',
                    {"HOME": os.environ.get("HOME", "/root"), "PATH": BASE_PATH})
    return tuple(env.items())


def _overlay(kit: Path) -> str:
    """Sourcing the kit's diagnostic_msgs overlay after it (what install-kit.sh builds where the kit has none: the
    nodes publish /diagnostics); nothing where the kit has the package itself."""
    if (kit / "install" / "share" / "diagnostic_msgs").is_dir():
        return ""
    overlay = kit / "overlay"
    if not (overlay / ".key").is_file():
        pytest.fail(f"ROS 2 kit {kit} has no diagnostic_msgs and no overlay built ({overlay}): run {INSTALL_KIT}")
    return f' && source "{overlay}/install/setup.bash"'


def kit_env() -> dict[str, str]:
    """The kit's ROS 2 sourced, with its venv active."""
    return dict(_sourced(kit_dir()))


def ros2_env(domain_id: int) -> dict[str, str]:
    """A clean environment for the kit's `ros2` and rclpy: Debian PATH plus the kit's setup, rmw_cyclonedds
    on `domain_id`, CycloneDDS on loopback (the config the dds backend's tests use too)."""
    env = kit_env()
    env.update(RMW_IMPLEMENTATION="rmw_cyclonedds_cpp", ROS_DOMAIN_ID=str(domain_id),
               CYCLONEDDS_URI=f"file://{LOOPBACK}")
    return env
