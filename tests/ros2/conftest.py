"""A real ROS 2 Humble for the tests: the kit unpacked into a cache (tools/ros2/install-kit.sh), the
package built with colcon in a temporary workspace, and helpers to run ``ros2`` commands and node
processes on a private DDS domain (loopback only). With ``TINYCL_ROS2_ENV=sourced`` (``make
test-ros2``) the ROS 2 already sourced in the caller's shell is used instead of the kit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.domains import free_domain
from tests.nodes.conftest import NodeProcess
from tests.once import once_per_run
from tests.ros2_env import LOOPBACK, env_after, kit_env

ROOT = Path(__file__).resolve().parents[2]
STREAM = 1000                     # the replay's stream (after its 100 labelled samples) in the graph tests


def params_file(tmp: Path, graph: str = "tinyndc", **sections: dict) -> Path:
    """The shipped config/<graph>.yaml with ``sections`` merged in (node → {name: value})."""
    doc = yaml.safe_load((ROOT / "config" / f"{graph}.yaml").read_text())
    for node, values in sections.items():
        doc.setdefault(node, {}).setdefault("ros__parameters", {}).update(values)
    path = tmp / f"{graph}_test.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def reference(data_dir):
    """The in-process run of the shipped graph's preset, seed and stream: predictions to match one by one."""
    from tinycl_nodes import presets
    from tinycl_nodes.experiments import tinyndc as exp

    feats = exp.extract_features(exp.load_extractor("mnist_0to5_fp32"), str(data_dir))
    r = exp.run_one(presets.tinycl_best, False, feats, 0, exp.Protocol(labels_per_class=10, stream_length=STREAM),
                    10, keep_predictions=True)
    return r


@pytest.fixture(scope="session")
def ros2_base_env() -> dict[str, str]:
    """ROS 2 sourced: the kit's (default) or the caller's own (TINYCL_ROS2_ENV=sourced)."""
    if os.environ.get("TINYCL_ROS2_ENV") == "sourced":
        if not os.environ.get("ROS_DISTRO"):
            pytest.fail("TINYCL_ROS2_ENV=sourced but no ROS 2 is sourced (ROS_DISTRO is not set)")
        return dict(os.environ)
    return kit_env()


@pytest.fixture(scope="session")
def ros2_ws(ros2_base_env, tmp_path_factory, request) -> dict[str, str]:
    """The package built with colcon in a fresh workspace, once per run; the environment with it sourced."""
    return once_per_run(request, tmp_path_factory, "colcon_ws", lambda ws: _colcon_build(ros2_base_env, ws))


def _colcon_build(base_env: dict[str, str], ws: Path) -> dict[str, str]:
    """``colcon build`` of this repository (a symlink in ``ws/src``); the environment with the install sourced."""
    (ws / "src").mkdir()
    (ws / "src" / "tinycl_nodes").symlink_to(ROOT)
    t0 = time.monotonic()
    out = subprocess.run(["colcon", "build", "--merge-install", "--cmake-args",
                          f"-DPython3_EXECUTABLE={shutil.which('python3', path='/usr/bin') or '/usr/bin/python3'}",
                          "-DBUILD_TESTING=OFF"], cwd=ws, env=base_env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        pytest.fail(f"colcon build failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    env = env_after(f"source {ws}/install/setup.bash", base_env)
    env["TINYCL_WS"] = str(ws)
    env["TINYCL_COLCON_BUILD_S"] = f"{time.monotonic() - t0:.1f}"
    return env


@pytest.fixture()
def ros(ros2_ws, tmp_path) -> Iterator["Ros"]:
    """A private DDS domain with ROS_HOME in tmp_path; every process started is stopped at the end."""
    r = Ros(ros2_ws, free_domain(), tmp_path)
    try:
        yield r
    finally:
        r.stop_all()


def diagnostics(text: str) -> dict[str, list[dict]]:
    """Node name → every DiagnosticStatus of it in ``ros2 topic echo``'s YAML output, oldest first (``level`` as an
    int, ``values`` as a dict); a message cut short by the end of the output is left out."""
    out: dict[str, list[dict]] = {}
    for doc in text.split("\n---\n")[:-1]:
        msg = yaml.safe_load(doc[doc.find("header:"):])
        for st in msg["status"]:
            st["level"] = ord(st["level"]) if isinstance(st["level"], str) else int(st["level"])
            st["values"] = {kv["key"]: kv["value"] for kv in st["values"] or []}
            out.setdefault(st["name"], []).append(st)
    return out


class Proc(NodeProcess):
    """A process (output merged on stdout) in its own session, stopped with its whole group."""

    def __init__(self, proc: subprocess.Popen, name: str) -> None:
        super().__init__(proc)
        self.name = name

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout_s:.0f} s; last lines:\n"
                                 + "\n".join(self.lines[-40:])) from None

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self._t.join(timeout=2)
        return self.proc.returncode


class Ros:
    """ROS 2 commands and node processes on one private, loopback-only DDS domain."""

    def __init__(self, ws_env: dict[str, str], domain: int, tmp: Path) -> None:
        self.domain, self.tmp = domain, tmp
        self.env = {**ws_env, "ROS_DOMAIN_ID": str(domain), "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp",
                    "CYCLONEDDS_URI": LOOPBACK.as_uri(), "ROS_HOME": str(tmp / "ros_home"),
                    "PYTHONUNBUFFERED": "1", "RCUTILS_COLORIZED_OUTPUT": "0"}
        from tinycl_nodes.datasets import data_root
        self.env["TINYCL_DATA"] = str(data_root().resolve())   # nodes run in tmp: never a relative path
        # the project's own venv for dds-backend nodes (no ROS 2 on its path)
        self.dds_env = {k: v for k, v in os.environ.items() if not k.startswith(("AMENT", "COLCON", "ROS_"))}
        self.dds_env |= {"ROS_DOMAIN_ID": str(domain), "TINYCL_BUS": "dds", "PYTHONUNBUFFERED": "1",
                         "ROS_HOME": self.env["ROS_HOME"], "TINYCL_DATA": self.env["TINYCL_DATA"]}
        self.procs: list[Proc] = []

    def run(self, *cmd: str, timeout_s: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:
        """A command (e.g. ``ros2 param get …``) to completion; SIGINT on timeout, as ros2cli wants.

        ``ros2 param`` gives its new node a fixed 5 s to discover the target's parameter service (ros2param
        api: ``wait_for_service(timeout_sec=5.0)``); on a loaded machine discovery can take longer, so that one
        message is retried (up to 3 tries), anything else is returned as it is."""
        for _ in range(3):
            out = subprocess.run(["timeout", "-s", "INT", str(int(timeout_s)), *cmd], env=self.env,
                                 capture_output=True, text=True, timeout=timeout_s + 15)
            if "Wait for service timed out" not in out.stdout + out.stderr:
                break
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        return out

    def start(self, *cmd: str, dds: bool = False, name: str | None = None) -> Proc:
        """A process in its own session; ``dds``: with the project's venv and no ROS 2 (dds backend)."""
        p = subprocess.Popen(list(cmd), env=self.dds_env if dds else self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                             cwd=self.tmp)
        proc = Proc(p, name or " ".join(cmd[:3]))
        self.procs.append(proc)
        return proc

    def wait_until(self, what: str, check, timeout_s: float = 30.0, every_s: float = 0.5):
        """Poll ``check()`` until it returns something truthy."""
        end = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < end:
            last = check()
            if last:
                return last
            time.sleep(every_s)
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}")

    def node_list(self) -> set[str]:
        return set(self.run("ros2", "node", "list", "--no-daemon", "--spin-time", "2", check=False).stdout.split())

    def stop_all(self) -> None:
        """Stop every process started, then the domain's ros2 daemon that ``ros2`` commands started.

        A daemon left behind outlives the test; killed later by anything but ``ros2 daemon stop``, it can keep
        answering while its rclpy is shut down, and a later run drawing the same domain then fails with
        ``!rclpy.ok()``."""
        for p in reversed(self.procs):
            p.stop()
        subprocess.run(["ros2", "daemon", "stop"], env=self.env, capture_output=True, timeout=30, check=False)
